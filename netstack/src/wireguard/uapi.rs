//! The WireGuard cross-platform userspace API (UAPI), so the stock `wg show` and
//! `wg showconf` work against Siteward's tunnels.
//!
//! Protocol (wireguard.com/xplatform): a client connects to
//! `/var/run/wireguard/<interface>.sock`, writes `get=1\n\n` or `set=1\n<key=value lines>\n`,
//! and reads `key=value` lines ending with `errno=N` and an empty line. Keys are hex.
//!
//! `get` is answered in full, private and pre-shared keys included, as wireguard-go does:
//! `wg showconf` needs them and `wg show` derives the public key from the private one. The
//! socket is therefore root-only (0600), the same trust as the key files themselves.
//! `set` is refused with EPERM (`errno=-1`): the configuration file owns the tunnels, and a
//! change made with `wg set` would silently disappear at the next reload.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

/// Where `wg` looks for userspace implementations' sockets.
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// Longest request line read; requests are a few short lines.
const MAX_LINE: usize = 4096;
/// Most lines read from one `set` request before giving up on it.
const MAX_SET_LINES: usize = 100_000;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The answer to `set`: -EPERM. `wg` reads a set's `errno` as a negated errno (as
/// wireguard-go writes it), so it prints "Operation not permitted".
const SET_REFUSED: i32 = -libc::EPERM;
/// The answer to a request that is neither `get=1` nor `set=1`: -EINVAL, as wireguard-go.
const INVALID_REQUEST: i32 = -libc::EINVAL;

/// A tunnel's state as `get=1` reports it.
#[derive(Clone, Default)]
pub struct UapiDevice {
    pub private_key: [u8; 32],
    pub listen_port: u16,
    pub peers: Vec<UapiPeer>,
}

#[derive(Clone, Default)]
pub struct UapiPeer {
    pub public_key: [u8; 32],
    pub preshared_key: Option<[u8; 32]>,
    pub endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Seconds; 0 is off.
    pub persistent_keepalive: u16,
    pub allowed_ips: Vec<IpNet>,
}

/// What the UAPI server reads its answers from.
pub trait UapiSource: Send + Sync + 'static {
    fn uapi_device(&self) -> UapiDevice;
}

/// The body of the answer to `get=1`, without the final `errno` line.
pub fn format_get(device: &UapiDevice) -> String {
    let mut out = String::with_capacity(256 + device.peers.len() * 256);
    // `write!` to a String cannot fail.
    let _ = writeln!(out, "private_key={}", hex::encode(device.private_key));
    let _ = writeln!(out, "listen_port={}", device.listen_port);
    for peer in &device.peers {
        let _ = writeln!(out, "public_key={}", hex::encode(peer.public_key));
        let psk = peer.preshared_key.unwrap_or([0; 32]);
        let _ = writeln!(out, "preshared_key={}", hex::encode(psk));
        let _ = writeln!(out, "protocol_version=1");
        if let Some(endpoint) = peer.endpoint {
            let endpoint = SocketAddr::new(endpoint.ip().to_canonical(), endpoint.port());
            let _ = writeln!(out, "endpoint={endpoint}");
        }
        let since_epoch = peer
            .last_handshake
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", since_epoch.as_secs());
        let _ = writeln!(
            out,
            "last_handshake_time_nsec={}",
            since_epoch.subsec_nanos()
        );
        let _ = writeln!(out, "tx_bytes={}", peer.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", peer.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            peer.persistent_keepalive
        );
        for net in &peer.allowed_ips {
            let _ = writeln!(out, "allowed_ip={net}");
        }
    }
    out
}

/// The socket path of `interface` under `dir`.
pub fn socket_path(dir: &Path, interface: &str) -> PathBuf {
    dir.join(format!("{interface}.sock"))
}

/// Binds the UAPI socket of `interface` in `dir`, mode 0600 from the start: it is bound in
/// a private (0700) directory, restricted, then renamed into place. A stale socket left by
/// a crashed process is replaced; one that still answers belongs to a live process, and
/// taking it over would cut that process off from `wg`, so that is an error.
pub async fn bind(dir: &Path, interface: &str) -> io::Result<UnixListener> {
    std::fs::create_dir_all(dir)?;
    let path = socket_path(dir, interface);
    if UnixStream::connect(&path).await.is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is served by another process", path.display()),
        ));
    }
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{interface}."))
        .tempdir_in(dir)?;
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o700))?;
    let staged = staging.path().join("sock");
    let listener = UnixListener::bind(&staged)?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
    std::fs::rename(&staged, &path)?;
    Ok(listener)
}

/// Serves UAPI requests on `listener` until `shutdown`, then removes the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    source: Arc<dyn UapiSource>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let source = source.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, source.as_ref()).await {
                            tracing::debug!(error = %e, "UAPI client");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "UAPI accept failed");
                    break;
                }
            },
        }
    }
    let _ = std::fs::remove_file(&path);
}

