//! `saprouter`: a route through a SAProuter to an SAP system is open end to end.
//!
//! Connects to the router and sends an `NI_ROUTE` request (talk mode NI_MSG_IO) whose
//! first hop is the router itself as configured (`router` host and port), followed by
//! the configured `route` hops; only the last hop carries the password
//! (`route_password`), as a saprouttab entry with a password demands.
//!
//! Up means: the route was accepted (`NI_PONG`, sent by the last router once it has
//! connected to the target) AND the target then answered an `NI_PING` sent through the
//! route with `NI_PONG`, proving the path carries NI traffic both ways. Outcomes:
//! - `NI_RTERR` (before or after the ping): `route_error` with the return code, its
//!   meaning and the router's error text (e.g. -94 not permitted, -92 refused).
//! - silence from the router or, after the route was accepted, from the target:
//!   `no_answer` (reported shortly before the timeout, as for `sap-ni`).
//! - anything that is not SAP NI, or another answer: `bad_response`.

use siteward_config::{Host, SaprouterProbe};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use super::sap_ni::{await_pong, quiet_deadline, read_frame, route_error};
use crate::net::ProbeEnv;
use crate::protocol::ni::{self, RouteHop, RouteRequest};
use crate::{Failure, Observation, ProbeResult, Reason};

pub async fn probe(p: &SaprouterProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let quiet = quiet_deadline(env);
    let route = p.route_display();
    let mut stream = env.connect_tcp(&p.router).await?;
    let router = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| p.router.to_string());
    let started = Instant::now();
    let request = route_request(p);
    stream
        .write_all(&ni::encode_frame(&request.encode()))
        .await
        .map_err(|e| Failure::from(e).context(&format!("sending the route request to {router}")))?;

    let mut buf = Vec::new();
    let answer = tokio::time::timeout_at(quiet, async {
        // A router may send its own keep-alive first; answer it and keep waiting.
        for _ in 0..3 {
            let payload = read_frame(&mut stream, &mut buf).await?;
            match ni::classify(&payload) {
                ni::Message::Ping => stream.write_all(&ni::encode_frame(ni::PONG)).await?,
                _ => return Ok(payload),
            }
        }
        Err(Failure::new(
            Reason::BadResponse,
            "SAProuter keeps sending NI_PING instead of answering the route request",
        ))
    })
    .await
    .map_err(|_| {
        Failure::new(
            Reason::NoAnswer,
            format!(
                "SAProuter {router} accepted the connection but did not answer the route request for {route} within {} ms",
                started.elapsed().as_millis()
            ),
        )
    })?
    .map_err(|f| f.context(&format!("requesting {route} from SAProuter {router}")))?;

    match ni::classify(&answer) {
        ni::Message::Pong => {}
        ni::Message::RouteError(bytes) => {
            return Err(route_error(bytes).context(&format!("SAProuter {router} refused {route}")))
        }
        _ => {
            return Err(Failure::new(
                Reason::BadResponse,
                format!(
                    "SAProuter {router} answered the route request for {route} with \"{}\" instead of NI_PONG or NI_RTERR",
                    ni::preview(&answer)
                ),
            ))
        }
    }
    let routed = started.elapsed();

    stream
        .write_all(&ni::encode_frame(ni::PING))
        .await
        .map_err(|e| Failure::from(e).context(&format!("sending NI_PING through {route}")))?;
    match tokio::time::timeout_at(quiet, await_pong(&mut stream, &mut buf)).await {
        Err(_) => Err(Failure::new(
            Reason::NoAnswer,
            format!(
                "route {route} accepted by {router}, but the target sent no NI answer to NI_PING"
            ),
        )),
        Ok(Err(f)) => Err(f.context(&format!(
            "route {route} accepted by {router}, then the target"
        ))),
        Ok(Ok(())) => Ok(Observation::new(format!(
            "route {route} accepted by {router} in {} ms; target answered NI_PONG in {} ms",
            routed.as_millis(),
            started.elapsed().as_millis()
        ))),
    }
}

