//! `siteward simulate sap-ni`: an SAP NI peer, like SAP's `niping -s`.
//!
//! Answers every `NI_PING` frame with `NI_PONG` and echoes any other frame back (as
//! `niping -s` does), so a firewall path to an SAP port can be tested end to end.
//! Failure modes: `silent` (accept, read, never answer), `garbage` (answer with bytes
//! that are not NI), `slow` (answer after `--delay-ms`).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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

/// Accepts connections until `shutdown`, running `handler` for each in its own task
/// (also stopped by `shutdown`) and logging how it ended.
pub(crate) async fn accept_loop<H, F>(
    listener: TcpListener,
    shutdown: CancellationToken,
    kind: &'static str,
    handler: H,
) -> io::Result<()>
where
    H: Fn(TcpStream, SocketAddr) -> F,
    F: Future<Output = io::Result<()>> + Send + 'static,
{
    let local = listener.local_addr()?;
    info!(%local, "{kind} simulator listening");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                warn!("{kind}: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let connection = handler(stream, peer);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = connection => match result {
                    Ok(()) => info!(%peer, "{kind}: connection closed"),
                    Err(e) => info!(%peer, "{kind}: connection ended: {e}"),
                },
            }
        });
    }
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

/// Reads what is available into `buf` (at most 16 KiB at a time); `false` on end of
/// stream or when nothing arrived within `idle`.
pub(crate) async fn read_some<R: AsyncRead + Unpin>(
    stream: &mut R,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
        Err(_) | Ok(Ok(0)) => Ok(false),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Ok(Err(e)) => Err(e),
    }
}

/// Reads and discards until the peer closes or stays idle; returns the bytes read.
pub(crate) async fn drain<R: AsyncRead + Unpin>(stream: &mut R, idle: Duration) -> io::Result<u64> {
    let mut chunk = [0u8; 16 * 1024];
    let mut total = 0u64;
    loop {
        match tokio::time::timeout(idle, stream.read(&mut chunk)).await {
            Err(_) | Ok(Ok(0)) => return Ok(total),
            Ok(Ok(n)) => total += n as u64,
            Ok(Err(e)) => return Err(e),
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