/// One connection: any number of requests, each answered, until the client closes.
async fn handle(stream: UnixStream, source: &dyn UapiSource) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        let n = tokio::time::timeout(REQUEST_TIMEOUT, read_line(&mut reader, &mut line))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request timed out"))??;
        if n == 0 {
            return Ok(());
        }
        let answer = match line.trim_end_matches('\n') {
            "get=1" => {
                expect_blank(&mut reader).await?;
                let mut body = format_get(&source.uapi_device());
                body.push_str("errno=0\n\n");
                body
            }
            "set=1" => {
                skip_to_blank(&mut reader).await?;
                tracing::warn!(
                    "refused a `wg set` through UAPI: tunnels are configured in the configuration file"
                );
                format!("errno={SET_REFUSED}\n\n")
            }
            _ => {
                // Not a request this protocol has: answer once, then close.
                write
                    .write_all(format!("errno={INVALID_REQUEST}\n\n").as_bytes())
                    .await?;
                return Ok(());
            }
        };
        write.write_all(answer.as_bytes()).await?;
    }
}

/// Reads one line of at most [`MAX_LINE`] bytes.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut String,
) -> io::Result<usize> {
    let mut limited = reader.take(MAX_LINE as u64);
    let n = limited.read_line(line).await?;
    if n == MAX_LINE && !line.ends_with('\n') {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
    }
    Ok(n)
}

async fn expect_blank<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<()> {
    let mut line = String::new();
    read_line(reader, &mut line).await?;
    if line == "\n" {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "get=1 must be followed by an empty line",
        ))
    }
}

async fn skip_to_blank<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> io::Result<()> {
    let mut line = String::new();
    for _ in 0..MAX_SET_LINES {
        line.clear();
        if read_line(reader, &mut line).await? == 0 || line == "\n" {
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "set request too long",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    struct Fixed(UapiDevice);
    impl UapiSource for Fixed {
        fn uapi_device(&self) -> UapiDevice {
            self.0.clone()
        }
    }

    fn device() -> UapiDevice {
        UapiDevice {
            private_key: [1; 32],
            listen_port: 51820,
            peers: vec![UapiPeer {
                public_key: [2; 32],
                preshared_key: None,
                endpoint: Some("[::ffff:192.0.2.7]:51821".parse().unwrap()),
                last_handshake: Some(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                rx_bytes: 10,
                tx_bytes: 20,
                persistent_keepalive: 25,
                allowed_ips: vec!["10.20.0.0/16".parse().unwrap()],
            }],
        }
    }

    #[test]
    fn get_lists_device_then_peers_in_protocol_order() {
        let text = format_get(&device());
        let expected = format!(
            "private_key={}\nlisten_port=51820\npublic_key={}\npreshared_key={}\n\
             protocol_version=1\nendpoint=192.0.2.7:51821\nlast_handshake_time_sec=1700000000\n\
             last_handshake_time_nsec=5\ntx_bytes=20\nrx_bytes=10\n\
             persistent_keepalive_interval=25\nallowed_ip=10.20.0.0/16\n",
            "01".repeat(32),
            "02".repeat(32),
            "00".repeat(32)
        );
        assert_eq!(text, expected);
    }

    async fn exchange(dir: &Path, request: &[u8]) -> String {
        let mut client = UnixStream::connect(socket_path(dir, "wgtest0"))
            .await
            .unwrap();
        client.write_all(request).await.unwrap();
        client.shutdown().await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn serves_get_refuses_set_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let listener = bind(dir.path(), "wgtest0").await.unwrap();
        let path = socket_path(dir.path(), "wgtest0");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second bind while the first still answers must fail.
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(
            listener,
            path.clone(),
            Arc::new(Fixed(device())),
            shutdown.clone(),
        ));
        assert_eq!(
            bind(dir.path(), "wgtest0").await.unwrap_err().kind(),
            io::ErrorKind::AddrInUse
        );

        let answer = exchange(dir.path(), b"get=1\n\n").await;
        assert!(answer.starts_with("private_key=0101"), "{answer}");
        assert!(answer.ends_with("errno=0\n\n"), "{answer}");

        let answer = exchange(dir.path(), b"set=1\nlisten_port=1\n\n").await;
        assert_eq!(answer, "errno=-1\n\n");

        let answer = exchange(dir.path(), b"bogus\n\n").await;
        assert_eq!(answer, "errno=-22\n\n");

        // Two requests on one connection, as `wg` may send.
        let answer = exchange(dir.path(), b"get=1\n\nget=1\n\n").await;
        assert_eq!(answer.matches("errno=0\n\n").count(), 2, "{answer}");

        // A line without an end is bounded.
        let long = vec![b'x'; MAX_LINE * 2];
        let answer = exchange(dir.path(), &long).await;
        assert_eq!(answer, "");

        shutdown.cancel();
        server.await.unwrap();
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let stale =
            std::os::unix::net::UnixListener::bind(socket_path(dir.path(), "wgtest0")).unwrap();
        drop(stale);
        bind(dir.path(), "wgtest0").await.unwrap();
    }
}
