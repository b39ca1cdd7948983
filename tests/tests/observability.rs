//! The observability shipped in `image/`: the Prometheus alerting rules pass `promtool check
//! rules` and their own unit tests, the Grafana dashboard is well formed (every panel has a
//! data source and queries, every query is valid PromQL), and every metric either of them
//! uses is in a live scrape of a daemon running everything they watch.
//!
//! ```text
//!   namespace site                                     namespace cloud
//!   siteward: checks (tcp, tls against https_server),  wireguard-go 10.91.0.2/24
//!   WireGuard "cloud" 10.91.0.1/24, IPsec "hq",
//!   webhook connector, uplink to the test platform,
//!   relay
//!   veth 192.0.2.1/24 :51820    <------------------->  veth 192.0.2.2/24 :51820
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use siteward_tests::http::{self, Request};
use siteward_tests::ipsec::random_psk;
use siteward_tests::netns::{self, unique_ifname};
use siteward_tests::wireguard::{ping, underlay, WG_PORT};
use siteward_tests::{
    promtool_check, repo_root, wait_until, Daemon, Netns, Platform, TestCert, WgKeys, WgPeer,
    WireguardGo, STATE_TIMEOUT,
};

/// How long the lab gets until every series is exported: a WireGuard handshake, a TLS
/// check's first runs, a delivery and a dropped packet.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(60);
/// The platform's bearer token in the lab's `[uplink]`.
const PLATFORM_TOKEN: &str = "platform-token-0123456789";

fn rules_file() -> PathBuf {
    repo_root().join("image/prometheus/siteward-alerts.yml")
}

fn rules_test_file() -> PathBuf {
    repo_root().join("image/prometheus/siteward-alerts.test.yml")
}

fn dashboard_file() -> PathBuf {
    repo_root().join("image/grafana/siteward-dashboard.json")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Runs `promtool ARGS...`: whether it succeeded, and what it printed.
fn promtool<I, S>(args: I) -> (bool, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("running promtool (scripts/install-test-deps installs it)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The metric names in a text of PromQL (or of a file holding PromQL): every identifier
/// starting `siteward_` or `process_`, the two prefixes the daemon exports. Identifiers are
/// maximal runs of `[A-Za-z0-9_:]`, so label names, file names (`siteward-alerts.yml`),
/// alert names (`SitewardDown`) and `job="siteward"` are not taken for metrics; a label
/// value shaped like a metric name would be (stricter, never looser). `up` is left out on
/// purpose: the scraper makes it, not the daemon.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    text.split(|c: char| !is_ident(c))
        .filter(|token| token.starts_with("siteward_") || token.starts_with("process_"))
        .map(str::to_string)
        .collect()
}

/// Values of the `- alert: NAME` lines (rules) or `alertname: NAME` lines (unit tests).
fn yaml_values_of(text: &str, key: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches("- ");
            line.strip_prefix(key)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|value| value.trim().to_string())
        })
        .filter(|value| !value.is_empty())
        .collect()
}

fn dashboard() -> Value {
    let path = dashboard_file();
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel of the dashboard, also those nested in (collapsed) rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel);
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Every string under one of `keys`, anywhere in `value`.
fn strings_under<'a>(value: &'a Value, keys: &[&str], out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match inner {
                    Value::String(text) if keys.contains(&key.as_str()) => out.push(text),
                    _ => strings_under(inner, keys, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| strings_under(v, keys, out)),
        _ => {}
    }
}

/// The PromQL of the dashboard: panel targets and annotation queries.
fn dashboard_exprs(dashboard: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    strings_under(dashboard, &["expr"], &mut out);
    out
}

/// Every metric the alerting rules (expressions and annotation templates) and the dashboard
/// (queries, annotations, template variables) use.
fn used_metric_names() -> BTreeMap<String, &'static str> {
    let mut used = BTreeMap::new();
    for name in metric_names_in(&read(&rules_file())) {
        used.insert(name, "the alerting rules");
    }
    let dashboard = dashboard();
    let mut queries = Vec::new();
    strings_under(&dashboard, &["expr", "query", "definition"], &mut queries);
    for name in queries.iter().flat_map(|q| metric_names_in(q)) {
        used.entry(name).or_insert("the dashboard");
    }
    used
}

