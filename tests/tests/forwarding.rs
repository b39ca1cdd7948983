//! Relay connectors end to end: the real daemon, its sources fed from outside (webhooks
//! over HTTP, the real `logger`), and the uplink delivering to a test platform
//! ([`Platform`]: HTTPS with its own CA, failing on command).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use siteward_tests::http::{self, Request, Response, TlsClient};
use siteward_tests::pki::{KeyKind, TestCa};
use siteward_tests::{
    promtool_check, siteward_bin, Behaviour, Daemon, Platform, Simulator, STATE_TIMEOUT,
};

const HMAC_SECRET: &str = "hook-secret-0123456789";
const TOKEN: &str = "platform-token-0123456789";
/// Long enough for a slow CI box to drain a few thousand events.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The uplink's batch size in these tests.
const BATCH_MAX_EVENTS: usize = 100;

/// `[uplink]` toward `platform` (token auth, quick batches) and `extra` sections.
fn uplink(platform: &Platform, extra: &str) -> String {
    format!(
        "[uplink]\nurl = \"{}\"\ntoken = \"{TOKEN}\"\nca_file = \"{}\"\n\
         batch_max_events = {BATCH_MAX_EVENTS}\nbatch_max_wait = \"50ms\"\ntimeout = \"3s\"\nstatus_interval = \"0s\"\n\n{extra}",
        platform.url(),
        platform.ca_file().display()
    )
}

fn webhook(name: &str, listen: &str, when_full: &str) -> String {
    format!(
        "[[connectors]]\nname = \"{name}\"\nkind = \"webhook\"\nlisten = \"{listen}\"\n\
         path = \"/hooks/{name}\"\nhmac_secret = \"{HMAC_SECRET}\"\nwhen_full = \"{when_full}\"\n"
    )
}

fn signature(body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HMAC_SECRET.as_bytes());
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// POSTs a signed `body` to the webhook `name` at `addr`.
fn post_hook(addr: SocketAddr, name: &str, body: &[u8]) -> std::io::Result<Response> {
    let path = format!("/hooks/{name}");
    let request = Request {
        body,
        ..Request::post(&path)
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signature(body))
    };
    let stream = TcpStream::connect_timeout(&addr, http::IO_TIMEOUT)?;
    http::plain(stream, addr, &request)
}

fn payload(n: usize) -> Vec<u8> {
    format!("{{\"order\":{n},\"site\":\"plant\"}}").into_bytes()
}

