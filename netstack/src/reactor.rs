//! Raw sockets on tokio's reactor (the ICMP probe's socket, IPsec's raw ESP sockets).

use std::io;

use socket2::Socket;
use tokio::io::unix::AsyncFd;

/// Hands the socket to tokio's reactor. `AsyncFd::new` is deprecated in favour of the
/// `unsafe fn register`, whose requirement is that the descriptor stays open while
/// registered; that holds here because the `AsyncFd` owns the `Socket`, which owns the
/// descriptor. The safe constructor keeps these crates free of `unsafe`.
#[allow(deprecated)]
pub fn register(socket: Socket) -> io::Result<AsyncFd<Socket>> {
    AsyncFd::new(socket)
}
