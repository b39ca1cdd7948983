//! The dashboard: tunnels, checks, connectors and relays, the system. The page embeds the
//! live part once; htmx then fetches `/ui/dashboard` every few seconds and swaps it in.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Extension;

use crate::admin::AdminState;
use crate::ui::auth::UiAuth;
use crate::ui::render::{ago, bytes, PageCtx};

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    page: PageCtx,
    live: Live,
}

#[derive(Template)]
#[template(path = "dashboard_live.html")]
struct Live {
    tunnels: Vec<TunnelRow>,
    checks: Vec<CheckRow>,
    connectors: Vec<ConnectorRow>,
    relays: Vec<RelayRow>,
    spool: SpoolBox,
    system: SystemBox,
}

struct TunnelRow {
    name: String,
    kind: &'static str,
    interface: String,
    state: &'static str,
    error: String,
    /// Peers of a WireGuard tunnel, or IKE SAs of an IPsec one, one line each.
    lines: Vec<PeerLine>,
    rx: String,
    tx: String,
}

struct PeerLine {
    name: String,
    detail: String,
    handshake: String,
}

struct CheckRow {
    name: String,
    kind: &'static str,
    target: String,
    state: &'static str,
    latency: String,
    detail: String,
    chart: Vec<Bar>,
}

/// One bar of a check's history chart (an SVG drawn by the template).
struct Bar {
    x: u32,
    height: u32,
    y: u32,
    up: bool,
    title: String,
}

struct ConnectorRow {
    name: String,
    kind: &'static str,
    state: &'static str,
    error: String,
    received: u64,
    refused: u64,
    rejected: u64,
}

struct RelayRow {
    name: String,
    route: String,
    state: &'static str,
    error: String,
    active: u64,
    connections: u64,
    traffic: String,
}

struct SpoolBox {
    events: u64,
    size: String,
    oldest: String,
    dead_letters: u64,
    delivered: u64,
    rate: String,
    uplink: &'static str,
}

struct SystemBox {
    version: &'static str,
    uptime: String,
    cpu: String,
    load: String,
    rss: String,
    memory: String,
    disk: String,
}

/// The previous reading of the counters that make rates (delivery, CPU).
#[derive(Default)]
pub struct Rates {
    last: Mutex<Option<(Instant, u64, f64)>>,
}

impl Rates {
    /// (events per second delivered, CPU percent) since the previous call, when one was
    /// at least a second ago.
    fn sample(&self, delivered: u64, cpu_seconds: f64) -> (Option<f64>, Option<f64>) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let result = match *last {
            Some((at, prev_delivered, prev_cpu)) => {
                let elapsed = now.duration_since(at).as_secs_f64();
                if elapsed < 1.0 {
                    return (None, None);
                }
                (
                    Some(delivered.saturating_sub(prev_delivered) as f64 / elapsed),
                    Some(((cpu_seconds - prev_cpu) / elapsed * 100.0).max(0.0)),
                )
            }
            None => (None, None),
        };
        *last = Some((now, delivered, cpu_seconds));
        result
    }
}

pub async fn page(
    State(state): State<Arc<AdminState>>,
    Extension(auth): Extension<UiAuth>,
) -> Response {
    crate::ui::render::page(&DashboardPage {
        page: PageCtx::new(&state, &auth.session, "dashboard"),
        live: live_view(&state),
    })
}

pub async fn live(State(state): State<Arc<AdminState>>) -> Response {
    crate::ui::render::page(&live_view(&state))
}

