//! `siteward simulate saprouter`: a SAProuter that really routes.
//!
//! In mode `ok` it reads the client's `NI_ROUTE`, connects to the next hop (the hop at
//! the request's offset, whose service must be a port number) and relays bytes both
//! ways, so `saprouter` + `sap-ni` simulators form a working chain. When more hops
//! follow, it passes the route request on (one hop further, as SAProuter does) and the
//! last router's `NI_PONG` or `NI_RTERR` travels back; the last router answers
//! `NI_PONG` itself once connected. Errors are `NI_RTERR` with SAProuter's codes:
//! -90 host unknown, -91 service unknown, -92 connection refused, -93 bad request,
//! -94 not permitted (including a wrong `--password`).
//! Failure modes: `deny` (always -94), `refused` (always -92), `silent`, `garbage`,
//! `slow` (route after `--delay-ms`).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::sap_ni::{read_frame, GARBAGE};
use super::{accept_loop, drain};
use crate::protocol::ni::{self, rc, RouteError, RouteRequest};

/// How the simulator answers route requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Connect to the next hop and relay (NI_PONG once the last hop is reached).
    Ok,
    /// Refuse every route: NI_RTERR -94 (route permission denied).
    Deny,
    /// Answer every route with NI_RTERR -92 (connection refused) without trying.
    Refused,
    /// Accept connections and read, but never answer.
    Silent,
    /// Answer the route request with bytes that are not SAP NI, then close.
    Garbage,
    /// Like ok, but wait --delay-ms before routing.
    Slow,
}

#[derive(Clone, clap::Args)]
pub struct Options {
    /// How to answer route requests.
    #[arg(long, value_enum, default_value_t = Mode::Ok)]
    pub mode: Mode,
    /// Demand this password on the last hop of every route (as a saprouttab entry with
    /// a password does); a missing or wrong one gets NI_RTERR -94.
    #[arg(long)]
    pub password: Option<String>,
    /// Delay before routing in slow mode, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub delay_ms: u64,
    /// Close connections (and relays) idle this many seconds; also the time allowed to
    /// connect to the next hop.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout_secs: u64,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("mode", &self.mode)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("delay_ms", &self.delay_ms)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .finish()
    }
}

/// Serves SAProuter clients on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    options: Options,
    shutdown: CancellationToken,
) -> io::Result<()> {
    accept_loop(listener, shutdown, "saprouter", move |stream, peer| {
        let options = options.clone();
        async move { handle(stream, peer, &options).await }
    })
    .await
}

