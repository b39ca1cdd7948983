//! Sockets for probes: name resolution, placement (source/interface), deadlines and
//! bounded reads. Every probe opens its connections through [`ProbeEnv`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use siteward_config::{Host, HostPort, Placement};
use siteward_netstack::{PlacementError, SocketPlacement};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::Instant;

use crate::{Failure, Reason};

/// Name resolution shared by all checks: the system's configuration (`/etc/resolv.conf`
/// and `/etc/hosts`), with hickory's cache, so 1,000 checks on one name cost one lookup.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<TokioResolver>,
}

impl Resolver {
    /// A resolver from the system configuration.
    pub fn from_system() -> io::Result<Self> {
        let inner = TokioResolver::builder_tokio()
            .map_err(|e| {
                io::Error::other(format!("reading the system resolver configuration: {e}"))
            })?
            .build()
            .map_err(|e| io::Error::other(format!("building the resolver: {e}")))?;
        Ok(Resolver {
            inner: Arc::new(inner),
        })
    }

    /// The addresses of `host`. IP literals are returned as they are, without a lookup.
    pub async fn lookup(&self, host: &Host) -> Result<Vec<IpAddr>, Failure> {
        match host {
            Host::Ip(ip) => Ok(vec![*ip]),
            Host::Name(name) => {
                let found = self.inner.lookup_ip(name.as_str()).await.map_err(|e| {
                    Failure::new(Reason::ResolveFailed, format!("resolving {name}: {e}"))
                })?;
                let ips: Vec<IpAddr> = found.iter().collect();
                if ips.is_empty() {
                    return Err(Failure::new(
                        Reason::ResolveFailed,
                        format!("{name} has no addresses"),
                    ));
                }
                Ok(ips)
            }
        }
    }
}

/// Everything a probe needs from its surroundings for one run.
pub struct ProbeEnv<'a> {
    pub resolver: &'a Resolver,
    pub placement: &'a Placement,
    /// When the run's timeout expires. Probes that wait in steps (retransmissions,
    /// several echo requests) plan with it; the engine enforces it regardless.
    pub deadline: Instant,
}

impl ProbeEnv<'_> {
    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Addresses of `host`, keeping only the source address's family when one is set.
    pub async fn resolve(&self, host: &Host) -> Result<Vec<IpAddr>, Failure> {
        let mut ips = self.resolver.lookup(host).await?;
        if let Some(source) = self.placement.source {
            ips.retain(|ip| ip.is_ipv4() == source.is_ipv4());
            if ips.is_empty() {
                return Err(Failure::new(
                    Reason::ResolveFailed,
                    format!("{host} has no address in the family of source {source}"),
                ));
            }
        }
        Ok(ips)
    }

    /// Connects to `target`, trying each resolved address in turn until one answers.
    pub async fn connect_tcp(&self, target: &HostPort) -> Result<TcpStream, Failure> {
        let ips = self.resolve(&target.host).await?;
        let mut last = None;
        for ip in ips {
            let addr = SocketAddr::new(ip, target.port);
            let socket = self.placement.tcp_socket(addr).map_err(placement_failure)?;
            match tokio::time::timeout_at(self.deadline, socket.connect(addr)).await {
                Err(_) => {
                    return Err(Failure::new(
                        Reason::Timeout,
                        format!("connecting to {addr}: no answer"),
                    ))
                }
                Ok(Ok(stream)) => {
                    // Probes write whole requests; Nagle would only add latency.
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = Some(connect_failure(e, addr)),
            }
        }
        Err(last.unwrap_or_else(|| {
            Failure::new(
                Reason::ResolveFailed,
                format!("{} has no addresses", target.host),
            )
        }))
    }

    /// A UDP socket connected to the first address of `target`.
    pub async fn connect_udp(&self, target: &HostPort) -> Result<(UdpSocket, SocketAddr), Failure> {
        let ips = self.resolve(&target.host).await?;
        let addr = SocketAddr::new(ips[0], target.port);
        let socket = self.placement.udp_socket(addr).map_err(placement_failure)?;
        socket
            .connect(addr)
            .await
            .map_err(|e| connect_failure(e, addr).context("UDP"))?;
        Ok((socket, addr))
    }
}