fn live_view(state: &AdminState) -> Live {
    let now = SystemTime::now();
    let age = |t: Option<SystemTime>| {
        t.and_then(|t| now.duration_since(t).ok())
            .map_or_else(|| "never".to_string(), |d| ago(d.as_secs()))
    };
    let tunnels = state
        .tunnels
        .statuses()
        .iter()
        .map(|t| {
            let state = match (t.running, t.up) {
                (false, _) => "failed",
                (true, true) => "up",
                (true, false) => "down",
            };
            let (mut rx, mut tx) = (0u64, 0u64);
            let mut lines: Vec<PeerLine> = t
                .peers
                .iter()
                .map(|p| {
                    rx += p.rx_bytes;
                    tx += p.tx_bytes;
                    PeerLine {
                        name: p.name.clone(),
                        detail: p
                            .endpoint
                            .map_or_else(|| "no endpoint yet".to_string(), |e| e.to_string()),
                        handshake: age(p.last_handshake),
                    }
                })
                .collect();
            if let Some(ipsec) = &t.ipsec {
                rx += ipsec.bytes_in;
                tx += ipsec.bytes_out;
                lines.extend(ipsec.ike_sas.iter().map(|sa| PeerLine {
                    name: format!("IKE SA {}", sa.remote),
                    detail: format!(
                        "{}, {} CHILD SA(s){}",
                        sa.state,
                        sa.children.len(),
                        sa.algorithms
                            .as_deref()
                            .map(|a| format!(", {a}"))
                            .unwrap_or_default()
                    ),
                    handshake: age(sa.established),
                }));
                if ipsec.ike_sas.is_empty() {
                    if let Some(failure) = &ipsec.last_failure {
                        lines.push(PeerLine {
                            name: "last failure".to_string(),
                            detail: failure.clone(),
                            handshake: String::new(),
                        });
                    }
                }
            }
            TunnelRow {
                name: t.name.clone(),
                kind: t.kind,
                interface: t.interface.clone(),
                state,
                error: t.error.clone().unwrap_or_default(),
                lines,
                rx: bytes(rx),
                tx: bytes(tx),
            }
        })
        .collect();

    let checks = state
        .engine
        .snapshot()
        .iter()
        .map(|s| {
            let last = s.state.last.as_ref();
            CheckRow {
                name: s.check.name.clone(),
                kind: s.check.probe.kind(),
                target: s.check.probe.target_display(),
                state: s.state.status.as_str(),
                latency: last.map_or_else(
                    || "-".to_string(),
                    |o| format!("{:.1} ms", o.duration.as_secs_f64() * 1000.0),
                ),
                detail: last.map(|o| o.detail.clone()).unwrap_or_default(),
                chart: chart(s.state.history.iter()),
            }
        })
        .collect();

    let connectors = state
        .forwarding
        .sources
        .statuses()
        .iter()
        .map(|c| ConnectorRow {
            name: c.config.name.clone(),
            kind: c.config.source.kind(),
            state: if c.error.is_some() {
                "failed"
            } else {
                "running"
            },
            error: c.error.clone().unwrap_or_default(),
            received: c.counters.received.load(Ordering::Relaxed),
            refused: c.counters.refused.load(Ordering::Relaxed),
            rejected: c.counters.rejected.load(Ordering::Relaxed),
        })
        .collect();
    let relays = state
        .forwarding
        .relays
        .statuses()
        .iter()
        .map(|r| {
            let c = &r.counters;
            RelayRow {
                name: r.config.name.clone(),
                route: format!("{} → {}", r.config.listen, r.config.target),
                state: if r.error.is_some() {
                    "failed"
                } else {
                    "running"
                },
                error: r.error.clone().unwrap_or_default(),
                active: c.active_connections.load(Ordering::Relaxed),
                connections: c.connections_total.load(Ordering::Relaxed),
                traffic: format!(
                    "{} out, {} back",
                    bytes(c.bytes_to_target_total.load(Ordering::Relaxed)),
                    bytes(c.bytes_from_target_total.load(Ordering::Relaxed))
                ),
            }
        })
        .collect();

    let stats = state.forwarding.spool.stats();
    let uplink = &state.forwarding.uplink_counters;
    let delivered = uplink.delivered.load(Ordering::Relaxed);
    let process = crate::ui::system::process_reading();
    let (rate, cpu) = state
        .rates
        .sample(delivered, process.as_ref().map_or(0.0, |p| p.cpu_seconds));
    let spool = SpoolBox {
        events: stats.events,
        size: bytes(stats.bytes),
        oldest: stats
            .oldest_event_age()
            .map_or_else(|| "-".to_string(), |a| ago(a.as_secs())),
        dead_letters: stats.dead_letters,
        delivered,
        rate: rate.map_or_else(|| "measuring…".to_string(), |r| format!("{r:.1} events/s")),
        uplink: if state.applier.running().uplink.is_none() {
            "not configured"
        } else if uplink.circuit_open.load(Ordering::Relaxed) {
            "failing (circuit open)"
        } else {
            "delivering"
        },
    };
    let memory = crate::ui::system::memory();
    let disk = crate::ui::system::disk(&state.applier.running().appliance.state_dir);
    let system = SystemBox {
        version: env!("CARGO_PKG_VERSION"),
        uptime: humantime::format_duration(std::time::Duration::from_secs(
            state.started.elapsed().as_secs(),
        ))
        .to_string(),
        cpu: cpu.map_or_else(|| "measuring…".to_string(), |c| format!("{c:.1} %")),
        load: crate::ui::system::load().unwrap_or_else(|| "-".to_string()),
        rss: process.map_or_else(|| "-".to_string(), |p| bytes(p.rss_bytes)),
        memory: memory.map_or_else(
            || "-".to_string(),
            |(total, available)| format!("{} free of {}", bytes(available), bytes(total)),
        ),
        disk: disk.map_or_else(
            || "-".to_string(),
            |(total, available)| format!("{} free of {}", bytes(available), bytes(total)),
        ),
    };
    Live {
        tunnels,
        checks,
        connectors,
        relays,
        spool,
        system,
    }
}

/// Width of the history chart in bars; older runs scroll off.
const CHART_BARS: usize = 30;
const CHART_HEIGHT: u32 = 24;

/// Bars for the newest runs: a successful run's height is its duration against the slowest
/// success shown (so latency changes stand out whatever the timeout), a failed run is a
/// full red bar (so an outage does).
fn chart<'a>(
    history: impl DoubleEndedIterator<Item = &'a siteward_connectors::Outcome> + ExactSizeIterator,
) -> Vec<Bar> {
    let skip = history.len().saturating_sub(CHART_BARS);
    let shown: Vec<&siteward_connectors::Outcome> = history.skip(skip).collect();
    let slowest = shown
        .iter()
        .filter(|o| o.up())
        .map(|o| o.duration.as_secs_f64())
        .fold(0.0, f64::max);
    shown
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            let fraction = if o.up() && slowest > 0.0 {
                (o.duration.as_secs_f64() / slowest).clamp(0.15, 1.0)
            } else {
                1.0
            };
            let height = ((fraction * f64::from(CHART_HEIGHT)).round() as u32).max(2);
            Bar {
                x: i as u32 * 4,
                height,
                y: CHART_HEIGHT - height,
                up: o.up(),
                title: format!(
                    "{}: {} in {:.1} ms",
                    humantime::format_rfc3339_seconds(o.at),
                    o.reason.as_str(),
                    o.duration.as_secs_f64() * 1000.0
                ),
            }
        })
        .collect()
}
