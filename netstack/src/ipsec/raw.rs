//! Bare ESP (IP protocol 50) through raw sockets, for peers not behind a NAT. The kernel
//! here has no ESP of its own, so it hands every ESP packet to a raw socket; an IPv4 raw
//! socket delivers the IP header too, an IPv6 one does not.

use std::io;
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrIn, SockaddrIn6, SockaddrLike};
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
        let socket = self.socket_for(to)?;
        let address = SocketAddr::new(to, 0).into();
        socket
            .async_io(Interest::WRITABLE, |s| s.send_to(packet, &address))
            .await
            .map(|_| ())
    }

    /// Sends `packets`, ESP packets of `segment` bytes each (the last may be shorter), to
    /// `to` with as few system calls as the kernel allows (sendmmsg).
    pub async fn send_batch(&self, to: IpAddr, packets: &[u8], segment: usize) -> io::Result<()> {
        let socket = self.socket_for(to)?;
        let chunks: Vec<[IoSlice<'_>; 1]> = packets
            .chunks(segment.max(1))
            .map(|p| [IoSlice::new(p)])
            .collect();
        let mut sent = 0;
        while sent < chunks.len() {
            let rest = &chunks[sent..];
            sent += socket
                .async_io(Interest::WRITABLE, |s| match to {
                    IpAddr::V4(ip) => {
                        send_many(s, rest, SockaddrIn::from(SocketAddrV4::new(ip, 0)))
                    }
                    IpAddr::V6(ip) => {
                        send_many(s, rest, SockaddrIn6::from(SocketAddrV6::new(ip, 0, 0, 0)))
                    }
                })
                .await?;
        }
        Ok(())
    }

    fn socket_for(&self, to: IpAddr) -> io::Result<&AsyncFd<Socket>> {
        match to {
            IpAddr::V4(_) => Ok(&self.v4),
            IpAddr::V6(_) => self.v6.as_ref().ok_or_else(|| {
                io::Error::new(io::ErrorKind::Unsupported, "no IPv6 raw ESP socket")
            }),
        }
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
                Ok(Ok(len)) => match esp_range(buffer, len, is_v6) {
                    Some(esp) => return Ok(esp),
                    None => continue,
                },
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// One sendmmsg of `packets` to `to`; returns how many the kernel took.
fn send_many<S: SockaddrLike + Copy>(
    socket: &Socket,
    packets: &[[IoSlice<'_>; 1]],
    to: S,
) -> io::Result<usize> {
    let mut headers = MultiHeaders::<S>::preallocate(packets.len(), None);
    let addresses = vec![Some(to); packets.len()];
    let results = sendmmsg(
        socket.as_raw_fd(),
        &mut headers,
        packets,
        &addresses,
        [],
        MsgFlags::empty(),
    )
    .map_err(io::Error::from)?;
    Ok(results.count())
}

impl RawEsp {
    /// Another packet, if one is already waiting (for draining a burst after
    /// [`Self::recv`] without waiting again).
    pub fn try_recv(&self, buffer: &mut [u8]) -> io::Result<Option<Range<usize>>> {
        use std::io::Read;
        let sockets = std::iter::once((&self.v4, false)).chain(self.v6.iter().map(|s| (s, true)));
        for (socket, is_v6) in sockets {
            let mut reader: &Socket = socket.get_ref();
            match reader.read(buffer) {
                Ok(len) => {
                    if let Some(esp) = esp_range(buffer, len, is_v6) {
                        return Ok(Some(esp));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// Where the ESP packet lies in what a raw socket read: an IPv4 raw socket delivers the
/// IP header too (IHL in 32-bit words), an IPv6 one does not.
fn esp_range(buffer: &[u8], len: usize, is_v6: bool) -> Option<Range<usize>> {
    if is_v6 {
        return Some(0..len);
    }
    let header = usize::from(buffer.first().copied().unwrap_or(0) & 0x0f) * 4;
    (header >= 20 && header <= len).then_some(header..len)
}

fn open(domain: Domain) -> io::Result<AsyncFd<Socket>> {
    let socket = Socket::new(domain, Type::RAW, Some(Protocol::from(IPPROTO_ESP)))?;
    // Best effort, as for the UDP sockets: the default 208 KiB overflows under bursts.
    let _ = socket.set_recv_buffer_size(crate::udp::SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(crate::udp::SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    crate::reactor::register(socket)
}
