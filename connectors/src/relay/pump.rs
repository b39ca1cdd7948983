//! Moving the bytes of one relayed connection, both ways, without copying them through
//! user space: each direction splices socket → pipe → socket (splice(2)), driven by tokio's
//! readiness. A direction whose sockets the kernel cannot splice falls back to a plain copy.

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{splice, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Most bytes asked of one splice into the pipe; the pipe's capacity (64 KiB by default)
/// is what actually bounds it.
const SPLICE_CHUNK: usize = 1 << 20;

/// What a new pipe holds (16 pages); one splice that fills it marks a bulk transfer.
const DEFAULT_PIPE_SIZE: usize = 64 * 1024;

/// The pipe of a bulk transfer: a sixteenth of the splices of a default one (measured: a
/// third less CPU per byte). Linux's default `pipe-max-size`, so unprivileged is fine.
const BULK_PIPE_SIZE: i32 = 1 << 20;

/// Buffer of the user-space fallback; allocated only while bytes are in flight.
const COPY_BUFFER: usize = 16 * 1024;

/// Why a relayed connection ended.
#[derive(Debug)]
pub(super) enum Ended {
    /// Both sides closed their sending direction.
    Closed,
    /// No byte moved either way for the idle timeout.
    Idle,
    /// A socket or pipe failed (a reset, a broken pipe, no file descriptors left).
    Failed(io::Error),
}

/// When a byte last moved on the connection, shared by both directions and the idle timer.
pub(super) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self
            .start
            .elapsed()
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Returns once nothing has moved for `timeout`. The timer is only re-armed when it
    /// expires, so traffic costs one atomic store per transfer, not a timer reset.
    async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The byte counters one direction adds to.
pub(super) struct Meter<'a> {
    pub moved: &'a AtomicU64,
    pub activity: &'a Activity,
}

impl Meter<'_> {
    fn add(&self, n: usize) {
        self.moved.fetch_add(n as u64, Ordering::Relaxed);
        self.activity.touch();
    }
}

/// Relays `client` ⇄ `target` until both directions have ended, one fails, or nothing
/// moves for `idle_timeout`. An end of stream one way is passed on as a half-close
/// (shutdown of writing) while the other way keeps going.
pub(super) async fn relay(
    client: &TcpStream,
    target: &TcpStream,
    idle_timeout: Duration,
    to_target: &AtomicU64,
    from_target: &AtomicU64,
) -> Ended {
    let activity = Activity::new();
    let upstream = pump(
        client,
        target,
        Meter {
            moved: to_target,
            activity: &activity,
        },
    );
    let downstream = pump(
        target,
        client,
        Meter {
            moved: from_target,
            activity: &activity,
        },
    );
    tokio::select! {
        both = async { tokio::try_join!(upstream, downstream) } => match both {
            Ok(_) => Ended::Closed,
            Err(e) => Ended::Failed(e),
        },
        () = activity.idle_for(idle_timeout) => Ended::Idle,
    }
}

/// One direction, `from` → `to`, until `from` ends (then `to` is shut down for writing).
/// The pipe is made on the first readiness, so an idle connection holds no pipe.
pub(super) async fn pump(from: &TcpStream, to: &TcpStream, meter: Meter<'_>) -> io::Result<()> {
    from.readable().await?;
    // The errno is kept as it is: the caller tells "out of file descriptors" by it.
    let (pipe_out, pipe_in) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    let mut bulk = false;
    let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
    loop {
        // The pipe is empty here, so EAGAIN can only mean `from` has nothing to read (a
        // pipe with data in it could be full in slots before it is full in bytes).
        let filled = match from.try_io(Interest::READABLE, || {
            splice(from, None, &pipe_in, None, SPLICE_CHUNK, flags).map_err(io::Error::from)
        }) {
            Ok(0) => return finish(to),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                from.readable().await?;
                continue;
            }
            Err(e) if cannot_splice(&e) => return copy(from, to, Vec::new(), meter).await,
            Err(e) => return Err(e),
        };
        meter.activity.touch();
        if !bulk && filled >= DEFAULT_PIPE_SIZE {
            bulk = true;
            grow(&pipe_in);
        }
        let mut in_pipe = filled;
        while in_pipe > 0 {
            match to.try_io(Interest::WRITABLE, || {
                splice(&pipe_out, None, to, None, in_pipe, flags).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    in_pipe = in_pipe.saturating_sub(n);
                    meter.add(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) if cannot_splice(&e) => {
                    let pending = drain_pipe(&pipe_out, in_pipe)?;
                    return copy(from, to, pending, meter).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Grows the pipe of a bulk transfer, once. Its pages exist only while bytes are in it, so
/// an idle connection costs no more; a refusal (an unprivileged user over
/// `pipe-user-pages-soft`) keeps the pipe as it is.
fn grow(pipe_in: &OwnedFd) {
    let _ = nix::fcntl::fcntl(pipe_in, nix::fcntl::FcntlArg::F_SETPIPE_SZ(BULK_PIPE_SIZE));
}

/// splice(2) refused these sockets (EINVAL: a kind it cannot splice; ENOSYS/EOPNOTSUPP: a
/// kernel without it): the bytes are copied instead.
fn cannot_splice(e: &io::Error) -> bool {
    let errno = e.raw_os_error().map(Errno::from_raw);
    matches!(
        errno,
        Some(Errno::EINVAL) | Some(Errno::ENOSYS) | Some(Errno::EOPNOTSUPP)
    )
}

/// The `len` bytes left in the pipe when splicing out of it failed, so the copy can send them.
fn drain_pipe(pipe_out: &OwnedFd, len: usize) -> io::Result<Vec<u8>> {
    let mut pending = vec![0; len];
    let mut have = 0;
    while have < len {
        match nix::unistd::read(pipe_out, pending.get_mut(have..).unwrap_or_default()) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => have += n,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(pending)
}

/// The fallback: `pending` then everything `from` sends is copied through a buffer that
/// exists only while bytes are in flight (an idle connection holds none).
pub(super) async fn copy(
    from: &TcpStream,
    to: &TcpStream,
    pending: Vec<u8>,
    meter: Meter<'_>,
) -> io::Result<()> {
    write_all(to, &pending, &meter).await?;
    drop(pending);
    loop {
        from.readable().await?;
        let mut buf = vec![0; COPY_BUFFER];
        loop {
            match from.try_read(&mut buf) {
                Ok(0) => return finish(to),
                Ok(n) => {
                    meter.activity.touch();
                    write_all(to, buf.get(..n).unwrap_or_default(), &meter).await?;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
}

async fn write_all(to: &TcpStream, mut data: &[u8], meter: &Meter<'_>) -> io::Result<()> {
    while !data.is_empty() {
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = data.get(n..).unwrap_or_default();
                meter.add(n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `from` has ended: pass the end on, the other direction keeps going.
fn finish(to: &TcpStream) -> io::Result<()> {
    match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
        // The peer is already gone; the other direction will find out.
        Err(e) if e.raw_os_error() == Some(Errno::ENOTCONN as i32) => Ok(()),
        other => other,
    }
}