fn spool_cli(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let out = Command::new(siteward_bin())
        .arg("spool")
        .args(args)
        .arg("--config")
        .arg(daemon.config_path())
        .output()
        .expect("running siteward spool");
    assert!(
        out.status.success(),
        "siteward spool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "siteward spool {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn metric(daemon: &Daemon, name: &str, labels: &[(&str, &str)]) -> f64 {
    daemon
        .scrape()
        .get(name, labels)
        .unwrap_or_else(|| panic!("no {name}{labels:?} in the scrape"))
}

#[test]
fn webhook_events_reach_the_platform_once_each_with_valid_ids() {
    let platform = Platform::start();
    let daemon = Daemon::start(&uplink(&platform, &webhook("ebs", "127.0.0.1:0", "block")));
    let addr = daemon.listener("webhook ebs");
    const EVENTS: usize = 300;
    for n in 0..EVENTS {
        let response = post_hook(addr, "ebs", &payload(n)).expect("posting a webhook");
        assert_eq!(response.status, 202, "event {n}: {}", response.text());
        assert!(response.json()["sequence"].is_u64(), "{}", response.text());
    }
    let events = platform.wait_for_distinct(EVENTS, DRAIN_TIMEOUT);
    // A healthy platform gets each event exactly once, in the order they were accepted.
    assert_eq!(
        events.len(),
        EVENTS,
        "duplicates: {}",
        events.len() - EVENTS
    );
    let prefix = format!("{}-", daemon.appliance());
    let mut last_sequence = 0;
    for (n, event) in events.iter().enumerate() {
        assert_eq!(event.payload["order"], n, "{event:?}");
        assert_eq!(event.connector, "ebs");
        assert_eq!(event.kind, "webhook");
        assert_eq!(event.appliance, daemon.appliance());
        assert_eq!(event.idempotency_key, event.id);
        let sequence: u64 = event
            .id
            .strip_prefix(&prefix)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("id {} is not {prefix}<sequence>", event.id));
        assert!(
            sequence > last_sequence || n == 0,
            "ids out of order: {event:?}"
        );
        last_sequence = sequence;
        assert!(event.received_at.ends_with('Z'), "{}", event.received_at);
    }
    for request in platform.requests() {
        assert_eq!(
            request.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(request.content_type.as_deref(), Some("application/json"));
    }
    daemon.wait_until(
        STATE_TIMEOUT,
        "the delivered counter shows every event",
        || {
            let scrape = daemon.scrape();
            (scrape.get("siteward_uplink_events_delivered_total", &[]) == Some(EVENTS as f64))
                .then_some(())
        },
    );
    assert_eq!(
        metric(
            &daemon,
            "siteward_connector_events_received_total",
            &[("connector", "ebs")]
        ),
        EVENTS as f64
    );
    assert_eq!(metric(&daemon, "siteward_spool_events", &[]), 0.0);
    let (valid, report) = promtool_check(&daemon.scrape_raw().text());
    assert!(valid, "promtool check metrics: {report}");
}

#[test]
fn bad_webhooks_are_refused_counted_and_not_stored() {
    let platform = Platform::start();
    let daemon = Daemon::start(&uplink(
        &platform,
        &format!(
            "{}max_body_bytes = 1024\n",
            webhook("hooks", "127.0.0.1:0", "block")
        ),
    ));
    let addr = daemon.listener("webhook hooks");
    let send = |request: &Request<'_>| {
        let stream = TcpStream::connect_timeout(&addr, http::IO_TIMEOUT).unwrap();
        http::plain(stream, addr, request).unwrap()
    };
    let body = payload(1);
    // No signature, a wrong one, one of another body.
    let unsigned = Request {
        body: &body,
        ..Request::post("/hooks/hooks")
    };
    assert_eq!(send(&unsigned).status, 401);
    let wrong = Request {
        body: &body,
        ..Request::post("/hooks/hooks").header("X-Hub-Signature-256", "sha256=00ff")
    };
    assert_eq!(send(&wrong).status, 401);
    let other = Request {
        body: &body,
        ..Request::post("/hooks/hooks").header("X-Hub-Signature-256", signature(b"other"))
    };
    assert_eq!(send(&other).status, 401);
    // Too large, declared JSON that is not, another method, another path.
    let big = vec![b'x'; 4096];
    let response = post_hook(addr, "hooks", &big).unwrap();
    assert_eq!(response.status, 413, "{}", response.text());
    let response = post_hook(addr, "hooks", b"{\"order\":").unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.text().contains("not JSON"), "{}", response.text());
    assert_eq!(send(&Request::get("/hooks/hooks")).status, 405);
    assert_eq!(send(&Request::post("/elsewhere")).status, 404);

    assert_eq!(
        metric(
            &daemon,
            "siteward_connector_rejected_total",
            &[("connector", "hooks")]
        ),
        5.0
    );
    assert_eq!(
        metric(
            &daemon,
            "siteward_connector_events_received_total",
            &[("connector", "hooks")]
        ),
        0.0
    );
    // A good one still goes through, and is the only one the platform sees.
    assert_eq!(post_hook(addr, "hooks", &body).unwrap().status, 202);
    let events = platform.wait_for_distinct(1, DRAIN_TIMEOUT);
    assert_eq!(events.len(), 1);
}

#[test]
fn while_the_platform_is_down_the_spool_grows_then_drains_in_order() {
    let platform = Platform::start();
    platform.set(Behaviour::Status {
        code: 503,
        retry_after: None,
    });
    let daemon = Daemon::start(&uplink(&platform, &webhook("pbx", "127.0.0.1:0", "block")));
    let addr = daemon.listener("webhook pbx");
    const EVENTS: usize = 120;
    for n in 0..EVENTS {
        assert_eq!(post_hook(addr, "pbx", &payload(n)).unwrap().status, 202);
    }
    daemon.wait_until(
        STATE_TIMEOUT,
        "the uplink has failed and the circuit opened",
        || {
            let scrape = daemon.scrape();
            (scrape.get("siteward_uplink_circuit_open", &[]) == Some(1.0)).then_some(scrape)
        },
    );
    let stats = spool_cli(&daemon, &["stats"]);
    assert_eq!(stats["events"], EVENTS, "{stats:#}");
    // The HTTPS API, with a token, answers what the control socket does.
    let token = daemon.create_token("ops");
    let over_https = daemon.api(&Request::get("/api/v1/spool").bearer(&token));
    assert_eq!(over_https.status, 200, "{}", over_https.text());
    assert_eq!(over_https.json()["events"], EVENTS);
    assert!(stats["bytes"].as_u64().unwrap() > 0);
    assert!(stats["uplink"]["failed_attempts"].as_u64().unwrap() >= 1);
    assert_eq!(metric(&daemon, "siteward_spool_events", &[]), EVENTS as f64);
    assert!(metric(&daemon, "siteward_spool_oldest_event_age_seconds", &[]) >= 0.0);
    let listed = spool_cli(&daemon, &["list", "--limit", "5"]);
    assert_eq!(listed["events"].as_array().unwrap().len(), 5);
    assert_eq!(listed["events"][0]["payload"]["order"], 0);

    // Garbage, a reset, a hang (past the 3 s timeout) and a 429 with Retry-After do not
    // lose anything either.
    for behaviour in [
        Behaviour::Garbage,
        Behaviour::Reset,
        Behaviour::Hang,
        Behaviour::Status {
            code: 429,
            retry_after: Some(1),
        },
    ] {
        let seen = platform.requests().len();
        platform.set(behaviour);
        platform.wait_for_requests(seen + 1, DRAIN_TIMEOUT);
    }
    platform.set(Behaviour::Accept);
    let events = platform.wait_for_distinct(EVENTS, DRAIN_TIMEOUT);
    let orders: Vec<u64> = events
        .iter()
        .map(|e| e.payload["order"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (0..EVENTS as u64).collect();
    assert_eq!(orders, expected, "delivered out of the order of arrival");
    daemon.wait_until(
        STATE_TIMEOUT,
        "the spool is empty and the circuit closed",
        || {
            let scrape = daemon.scrape();
            (scrape.get("siteward_spool_events", &[]) == Some(0.0)
                && scrape.get("siteward_uplink_circuit_open", &[]) == Some(0.0))
            .then_some(())
        },
    );
}

#[test]
fn refused_events_become_dead_letters_that_can_be_replayed_and_purged() {
    let platform = Platform::start();
    platform.set(Behaviour::Status {
        code: 400,
        retry_after: None,
    });
    let daemon = Daemon::start(&uplink(&platform, &webhook("sap", "127.0.0.1:0", "block")));
    let addr = daemon.listener("webhook sap");
    for n in 0..3 {
        assert_eq!(post_hook(addr, "sap", &payload(n)).unwrap().status, 202);
    }
    daemon.wait_until(STATE_TIMEOUT, "three dead letters", || {
        (spool_cli(&daemon, &["stats"])["dead_letters"] == 3).then_some(())
    });
    assert_eq!(
        metric(&daemon, "siteward_uplink_dead_letter_total", &[]),
        3.0
    );
    let letters = spool_cli(&daemon, &["list", "--dead-letters"]);
    let letters = letters["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 3);
    assert!(
        letters[0]["reason"].as_str().unwrap().contains("HTTP 400"),
        "{letters:?}"
    );

    platform.set(Behaviour::Accept);
    assert_eq!(spool_cli(&daemon, &["replay"])["replayed"], 3);
    let events = platform.wait_for_distinct(3, DRAIN_TIMEOUT);
    assert_eq!(events.len(), 3);
    assert_eq!(spool_cli(&daemon, &["stats"])["dead_letters"], 0);

    // Purging needs a confirmation, then empties the dead letters.
    platform.set(Behaviour::Status {
        code: 422,
        retry_after: None,
    });
    assert_eq!(post_hook(addr, "sap", &payload(9)).unwrap().status, 202);
    daemon.wait_until(STATE_TIMEOUT, "one dead letter", || {
        (spool_cli(&daemon, &["stats"])["dead_letters"] == 1).then_some(())
    });
    let unconfirmed = Command::new(siteward_bin())
        .args(["spool", "purge", "--dead-letters", "--config"])
        .arg(daemon.config_path())
        .output()
        .unwrap();
    assert!(!unconfirmed.status.success());
    assert_eq!(
        spool_cli(&daemon, &["purge", "--dead-letters", "--yes"])["purged"],
        1
    );
    assert_eq!(spool_cli(&daemon, &["stats"])["dead_letters"], 0);
}

/// A port free now, for a listener that must keep its port across restarts.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("finding a free port")
}

/// A daemon with a 1 MiB spool and webhook `name`, its platform answering 503.
fn small_spool_while_the_platform_is_down(
    name: &str,
    when_full: &str,
) -> (Platform, Daemon, SocketAddr) {
    let platform = Platform::start();
    platform.set(Behaviour::Status {
        code: 503,
        retry_after: None,
    });
    let daemon = Daemon::start(&uplink(
        &platform,
        &format!(
            "[spool]\nmax_bytes = 1048576\n\n{}",
            webhook(name, "127.0.0.1:0", when_full)
        ),
    ));
    let addr = daemon.listener(&format!("webhook {name}"));
    (platform, daemon, addr)
}

/// Event `n` with 8 KB of filler: about 130 fill the 1 MiB spool.
fn big_event(n: usize) -> Vec<u8> {
    format!("{{\"order\":{n},\"fill\":\"{}\"}}", "x".repeat(8000)).into_bytes()
}

#[test]
fn a_full_spool_blocks_with_503_and_recovers() {
    let (platform, daemon, addr) = small_spool_while_the_platform_is_down("bulk", "block");
    let mut accepted = 0;
    let refused = loop {
        let response = post_hook(addr, "bulk", &big_event(accepted)).unwrap();
        match response.status {
            202 => accepted += 1,
            503 => break response,
            other => panic!("unexpected {other}: {}", response.text()),
        }
        assert!(accepted < 1000, "1 MiB took more than 1000 events of 8 KB");
    };
    assert!(refused.header("retry-after").is_some());
    assert!(accepted > 100, "only {accepted} events fitted");
    // What the "nearly full" alert divides: the bound as configured, and the spool within
    // one refused event of it.
    let max = metric(&daemon, "siteward_spool_max_bytes", &[]);
    assert_eq!(max, 1_048_576.0);
    let bytes = metric(&daemon, "siteward_spool_bytes", &[]);
    assert!(
        bytes > max - 2.0 * 8_100.0 && bytes <= max,
        "{bytes} of {max}"
    );
    assert!(
        metric(
            &daemon,
            "siteward_connector_refused_total",
            &[("connector", "bulk")]
        ) >= 1.0
    );
    // The platform returns: everything accepted arrives, and the hook takes events again.
    platform.set(Behaviour::Accept);
    platform.wait_for_distinct(accepted, DRAIN_TIMEOUT);
    let response = post_hook(addr, "bulk", &payload(100_000)).unwrap();
    assert_eq!(response.status, 202, "{}", response.text());
    platform.wait_for_distinct(accepted + 1, DRAIN_TIMEOUT);
}

#[test]
fn a_full_spool_with_drop_oldest_counts_what_it_dropped() {
    let (platform, daemon, addr) = small_spool_while_the_platform_is_down("lossy", "drop_oldest");
    const EVENTS: usize = 300;
    for n in 0..EVENTS {
        assert_eq!(post_hook(addr, "lossy", &big_event(n)).unwrap().status, 202);
    }
    let dropped = metric(&daemon, "siteward_spool_dropped_total", &[]) as usize;
    let waiting = metric(&daemon, "siteward_spool_events", &[]) as usize;
    assert!(dropped > 0, "nothing dropped");
    assert_eq!(dropped + waiting, EVENTS);
    platform.set(Behaviour::Accept);
    // The newest survived: every event from `dropped` on arrives.
    let survivors: BTreeSet<usize> = (dropped..EVENTS).collect();
    let arrived = siteward_tests::wait_until(DRAIN_TIMEOUT, || {
        let orders: BTreeSet<usize> = platform
            .events()
            .iter()
            .filter_map(|e| e.payload["order"].as_u64())
            .map(|order| order as usize)
            .collect();
        survivors.is_subset(&orders).then_some(orders)
    })
    .unwrap_or_else(|| panic!("not every one of events {dropped}..{EVENTS} arrived"));
    // A dropped one arrives only if the uplink had it in flight when the spool dropped it:
    // one batch, read before the drop and answered after the platform came back (a busy
    // box can take that long). Deliveries are one at a time, so at most one such run.
    let older: Vec<usize> = arrived.range(..dropped).copied().collect();
    assert!(
        older.len() <= BATCH_MAX_EVENTS && older.windows(2).all(|w| w[1] == w[0] + 1),
        "events dropped from the spool arrived beyond one in-flight batch: {older:?}"
    );
}

#[test]
fn the_uplink_authenticates_with_a_client_certificate() {
    let platform = Platform::start_with(true);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = platform.issue_client_cert(dir.path());
    let config = format!(
        "[uplink]\nurl = \"{}\"\nca_file = \"{}\"\nclient_cert_file = \"{}\"\nclient_key_file = \"{}\"\n\
         batch_max_wait = \"10ms\"\nstatus_interval = \"5s\"\n\n{}",
        platform.url(),
        platform.ca_file().display(),
        cert.display(),
        key.display(),
        webhook("mtls", "127.0.0.1:0", "block")
    );
    let daemon = Daemon::start(&config);
    let addr = daemon.listener("webhook mtls");
    assert_eq!(post_hook(addr, "mtls", &payload(7)).unwrap().status, 202);
    let events = platform.wait_for_distinct(1, DRAIN_TIMEOUT);
    assert_eq!(events[0].payload["order"], 7);
    assert!(platform.requests()[0].authorization.is_none());
    // Status reports come the same way: checks, tunnels and the spool.
    let report = daemon.wait_until(STATE_TIMEOUT, "a status report arrives", || {
        platform.status_reports().first().cloned()
    });
    assert!(report
        .id
        .starts_with(&format!("{}-status-", daemon.appliance())));
    assert!(
        report.payload["spool"]["events"].is_u64(),
        "{:?}",
        report.payload
    );
    assert!(report.payload["checks"].is_array());
}

#[test]
fn syslog_from_the_real_logger_reaches_the_platform() {
    let platform = Platform::start();
    let daemon = Daemon::start(&uplink(
        &platform,
        "[[connectors]]\nname = \"logs\"\nkind = \"syslog\"\nudp = \"127.0.0.1:0\"\ntcp = \"127.0.0.1:0\"\n",
    ));
    let udp = daemon.listener("syslog logs udp");
    let tcp = daemon.listener("syslog logs tcp");
    let logger = |transport: &str, addr: SocketAddr, message: &str| {
        let status = Command::new("logger")
            .args([transport, "--rfc5424", "-t", "ebs-batch", "-n"])
            .arg(addr.ip().to_string())
            .args(["-P", &addr.port().to_string(), message])
            .status()
            .expect("running logger");
        assert!(status.success(), "logger {transport} failed");
    };
    logger("--udp", udp, "nightly export done");
    logger("--tcp", tcp, "nightly import done");
    let events = platform.wait_for_distinct(2, DRAIN_TIMEOUT);
    let messages: HashSet<&str> = events
        .iter()
        .map(|e| e.payload["message"].as_str().unwrap_or_default())
        .collect();
    assert!(messages.contains("nightly export done"), "{events:?}");
    assert!(messages.contains("nightly import done"), "{events:?}");
    assert!(events
        .iter()
        .all(|e| e.kind == "syslog" && e.payload["app_name"] == "ebs-batch"));
}

/// Posts numbered webhooks from several threads until stopped; remembers every number
/// that got a 202. Connection errors (the daemon is down) are retried.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<u64>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, name: &'static str, threads: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let threads = (0..threads)
            .map(|t| {
                let (stop, acked) = (stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    let mut n = t;
                    while !stop.load(Ordering::Relaxed) {
                        let body = format!("{{\"load\":{n}}}");
                        match post_hook(addr, name, body.as_bytes()) {
                            Ok(response) if response.status == 202 => {
                                acked.lock().unwrap().insert(n);
                            }
                            // Not accepted (the daemon is restarting): this number is
                            // never acknowledged; pace the retries of a refused connect.
                            _ => std::thread::sleep(Duration::from_millis(5)),
                        }
                        n += threads;
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            threads,
        }
    }

    fn acked(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    fn finish(self) -> HashSet<u64> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        Arc::try_unwrap(self.acked).unwrap().into_inner().unwrap()
    }
}

#[test]
fn events_acknowledged_before_kill_9_are_all_delivered() {
    let platform = Platform::start();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut daemon = Daemon::start(&uplink(&platform, &webhook("crash", &listen, "block")));
    let addr: SocketAddr = listen.parse().unwrap();
    let load = Load::start(addr, "crash", 8);
    let mut rng = rand::rng();
    for round in 0..20 {
        // Kill at a random moment, once the load is under way in this run.
        let before = load.acked();
        daemon.wait_until(
            STATE_TIMEOUT,
            "the webhook acknowledges events again",
            || (load.acked() > before).then_some(()),
        );
        let moment = Duration::from_millis(rng.random_range(20..400));
        std::thread::sleep(moment); // the random moment of the crash, not a readiness wait
        daemon.kill_and_restart();
        eprintln!(
            "round {round}: killed after {moment:?}, {} acked so far",
            load.acked()
        );
    }
    let acked = load.finish();
    assert!(
        acked.len() > 100,
        "only {} events acknowledged",
        acked.len()
    );
    // Every acknowledged event arrives...
    let delivered = daemon.wait_until(
        DRAIN_TIMEOUT,
        "every acknowledged event is delivered",
        || {
            let events = platform.events();
            let seen: HashSet<u64> = events
                .iter()
                .filter_map(|e| e.payload["load"].as_u64())
                .collect();
            acked.is_subset(&seen).then_some(events)
        },
    );
    // ...and a duplicate is a redelivery: the same event under the same id, never the same
    // content under two ids or two contents under one id.
    let mut id_of: HashMap<u64, String> = HashMap::new();
    let mut content_of: HashMap<String, u64> = HashMap::new();
    for event in &delivered {
        let n = event.payload["load"].as_u64().unwrap();
        let first_id = id_of.entry(n).or_insert_with(|| event.id.clone());
        assert_eq!(*first_id, event.id, "event {n} delivered under two ids");
        let first_n = content_of.entry(event.id.clone()).or_insert(n);
        assert_eq!(*first_n, n, "id {} carried two events", event.id);
    }
    eprintln!(
        "{} acknowledged, {} delivered ({} duplicates)",
        acked.len(),
        delivered.len(),
        delivered.len() - id_of.len()
    );
}

#[test]
fn a_csv_export_renamed_into_the_drop_directory_becomes_one_event_per_row() {
    let platform = Platform::start();
    let drops = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(&uplink(
        &platform,
        &format!(
            "[[connectors]]\nname = \"ebs-exports\"\nkind = \"file-drop\"\ndirectory = \"{}\"\nformat = \"csv\"\n",
            drops.path().display()
        ),
    ));
    // A batch job writes under a temporary name, then renames into place.
    let csv = "invoice,amount,currency\r\nINV-1,120.50,CHF\r\n\"INV-2\",\"1,000.00\",EUR\r\n";
    let part = drops.path().join("invoices.csv.part");
    std::fs::write(&part, csv).unwrap();
    std::fs::rename(&part, drops.path().join("invoices.csv")).unwrap();
    let events = platform.wait_for_distinct(2, DRAIN_TIMEOUT);
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|e| e.kind == "file.record" && e.connector == "ebs-exports"));
    assert_eq!(events[0].payload["file"], "invoices.csv");
    assert_eq!(events[0].payload["data"]["invoice"], "INV-1");
    assert_eq!(events[1].payload["data"]["amount"], "1,000.00");
    daemon.wait_until(STATE_TIMEOUT, "the file moved to done/", || {
        drops
            .path()
            .join("done/invoices.csv")
            .is_file()
            .then_some(())
    });
}

#[test]
fn pbx_call_events_reach_the_platform_filtered() {
    // No Asterisk can be installed here: the project's AMI simulator stands in for it,
    // placing a call every 200 ms to every session that asked for events.
    let pbx = Simulator::start(
        "asterisk-ami",
        &[
            "--username",
            "siteward",
            "--secret",
            "ami-secret-0123",
            "--event-interval-ms",
            "200",
        ],
    );
    let platform = Platform::start();
    let daemon = Daemon::start(&uplink(
        &platform,
        &format!(
            "[[connectors]]\nname = \"pbx\"\nkind = \"asterisk-ami\"\ntarget = \"{}\"\n\
             username = \"siteward\"\nsecret = \"ami-secret-0123\"\nevents = [\"Hangup\", \"Cdr\"]\n\
             reconnect_max = \"1s\"\n",
            pbx.addr
        ),
    ));
    daemon.wait_until(STATE_TIMEOUT, "the AMI connector is logged in", || {
        (daemon.scrape().get(
            "siteward_connector_up",
            &[("connector", "pbx"), ("kind", "asterisk-ami")],
        ) == Some(1.0))
        .then_some(())
    });
    let events = platform.wait_for_distinct(4, DRAIN_TIMEOUT);
    assert!(
        events
            .iter()
            .all(|e| e.kind == "ami.Hangup" || e.kind == "ami.Cdr"),
        "only the filtered events: {:?}",
        events.iter().map(|e| &e.kind).collect::<Vec<_>>()
    );
    let hangup = events.iter().find(|e| e.kind == "ami.Hangup").unwrap();
    assert_eq!(hangup.payload["Event"], "Hangup");
    assert!(
        hangup.payload["Uniqueid"].is_string(),
        "{:?}",
        hangup.payload
    );
    assert!(!daemon.logs().iter().any(|l| l.contains("ami-secret-0123")));
}

#[test]
fn a_webhook_served_over_https_takes_events() {
    let platform = Platform::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Hooks CA");
    let leaf = ca.issue_leaf("hooks.plant.test", &["127.0.0.1"], KeyKind::EcdsaP256);
    let (cert, key, ca_file) = (
        dir.path().join("hooks.crt"),
        dir.path().join("hooks.key"),
        dir.path().join("hooks-ca.pem"),
    );
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let daemon = Daemon::start(&uplink(
        &platform,
        &format!(
            "{}cert_file = \"{}\"\nkey_file = \"{}\"\n",
            webhook("secure", "127.0.0.1:0", "block"),
            cert.display(),
            key.display()
        ),
    ));
    let addr = daemon.listener("webhook secure");
    let tls = TlsClient::trusting(&ca_file).unwrap();
    let body = payload(42);
    let request = Request {
        body: &body,
        ..Request::post("/hooks/secure")
            .header("Content-Type", "application/json")
            .header("X-Hub-Signature-256", signature(&body))
    };
    let stream = TcpStream::connect_timeout(&addr, http::IO_TIMEOUT).unwrap();
    let response = tls
        .send(stream, "127.0.0.1", &request)
        .expect("an HTTPS exchange");
    assert_eq!(response.status, 202, "{}", response.text());
    let events = platform.wait_for_distinct(1, DRAIN_TIMEOUT);
    assert_eq!(events[0].payload["order"], 42);
    // Plain HTTP to the TLS listener gets no event in.
    let plain = post_hook(addr, "secure", &payload(43));
    assert!(plain.map_or(true, |r| r.status != 202));
}
