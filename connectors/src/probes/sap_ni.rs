//! `sap-ni`: an SAP NI peer (gateway, dispatcher, message server, `niping -s`) answers
//! the NI keep-alive.
//!
//! Sends the frame `NI_PING\0` and expects `NI_PONG\0`: up. A port that accepts but
//! never answers is "open, no NI answer" ([`Reason::NoAnswer`]): to report that rather
//! than the engine's generic timeout, the probe stops waiting a little before the
//! deadline (a tenth of the time left when it starts, see [`quiet_deadline`]). Bytes
//! that are not an NI frame, or another payload than `NI_PONG`, are `bad_response`.

use std::time::Duration;

use siteward_config::SapNiProbe;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::net::{self, ProbeEnv};
use crate::protocol::{ni, DecodeError};
use crate::{Failure, Observation, ProbeResult, Reason};

/// Keep-alive pings from the peer we answer while waiting, before calling it garbage.
const MAX_PEER_PINGS: usize = 3;

pub async fn probe(p: &SapNiProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let quiet = quiet_deadline(env);
    let mut stream = env.connect_tcp(&p.target).await?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| p.target.to_string());
    let started = Instant::now();
    stream
        .write_all(&ni::encode_frame(ni::PING))
        .await
        .map_err(|e| Failure::from(e).context(&format!("sending NI_PING to {peer}")))?;
    let mut buf = Vec::new();
    match tokio::time::timeout_at(quiet, await_pong(&mut stream, &mut buf)).await {
        Err(_) => Err(Failure::new(
            Reason::NoAnswer,
            format!(
                "{peer}: port open, no NI answer to NI_PING within {} ms",
                started.elapsed().as_millis()
            ),
        )),
        Ok(Err(f)) => Err(f.context(&format!("waiting for NI_PONG from {peer}"))),
        Ok(Ok(())) => Ok(Observation::new(format!(
            "{peer} answered NI_PING with NI_PONG in {} ms",
            started.elapsed().as_millis()
        ))),
    }
}

/// When to stop waiting for an NI answer so that silence is reported as
/// [`Reason::NoAnswer`] before the engine's timeout fires: a tenth of the time left
/// (at least 10 ms, at most half) before the deadline.
pub(crate) fn quiet_deadline(env: &ProbeEnv<'_>) -> Instant {
    let left = env.remaining();
    let margin = (left / 10).max(Duration::from_millis(10)).min(left / 2);
    env.deadline - margin
}

/// Reads frames until `NI_PONG`, answering the peer's own keep-alive pings.
pub(crate) async fn await_pong<S>(stream: &mut S, buf: &mut Vec<u8>) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..=MAX_PEER_PINGS {
        let payload = read_frame(stream, buf).await?;
        match ni::classify(&payload) {
            ni::Message::Pong => return Ok(()),
            ni::Message::Ping => stream.write_all(&ni::encode_frame(ni::PONG)).await?,
            ni::Message::RouteError(bytes) => return Err(route_error(bytes)),
            _ => {
                return Err(Failure::new(
                    Reason::BadResponse,
                    format!("answered \"{}\" instead of NI_PONG", ni::preview(&payload)),
                ))
            }
        }
    }
    Err(Failure::new(
        Reason::BadResponse,
        "peer keeps sending NI_PING instead of answering",
    ))
}

/// Reads one NI frame's payload, bounded by [`ni::MAX_FRAME`].
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Vec<u8>, Failure> {
    let (payload, used) =
        net::read_message(
            reader,
            buf,
            ni::MAX_FRAME + 4,
            |bytes| match ni::decode_frame(bytes, ni::MAX_FRAME) {
                Ok(found) => Ok(found.map(|(payload, used)| (payload.to_vec(), used))),
                Err(DecodeError::TooLarge { size, .. }) => Err(Failure::new(
                    Reason::BadResponse,
                    format!(
                        "not SAP NI: a frame of {size} bytes (starts \"{}\")",
                        ni::preview(bytes)
                    ),
                )),
                Err(e) => Err(Failure::new(
                    Reason::BadResponse,
                    format!("not SAP NI: {e}"),
                )),
            },
        )
        .await?;
    buf.drain(..used);
    Ok(payload)
}

/// A SAProuter's `NI_RTERR` as a failure: code, meaning and the router's own text.
pub(crate) fn route_error(payload: &[u8]) -> Failure {
    let error = match ni::RouteError::decode(payload) {
        Ok(e) => e,
        Err(e) => {
            return Failure::new(
                Reason::BadResponse,
                format!("unreadable NI_RTERR from SAProuter: {e}"),
            )
        }
    };
    let mut detail = format!(
        "NI_RTERR {} ({})",
        error.return_code,
        ni::return_code_meaning(error.return_code)
    );
    for text in [error.error(), error.detail()].into_iter().flatten() {
        detail.push_str(": ");
        detail.push_str(&text);
    }
    Failure::new(Reason::RouteError, detail)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::SocketAddr;

    use siteward_config::Probe;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::probes::testing::{check, closed_port, local, run};
    use crate::simulate::sap_ni::{serve, Mode, Options};
    use crate::Outcome;

    pub(crate) async fn start_ni(mode: Mode, token: &CancellationToken) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let options = Options {
            mode,
            delay_ms: 2000,
            idle_timeout_secs: 5,
        };
        tokio::spawn(serve(listener, options, token.clone()));
        addr
    }

    async fn probe_mode(mode: Mode, timeout_ms: u64) -> Outcome {
        let token = CancellationToken::new();
        let addr = start_ni(mode, &token).await;
        let outcome = run(&check(
            Probe::SapNi(SapNiProbe {
                target: local(addr.port()),
            }),
            timeout_ms,
        ))
        .await;
        token.cancel();
        outcome
    }

    #[tokio::test]
    async fn pong_is_up() {
        let outcome = probe_mode(Mode::Ok, 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{outcome:?}");
        assert!(outcome.detail.contains("NI_PONG"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn silent_peer_is_no_answer_before_the_timeout() {
        let outcome = probe_mode(Mode::Silent, 400).await;
        assert_eq!(outcome.reason, Reason::NoAnswer, "{outcome:?}");
        assert!(
            outcome.detail.contains("no NI answer"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn slow_peer_is_no_answer_too() {
        let outcome = probe_mode(Mode::Slow, 300).await;
        assert_eq!(outcome.reason, Reason::NoAnswer, "{outcome:?}");
    }

    #[tokio::test]
    async fn garbage_is_bad_response() {
        let outcome = probe_mode(Mode::Garbage, 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{outcome:?}");
        assert!(outcome.detail.contains("not SAP NI"), "{}", outcome.detail);
        assert!(outcome.detail.contains("HTTP/1.0"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = closed_port().await;
        let outcome = run(&check(
            Probe::SapNi(SapNiProbe {
                target: local(port),
            }),
            1000,
        ))
        .await;
        assert_eq!(outcome.reason, Reason::Refused, "{outcome:?}");
    }

    #[tokio::test]
    async fn wrong_payload_is_bad_response() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let _ = read_frame(&mut s, &mut buf).await;
            s.write_all(&ni::encode_frame(b"NI_PANG\0")).await.unwrap();
            let _ = read_frame(&mut s, &mut buf).await;
        });
        let outcome = run(&check(
            Probe::SapNi(SapNiProbe {
                target: local(port),
            }),
            1000,
        ))
        .await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{outcome:?}");
        assert!(outcome.detail.contains("NI_PANG"), "{}", outcome.detail);
    }
}
