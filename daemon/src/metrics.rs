//! `GET /metrics` on the plain-HTTP metrics listener, in the Prometheus text format 0.0.4.
//!
//! Series are rendered at scrape time from live state (the engine's counters), not kept in
//! a metrics registry: a check removed by a reload then disappears from the next scrape
//! instead of lingering as a stale `siteward_check_up 0` that would page someone.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use siteward_connectors::engine::{Engine, Histogram, Status};
use siteward_connectors::Reason;
use siteward_netstack::{TunnelStatus, Tunnels};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::forwarding::Forwarding;
use siteward_config::Source;
use siteward_connectors::relay::RelayCounters;
use siteward_connectors::sources::ConnectorCounters;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Counters of the daemon itself (not of any one subsystem).
#[derive(Default)]
pub struct DaemonStats {
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
    /// Unix seconds of the last successful (re)load.
    pub last_reload_success: AtomicU64,
}

pub struct MetricsState {
    pub engine: Arc<Engine>,
    pub tunnels: Arc<Tunnels>,
    pub forwarding: Arc<Forwarding>,
    pub stats: Arc<DaemonStats>,
}

/// Serves `/metrics` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    state: Arc<MetricsState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn scrape(State(state): State<Arc<MetricsState>>) -> Response {
    let body = render(&state);
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// The whole exposition.
pub fn render(state: &MetricsState) -> String {
    let stats = &state.stats;
    let mut out = Exposition::default();
    out.family(
        "siteward_build_info",
        "gauge",
        "Build of the running daemon; always 1.",
    );
    out.sample(
        "siteward_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );

    out.family(
        "siteward_config_reloads_total",
        "counter",
        "Configuration reloads by result.",
    );
    out.sample(
        "siteward_config_reloads_total",
        &[("result", "success")],
        stats.reloads_ok.load(Ordering::Relaxed) as f64,
    );
    out.sample(
        "siteward_config_reloads_total",
        &[("result", "failure")],
        stats.reloads_failed.load(Ordering::Relaxed) as f64,
    );
    out.family(
        "siteward_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the running configuration was loaded (Unix time).",
    );
    out.sample(
        "siteward_config_last_reload_success_timestamp_seconds",
        &[],
        stats.last_reload_success.load(Ordering::Relaxed) as f64,
    );

    render_checks(&mut out, &state.engine);
    let tunnels = state.tunnels.statuses();
    render_tunnels(&mut out, &tunnels);
    render_ipsec(&mut out, &tunnels);
    render_forwarding(&mut out, &state.forwarding);
    render_relays(&mut out, &state.forwarding);
    render_process(&mut out);
    out.text
}

fn render_checks(out: &mut Exposition, engine: &Engine) {
    let checks = engine.metrics();

    out.family(
        "siteward_check_up",
        "gauge",
        "1 if the check is up, 0 if down, after rise/fall; absent until the state is known.",
    );
    for s in &checks {
        let value = match s.status {
            Status::Up => 1.0,
            Status::Down => 0.0,
            Status::Unknown => continue,
        };
        out.sample(
            "siteward_check_up",
            &[("check", &s.check.name), ("kind", s.check.probe.kind())],
            value,
        );
    }

    out.family(
        "siteward_check_runs_total",
        "counter",
        "Check runs by result (ok or the failure reason).",
    );
    for s in &checks {
        for reason in Reason::ALL {
            let count = s.counters.runs[reason.index()];
            if count > 0 {
                out.sample(
                    "siteward_check_runs_total",
                    &[
                        ("check", &s.check.name),
                        ("kind", s.check.probe.kind()),
                        ("result", reason.as_str()),
                    ],
                    count as f64,
                );
            }
        }
    }

    out.family(
        "siteward_check_duration_seconds",
        "histogram",
        "How long check runs took.",
    );
    for s in &checks {
        out.histogram(
            "siteward_check_duration_seconds",
            &[("check", &s.check.name), ("kind", s.check.probe.kind())],
            &s.counters.duration,
        );
    }

    out.family(
        "siteward_check_tls_cert_expiry_timestamp_seconds",
        "gauge",
        "notAfter of the certificate the peer presented (Unix time).",
    );
    for s in &checks {
        if let Some(not_after) = s.counters.tls_not_after {
            out.sample(
                "siteward_check_tls_cert_expiry_timestamp_seconds",
                &[("check", &s.check.name), ("kind", s.check.probe.kind())],
                not_after as f64,
            );
        }
    }

    out.family(
        "siteward_check_schedule_lateness_seconds",
        "histogram",
        "How late scheduled check runs started, over all checks.",
    );
    out.histogram(
        "siteward_check_schedule_lateness_seconds",
        &[],
        &engine.lateness(),
    );
}

fn render_tunnels(out: &mut Exposition, tunnels: &[TunnelStatus]) {
    out.family(
        "siteward_tunnel_up",
        "gauge",
        "1 if the tunnel runs and a peer has a live session (handshake in the last 180 s).",
    );
    for t in tunnels {
        out.sample(
            "siteward_tunnel_up",
            &[("tunnel", &t.name), ("kind", t.kind)],
            if t.up { 1.0 } else { 0.0 },
        );
    }
    for (name, help, bytes) in [
        (
            "siteward_tunnel_receive_bytes_total",
            "Bytes of the datagrams received from the peer.",
            (|p: &siteward_netstack::PeerStatus| p.rx_bytes) as fn(&_) -> u64,
        ),
        (
            "siteward_tunnel_transmit_bytes_total",
            "Bytes of the datagrams sent to the peer.",
            |p: &siteward_netstack::PeerStatus| p.tx_bytes,
        ),
    ] {
        out.family(name, "counter", help);
        for t in tunnels {
            for p in &t.peers {
                out.sample(
                    name,
                    &[("tunnel", &t.name), ("kind", t.kind), ("peer", &p.name)],
                    bytes(p) as f64,
                );
            }
        }
    }
    out.family(
        "siteward_tunnel_peer_last_handshake_timestamp_seconds",
        "gauge",
        "When the peer last completed a handshake (Unix time); absent before the first.",
    );
    for t in tunnels {
        for p in &t.peers {
            let Some(at) = p.last_handshake else { continue };
            let unix = at
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            out.sample(
                "siteward_tunnel_peer_last_handshake_timestamp_seconds",
                &[("tunnel", &t.name), ("peer", &p.name)],
                unix,
            );
        }
    }
    out.family(
        "siteward_tunnel_packets_dropped_total",
        "counter",
        "Packets the tunnel dropped, by reason.",
    );
    for t in tunnels {
        for (reason, count) in &t.dropped {
            out.sample(
                "siteward_tunnel_packets_dropped_total",
                &[("tunnel", &t.name), ("reason", reason)],
                *count as f64,
            );
        }
    }
}

/// The IPsec-only families; IPsec tunnels also appear in every `siteward_tunnel_*` one.
fn render_ipsec(out: &mut Exposition, tunnels: &[TunnelStatus]) {
    let ipsec: Vec<(&str, &siteward_netstack::ipsec::status::IpsecView)> = tunnels
        .iter()
        .filter_map(|t| t.ipsec.as_ref().map(|v| (t.name.as_str(), v)))
        .collect();
    out.family(
        "siteward_ipsec_rekeys_total",
        "counter",
        "Completed rekeys of the tunnel's IKE SA (sa=\"ike\") and CHILD_SAs (sa=\"child\").",
    );
    for (tunnel, view) in &ipsec {
        for (sa, count) in [("ike", view.ike_rekeys), ("child", view.child_rekeys)] {
            out.sample(
                "siteward_ipsec_rekeys_total",
                &[("tunnel", tunnel), ("sa", sa)],
                count as f64,
            );
        }
    }
    for (name, help, value) in [
        (
            "siteward_ipsec_auth_failures_total",
            "IKE SAs that failed authentication, either way.",
            (|v: &siteward_netstack::ipsec::status::IpsecView| v.auth_failures) as fn(&_) -> u64,
        ),
        (
            "siteward_ipsec_replay_drops_total",
            "ESP packets dropped as replays (outside or already seen in the window).",
            |v: &siteward_netstack::ipsec::status::IpsecView| v.replay_drops,
        ),
    ] {
        out.family(name, "counter", help);
        for (tunnel, view) in &ipsec {
            out.sample(name, &[("tunnel", tunnel)], value(view) as f64);
        }
    }
}

fn render_process(out: &mut Exposition) {
    let m = metrics_process::collector::collect();
    let gauges: [(&str, &str, &str, Option<f64>); 8] = [
        (
            "process_cpu_seconds_total",
            "counter",
            "Total user and system CPU time spent in seconds.",
            m.cpu_seconds_total,
        ),
        (
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            m.open_fds.map(|v| v as f64),
        ),
        (
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            m.max_fds.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            m.virtual_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_virtual_memory_max_bytes",
            "gauge",
            "Maximum amount of virtual memory available in bytes.",
            m.virtual_memory_max_bytes.map(|v| v as f64),
        ),
        (
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            m.resident_memory_bytes.map(|v| v as f64),
        ),
        (
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since unix epoch in seconds.",
            m.start_time_seconds.map(|v| v as f64),
        ),
        (
            "process_threads",
            "gauge",
            "Number of OS threads in the process.",
            m.threads.map(|v| v as f64),
        ),
    ];
    for (name, kind, help, value) in gauges {
        if let Some(value) = value {
            out.single(name, kind, help, value);
        }
    }
}

/// The spool, the connectors that feed it and the uplink that drains it.
fn render_forwarding(out: &mut Exposition, forwarding: &Forwarding) {
    let spool = forwarding.spool.stats();
    let age = spool.oldest_event_age().unwrap_or_default().as_secs_f64();
    for (name, kind, help, value) in [
        (
            "siteward_spool_events",
            "gauge",
            "Events waiting in the spool for the uplink.",
            spool.events as f64,
        ),
        (
            "siteward_spool_bytes",
            "gauge",
            "Bytes of the events waiting in the spool (what its bound counts).",
            spool.bytes as f64,
        ),
        (
            "siteward_spool_max_bytes",
            "gauge",
            "The spool's bound on siteward_spool_bytes ([spool] max_bytes).",
            forwarding.spool.max_bytes() as f64,
        ),
        (
            "siteward_spool_oldest_event_age_seconds",
            "gauge",
            "Age of the oldest waiting event; 0 when the spool is empty.",
            age,
        ),
        (
            "siteward_spool_dead_letters",
            "gauge",
            "Events the platform refused, kept for replay or purge.",
            spool.dead_letters as f64,
        ),
        (
            "siteward_spool_dropped_total",
            "counter",
            "Events deleted by when_full = \"drop_oldest\" to make room (since start).",
            spool.dropped as f64,
        ),
        (
            "siteward_spool_commits_total",
            "counter",
            "Durable commits (fsyncs) of the spool since start; fewer than events under load.",
            spool.commits as f64,
        ),
    ] {
        out.single(name, kind, help, value);
    }

    let sources = forwarding.sources.statuses();
    type Read = fn(&ConnectorCounters) -> u64;
    let families: [(&str, &str, Read); 3] = [
        (
            "siteward_connector_events_received_total",
            "Events a connector handed to the spool, durable.",
            |c| c.received.load(Ordering::Relaxed),
        ),
        (
            "siteward_connector_rejected_total",
            "Malformed input a connector refused (bad signature, bad syslog line, bad CSV...).",
            |c| c.rejected.load(Ordering::Relaxed),
        ),
        (
            "siteward_connector_refused_total",
            "Events the spool could not take (full with when_full = \"block\", or failing); once each, however often retried.",
            |c| c.refused.load(Ordering::Relaxed),
        ),
    ];
    for (name, help, read) in families {
        out.family(name, "counter", help);
        for source in &sources {
            let labels = [("connector", source.config.name.as_str())];
            out.sample(name, &labels, read(&source.counters) as f64);
        }
    }
    out.family(
        "siteward_connector_up",
        "gauge",
        "1 if the connector runs (and, for asterisk-ami, is logged in), else 0.",
    );
    for source in &sources {
        let up = source.error.is_none()
            && (!matches!(source.config.source, Source::AsteriskAmi(_))
                || source.counters.connected.load(Ordering::Relaxed) == 1);
        let labels = [
            ("connector", source.config.name.as_str()),
            ("kind", source.config.source.kind()),
        ];
        out.sample("siteward_connector_up", &labels, f64::from(u8::from(up)));
    }

    let uplink = &forwarding.uplink_counters;
    let count = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed) as f64;
    out.single(
        "siteward_uplink_events_delivered_total",
        "counter",
        "Events the platform accepted (2xx).",
        count(&uplink.delivered),
    );
    out.single(
        "siteward_uplink_dead_letter_total",
        "counter",
        "Events the platform refused for good (4xx), moved to the dead letters.",
        count(&uplink.dead_lettered),
    );
    out.single(
        "siteward_uplink_failed_attempts_total",
        "counter",
        "Deliveries that failed and will be retried (408, 429, 5xx, timeouts, connection errors).",
        count(&uplink.failed_attempts),
    );
    out.single(
        "siteward_uplink_circuit_open",
        "gauge",
        "1 while the circuit breaker holds deliveries back to probes.",
        f64::from(u8::from(uplink.circuit_open.load(Ordering::Relaxed))),
    );
}

