//! `oracle-tns`: an Oracle listener answers, and optionally knows a service.
//!
//! Without `service_name` the probe pings the listener the way `tnsping` does: a TNS
//! CONNECT carrying `(DESCRIPTION=(CONNECT_DATA=(CID=...)(COMMAND=ping)))`. A listener
//! answers with a REFUSE whose text holds `(ERR=0)`: up, with the listener's alias and,
//! when VSNNUM is non-zero, its version in the detail.
//!
//! With `service_name` it asks for that service:
//! `(DESCRIPTION=(ADDRESS=...)(CONNECT_DATA=(SERVICE_NAME=x)(CID=...)))`. ACCEPT is up
//! (the connection is then closed without logging in). Connect data over 230 bytes (a
//! long service name) is sent in a DATA packet after the CONNECT, as Oracle clients do.
//!
//! Answers:
//! - REFUSE with ERR other than 0 (or none): `tns_refused`, with the code and its
//!   meaning (12514 service unknown, 12505 SID unknown, 12516/12519/12520 handler
//!   problems, ...).
//! - RESEND: the CONNECT is sent again, at most [`MAX_RESENDS`] times.
//! - REDIRECT: `tns_refused` with "listener redirected to (ADDRESS=...)". The listener
//!   is reachable, but the check asked about *this* listener and it does not serve the
//!   request itself; following the redirect would silently check another host. Point
//!   the check at the redirect target (e.g. a RAC node's local listener) instead.
//! - anything that is not a TNS answer, or another packet type: `bad_response`.
//!
//! A silent listener is left to the engine's timeout (`timeout`).

use siteward_config::{Host, OracleTnsProbe};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::time::Instant;

use crate::net::{self, ProbeEnv};
use crate::protocol::tns::{self, Packet, RefuseText};
use crate::protocol::DecodeError;
use crate::{Failure, Observation, ProbeResult, Reason};

/// How often a RESEND is honoured before the listener is considered broken.
pub const MAX_RESENDS: usize = 3;

/// Who the listener log shows as the client.
const CID: &str = "(CID=(PROGRAM=siteward)(USER=siteward))";

pub async fn probe(p: &OracleTnsProbe, env: &ProbeEnv<'_>) -> ProbeResult {
    let mut stream = env.connect_tcp(&p.target).await?;
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| p.target.to_string());
    let started = Instant::now();
    let request = tns::encode_connect(connect_data(p).as_bytes());
    let send_failed = |e| Failure::from(e).context(&format!("sending the TNS CONNECT to {peer}"));
    stream.write_all(&request).await.map_err(send_failed)?;
    let waiting = format!("waiting for the answer of listener {peer}");
    let mut buf = Vec::new();
    let mut resends = 0;
    loop {
        let packet = read_packet(&mut stream, &mut buf)
            .await
            .map_err(|f| f.context(&waiting))?;
        match packet {
            Packet::Refuse(refuse) => return refused(p, &peer, &refuse),
            Packet::Accept(accept) => {
                let what = match &p.service_name {
                    Some(service) => format!("service {service}"),
                    None => "the ping".to_string(),
                };
                return Ok(Observation::new(format!(
                    "listener {peer} accepted {what} in {} ms (TNS version {}, SDU {})",
                    started.elapsed().as_millis(),
                    accept.version,
                    accept.sdu
                )));
            }
            Packet::Redirect(redirect) => {
                let data = if redirect.data_follows() {
                    match read_packet(&mut stream, &mut buf).await {
                        Ok(Packet::Data(d)) => d.payload,
                        _ => Vec::new(),
                    }
                } else {
                    redirect.data
                };
                let text = String::from_utf8_lossy(&data);
                let target = tns::descriptor_clause(&text, "ADDRESS")
                    .map(str::to_string)
                    .unwrap_or_else(|| preview(&data));
                return Err(Failure::new(
                    Reason::TnsRefused,
                    format!("listener {peer} redirected to {target}"),
                ));
            }
            Packet::Resend if resends < MAX_RESENDS => {
                resends += 1;
                stream.write_all(&request).await.map_err(send_failed)?;
            }
            Packet::Resend => {
                return Err(Failure::new(
                    Reason::BadResponse,
                    format!("listener {peer} still asks to resend after {MAX_RESENDS} resends"),
                ))
            }
            other => {
                return Err(Failure::new(
                    Reason::BadResponse,
                    format!(
                        "listener {peer} answered the CONNECT with a TNS {} packet",
                        other.name()
                    ),
                ))
            }
        }
    }
}