#[test]
fn metric_names_are_found_in_promql_and_templates() {
    let names = metric_names_in(
        "histogram_quantile(0.95, sum by (check, le) (rate(siteward_check_duration_seconds_bucket{job=~\"$job\",instance=\"siteward_x\"}[5m])))\n\
         up{job=\"siteward\"} == 0 and on(instance) process_start_time_seconds\n\
         {{ printf \"siteward_check_runs_total{check=%q}\" $labels.check | query }} SitewardDown siteward-alerts.yml",
    );
    let expected: BTreeSet<String> = [
        "siteward_check_duration_seconds_bucket",
        "siteward_x",
        "process_start_time_seconds",
        "siteward_check_runs_total",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let (ok, report) = promtool([
        OsStr::new("check"),
        OsStr::new("rules"),
        rules_file().as_os_str(),
    ]);
    assert!(ok, "promtool check rules failed:\n{report}");
    assert!(report.contains("SUCCESS"), "{report}");

    let (ok, report) = promtool([
        OsStr::new("test"),
        OsStr::new("rules"),
        rules_test_file().as_os_str(),
    ]);
    assert!(ok, "promtool test rules failed:\n{report}");

    // Every alert has a unit test, and the tests name no alert that does not exist.
    let alerts = yaml_values_of(&read(&rules_file()), "alert");
    let tested = yaml_values_of(&read(&rules_test_file()), "alertname");
    for required in [
        "SitewardDown",
        "SitewardTunnelDown",
        "SitewardCheckDown",
        "SitewardSpoolGrowing",
        "SitewardUplinkCircuitOpen",
        "SitewardCertificateExpiring",
    ] {
        assert!(
            alerts.contains(required),
            "no alert {required} in {alerts:?}"
        );
    }
    assert_eq!(alerts, tested, "alerts and their unit tests differ");
}

#[test]
fn the_dashboard_is_well_formed_and_its_queries_are_valid_promql() {
    let dashboard = dashboard();
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 39),
        "schemaVersion: {}",
        dashboard["schemaVersion"]
    );
    assert_eq!(dashboard["uid"], "siteward");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(variable("datasource")["type"], "datasource");
    assert_eq!(variable("datasource")["query"], "prometheus");
    assert_eq!(variable("instance")["type"], "query");
    assert_eq!(variable("job")["type"], "query");
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${datasource}"});

    let panels = panels(&dashboard);
    let mut ids = HashSet::new();
    let mut areas: Vec<(&str, [u64; 4])> = Vec::new();
    let mut data_panels = 0;
    for panel in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {panel}");
        assert!(
            ids.insert(panel["id"].as_u64().expect("a numeric panel id")),
            "panel id {} used twice",
            panel["id"]
        );
        let grid = &panel["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| {
            grid[k]
                .as_u64()
                .unwrap_or_else(|| panic!("panel {title}: gridPos.{k}: {grid}"))
        });
        assert!(w >= 1 && h >= 1 && x + w <= 24, "panel {title}: {grid}");
        for (other, [ox, oy, ow, oh]) in &areas {
            let apart = x + w <= *ox || ox + ow <= x || y + h <= *oy || oy + oh <= y;
            assert!(apart, "panels {title} and {other} overlap");
        }
        areas.push((title, [x, y, w, h]));
        if panel["type"] == "row" {
            continue;
        }
        data_panels += 1;
        assert_eq!(panel["datasource"], datasource, "panel {title}");
        let targets = panel["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title} has no query");
        let mut ref_ids = HashSet::new();
        for target in targets {
            assert!(
                target["expr"]
                    .as_str()
                    .is_some_and(|e| !e.trim().is_empty()),
                "panel {title}: a target without expr: {target}"
            );
            assert!(
                ref_ids.insert(target["refId"].as_str().expect("refId")),
                "panel {title}: refId {} twice",
                target["refId"]
            );
            if !target["datasource"].is_null() {
                assert_eq!(target["datasource"], datasource, "panel {title}");
            }
        }
    }
    assert!(data_panels >= 20, "only {data_panels} panels");
    for row in [
        "Overview",
        "Checks",
        "Tunnels",
        "Connectors, spool and uplink",
        "Relays",
        "Daemon",
    ] {
        assert!(
            panels
                .iter()
                .any(|p| p["type"] == "row" && p["title"] == row),
            "no row {row}"
        );
    }

    // promtool parses every query, as recording rules of a scratch file, with Grafana's
    // variables replaced by what Grafana would put there.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in dashboard_exprs(&dashboard).iter().enumerate() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$__range", "1h")
            .replace("$job", "siteward")
            .replace("$instance", "box:9108");
        assert!(!expr.contains('$'), "an unknown variable in {expr}");
        rules += &format!(
            "      - record: dashboard_expr_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).expect("a string")
        );
    }
    let dir = tempfile::tempdir().expect("a scratch directory");
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, &rules).expect("writing the scratch rules");
    let (ok, report) = promtool([OsStr::new("check"), OsStr::new("rules"), path.as_os_str()]);
    assert!(
        ok,
        "a dashboard query is not valid PromQL:\n{report}\n{rules}"
    );
}

