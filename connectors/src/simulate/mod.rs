//! Protocol simulators for peers that cannot be installed here (Oracle TNS listener,
//! SAP NI gateway, SAProuter, Asterisk AMI), and two the demo needs on a box without
//! kamailio or the platform (a SIP OPTIONS peer, the uplink's receiver). They are built
//! from the same codecs as the probes and follow the protocol facts documented in
//! README.md; switches select failure modes so tests (and users checking a firewall path)
//! can see every outcome.

use std::future::Future;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub mod asterisk_ami;
pub mod oracle_tns;
pub mod platform;
pub mod sap_ni;
pub mod saprouter;
pub mod sip;

/// Longest secret file a simulator reads: a password or a token, not a document.
const MAX_SECRET_FILE: u64 = 4096;

/// The secret a file holds (`--secret-file`, `--token-file`): its text without the
/// trailing line break. A file over [`MAX_SECRET_FILE`] bytes (a mistaken path) or an
/// empty one is refused, saying why.
pub(crate) fn read_secret_file(path: &Path) -> Result<String, String> {
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_SECRET_FILE + 1).read_to_string(&mut text))
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > MAX_SECRET_FILE {
        return Err(format!("longer than {MAX_SECRET_FILE} bytes"));
    }
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        return Err("it is empty".into());
    }
    Ok(secret.to_string())
}

/// Accepts connections until `shutdown`, running `handler` for each in its own task
/// (also stopped by `shutdown`) and logging how it ended; returns once every
/// connection task has ended.
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
    let tracker = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
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
        tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = connection => match result {
                    Ok(()) => info!(%peer, "{kind}: connection closed"),
                    Err(e) => info!(%peer, "{kind}: connection ended: {e}"),
                },
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
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
