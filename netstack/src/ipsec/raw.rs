//! Bare ESP (IP protocol 50) through raw sockets, for peers not behind a NAT. The kernel
//! here has no ESP of its own, so it hands every ESP packet to a raw socket; an IPv4 raw
//! socket delivers the IP header too, an IPv6 one does not.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

const IPPROTO_ESP: i32 = 50;

pub(crate) struct RawEsp {
    v4: AsyncFd<Socket>,
    v6: Option<AsyncFd<Socket>>,
}

impl RawEsp {
    pub fn open() -> io::Result<RawEsp> {
        let v4 = open(Domain::IPV4)?;
        // A host without IPv6 still does ESP over IPv4.
        let v6 = open(Domain::IPV6).ok();
        Ok(RawEsp { v4, v6 })
    }

    pub async fn send(&self, to: IpAddr, packet: &[u8]) -> io::Result<()> {
        let socket = match to {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => self.v6.as_ref().ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "no IPv6 raw ESP socket")
            })?,
        };
        let address = SocketAddr::new(to, 0).into();
        socket
            .async_io(Interest::WRITABLE, |s| s.send_to(packet, &address))
            .await
            .map(|_| ())
    }

    /// Receives one ESP packet into `buffer`; returns where the ESP packet lies in it.
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<Range<usize>> {
        loop {
            let v6 = async {
                match &self.v6 {
                    Some(v6) => v6.readable().await.map(|guard| (guard, true)),
                    None => std::future::pending().await,
                }
            };
            let (mut guard, is_v6) = tokio::select! {
                ready = self.v4.readable() => (ready?, false),
                ready = v6 => ready?,
            };
            let read = guard.try_io(|s| {
                use std::io::Read;
                let mut socket: &Socket = s.get_ref();
                socket.read(buffer)
            });
            match read {
                Ok(Ok(len)) => {
                    if is_v6 {
                        return Ok(0..len);
                    }
                    // Skip the IPv4 header (IHL in 32-bit words).
                    let header = usize::from(buffer.first().copied().unwrap_or(0) & 0x0f) * 4;
                    if header < 20 || header > len {
                        continue;
                    }
                    return Ok(header..len);
                }
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

fn open(domain: Domain) -> io::Result<AsyncFd<Socket>> {
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_ESP)))?;
    // Best effort, as for the UDP sockets: the default 208 KiB overflows under bursts.
    let _ = socket.set_recv_buffer_size(crate::udp::SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(crate::udp::SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    crate::reactor::register(socket)
}