fn render_relays(out: &mut Exposition, forwarding: &Forwarding) {
    let relays = forwarding.relays.statuses();
    type Read = fn(&RelayCounters) -> u64;
    let families: [(&str, &str, &str, Read); 7] = [
        (
            "siteward_relay_connections_total",
            "counter",
            "Connections relayed (let through and connected to the target).",
            |c| c.connections_total.load(Ordering::Relaxed),
        ),
        (
            "siteward_relay_active_connections",
            "gauge",
            "Connections held now (connecting or relaying).",
            |c| c.active_connections.load(Ordering::Relaxed),
        ),
        (
            "siteward_relay_refused_total",
            "counter",
            "Connections closed at once: source outside allow.",
            |c| c.refused_total.load(Ordering::Relaxed),
        ),
        (
            "siteward_relay_rejected_full_total",
            "counter",
            "Connections closed at once: max_connections already held.",
            |c| c.rejected_full_total.load(Ordering::Relaxed),
        ),
        (
            "siteward_relay_connect_failures_total",
            "counter",
            "Connections closed because the target could not be reached.",
            |c| c.connect_failures_total.load(Ordering::Relaxed),
        ),
        (
            "siteward_relay_bytes_to_target_total",
            "counter",
            "Bytes relayed from clients to the target.",
            |c| c.bytes_to_target_total.load(Ordering::Relaxed),
        ),
        (
            "siteward_relay_bytes_from_target_total",
            "counter",
            "Bytes relayed from the target back to clients.",
            |c| c.bytes_from_target_total.load(Ordering::Relaxed),
        ),
    ];
    for (name, kind, help, read) in families {
        out.family(name, kind, help);
        for relay in &relays {
            let labels = [("relay", relay.config.name.as_str())];
            out.sample(name, &labels, read(&relay.counters) as f64);
        }
    }
    out.family(
        "siteward_relay_up",
        "gauge",
        "1 if the relay listens, 0 if it could not start.",
    );
    for relay in &relays {
        let labels = [("relay", relay.config.name.as_str())];
        out.sample(
            "siteward_relay_up",
            &labels,
            f64::from(u8::from(relay.error.is_none())),
        );
    }
}

