//! `[[relays]]`: TCP relays that let the platform reach on-prem services (Oracle 1521, SAP
//! 3300, HTTP APIs) through the appliance. Each relay listens, closes connections from
//! sources outside `allow` and those over `max_connections` at once, connects every other
//! one to the target (placed by `placement`) and moves the bytes with splice(2), so they
//! never pass through user space ([`pump`]).
//!
//! Per connection the relay holds two sockets, a small task, and, once bytes have moved
//! one way, a pipe for that way (two file descriptors; its pages only while bytes are in
//! it): idle connections cost almost no memory. [`start`] raises the soft open-files limit
//! to the hard one when `max_connections` would not fit under it.

mod pump;
#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use nix::errno::Errno;
use siteward_config::{HostPort, Placement, Relay};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::net::{ProbeEnv, Resolver};
use crate::sources::StartError;
use crate::{Failure, Reason};

use pump::Ended;

/// How long connecting to the target (resolution included) may take. The model has no
/// field for it: a target that does not answer within this is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors one relayed connection may hold: two sockets, two pipes.
const FDS_PER_CONNECTION: u64 = 6;

/// Descriptors kept for everything else the daemon has open.
const FDS_SPARE: u64 = 256;

/// Pause after a failed accept (out of file descriptors, mostly), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One relay's counters, exported as `siteward_relay_*{relay}`.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Connections relayed: accepted, let through, and connected to the target.
    pub connections_total: AtomicU64,
    /// Connections held now (connecting to the target or relaying).
    pub active_connections: AtomicU64,
    /// Connections closed at once because their source is outside `allow`.
    pub refused_total: AtomicU64,
    /// Connections closed at once because `max_connections` were already held.
    pub rejected_full_total: AtomicU64,
    /// Connections closed because the target could not be reached.
    pub connect_failures_total: AtomicU64,
    /// Bytes written to the target.
    pub bytes_to_target_total: AtomicU64,
    /// Bytes written back to the clients.
    pub bytes_from_target_total: AtomicU64,
}

/// Starts relay `config`: binds its listener (an error here is the caller's to report),
/// then serves in the returned task until `cancel`, when every connection is closed.
/// A target given by name is resolved with `resolver` (the daemon's one) per connection.
pub async fn start(
    config: &Relay,
    resolver: Resolver,
    counters: Arc<RelayCounters>,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        StartError::new(
            format!("relay {}: listening on {}", config.name, config.listen),
            e,
        )
    })?;
    ensure_open_files_limit(&config.name, config.max_connections);
    let shared = Arc::new(Shared {
        name: config.name.clone(),
        target: config.target.clone(),
        allow: config.allow.clone(),
        max_connections: u64::try_from(config.max_connections).unwrap_or(u64::MAX),
        idle_timeout: config.idle_timeout,
        placement: config.placement.clone(),
        resolver,
        counters,
    });
    let bound = listener
        .local_addr()
        .map_err(|e| StartError::new(format!("relay {}: reading its address", config.name), e))?;
    // Tests and scripts wait for this line (with port 0 it is the only way to learn the port).
    info!(relay = %shared.name, listener = %format!("relay {}", shared.name), addr = %bound,
        target = %shared.target, "listening");
    Ok(tokio::spawn(serve(listener, shared, cancel)))
}

