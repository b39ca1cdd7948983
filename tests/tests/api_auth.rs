//! The HTTPS admin API from outside: certificate verification, bearer tokens, 401 for
//! everything unauthenticated, on-demand runs, and secrets that never leave the config.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};
use siteward_tests::http::Request;
use siteward_tests::{siteward_bin, Daemon, DaemonOptions, STATE_TIMEOUT};

/// A daemon with one tcp check against a listener the test owns. The interval is long
/// so that only the runs a test asks for happen.
fn daemon_with_tcp_check() -> (Daemon, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let daemon = Daemon::start(&format!(
        r#"
[[checks]]
name = "web"
kind = "tcp"
target = "127.0.0.1:{port}"
interval = "24h"
"#
    ));
    (daemon, listener)
}

#[test]
fn health_is_open_and_the_certificate_verifies() {
    let (daemon, _listener) = daemon_with_tcp_check();
    for server_name in ["127.0.0.1", "localhost"] {
        let response = daemon.api_as(server_name, &Request::get("/api/v1/health"));
        assert_eq!(response.status, 200, "{}", response.text());
        let body = response.json();
        assert_eq!(body["status"], "ok");
        assert!(body["version"].as_str().is_some_and(|v| !v.is_empty()));
        assert!(body["uptime_seconds"].is_u64());
        assert_eq!(response.header("cache-control"), Some("no-store"));
    }
}

#[test]
fn everything_else_needs_a_valid_token() {
    let (daemon, _listener) = daemon_with_tcp_check();
    let token = daemon.create_token("ops");
    let unauthorized = json!({ "error": "a valid bearer token is required" });

    let mut tampered = token.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let bad_credentials: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        ("an unknown token", Some("Bearer swt_0000".into())),
        ("a tampered token", Some(format!("Bearer {tampered}"))),
        ("Basic instead of Bearer", Some(format!("Basic {token}"))),
        ("the token without a scheme", Some(token.clone())),
        ("an empty bearer", Some("Bearer ".into())),
    ];
    let requests = [
        Request::get("/api/v1/checks"),
        Request::get("/api/v1/checks/web"),
        Request::post("/api/v1/checks/web/run"),
        Request::get("/api/v1/checks/web/run"),
        Request::get("/api/v1/checks/nope"),
        Request::get("/api/v1/nope"),
        Request::get("/api/v2/checks"),
        // "/" is the web UI now (its pages send to the login page: tests/tests/webui.rs).
        Request::get("/nope"),
        Request::get("/metrics"),
        Request::post("/api/v1/health/../checks"),
        Request::get("/api/v1/connectors"),
        Request::get("/api/v1/relays"),
        Request::get("/api/v1/spool"),
        Request::get("/api/v1/spool/events"),
        Request::get("/api/v1/spool/dead-letters"),
        Request::post("/api/v1/spool/replay"),
        Request::post("/api/v1/spool/purge?queue=events"),
    ];
    for (what, header) in &bad_credentials {
        for request in &requests {
            let mut request = request.clone();
            if let Some(value) = header {
                request = request.header("Authorization", value.clone());
            }
            let response = daemon.api(&request);
            let context = format!("{} {} with {what}", request.method, request.path);
            assert_eq!(response.status, 401, "{context}: {}", response.text());
            assert_eq!(response.json(), unauthorized, "{context}");
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer realm=\"siteward\""),
                "{context}"
            );
            let text = response.text();
            for secret_ish in ["web", "tcp", daemon.appliance()] {
                assert!(
                    !text.contains(secret_ish),
                    "{context}: 401 body leaks {secret_ish:?}: {text}"
                );
            }
        }
    }

    // The right token opens the API; unknown paths then answer 404, not 401.
    let list = daemon.checks(&token);
    assert_eq!(list["appliance"], daemon.appliance());
    assert_eq!(list["checks"][0]["name"], "web");
    assert_eq!(list["checks"][0]["kind"], "tcp");
    let missing = daemon.api(&Request::get("/api/v1/nope").bearer(&token));
    assert_eq!(missing.status, 404, "{}", missing.text());
    let missing = daemon.api(&Request::get("/api/v1/checks/nope").bearer(&token));
    assert_eq!(missing.status, 404, "{}", missing.text());
    let missing = daemon.api(&Request::post("/api/v1/checks/nope/run").bearer(&token));
    assert_eq!(missing.status, 404, "{}", missing.text());

    // A revoked token stops working at once, without a restart.
    let out = std::process::Command::new(siteward_bin())
        .args(["token", "revoke", "ops", "--config"])
        .arg(daemon.config_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let response = daemon.api(&Request::get("/api/v1/checks").bearer(&token));
    assert_eq!(response.status, 401, "revoked token: {}", response.text());
}

#[test]
fn tokens_are_stored_hashed_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let (daemon, _listener) = daemon_with_tcp_check();
    let token = daemon.create_token("grafana");
    let store = daemon.state_dir().join("api-tokens.json");
    let text = std::fs::read_to_string(&store).unwrap();
    assert!(text.contains("grafana"));
    assert!(!text.contains(&token), "the token itself is stored: {text}");
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", store.display());
    let key = daemon.state_dir().join("tls/admin-key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{} has mode {mode:o}", key.display());
}