async fn handle(mut client: TcpStream, peer: SocketAddr, options: &Options) -> io::Result<()> {
    let idle = Duration::from_secs(options.idle_timeout_secs);
    if options.mode == Mode::Silent {
        let read = drain(&mut client, idle).await?;
        info!(%peer, read, "saprouter: stayed silent (mode silent)");
        return Ok(());
    }
    let mut buf = Vec::new();
    let request = loop {
        let Some(payload) = read_frame(&mut client, &mut buf, idle).await? else {
            return Ok(());
        };
        if options.mode == Mode::Garbage {
            client.write_all(GARBAGE).await?;
            info!(%peer, "saprouter: answered garbage (mode garbage)");
            return Ok(());
        }
        match ni::classify(&payload) {
            // NI keep-alive before the route: answer it like any NI peer.
            ni::Message::Ping => client.write_all(&ni::encode_frame(ni::PONG)).await?,
            ni::Message::Route(_) => match RouteRequest::decode(&payload) {
                Ok(request) => break request,
                Err(e) => {
                    let error = format!("invalid route request: {e}");
                    return refuse(&mut client, peer, rc::INTERNAL, &error, "").await;
                }
            },
            _ => {
                let error = format!("expected NI_ROUTE, got {}", ni::preview(&payload));
                return refuse(&mut client, peer, rc::INTERNAL, &error, "").await;
            }
        }
    };
    let Some(next) = request.next_hop() else {
        let error = format!("route offset {} matches no hop", request.offset);
        return refuse(&mut client, peer, rc::INTERNAL, &error, "").await;
    };
    let hop = &request.hops[next];
    let target = format!("{}:{}", hop.host, hop.service);
    info!(%peer, route = %route_text(&request), %target, "saprouter: route requested");
    match options.mode {
        Mode::Deny => {
            let error = format!("route permission denied ({} to {target})", peer.ip());
            return refuse(&mut client, peer, rc::PERMISSION_DENIED, &error, "").await;
        }
        Mode::Refused => {
            let error = format!("partner '{target}' not reached");
            let detail = format!("NiPConnect2: {target}: connection refused");
            return refuse(&mut client, peer, rc::CONNECTION_REFUSED, &error, &detail).await;
        }
        Mode::Slow => tokio::time::sleep(Duration::from_millis(options.delay_ms)).await,
        Mode::Ok | Mode::Silent | Mode::Garbage => {}
    }
    let last = request
        .hops
        .last()
        .map(|h| h.password.as_str())
        .unwrap_or("");
    if options.password.as_deref().is_some_and(|p| p != last) {
        let error = format!("route permission denied ({} to {target})", peer.ip());
        return refuse(
            &mut client,
            peer,
            rc::PERMISSION_DENIED,
            &error,
            "wrong password",
        )
        .await;
    }
    if usize::from(request.rest_nodes) != request.hops.len() - next {
        let error = format!(
            "route says {} hops remain, but {} follow",
            request.rest_nodes,
            request.hops.len() - next
        );
        return refuse(&mut client, peer, rc::INTERNAL, &error, "").await;
    }
    let Ok(port) = hop.service.parse::<u16>() else {
        let error = format!("service '{}' unknown", hop.service);
        return refuse(&mut client, peer, rc::SERVICE_UNKNOWN, &error, "").await;
    };
    let resolved = tokio::time::timeout(idle, tokio::net::lookup_host((hop.host.as_str(), port)))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|addrs| addrs.collect::<Vec<SocketAddr>>())
        .unwrap_or_default();
    if resolved.is_empty() {
        let error = format!("host '{}' unknown", hop.host);
        return refuse(&mut client, peer, rc::HOST_UNKNOWN, &error, "").await;
    }
    let connected = tokio::time::timeout(idle, TcpStream::connect(&resolved[..])).await;
    let mut upstream = match connected {
        Ok(Ok(stream)) => stream,
        failed => {
            let why = match failed {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_string(),
            };
            let error = format!("partner '{target}' not reached");
            let detail = format!("NiPConnect2: {target}: {why}");
            return refuse(&mut client, peer, rc::CONNECTION_REFUSED, &error, &detail).await;
        }
    };
    let _ = upstream.set_nodelay(true);
    match request.forwarded().filter(|f| f.rest_nodes > 0) {
        // More hops: the next router answers for the rest of the route.
        Some(onward) => {
            upstream
                .write_all(&ni::encode_frame(&onward.encode()))
                .await?;
            info!(%peer, %target, "saprouter: passed the route on to the next router");
        }
        None => {
            client.write_all(&ni::encode_frame(ni::PONG)).await?;
            info!(%peer, %target, "saprouter: route accepted (NI_PONG)");
        }
    }
    // Whatever the client sent after its route request belongs to the target.
    upstream.write_all(&buf).await?;
    let (up, down) = relay(client, upstream, idle).await?;
    info!(%peer, %target, up, down, "saprouter: relay ended");
    Ok(())
}

/// Sends an `NI_RTERR` and ends the connection.
async fn refuse(
    client: &mut TcpStream,
    peer: SocketAddr,
    code: i32,
    error: &str,
    detail: &str,
) -> io::Result<()> {
    let answer = RouteError::new(code, error, detail);
    client
        .write_all(&ni::encode_frame(&answer.encode()))
        .await?;
    info!(%peer, code, %error, "saprouter: answered NI_RTERR");
    Ok(())
}

/// The route as SAP writes it, without passwords (for logs).
fn route_text(request: &RouteRequest) -> String {
    request
        .hops
        .iter()
        .map(|h| format!("/H/{}/S/{}", h.host, h.service))
        .collect()
}

/// Copies bytes both ways until either side closes or nothing moves for `idle`.
/// Returns the bytes relayed (client to target, target to client).
async fn relay(client: TcpStream, upstream: TcpStream, idle: Duration) -> io::Result<(u64, u64)> {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();
    let mut up_buf = vec![0u8; 16 * 1024];
    let mut down_buf = vec![0u8; 16 * 1024];
    let (mut up, mut down) = (0u64, 0u64);
    loop {
        tokio::select! {
            read = client_read.read(&mut up_buf) => {
                let n = read?;
                if n == 0 {
                    break;
                }
                upstream_write.write_all(&up_buf[..n]).await?;
                up += n as u64;
            }
            read = upstream_read.read(&mut down_buf) => {
                let n = read?;
                if n == 0 {
                    break;
                }
                client_write.write_all(&down_buf[..n]).await?;
                down += n as u64;
            }
            _ = tokio::time::sleep(idle) => break,
        }
    }
    let _ = upstream_write.shutdown().await;
    let _ = client_write.shutdown().await;
    Ok((up, down))
}