/// The connect data for this check: a listener ping, or a request for the service.
pub fn connect_data(p: &OracleTnsProbe) -> String {
    match &p.service_name {
        None => format!("(DESCRIPTION=(CONNECT_DATA={CID}(COMMAND=ping)))"),
        Some(service) => {
            let host = match &p.target.host {
                Host::Ip(ip) => ip.to_string(),
                Host::Name(name) => name.clone(),
            };
            format!(
                "(DESCRIPTION=(ADDRESS=(PROTOCOL=TCP)(HOST={host})(PORT={}))(CONNECT_DATA=(SERVICE_NAME={service}){CID}))",
                p.target.port
            )
        }
    }
}

fn refused(p: &OracleTnsProbe, peer: &str, refuse: &tns::Refuse) -> ProbeResult {
    let text = RefuseText::parse(&refuse.data);
    let alias = text.alias.as_deref().unwrap_or("listener");
    let version = match text.vsnnum {
        Some(v) if v != 0 => format!(", version {}", tns::vsnnum_version(v)),
        _ => String::new(),
    };
    match (text.err, &p.service_name) {
        (Some(0), None) => Ok(Observation::new(format!(
            "{alias} at {peer} answered the ping (ERR=0{version})"
        ))),
        (Some(code), service) => {
            let asking = match service {
                Some(s) => format!(" for service {s}"),
                None => String::new(),
            };
            Err(Failure::new(
                Reason::TnsRefused,
                format!(
                    "listener {peer} answered ERR={code} ({}){asking}",
                    tns::error_meaning(code)
                ),
            ))
        }
        (None, _) => Err(Failure::new(
            Reason::TnsRefused,
            format!(
                "listener {peer} refused (user reason {}, system reason {}) without an error code: {}",
                refuse.user_reason,
                refuse.system_reason,
                preview(&refuse.data)
            ),
        )),
    }
}

/// Reads one TNS packet, no larger than the SDU we announced.
async fn read_packet<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Packet, Failure> {
    let limit = usize::from(tns::SDU);
    let (packet, used) = net::read_message(reader, buf, limit, |bytes| {
        tns::decode_packet(bytes, limit).map_err(|e| match e {
            DecodeError::TooLarge { size, .. } => Failure::new(
                Reason::BadResponse,
                format!(
                    "not a TNS answer: a packet of {size} bytes, over the SDU of {limit} (starts \"{}\")",
                    preview(bytes)
                ),
            ),
            e => Failure::new(Reason::BadResponse, format!("not a TNS answer: {e}")),
        })
    })
    .await?;
    buf.drain(..used);
    Ok(packet)
}