/// A failed `connect()` to `addr`. Linux answers EINVAL when the route to the address is a
/// `blackhole` one: the target is unreachable from here, not a local I/O problem.
pub fn connect_failure(e: io::Error, addr: SocketAddr) -> Failure {
    const EINVAL: i32 = 22;
    if e.raw_os_error() == Some(EINVAL) {
        return Failure::new(
            Reason::Unreachable,
            format!("connecting to {addr}: no route (blackhole route?): {e}"),
        );
    }
    Failure::from(e).context(&format!("connecting to {addr}"))
}

/// A bind failure is a configuration or host problem, not the target's.
pub fn placement_failure(e: PlacementError) -> Failure {
    Failure::new(Reason::BindError, e.to_string())
}

/// Reads once from `reader` into `buf`, refusing to let `buf` grow past `limit` bytes.
/// Returns the number of bytes read; end of stream is an `UnexpectedEof` failure.
pub async fn read_more<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> Result<usize, Failure> {
    if buf.len() >= limit {
        return Err(Failure::new(
            Reason::BadResponse,
            format!("answer larger than {limit} bytes without a complete message"),
        ));
    }
    let room = (limit - buf.len()).min(16 * 1024);
    let start = buf.len();
    buf.resize(start + room, 0);
    let n = match reader.read(&mut buf[start..]).await {
        Ok(n) => n,
        Err(e) => {
            buf.truncate(start);
            return Err(e.into());
        }
    };
    buf.truncate(start + n);
    if n == 0 {
        return Err(Failure::new(
            Reason::BadResponse,
            "connection closed before a complete answer",
        ));
    }
    Ok(n)
}

/// Reads until `parse` finds a complete message in the buffer (returning `Some`), never
/// holding more than `limit` bytes. `parse` sees all bytes read so far.
pub async fn read_message<R, T, F>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
    mut parse: F,
) -> Result<T, Failure>
where
    R: AsyncRead + Unpin,
    F: FnMut(&[u8]) -> Result<Option<T>, Failure>,
{
    loop {
        if let Some(message) = parse(buf)? {
            return Ok(message);
        }
        read_more(reader, buf, limit).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolver_answers_from_etc_hosts() {
        // "localhost" is in /etc/hosts on every Debian box; no DNS server is asked.
        let resolver = Resolver::from_system().unwrap();
        let ips = tokio::time::timeout(
            Duration::from_secs(5),
            resolver.lookup(&Host::Name("localhost".into())),
        )
        .await
        .expect("a hosts-file lookup must not wait for DNS")
        .unwrap();
        assert!(ips.iter().any(|ip| ip.is_loopback()), "{ips:?}");
    }

    #[tokio::test]
    async fn read_more_is_bounded() {
        let data = [b'x'; 100];
        let mut reader = &data[..];
        let mut buf = Vec::new();
        read_more(&mut reader, &mut buf, 10).await.unwrap();
        assert_eq!(buf.len(), 10);
        let err = read_more(&mut reader, &mut buf, 10).await.unwrap_err();
        assert_eq!(err.reason, Reason::BadResponse);
    }

    #[tokio::test]
    async fn read_message_stops_at_complete_message() {
        let data = b"hello\r\nrest".to_vec();
        let mut reader = &data[..];
        let mut buf = Vec::new();
        let line = read_message(&mut reader, &mut buf, 64, |b| {
            Ok(b.windows(2)
                .position(|w| w == b"\r\n")
                .map(|i| b[..i].to_vec()))
        })
        .await
        .unwrap();
        assert_eq!(line, b"hello");
    }

    #[tokio::test]
    async fn eof_before_message_is_bad_response() {
        let data = b"partial".to_vec();
        let mut reader = &data[..];
        let mut buf = Vec::new();
        let err = read_message(&mut reader, &mut buf, 64, |_| Ok(None::<()>))
            .await
            .unwrap_err();
        assert_eq!(err.reason, Reason::BadResponse);
    }
}