/// What every connection of one relay needs.
struct Shared {
    name: String,
    target: HostPort,
    allow: Vec<IpNet>,
    max_connections: u64,
    idle_timeout: Duration,
    placement: Placement,
    resolver: Resolver,
    counters: Arc<RelayCounters>,
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        warn!(relay = %shared.name, error = %e, "a relayed connection's task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => admit(&shared, stream, peer, &mut connections),
                Err(e) => {
                    warn!(relay = %shared.name, error = %e, "accepting a connection");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
    // Aborting a connection's task drops (closes) both of its sockets.
    connections.shutdown().await;
    info!(relay = %shared.name, "relay stopped");
}

/// Closes a connection from outside `allow` or over the limit at once (dropping it);
/// hands any other to its own task.
fn admit(shared: &Arc<Shared>, client: TcpStream, peer: SocketAddr, connections: &mut JoinSet<()>) {
    let counters = &shared.counters;
    if !allowed(&shared.allow, peer.ip()) {
        counters.refused_total.fetch_add(1, Ordering::Relaxed);
        debug!(relay = %shared.name, %peer, "source not in allow: connection closed");
        return;
    }
    // Only this loop adds to `active_connections`, so the check cannot race.
    if counters.active_connections.load(Ordering::Relaxed) >= shared.max_connections {
        counters.rejected_full_total.fetch_add(1, Ordering::Relaxed);
        debug!(relay = %shared.name, %peer, max_connections = shared.max_connections,
            "relay full: connection closed");
        return;
    }
    let active = Active::new(counters.clone());
    connections.spawn(relay_connection(client, peer, shared.clone(), active));
}

/// Whether `ip` is inside one of the `allow` networks. An IPv4 client of a dual-stack
/// listener shows as `::ffff:a.b.c.d`; it is matched as the IPv4 address it is.
fn allowed(allow: &[IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    allow.iter().any(|net| net.contains(&ip))
}

/// Counts one held connection for as long as it lives.
struct Active(Arc<RelayCounters>);

impl Active {
    fn new(counters: Arc<RelayCounters>) -> Active {
        counters.active_connections.fetch_add(1, Ordering::Relaxed);
        Active(counters)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn relay_connection(
    client: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _active: Active,
) {
    let counters = &shared.counters;
    // Boxed: the resolver's future is large and is done with once connected.
    let target = match Box::pin(connect(&shared)).await {
        Ok(target) => target,
        Err(failure) => {
            counters
                .connect_failures_total
                .fetch_add(1, Ordering::Relaxed);
            warn!(relay = %shared.name, target = %shared.target, %peer, error = %failure.detail,
                "cannot connect to the target: connection closed");
            return;
        }
    };
    counters.connections_total.fetch_add(1, Ordering::Relaxed);
    // Bytes are passed on as they come; Nagle would only hold them back.
    let _ = client.set_nodelay(true);
    debug!(relay = %shared.name, %peer, "relaying");
    let ended = pump::relay(
        &client,
        &target,
        shared.idle_timeout,
        &counters.bytes_to_target_total,
        &counters.bytes_from_target_total,
    )
    .await;
    match ended {
        Ended::Closed => debug!(relay = %shared.name, %peer, "connection closed by both sides"),
        Ended::Idle => debug!(relay = %shared.name, %peer, idle_timeout = ?shared.idle_timeout,
            "connection idle: closed"),
        Ended::Failed(e) if out_of_descriptors(&e) => warn!(relay = %shared.name, %peer,
            error = %e, "out of file descriptors: connection closed"),
        Ended::Failed(e) => debug!(relay = %shared.name, %peer, error = %e, "connection ended"),
    }
}

/// Connects to the target through [`ProbeEnv`], as the probes do: resolution (cached),
/// placement (source address, interface), each address in turn, all within
/// [`CONNECT_TIMEOUT`].
async fn connect(shared: &Shared) -> Result<TcpStream, Failure> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let env = ProbeEnv {
        resolver: &shared.resolver,
        placement: &shared.placement,
        deadline,
    };
    tokio::time::timeout_at(deadline, env.connect_tcp(&shared.target))
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                Reason::Timeout,
                format!(
                    "connecting to {}: no answer within {CONNECT_TIMEOUT:?}",
                    shared.target
                ),
            ))
        })
}

fn out_of_descriptors(e: &io::Error) -> bool {
    let errno = e.raw_os_error().map(Errno::from_raw);
    matches!(errno, Some(Errno::EMFILE) | Some(Errno::ENFILE))
}

/// Raises the soft open-files limit to the hard one when `max_connections` connections
/// (two sockets and two pipes each) would not fit under it; warns when even the hard one
/// is too low. The limit is the process's, shared with everything else it does.
fn ensure_open_files_limit(relay: &str, max_connections: usize) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};

    let needed = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(FDS_PER_CONNECTION)
        .saturating_add(FDS_SPARE);
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            warn!(relay, error = %e, "cannot read the open-files limit");
            return;
        }
    };
    if soft >= needed {
        return;
    }
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => info!(relay, from = soft, to = hard, "raised the open-files limit"),
            Err(e) => warn!(relay, error = %e, "cannot raise the open-files limit"),
        }
    }
    if hard < needed {
        warn!(
            relay,
            max_connections,
            needed,
            limit = hard,
            "the open-files limit is too low for max_connections; connections over it will fail"
        );
    }
}