/// A writer of the Prometheus text format.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(
            self.text,
            "# HELP {name} {}",
            help.replace('\\', "\\\\").replace('\n', "\\n")
        );
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    /// A family of one sample without labels.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        self.labels(labels, None);
        self.text.push(' ');
        self.value(value);
        self.text.push('\n');
    }

    fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &Histogram) {
        for (bound, count) in histogram.cumulative() {
            let _ = write!(self.text, "{name}_bucket");
            let le = if bound.is_infinite() {
                "+Inf".to_string()
            } else {
                bound.to_string()
            };
            self.labels(labels, Some(&le));
            let _ = writeln!(self.text, " {count}");
        }
        self.sample(&format!("{name}_sum"), labels, histogram.sum());
        self.sample(&format!("{name}_count"), labels, histogram.count() as f64);
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.text.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (key, value)) in all.enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            let _ = write!(self.text, "{key}=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        self.text.push('}');
    }

    fn value(&mut self, value: f64) {
        if value.is_nan() {
            self.text.push_str("NaN");
        } else if value.is_infinite() {
            self.text
                .push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(self.text, "{value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut out = Exposition::default();
        out.sample("x", &[("a", "q\"b\\s\nn")], 1.5);
        assert_eq!(out.text, "x{a=\"q\\\"b\\\\s\\nn\"} 1.5\n");
    }

    #[test]
    fn tunnels_render_every_family() {
        let status = TunnelStatus {
            name: "cloud".into(),
            kind: "wireguard",
            interface: "wg0".into(),
            running: true,
            up: true,
            listen_port: Some(51820),
            error: None,
            peers: vec![siteward_netstack::PeerStatus {
                name: "gw".into(),
                public_key: "k".into(),
                endpoint: None,
                last_handshake: Some(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
                ),
                rx_bytes: 7,
                tx_bytes: 9,
                persistent_keepalive: None,
                allowed_ips: vec![],
            }],
            dropped: vec![("replay", 3)],
            ipsec: None,
        };
        let mut out = Exposition::default();
        render_tunnels(&mut out, &[status]);
        for line in [
            "siteward_tunnel_up{tunnel=\"cloud\",kind=\"wireguard\"} 1",
            "siteward_tunnel_receive_bytes_total{tunnel=\"cloud\",kind=\"wireguard\",peer=\"gw\"} 7",
            "siteward_tunnel_transmit_bytes_total{tunnel=\"cloud\",kind=\"wireguard\",peer=\"gw\"} 9",
            "siteward_tunnel_peer_last_handshake_timestamp_seconds{tunnel=\"cloud\",peer=\"gw\"} 1700000000",
            "siteward_tunnel_packets_dropped_total{tunnel=\"cloud\",reason=\"replay\"} 3",
        ] {
            assert!(out.text.contains(line), "missing {line} in\n{}", out.text);
        }
    }

    #[test]
    fn ipsec_families_render_per_tunnel() {
        let status = TunnelStatus {
            name: "hq".into(),
            kind: "ipsec",
            interface: "ipsec-hq".into(),
            running: true,
            up: false,
            listen_port: Some(500),
            error: None,
            peers: vec![],
            dropped: vec![],
            ipsec: Some(siteward_netstack::ipsec::status::IpsecView {
                ike_rekeys: 2,
                child_rekeys: 5,
                auth_failures: 1,
                replay_drops: 4,
                ..Default::default()
            }),
        };
        let mut out = Exposition::default();
        render_ipsec(&mut out, &[status]);
        for line in [
            "siteward_ipsec_rekeys_total{tunnel=\"hq\",sa=\"ike\"} 2",
            "siteward_ipsec_rekeys_total{tunnel=\"hq\",sa=\"child\"} 5",
            "siteward_ipsec_auth_failures_total{tunnel=\"hq\"} 1",
            "siteward_ipsec_replay_drops_total{tunnel=\"hq\"} 4",
        ] {
            assert!(out.text.contains(line), "missing {line} in\n{}", out.text);
        }
    }

    #[test]
    fn histogram_renders_buckets_sum_count() {
        let mut h = Histogram::new(&[0.5]);
        h.observe(0.25);
        h.observe(2.0);
        let mut out = Exposition::default();
        out.histogram("d", &[("check", "c")], &h);
        assert_eq!(
            out.text,
            "d_bucket{check=\"c\",le=\"0.5\"} 1\nd_bucket{check=\"c\",le=\"+Inf\"} 2\nd_sum{check=\"c\"} 2.25\nd_count{check=\"c\"} 2\n"
        );
    }
}