#[test]
fn run_now_returns_the_result_and_counts_toward_the_state() {
    let (daemon, _listener) = daemon_with_tcp_check();
    let token = daemon.create_token("ops");

    let before = daemon.check(&token, "web");
    assert_eq!(before["state"], "unknown", "{before:#}");
    assert_eq!(before["history"], json!([]), "{before:#}");
    assert_eq!(daemon.scrape().check_up("web"), None);

    let answer = daemon.run_check(&token, "web");
    let result = &answer["result"];
    assert_eq!(result["reason"], "ok", "{answer:#}");
    assert_eq!(result["up"], true);
    assert!(result["duration_seconds"].as_f64().unwrap() >= 0.0);
    assert!(
        result["detail"].as_str().unwrap().contains("127.0.0.1"),
        "{answer:#}"
    );
    let check = &answer["check"];
    assert_eq!(check["state"], "up", "rise is 1: {answer:#}");
    assert_eq!(check["history"].as_array().unwrap().len(), 1);
    assert_eq!(check["last"], *result);

    let second = daemon.run_check(&token, "web");
    let check = daemon.check(&token, "web");
    assert_eq!(check["history"].as_array().unwrap().len(), 2, "{check:#}");
    assert_eq!(check["last"], second["result"]);
    assert_eq!(check["consecutive_successes"], 2);

    let scrape = daemon.scrape();
    assert_eq!(scrape.runs("web", "ok"), 2, "{}", scrape.text);
    assert_eq!(scrape.check_up("web"), Some(true));
    assert_eq!(
        scrape.get("siteward_check_duration_seconds_count", &[("check", "web")]),
        Some(2.0)
    );
}

/// An AMI peer that reads one Login, records what it was sent, and refuses it.
struct FakeAmi {
    port: u16,
    received: Arc<Mutex<String>>,
}

impl FakeAmi {
    fn start() -> FakeAmi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(String::new()));
        let log = received.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let log = log.clone();
                thread::spawn(move || {
                    let _ = serve_ami_login(stream, &log);
                });
            }
        });
        FakeAmi { port, received }
    }
}

fn serve_ami_login(mut stream: TcpStream, log: &Mutex<String>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"Asterisk Call Manager/9.0.0\r\n")?;
    // Bounded: the fake peer never holds more than 16 KiB of what it is sent.
    let mut reader = BufReader::new(stream.try_clone()?.take(16 * 1024));
    let mut action_id = String::new();
    let mut message = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some(id) = line.strip_prefix("ActionID:") {
            action_id = id.trim().to_string();
        }
        message.push_str(line);
        message.push('\n');
    }
    log.lock().unwrap().push_str(&message);
    stream.write_all(
        format!(
            "Response: Error\r\nActionID: {action_id}\r\nMessage: Authentication failed\r\n\r\n"
        )
        .as_bytes(),
    )?;
    Ok(())
}

#[test]
fn secrets_never_appear_in_api_logs_or_metrics() {
    let ami = FakeAmi::start();
    let inline_secret = format!("inline-s3cr3t-{}", std::process::id());
    let file_secret = format!("file-s3cr3t-{}", std::process::id());
    let secrets_dir = tempfile::tempdir().unwrap();
    let secret_file = secrets_dir.path().join("ami.secret");
    std::fs::write(&secret_file, format!("{file_secret}\n")).unwrap();

    let options = DaemonOptions {
        // The most talkative level: nothing may leak even there.
        log_level: "debug".into(),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start_with(
        options,
        &format!(
            r#"
[[checks]]
name = "pbx-inline"
kind = "asterisk-ami"
target = "127.0.0.1:{port}"
username = "monitor"
secret = "{inline_secret}"
interval = "300ms"

[[checks]]
name = "pbx-file"
kind = "asterisk-ami"
target = "127.0.0.1:{port}"
username = "monitor"
secret_file = "{file}"
interval = "300ms"
"#,
            port = ami.port,
            file = secret_file.display()
        ),
    );
    let token = daemon.create_token("ops");

    // Both checks ran and are down, and went through a login that the peer saw.
    for name in ["pbx-inline", "pbx-file"] {
        daemon.wait_for_check(&token, name, STATE_TIMEOUT, "is down", |c| {
            c["state"] == "down"
        });
    }
    let run = daemon.run_check(&token, "pbx-inline");
    assert_eq!(run["result"]["up"], false, "{run:#}");

    let mut outputs: Vec<(String, String)> = vec![
        (
            "GET /api/v1/checks".into(),
            daemon.checks(&token).to_string(),
        ),
        (
            "GET /api/v1/checks/pbx-file".into(),
            daemon.check(&token, "pbx-file").to_string(),
        ),
        ("POST run".into(), run.to_string()),
        ("/metrics".into(), daemon.scrape().text),
        ("logs".into(), daemon.logs().join("\n")),
    ];
    let received = ami.received.lock().unwrap().clone();
    let peer_saw_login = received.contains("Action: Login");
    if peer_saw_login {
        // The probe speaks AMI: the secrets did go to the peer (so this test can see them)...
        assert!(received.contains(&inline_secret), "peer got: {received}");
        assert!(received.contains(&file_secret), "peer got: {received}");
    } else {
        eprintln!("note: the asterisk-ami probe did not log in (not implemented yet?)");
    }
    // ...and nowhere else.
    outputs.push((
        "check-config".into(),
        String::from_utf8_lossy(
            &std::process::Command::new(siteward_bin())
                .arg("check-config")
                .arg(daemon.config_path())
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned(),
    ));
    for (where_, text) in &outputs {
        for secret in [&inline_secret, &file_secret, &token] {
            assert!(
                !text.contains(secret.as_str()),
                "{where_} contains a secret: {text}"
            );
        }
    }
    let listed: Value = daemon.checks(&token);
    let target = listed["checks"][0]["target"].as_str().unwrap();
    assert_eq!(target, format!("127.0.0.1:{}", ami.port));
}
