//! `kind = "syslog"`: UDP and TCP listeners for syslog (RFC 5424 and RFC 3164), each good
//! message stored as one JSON event ([`parse::SyslogMessage::to_json`]).
//!
//! - UDP: one datagram is one message. Datagrams that are waiting together are appended
//!   together, so they share the spool's commit. A full spool drops them (the sink counts
//!   them as refused): UDP has no way to push back.
//! - TCP: RFC 6587 framing ([`framing`]). A full spool stops the reading of that
//!   connection until the spool takes the message (retried with a bounded backoff), so
//!   the sender's TCP window fills and it slows down instead of losing messages. A
//!   framing error (a frame over `max_message_bytes`, a bad octet count) closes the
//!   connection, since where the next frame starts is lost. Connections are capped and
//!   closed after [`TCP_IDLE_TIMEOUT`] without a byte.
//!
//! Malformed messages are counted as rejected and logged (warned at most every
//! [`WARN_INTERVAL`], so a flood cannot flood the log).

pub mod framing;
pub mod parse;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use siteward_config::SyslogSource;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{Sink, StartError};
use crate::spool::SpoolError;
use framing::{FrameDecoder, FrameError};

/// The `kind` of the events this source stores.
pub const EVENT_KIND: &str = "syslog";
/// Most TCP connections served at once; more are closed at once.
pub const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP connection silent this long is closed (the sender reconnects when it has more).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Warnings about one connector's input at most this often; the rest go to debug.
pub const WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Most messages appended together.
const MAX_BATCH: usize = 256;
const TCP_READ_CHUNK: usize = 16 * 1024;
/// Largest UDP payload over IPv4/IPv6 without jumbograms.
const MAX_DATAGRAM: usize = 65_535;
/// Asked for the UDP socket's receive buffer, so bursts wait there during a commit (the
/// kernel caps it at net.core.rmem_max).
const UDP_RECEIVE_BUFFER: usize = 4 << 20;
const RETRY_FIRST: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` or `recv` (usually out of file descriptors or memory),
/// so the loop does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Binds the configured listeners, then serves them until `cancel`.
pub async fn start(
    config: &SyslogSource,
    sink: Sink,
    cancel: CancellationToken,
) -> Result<JoinHandle<()>, StartError> {
    let listeners = Listeners::bind(config, sink.connector()).await?;
    Ok(listeners.serve(sink, cancel, TcpLimits::default()))
}

#[derive(Debug, Clone, Copy)]
struct TcpLimits {
    max_connections: usize,
    idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> TcpLimits {
        TcpLimits {
            max_connections: MAX_TCP_CONNECTIONS,
            idle_timeout: TCP_IDLE_TIMEOUT,
        }
    }
}

struct Listeners {
    udp: Option<UdpSocket>,
    tcp: Option<TcpListener>,
    max_message_bytes: usize,
}

impl Listeners {
    async fn bind(config: &SyslogSource, connector: &str) -> Result<Listeners, StartError> {
        if config.udp.is_none() && config.tcp.is_none() {
            return Err(StartError::new(
                format!("starting the syslog connector {connector}"),
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "neither a UDP nor a TCP listener is configured",
                ),
            ));
        }
        let bind_error = |protocol: &str, addr: SocketAddr| {
            let doing = format!(
                "binding the syslog {protocol} listener of connector {connector} to {addr}"
            );
            move |e| StartError::new(doing, e)
        };
        let udp = match config.udp {
            Some(addr) => {
                let socket = UdpSocket::bind(addr)
                    .await
                    .map_err(bind_error("UDP", addr))?;
                if let Err(e) =
                    socket2::SockRef::from(&socket).set_recv_buffer_size(UDP_RECEIVE_BUFFER)
                {
                    debug!(connector, "enlarging the syslog UDP receive buffer: {e}");
                }
                log_listening(connector, "udp", socket.local_addr());
                Some(socket)
            }
            None => None,
        };
        let tcp = match config.tcp {
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(bind_error("TCP", addr))?;
                log_listening(connector, "tcp", listener.local_addr());
                Some(listener)
            }
            None => None,
        };
        Ok(Listeners {
            udp,
            tcp,
            max_message_bytes: config.max_message_bytes,
        })
    }

    #[cfg(test)]
    fn udp_addr(&self) -> Option<SocketAddr> {
        self.udp.as_ref().and_then(|s| s.local_addr().ok())
    }

    #[cfg(test)]
    fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().and_then(|l| l.local_addr().ok())
    }

    fn serve(self, sink: Sink, cancel: CancellationToken, limits: TcpLimits) -> JoinHandle<()> {
        let max = self.max_message_bytes;
        let warnings = Arc::new(Warnings::default());
        tokio::spawn(async move {
            let udp = async {
                if let Some(socket) = self.udp {
                    serve_udp(socket, &sink, max, &cancel, &warnings).await;
                }
            };
            let tcp = async {
                if let Some(listener) = self.tcp {
                    serve_tcp(listener, &sink, max, &cancel, limits, &warnings).await;
                }
            };
            tokio::join!(udp, tcp);
            debug!(connector = sink.connector(), "syslog listeners stopped");
        })
    }
}

/// The line the daemon's tests wait for to learn a port chosen by the system; the
/// listener is named `syslog <connector> udp|tcp`.
fn log_listening(connector: &str, transport: &str, bound: io::Result<SocketAddr>) {
    let listener = format!("syslog {connector} {transport}");
    match bound {
        Ok(addr) => info!(connector, %listener, addr = %addr, "listening"),
        Err(e) => warn!(connector, %listener, "reading the bound address: {e}"),
    }
}

async fn serve_udp(
    socket: UdpSocket,
    sink: &Sink,
    max: usize,
    cancel: &CancellationToken,
    warnings: &Warnings,
) {
    let connector = sink.connector();
    // One byte more than a message, to tell a datagram at the limit from a longer one.
    let mut buf = vec![0u8; max.min(MAX_DATAGRAM).saturating_add(1)];
    loop {
        let first = tokio::select! {
            _ = cancel.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        let mut payloads = Vec::new();
        let mut senders = Vec::new();
        let mut received = Some(first);
        let mut seen = 0;
        while let Some(datagram) = received.take() {
            seen += 1;
            match datagram {
                Ok((len, peer)) => {
                    let bytes = buf.get(..len).unwrap_or_default();
                    if len > max {
                        sink.reject();
                        warnings.warn(
                            connector,
                            format_args!(
                                "syslog datagram from {peer} dropped: over {max} bytes (max_message_bytes)"
                            ),
                        );
                    } else if let Some(payload) = payload(bytes, peer, sink, warnings) {
                        payloads.push(payload);
                        senders.push(peer);
                    }
                }
                Err(e) => {
                    warnings.warn(connector, format_args!("receiving a syslog datagram: {e}"));
                    if payloads.is_empty() {
                        tokio::select! {
                            _ = cancel.cancelled() => return,
                            _ = tokio::time::sleep(ERROR_PAUSE) => {}
                        }
                    }
                    break;
                }
            }
            // Take what else is already waiting, to append it in the same commit.
            if seen < MAX_BATCH {
                received = match socket.try_recv_from(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
                    other => Some(other),
                };
            }
        }
        let results = sink.append_in_order(EVENT_KIND, payloads).await;
        for (result, peer) in results.into_iter().zip(senders) {
            if let Err(e) = result {
                sink.count_refused(1);
                warnings.warn(
                    connector,
                    format_args!("syslog message from {peer} dropped: {e}"),
                );
            }
        }
    }
}

async fn serve_tcp(
    listener: TcpListener,
    sink: &Sink,
    max: usize,
    cancel: &CancellationToken,
    limits: TcpLimits,
    warnings: &Arc<Warnings>,
) {
    let connector = sink.connector();
    let connections = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warnings.warn(
                    connector,
                    format_args!("accepting a syslog TCP connection: {e}"),
                );
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(ERROR_PAUSE) => continue,
                }
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            warnings.warn(
                connector,
                format_args!(
                    "syslog TCP connection from {peer} closed: already {} connections",
                    limits.max_connections
                ),
            );
            continue;
        };
        let connection = Connection {
            sink: sink.clone(),
            peer,
            max,
            idle_timeout: limits.idle_timeout,
            cancel: cancel.clone(),
            warnings: warnings.clone(),
        };
        connections.spawn(async move {
            let mut stream = stream;
            connection.serve(&mut stream).await;
            // Free the slot before the sender can see the close.
            drop(slot);
            drop(stream);
        });
    }
    connections.close();
    connections.wait().await;
}

struct Connection {
    sink: Sink,
    peer: SocketAddr,
    max: usize,
    idle_timeout: Duration,
    cancel: CancellationToken,
    warnings: Arc<Warnings>,
}

impl Connection {
    async fn serve(self, stream: &mut TcpStream) {
        let connector = self.sink.connector();
        let peer = self.peer;
        debug!(connector, %peer, "syslog TCP connection opened");
        let mut decoder = FrameDecoder::new(self.max);
        let mut chunk = vec![0u8; TCP_READ_CHUNK];
        loop {
            let read = tokio::select! {
                _ = self.cancel.cancelled() => return,
                read = tokio::time::timeout(self.idle_timeout, stream.read(&mut chunk)) => read,
            };
            let ended = match read {
                Err(_) => {
                    info!(connector, %peer, "closing a syslog TCP connection idle for {:?}", self.idle_timeout);
                    return;
                }
                Ok(Err(e)) => {
                    self.warnings.warn(
                        connector,
                        format_args!("syslog TCP connection from {peer} failed: {e}"),
                    );
                    return;
                }
                Ok(Ok(0)) => true,
                Ok(Ok(len)) => {
                    decoder.feed(chunk.get(..len).unwrap_or_default());
                    false
                }
            };
            let (frames, framing_error) = take_frames(&mut decoder, ended);
            let payloads = frames
                .iter()
                .filter_map(|frame| payload(frame, peer, &self.sink, &self.warnings))
                .collect();
            if !self.store(payloads).await {
                return;
            }
            if let Some(e) = framing_error {
                self.sink.reject();
                self.warnings.warn(
                    connector,
                    format_args!("closing the syslog TCP connection from {peer}: {e}"),
                );
                return;
            }
            if ended {
                debug!(connector, %peer, "syslog TCP connection closed by the sender");
                return;
            }
        }
    }

    /// Appends every payload in order, waiting while the spool is full; `false` if the
    /// connection must end (cancelled, or the spool closed).
    async fn store(&self, payloads: Vec<Vec<u8>>) -> bool {
        let connector = self.sink.connector();
        // Each message with whether its refusal was counted: once, however many tries.
        let mut waiting: std::collections::VecDeque<(Vec<u8>, bool)> =
            payloads.into_iter().map(|p| (p, false)).collect();
        let mut delay = RETRY_FIRST;
        while !waiting.is_empty() {
            let batch: Vec<Vec<u8>> = waiting
                .iter()
                .take(MAX_BATCH)
                .map(|(p, _)| p.clone())
                .collect();
            let results = self.sink.append_in_order(EVENT_KIND, batch).await;
            let mut retry = Vec::new();
            let mut refused = None;
            for ((payload, counted), result) in waiting.drain(..results.len()).zip(results) {
                let Err(e) = result else { continue };
                if matches!(e, SpoolError::Closed) {
                    return false;
                }
                if !counted {
                    self.sink.count_refused(1);
                }
                match e {
                    SpoolError::Full { .. } | SpoolError::Storage(_) => {
                        retry.push((payload, true));
                        refused = Some(e);
                    }
                    e => self.warnings.warn(
                        connector,
                        format_args!("syslog message from {} dropped: {e}", self.peer),
                    ),
                }
            }
            let Some(refused) = refused else {
                delay = RETRY_FIRST;
                continue;
            };
            for payload in retry.into_iter().rev() {
                waiting.push_front(payload);
            }
            self.warnings.warn(
                connector,
                format_args!(
                    "reading from {} paused: {refused}; retrying in {delay:?}",
                    self.peer
                ),
            );
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(RETRY_MAX);
        }
        true
    }
}

/// Every frame now complete (and, once the stream `ended`, what is left), and the framing
/// error that stopped the split, if any.
fn take_frames(decoder: &mut FrameDecoder, ended: bool) -> (Vec<Bytes>, Option<FrameError>) {
    let mut frames = Vec::new();
    loop {
        let next = if ended {
            decoder.finish()
        } else {
            decoder.next_frame()
        };
        match next {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// The event's payload for one message; a malformed one is counted, logged and `None`.
fn payload(bytes: &[u8], peer: SocketAddr, sink: &Sink, warnings: &Warnings) -> Option<Vec<u8>> {
    match parse::parse(bytes) {
        Ok(message) => Some(message.to_json(peer).to_string().into_bytes()),
        Err(e) => {
            sink.reject();
            warnings.warn(
                sink.connector(),
                format_args!("malformed syslog message from {peer} dropped: {e}"),
            );
            None
        }
    }
}

/// Warns at most once per [`WARN_INTERVAL`]; what comes in between goes to debug, and the
/// next warning says how much was held back.
#[derive(Default)]
struct Warnings {
    state: Mutex<WarnState>,
}

#[derive(Default)]
struct WarnState {
    last: Option<Instant>,
    held_back: u64,
}

impl Warnings {
    fn warn(&self, connector: &str, message: fmt::Arguments<'_>) {
        let held_back = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state
                .last
                .is_none_or(|last| last.elapsed() >= WARN_INTERVAL)
            {
                state.last = Some(Instant::now());
                Some(std::mem::take(&mut state.held_back))
            } else {
                state.held_back += 1;
                None
            }
        };
        match held_back {
            Some(0) => warn!(connector, "{message}"),
            Some(held_back) => warn!(
                connector,
                held_back, "{message} (and {held_back} more since the last warning)"
            ),
            None => debug!(connector, "{message}"),
        }
    }
}