/// The route as SAProuter expects it: the router itself first, then the configured hops,
/// the password on the last one only.
fn route_request(p: &SaprouterProbe) -> RouteRequest {
    let router_host = match &p.router.host {
        // SAP route strings write IPv6 addresses without brackets.
        Host::Ip(ip) => ip.to_string(),
        Host::Name(name) => name.clone(),
    };
    let mut hops = vec![RouteHop::new(router_host, p.router.port.to_string())];
    hops.extend(
        p.route
            .iter()
            .map(|h| RouteHop::new(h.host.clone(), h.service.clone())),
    );
    if let (Some(last), Some(password)) = (hops.last_mut(), &p.password) {
        last.password = password.expose().to_string();
    }
    RouteRequest::new(hops)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use siteward_config::{Probe, SapRouteHop, Secret};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::probes::sap_ni::tests::start_ni;
    use crate::probes::testing::{check, closed_port, local, run};
    use crate::simulate::sap_ni::Mode as NiMode;
    use crate::simulate::saprouter::{serve, Mode, Options};
    use crate::Outcome;

    async fn start_router(
        mode: Mode,
        password: Option<&str>,
        token: &CancellationToken,
    ) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = Options {
            mode,
            password: password.map(str::to_string),
            delay_ms: 2000,
            idle_timeout_secs: 5,
        };
        tokio::spawn(serve(listener, options, token.clone()));
        addr
    }

    fn hop(port: u16) -> SapRouteHop {
        SapRouteHop {
            host: "127.0.0.1".into(),
            service: port.to_string(),
        }
    }

    fn saprouter(router: u16, route: Vec<SapRouteHop>, password: Option<&str>) -> Probe {
        Probe::Saprouter(SaprouterProbe {
            router: local(router),
            route,
            password: password.map(Secret::new),
        })
    }

    /// Router in `mode` in front of an NI peer in `ni_mode`.
    async fn through(mode: Mode, ni_mode: NiMode, timeout_ms: u64) -> Outcome {
        let token = CancellationToken::new();
        let target = start_ni(ni_mode, &token).await;
        let router = start_router(mode, None, &token).await;
        let outcome = run(&check(
            saprouter(router.port(), vec![hop(target.port())], None),
            timeout_ms,
        ))
        .await;
        token.cancel();
        outcome
    }

    #[test]
    fn request_starts_at_the_router_and_puts_the_password_last() {
        let p = SaprouterProbe {
            router: local(3299),
            route: vec![hop(3299), hop(3300)],
            password: Some(Secret::new("pw")),
        };
        let r = route_request(&p);
        let hops: Vec<_> = r
            .hops
            .iter()
            .map(|h| (h.service.as_str(), h.password.as_str()))
            .collect();
        assert_eq!(hops, [("3299", ""), ("3299", ""), ("3300", "pw")]);
        assert_eq!(r.rest_nodes, 2);
        assert_eq!(r.next_hop(), Some(1));
    }

    #[tokio::test]
    async fn accepted_route_with_pong_is_up() {
        let outcome = through(Mode::Ok, NiMode::Ok, 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{outcome:?}");
        assert!(outcome.detail.contains("NI_PONG"), "{}", outcome.detail);
        assert!(
            outcome.detail.contains("/H/127.0.0.1/S/"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn two_routers_chain() {
        let token = CancellationToken::new();
        let target = start_ni(NiMode::Ok, &token).await;
        let second = start_router(Mode::Ok, None, &token).await;
        let first = start_router(Mode::Ok, None, &token).await;
        let outcome = run(&check(
            saprouter(
                first.port(),
                vec![hop(second.port()), hop(target.port())],
                None,
            ),
            2000,
        ))
        .await;
        token.cancel();
        assert_eq!(outcome.reason, Reason::Ok, "{outcome:?}");
    }

    #[tokio::test]
    async fn denied_route_is_route_error_94() {
        let outcome = through(Mode::Deny, NiMode::Ok, 2000).await;
        assert_eq!(outcome.reason, Reason::RouteError, "{outcome:?}");
        assert!(
            outcome.detail.contains("NI_RTERR -94"),
            "{}",
            outcome.detail
        );
        assert!(
            outcome.detail.contains("not permitted"),
            "{}",
            outcome.detail
        );
        assert!(
            outcome.detail.contains("route permission denied"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn refused_mode_is_route_error_92() {
        let outcome = through(Mode::Refused, NiMode::Ok, 2000).await;
        assert_eq!(outcome.reason, Reason::RouteError, "{outcome:?}");
        assert!(
            outcome.detail.contains("NI_RTERR -92"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn closed_target_behind_the_router_is_route_error_92() {
        let token = CancellationToken::new();
        let router = start_router(Mode::Ok, None, &token).await;
        let target = closed_port().await;
        let outcome = run(&check(
            saprouter(router.port(), vec![hop(target)], None),
            2000,
        ))
        .await;
        token.cancel();
        assert_eq!(outcome.reason, Reason::RouteError, "{outcome:?}");
        assert!(outcome.detail.contains("-92"), "{}", outcome.detail);
        assert!(outcome.detail.contains("not reached"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn password_is_checked_and_never_shown() {
        let token = CancellationToken::new();
        let target = start_ni(NiMode::Ok, &token).await;
        let router = start_router(Mode::Ok, Some("letmein"), &token).await;
        let wrong = run(&check(
            saprouter(router.port(), vec![hop(target.port())], Some("guess")),
            2000,
        ))
        .await;
        let right = run(&check(
            saprouter(router.port(), vec![hop(target.port())], Some("letmein")),
            2000,
        ))
        .await;
        token.cancel();
        assert_eq!(wrong.reason, Reason::RouteError, "{wrong:?}");
        assert!(wrong.detail.contains("-94"), "{}", wrong.detail);
        assert!(!wrong.detail.contains("guess"), "{}", wrong.detail);
        assert_eq!(right.reason, Reason::Ok, "{right:?}");
        assert!(!right.detail.contains("letmein"), "{}", right.detail);
    }

    #[tokio::test]
    async fn silent_router_is_no_answer() {
        let outcome = through(Mode::Silent, NiMode::Ok, 400).await;
        assert_eq!(outcome.reason, Reason::NoAnswer, "{outcome:?}");
        assert!(
            outcome.detail.contains("did not answer the route request"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn slow_router_is_no_answer() {
        let outcome = through(Mode::Slow, NiMode::Ok, 300).await;
        assert_eq!(outcome.reason, Reason::NoAnswer, "{outcome:?}");
    }

    #[tokio::test]
    async fn silent_target_behind_an_accepted_route_is_no_answer() {
        let outcome = through(Mode::Ok, NiMode::Silent, 500).await;
        assert_eq!(outcome.reason, Reason::NoAnswer, "{outcome:?}");
        assert!(
            outcome.detail.contains("target sent no NI answer"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn garbage_router_is_bad_response() {
        let outcome = through(Mode::Garbage, NiMode::Ok, 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{outcome:?}");
        assert!(outcome.detail.contains("not SAP NI"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn garbage_target_is_bad_response() {
        let outcome = through(Mode::Ok, NiMode::Garbage, 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{outcome:?}");
        assert!(outcome.detail.contains("accepted"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn closed_router_is_refused() {
        let port = closed_port().await;
        let outcome = run(&check(saprouter(port, vec![hop(3300)], None), 1000)).await;
        assert_eq!(outcome.reason, Reason::Refused, "{outcome:?}");
    }

    #[test]
    fn request_debug_hides_the_password() {
        let p = SaprouterProbe {
            router: local(3299),
            route: vec![hop(3300)],
            password: Some(Secret::new("topsecret")),
        };
        let shown = format!("{:?}", route_request(&p));
        assert!(!shown.contains("topsecret"), "{shown}");
    }
}
