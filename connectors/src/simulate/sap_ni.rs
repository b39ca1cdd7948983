//! `siteward simulate sap-ni`: an SAP NI peer, like SAP's `niping -s`.
//!
//! Answers every `NI_PING` frame with `NI_PONG` and echoes any other frame back (as
//! `niping -s` does), so a firewall path to an SAP port can be tested end to end.
//! Failure modes: `silent` (accept, read, never answer), `garbage` (answer with bytes
//! that are not NI), `slow` (answer after `--delay-ms`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{accept_loop, drain, read_some};

use crate::protocol::{ni, DecodeError};

/// How the simulator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// NI_PING gets NI_PONG, other frames are echoed back.
    Ok,
    /// Accept connections and read, but never answer.
    Silent,
    /// Answer the first frame with bytes that are not SAP NI, then close.
    Garbage,
    /// Like ok, but wait --delay-ms before each answer.
    Slow,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How to answer.
    #[arg(long, value_enum, default_value_t = Mode::Ok)]
    pub mode: Mode,
    /// Delay before each answer in slow mode, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub delay_ms: u64,
    /// Close connections that stay idle this many seconds.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
}

/// What the garbage modes send: an HTTP error, as a wrong service on the port would.
pub(crate) const GARBAGE: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n";

/// Serves NI clients on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: CancellationToken,
) -> io::Result<()> {
    accept_loop(listener, shutdown, "sap-ni", move |stream, peer| {
        let options = options.clone();
        async move { handle(stream, peer, &options).await }
    })
    .await
}

async fn handle(mut stream: TcpStream, peer: SocketAddr, options: &Options) -> io::Result<()> {
    let idle = Duration::from_secs(options.idle_timeout_secs);
    if options.mode == Mode::Silent {
        let read = drain(&mut stream, idle).await?;
        info!(%peer, read, "sap-ni: stayed silent (mode silent)");
        return Ok(());
    }
    let mut buf = Vec::new();
    while let Some(payload) = read_frame(&mut stream, &mut buf, idle).await? {
        let asked = ni::preview(&payload);
        match options.mode {
            Mode::Garbage => {
                stream.write_all(GARBAGE).await?;
                info!(%peer, %asked, "sap-ni: answered garbage (mode garbage)");
                return Ok(());
            }
            Mode::Slow => tokio::time::sleep(Duration::from_millis(options.delay_ms)).await,
            Mode::Ok | Mode::Silent => {}
        }
        let answer = match ni::classify(&payload) {
            ni::Message::Ping => ni::PONG.to_vec(),
            _ => payload,
        };
        stream.write_all(&ni::encode_frame(&answer)).await?;
        info!(%peer, %asked, answered = %ni::preview(&answer), "sap-ni: answered");
    }
    Ok(())
}

/// Reads one NI frame's payload; `None` when the peer closed or stayed idle for `idle`.
/// Frames over [`ni::MAX_FRAME`] and non-NI bytes are an `InvalidData` error.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> io::Result<Option<Vec<u8>>> {
    loop {
        match ni::decode_frame(buf, ni::MAX_FRAME) {
            Ok(Some((payload, used))) => {
                let payload = payload.to_vec();
                buf.drain(..used);
                return Ok(Some(payload));
            }
            Ok(None) => {}
            Err(e) => return Err(invalid(e)),
        }
        if !read_some(stream, buf, idle).await? {
            return Ok(None);
        }
    }
}

pub(crate) fn invalid(e: DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn start(mode: Mode) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let options = Options {
            mode,
            delay_ms: 50,
            idle_timeout_secs: 5,
        };
        tokio::spawn(serve(listener, options, token.clone()));
        (addr, token)
    }

    #[tokio::test]
    async fn answers_ping_with_pong_and_echoes_other_frames() {
        let (addr, token) = start(Mode::Ok).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut buf = Vec::new();
        s.write_all(&ni::encode_frame(ni::PING)).await.unwrap();
        let idle = Duration::from_secs(2);
        assert_eq!(
            read_frame(&mut s, &mut buf, idle).await.unwrap().unwrap(),
            ni::PONG
        );
        s.write_all(&ni::encode_frame(b"hello")).await.unwrap();
        assert_eq!(
            read_frame(&mut s, &mut buf, idle).await.unwrap().unwrap(),
            b"hello"
        );
        token.cancel();
    }

    #[tokio::test]
    async fn closes_on_oversized_frames() {
        let (addr, token) = start(Mode::Ok).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3])
            .await
            .unwrap();
        let mut buf = Vec::new();
        let closed = read_some(&mut s, &mut buf, Duration::from_secs(2)).await;
        assert!(matches!(closed, Ok(false) | Err(_)), "{closed:?} {buf:?}");
        token.cancel();
    }
}
