//! The tunnel's UDP socket, with batched I/O: GRO/recvmmsg to receive many datagrams per
//! system call, GSO to send a run of equal-sized datagrams to one peer in one call.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;

/// Socket buffers large enough for bursts at multi-gigabit rates.
pub(crate) const SOCKET_BUFFER: usize = 8 << 20;

pub struct UdpPort {
    socket: tokio::net::UdpSocket,
    state: UdpSocketState,
}

impl UdpPort {
    /// Binds `port` (0: the kernel chooses) on all addresses, IPv6 and IPv4 on one socket
    /// where the host has IPv6, IPv4 only where it has not.
    pub fn bind(port: u16) -> io::Result<Self> {
        let socket = match dual_stack(port) {
            Ok(socket) => socket,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => {
                let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
                socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)).into())?;
                socket
            }
        };
        // Best effort: without CAP_NET_ADMIN the kernel caps these at rmem_max/wmem_max.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
        let state = UdpSocketState::new((&socket).into())?;
        socket.set_nonblocking(true)?;
        let socket = tokio::net::UdpSocket::from_std(socket.into())?;
        Ok(UdpPort { socket, state })
    }

    pub fn local_port(&self) -> io::Result<u16> {
        Ok(self.socket.local_addr()?.port())
    }

    /// How many datagrams one GSO send may carry.
    pub fn max_segments(&self) -> usize {
        self.state.max_gso_segments().max(1)
    }

    /// Sends `contents` to `to`; with `segment` set, as datagrams of that size (the last may
    /// be shorter).
    pub async fn send(
        &self,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        self.send_from(None, to, contents, segment).await
    }

    /// Like [`Self::send`], from the local address `from` (a socket bound to all
    /// addresses answers from the address it was asked on).
    pub async fn send_from(
        &self,
        from: Option<IpAddr>,
        to: SocketAddr,
        contents: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size: segment,
            src_ip: from,
        };
        self.socket
            .async_io(Interest::WRITABLE, || {
                self.state.try_send((&self.socket).into(), &transmit)
            })
            .await
    }

    /// Receives into `bufs`; returns how many of `meta` were filled. Each may hold several
    /// datagrams of `meta.stride` bytes (GRO).
    pub async fn recv(
        &self,
        bufs: &mut [io::IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> io::Result<usize> {
        self.socket
            .async_io(Interest::READABLE, || {
                self.state.recv((&self.socket).into(), bufs, meta)
            })
            .await
    }
}

fn dual_stack(port: u16) -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(false)?;
    socket.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    Ok(socket)
}