/// Printable start of some bytes, for details.
fn preview(bytes: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(bytes)
        .chars()
        .take(120)
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    text
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use siteward_config::Probe;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::probes::testing::{check, closed_port, local, run};
    use crate::simulate::oracle_tns::{serve, Mode, Options};
    use crate::Outcome;

    fn options(mode: Mode) -> Options {
        Options {
            mode,
            services: vec!["ORCL".into(), "X".repeat(128)],
            err: 12519,
            vsnnum: 0,
            alias: "LISTENER".into(),
            redirect_to: "db2.example:1522".into(),
            delay_ms: 2000,
            idle_timeout_secs: 5,
        }
    }

    async fn start(options: Options, token: &CancellationToken) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, options, token.clone()));
        addr
    }

    fn tns_probe(port: u16, service: Option<&str>) -> Probe {
        Probe::OracleTns(OracleTnsProbe {
            target: local(port),
            service_name: service.map(str::to_string),
        })
    }

    async fn probe_with(options: Options, service: Option<&str>, timeout_ms: u64) -> Outcome {
        let token = CancellationToken::new();
        let addr = start(options, &token).await;
        let outcome = run(&check(tns_probe(addr.port(), service), timeout_ms)).await;
        token.cancel();
        outcome
    }

    #[tokio::test]
    async fn ping_is_up() {
        let outcome = probe_with(options(Mode::Ok), None, 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{outcome:?}");
        assert!(outcome.detail.contains("LISTENER"), "{}", outcome.detail);
        assert!(outcome.detail.contains("ERR=0"), "{}", outcome.detail);
        assert!(!outcome.detail.contains("version"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn ping_reports_the_listener_version() {
        let mut o = options(Mode::Ok);
        o.vsnnum = 153092864;
        let outcome = probe_with(o, None, 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{outcome:?}");
        assert!(
            outcome.detail.contains("version 9.2.0.3.0"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn known_service_is_up() {
        let outcome = probe_with(options(Mode::Ok), Some("orcl"), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{outcome:?}");
        assert!(
            outcome.detail.contains("accepted service orcl"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn unknown_service_is_tns_refused_12514() {
        let outcome = probe_with(options(Mode::Ok), Some("NOPE"), 2000).await;
        assert_eq!(outcome.reason, Reason::TnsRefused, "{outcome:?}");
        assert!(outcome.detail.contains("ERR=12514"), "{}", outcome.detail);
        assert!(
            outcome.detail.contains("service unknown"),
            "{}",
            outcome.detail
        );
        assert!(outcome.detail.contains("NOPE"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn long_connect_data_goes_through_a_data_packet() {
        let long = "X".repeat(128);
        let p = OracleTnsProbe {
            target: local(1521),
            service_name: Some(long.clone()),
        };
        assert!(connect_data(&p).len() > tns::CONNECT_DATA_INLINE_MAX);
        let known = probe_with(options(Mode::Ok), Some(&long), 2000).await;
        assert_eq!(known.reason, Reason::Ok, "{known:?}");
        let unknown = probe_with(options(Mode::Ok), Some(&"Y".repeat(128)), 2000).await;
        assert_eq!(unknown.reason, Reason::TnsRefused, "{unknown:?}");
        assert!(unknown.detail.contains("ERR=12514"), "{}", unknown.detail);
    }

    #[tokio::test]
    async fn refuse_mode_reports_the_code() {
        let mut o = options(Mode::Refuse);
        o.err = 12516;
        let outcome = probe_with(o, None, 2000).await;
        assert_eq!(outcome.reason, Reason::TnsRefused, "{outcome:?}");
        assert!(outcome.detail.contains("ERR=12516"), "{}", outcome.detail);
        assert!(outcome.detail.contains("handler"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn resend_is_honoured() {
        let outcome = probe_with(options(Mode::Resend), Some("ORCL"), 2000).await;
        assert_eq!(outcome.reason, Reason::Ok, "{outcome:?}");
    }

    #[tokio::test]
    async fn endless_resend_is_bad_response() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            while read_packet(&mut s, &mut buf).await.is_ok() {
                if s.write_all(&Packet::Resend.encode()).await.is_err() {
                    break;
                }
            }
        });
        let outcome = run(&check(tns_probe(port, None), 2000)).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{outcome:?}");
        assert!(outcome.detail.contains("resend"), "{}", outcome.detail);
    }

    #[tokio::test]
    async fn redirect_is_reported() {
        let outcome = probe_with(options(Mode::Redirect), Some("ORCL"), 2000).await;
        assert_eq!(outcome.reason, Reason::TnsRefused, "{outcome:?}");
        assert!(
            outcome
                .detail
                .contains("redirected to (ADDRESS=(PROTOCOL=TCP)(HOST=db2.example)(PORT=1522))"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn silent_listener_times_out() {
        let outcome = probe_with(options(Mode::Silent), None, 300).await;
        assert_eq!(outcome.reason, Reason::Timeout, "{outcome:?}");
    }

    #[tokio::test]
    async fn slow_listener_times_out() {
        let outcome = probe_with(options(Mode::Slow), None, 300).await;
        assert_eq!(outcome.reason, Reason::Timeout, "{outcome:?}");
    }

    #[tokio::test]
    async fn garbage_is_bad_response() {
        let outcome = probe_with(options(Mode::Garbage), None, 2000).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{outcome:?}");
        assert!(
            outcome.detail.contains("not a TNS answer"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn unknown_packet_type_is_bad_response() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let _ = read_packet(&mut s, &mut buf).await;
            let _ = s
                .write_all(b"\x00\x0c\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x02")
                .await;
            let _ = read_packet(&mut s, &mut buf).await;
        });
        let outcome = run(&check(tns_probe(port, None), 2000)).await;
        assert_eq!(outcome.reason, Reason::BadResponse, "{outcome:?}");
        assert!(
            outcome.detail.contains("packet type 12"),
            "{}",
            outcome.detail
        );
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let port = closed_port().await;
        let outcome = run(&check(tns_probe(port, None), 1000)).await;
        assert_eq!(outcome.reason, Reason::Refused, "{outcome:?}");
    }
}
