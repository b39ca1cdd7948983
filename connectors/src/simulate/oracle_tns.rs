//! `siteward simulate oracle-tns`: an Oracle TNS listener, as far as a connect goes.
//!
//! In mode `ok` it answers like a listener: `(COMMAND=ping)` gets a REFUSE carrying
//! `(DESCRIPTION=(TMP=)(VSNNUM=n)(ERR=0)(ALIAS=LISTENER))`; a connect for one of the
//! `--service` names (or SIDs, case-insensitively) gets an ACCEPT; an unknown service
//! gets a REFUSE with ERR=12514 (ERR=12505 for an unknown SID). Connect data sent in a
//! DATA packet after the CONNECT (over 230 bytes) is reassembled first.
//! Failure modes: `refuse` (every connect refused with `--err`), `resend` (the first
//! CONNECT of each connection gets RESEND, then as ok), `redirect` (REDIRECT to
//! `--redirect-to`), `silent`, `garbage`, `slow` (answers after `--delay-ms`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::sap_ni::{invalid, GARBAGE};
use super::{accept_loop, drain, read_some};
use crate::protocol::tns::{self, descriptor_value, Accept, Packet, Redirect, Refuse};

/// How the simulator answers connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Answer as a listener: ping, known services accepted, unknown ones refused.
    Ok,
    /// Refuse every connect (ping included) with ERR=--err.
    Refuse,
    /// Ask for every connection's first CONNECT again (RESEND), then answer as ok.
    Resend,
    /// Redirect every connect to --redirect-to.
    Redirect,
    /// Accept connections and read, but never answer.
    Silent,
    /// Answer with bytes that are not TNS, then close.
    Garbage,
    /// Like ok, but wait --delay-ms before answering.
    Slow,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How to answer connects.
    #[arg(long, value_enum, default_value_t = Mode::Ok)]
    pub mode: Mode,
    /// A service name (or SID) the listener knows; repeat for several.
    #[arg(long = "service")]
    pub services: Vec<String>,
    /// The TNS error code of mode refuse (12519: no appropriate service handler found).
    #[arg(long, default_value_t = 12519)]
    pub err: u32,
    /// VSNNUM reported to pings (0 like modern listeners; 153092864 is 9.2.0.3.0).
    #[arg(long, default_value_t = 0)]
    pub vsnnum: u32,
    /// The listener's name (ALIAS) reported to pings.
    #[arg(long, default_value = "LISTENER")]
    pub alias: String,
    /// HOST:PORT that mode redirect sends clients to.
    #[arg(long, default_value = "127.0.0.1:1522")]
    pub redirect_to: String,
    /// Delay before each answer in slow mode, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub delay_ms: u64,
    /// Close connections that stay idle this many seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
}

/// Serves TNS clients on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: CancellationToken,
) -> io::Result<()> {
    accept_loop(listener, shutdown, "oracle-tns", move |stream, peer| {
        let options = options.clone();
        async move { handle(stream, peer, &options).await }
    })
    .await
}

async fn handle(mut stream: TcpStream, peer: SocketAddr, options: &Options) -> io::Result<()> {
    let idle = Duration::from_secs(options.idle_timeout_secs);
    if options.mode == Mode::Silent {
        let read = drain(&mut stream, idle).await?;
        info!(%peer, read, "oracle-tns: stayed silent (mode silent)");
        return Ok(());
    }
    let mut buf = Vec::new();
    let mut resent = false;
    loop {
        let Some((connect, sdu)) = read_connect(&mut stream, &mut buf, idle).await? else {
            return Ok(());
        };
        let asked = String::from_utf8_lossy(&connect).into_owned();
        let answer = match options.mode {
            Mode::Garbage => {
                stream.write_all(GARBAGE).await?;
                info!(%peer, %asked, "oracle-tns: answered garbage (mode garbage)");
                return Ok(());
            }
            Mode::Resend if !resent => {
                resent = true;
                stream.write_all(&Packet::Resend.encode()).await?;
                info!(%peer, %asked, "oracle-tns: answered RESEND (mode resend)");
                continue;
            }
            Mode::Refuse => refuse(options, options.err),
            Mode::Redirect => {
                let (host, port) = options
                    .redirect_to
                    .rsplit_once(':')
                    .unwrap_or((options.redirect_to.as_str(), "1521"));
                let address = format!("(ADDRESS=(PROTOCOL=TCP)(HOST={host})(PORT={port}))");
                Packet::Redirect(Redirect::new(address.as_bytes()))
            }
            Mode::Slow => {
                tokio::time::sleep(Duration::from_millis(options.delay_ms)).await;
                answer(options, &asked, sdu)
            }
            Mode::Ok | Mode::Resend | Mode::Silent => answer(options, &asked, sdu),
        };
        stream.write_all(&answer.encode()).await?;
        info!(%peer, %asked, answered = %describe(&answer), "oracle-tns: answered");
        if let Packet::Accept(_) = answer {
            // The "server" now waits for the client's next step, which a probe never takes.
            drain(&mut stream, idle).await?;
        }
        return Ok(());
    }
}