/// A value dropped inside a network namespace: the test platform's `Drop` wakes its
/// accept loop by connecting to its own address, which only answers from inside.
struct DropInside<T: Send + 'static> {
    netns: String,
    value: Option<T>,
}

impl<T: Send + 'static> Drop for DropInside<T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            netns::in_netns(&self.netns, move || drop(value));
        }
    }
}

#[test]
fn every_metric_the_rules_and_the_dashboard_use_is_in_a_live_scrape() {
    let used = used_metric_names();
    for core in [
        "siteward_check_up",
        "siteward_check_tls_cert_expiry_timestamp_seconds",
        "siteward_check_duration_seconds_bucket",
        "siteward_tunnel_up",
        "siteward_tunnel_peer_last_handshake_timestamp_seconds",
        "siteward_spool_events",
        "siteward_spool_oldest_event_age_seconds",
        "siteward_uplink_circuit_open",
        "siteward_relay_up",
        "process_cpu_seconds_total",
    ] {
        assert!(used.contains_key(core), "{core} is not among {used:?}");
    }

    // Namespaces first: they are dropped last, after everything running inside them.
    let site = Netns::new();
    let cloud = Netns::new();
    let (site_dev, cloud_dev) = site.veth_to(&cloud);
    site.addr(&site_dev, "192.0.2.1/24");
    cloud.addr(&cloud_dev, "192.0.2.2/24");

    // The far end of the WireGuard tunnel.
    let site_keys = WgKeys::generate();
    let mut far_end = WireguardGo::start(&cloud, &WgKeys::generate(), WG_PORT, &["10.91.0.2/24"]);
    far_end.add_peer(&WgPeer::new(&site_keys.public, &["10.91.0.1/32"]));

    // A TLS service on the site's LAN, so a tls check exports its certificate's expiry;
    // its port also serves the tcp check and the relay's target.
    let files = tempfile::tempdir().expect("a directory for the certificate");
    let cert = TestCert::generate(files.path(), "erp", (2031, 5, 17));
    let (_server, lan_port) = cert.serve_https(Some(&site));
    let closed_port = site
        .tcp_listener("127.0.0.1:0".parse().expect("an address"))
        .local_addr()
        .expect("a bound port")
        .port();

    // The platform the uplink delivers to, on the site namespace's loopback.
    let platform = DropInside {
        netns: site.name().to_string(),
        value: Some(site.run(Platform::start)),
    };
    let platform_ref = platform.value.as_ref().expect("the platform");

    let config = format!(
        r#"
[uplink]
url = "{platform_url}"
token = "{PLATFORM_TOKEN}"
ca_file = "{platform_ca}"
batch_max_wait = "50ms"
timeout = "3s"
status_interval = "0s"

[[tunnels]]
name = "cloud"
kind = "wireguard"
interface = "{wg_if}"
private_key = "{wg_private}"
listen_port = {WG_PORT}
addresses = ["10.91.0.1/24"]

[[tunnels.peers]]
name = "gw"
public_key = "{wg_far_public}"
endpoint = "{wg_far_endpoint}"
allowed_ips = ["10.91.0.2/32"]
persistent_keepalive = "1s"

[[tunnels]]
name = "hq"
kind = "ipsec"
interface = "{ipsec_if}"
local_addrs = ["192.0.2.1"]
remote_addrs = ["192.0.2.2"]
auth = "psk"
psk = "{psk}"
local_ts = ["10.92.1.0/24"]
remote_ts = ["10.92.2.0/24"]
start = "respond"

[[checks]]
name = "erp-port"
kind = "tcp"
target = "127.0.0.1:{lan_port}"
interval = "300ms"

[[checks]]
name = "erp-cert"
kind = "tls"
target = "127.0.0.1:{lan_port}"
server_name = "localhost"
ca_file = "{cert_pem}"
interval = "300ms"

[[checks]]
name = "closed"
kind = "tcp"
target = "127.0.0.1:{closed_port}"
interval = "300ms"

[[connectors]]
name = "hooks"
kind = "webhook"
listen = "127.0.0.1:0"
path = "/hooks"

[[relays]]
name = "erp"
listen = "127.0.0.1:0"
target = "127.0.0.1:{lan_port}"
allow = ["127.0.0.0/8"]
"#,
        platform_url = platform_ref.url(),
        platform_ca = platform_ref.ca_file().display(),
        wg_if = unique_ifname('s'),
        wg_private = site_keys.private,
        wg_far_public = far_end.public_key(),
        wg_far_endpoint = underlay(2),
        ipsec_if = unique_ifname('s'),
        psk = random_psk(),
        cert_pem = cert.cert_pem.display(),
    );
    let daemon = Daemon::start_in(&site, &config);
    daemon.wait_for_tunnel("cloud");
    daemon.wait_for_tunnel("hq");

    // One event through the connector, the spool and the uplink to the platform.
    let hooks = daemon.listener("webhook hooks");
    let body = br#"{"order":1}"#;
    let request = Request {
        body,
        ..Request::post("/hooks").header("Content-Type", "application/json")
    };
    let stream = netns::connect(Some(site.name()), hooks, http::IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to the webhook at {hooks}: {e}"));
    let response = http::plain(stream, hooks, &request).expect("posting a webhook");
    assert_eq!(response.status, 202, "{}", response.text());
    platform_ref.wait_for_distinct(1, STATE_TIMEOUT);

    // Poll until every name is exported. A packet to an address of the tunnel's subnet
    // that no peer owns is dropped (no_route): the drop counter's first series.
    let nobody = IpAddr::from([10, 91, 0, 99]);
    let mut missing: Vec<&String> = Vec::new();
    let mut last = String::new();
    let scrape = wait_until(EXPORT_TIMEOUT, || {
        let scrape = daemon.scrape();
        let exported: HashSet<&str> = scrape.samples.iter().map(|s| s.name.as_str()).collect();
        missing = used
            .keys()
            .filter(|n| !exported.contains(n.as_str()))
            .collect();
        last = scrape.text.clone();
        if missing
            .iter()
            .any(|n| *n == "siteward_tunnel_packets_dropped_total")
        {
            ping(&site, nobody, 1, Duration::from_millis(200));
        }
        missing.is_empty().then_some(scrape)
    })
    .unwrap_or_else(|| {
        let missing: Vec<String> = missing
            .iter()
            .map(|n| format!("{n} (used by {})", used[*n]))
            .collect();
        panic!(
            "not in the scrape after {EXPORT_TIMEOUT:?}: {missing:#?}\n---\n{last}\n{}",
            daemon.logs().join("\n")
        )
    });

    // What made the series is what the panels and alerts are about.
    assert_eq!(
        scrape.get("siteward_tunnel_up", &[("tunnel", "cloud")]),
        Some(1.0),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.get(
            "siteward_check_tls_cert_expiry_timestamp_seconds",
            &[("check", "erp-cert"), ("kind", "tls")]
        ),
        Some(cert.not_after as f64)
    );
    assert!(
        scrape
            .get("siteward_uplink_events_delivered_total", &[])
            .is_some_and(|v| v >= 1.0),
        "{}",
        scrape.text
    );
    assert_eq!(scrape.check_up("closed"), Some(false), "{}", scrape.text);
    let (ok, report) = promtool_check(&scrape.text);
    assert!(ok, "promtool check metrics failed:\n{report}");
}