/// What a listener in mode ok answers to `connect_data`.
fn answer(options: &Options, connect_data: &str, sdu: u16) -> Packet {
    let Some(cd) = descriptor_value(connect_data, "CONNECT_DATA") else {
        return refuse(options, 12502);
    };
    if let Some(command) = descriptor_value(cd, "COMMAND") {
        if command.trim().eq_ignore_ascii_case("ping") {
            let text = format!(
                "(DESCRIPTION=(TMP=)(VSNNUM={})(ERR=0)(ALIAS={}))",
                options.vsnnum, options.alias
            );
            return Packet::Refuse(Refuse {
                user_reason: 0x22,
                system_reason: 0,
                data: text.into_bytes(),
            });
        }
        return refuse(options, 12508);
    }
    let known = |name: &str| {
        options
            .services
            .iter()
            .any(|s| s.eq_ignore_ascii_case(name.trim()))
    };
    let accept = || Packet::Accept(Accept::new(sdu.clamp(512, tns::SDU)));
    if let Some(service) = descriptor_value(cd, "SERVICE_NAME") {
        return if known(service) {
            accept()
        } else {
            refuse(options, 12514)
        };
    }
    if let Some(sid) = descriptor_value(cd, "SID") {
        return if known(sid) {
            accept()
        } else {
            refuse(options, 12505)
        };
    }
    refuse(options, 12504)
}

/// A listener's REFUSE for TNS error `code`.
fn refuse(options: &Options, code: u32) -> Packet {
    let text = format!(
        "(DESCRIPTION=(TMP=)(VSNNUM={})(ERR={code})(ERROR_STACK=(ERROR=(CODE={code})(EMFI=4))))",
        options.vsnnum
    );
    Packet::Refuse(Refuse {
        user_reason: 0x22,
        system_reason: 0,
        data: text.into_bytes(),
    })
}

fn describe(packet: &Packet) -> String {
    match packet {
        Packet::Refuse(r) => format!("REFUSE {}", String::from_utf8_lossy(&r.data)),
        Packet::Redirect(r) => format!("REDIRECT {}", String::from_utf8_lossy(&r.data)),
        other => other.name().to_string(),
    }
}

/// Reads a CONNECT and its connect data (from the following DATA packets when it is not
/// inline). Returns the data and the client's SDU; `None` when the client left.
async fn read_connect(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> io::Result<Option<(Vec<u8>, u16)>> {
    let Some(first) = read_packet(stream, buf, idle).await? else {
        return Ok(None);
    };
    let Packet::Connect(connect) = first else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected a TNS CONNECT, got {}", first.name()),
        ));
    };
    if !connect.data_follows() {
        return Ok(Some((connect.data, connect.sdu)));
    }
    let wanted = usize::from(connect.data_len);
    let mut data = Vec::with_capacity(wanted);
    while data.len() < wanted {
        match read_packet(stream, buf, idle).await? {
            Some(Packet::Data(d)) => data.extend_from_slice(&d.payload),
            Some(other) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected connect data in a DATA packet, got {}",
                        other.name()
                    ),
                ))
            }
            None => return Ok(None),
        }
    }
    data.truncate(wanted);
    Ok(Some((data, connect.sdu)))
}

/// Reads one TNS packet (bounded by the u16 length); `None` when the client closed or
/// stayed idle.
async fn read_packet(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> io::Result<Option<Packet>> {
    loop {
        match tns::decode_packet(buf, tns::MAX_PACKET) {
            Ok(Some((packet, used))) => {
                buf.drain(..used);
                return Ok(Some(packet));
            }
            Ok(None) => {}
            Err(e) => return Err(invalid(e)),
        }
        if !read_some(stream, buf, idle).await? {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(services: &[&str]) -> Options {
        Options {
            mode: Mode::Ok,
            services: services.iter().map(|s| s.to_string()).collect(),
            err: 12519,
            vsnnum: 0,
            alias: "LISTENER".into(),
            redirect_to: "127.0.0.1:1522".into(),
            delay_ms: 0,
            idle_timeout_secs: 5,
        }
    }

    fn refuse_err(p: &Packet) -> Option<u32> {
        match p {
            Packet::Refuse(r) => tns::RefuseText::parse(&r.data).err,
            _ => None,
        }
    }

    #[test]
    fn answers_like_a_listener() {
        let o = options(&["ORCL"]);
        assert_eq!(
            refuse_err(&answer(&o, "(CONNECT_DATA=(COMMAND=ping))", 8192)),
            Some(0)
        );
        assert!(matches!(
            answer(&o, "(DESCRIPTION=(CONNECT_DATA=(SERVICE_NAME=orcl)))", 8192),
            Packet::Accept(_)
        ));
        let cases = [
            ("(CONNECT_DATA=(SERVICE_NAME=OTHER))", 12514),
            ("(CONNECT_DATA=(SID=OTHER))", 12505),
            ("(CONNECT_DATA=(COMMAND=status))", 12508),
            ("(CONNECT_DATA=(CID=(PROGRAM=x)))", 12504),
            ("(ADDRESS=(PROTOCOL=TCP))", 12502),
        ];
        for (data, err) in cases {
            assert_eq!(refuse_err(&answer(&o, data, 8192)), Some(err), "{data}");
        }
    }
}
