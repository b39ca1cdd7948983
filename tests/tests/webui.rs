//! The web UI over HTTP against the real binary: access (setup token, login, the rate
//! limit, sessions that end, CSRF), the security headers, staged edits with errors at
//! their fields, commit-confirm (also across a restart), and that no secret is ever on a
//! page. The pages in a real browser: `webui_browser.rs`.

use std::time::Duration;

use siteward_tests::http::Request;
use siteward_tests::webui::{self, UiClient, ADMIN, PASSWORD};
use siteward_tests::{Daemon, DaemonOptions, Netns, STATE_TIMEOUT};

/// Pages and POST routes of the UI (with a real entry where one is needed).
const PAGES: &[&str] = &[
    "/",
    "/ui/dashboard",
    "/config",
    "/config/appliance",
    "/config/admin",
    "/config/uplink",
    "/config/checks/0",
    "/config/checks/new?kind=tcp",
    "/config/tunnels/new?kind=wireguard",
    "/config/review",
    "/config/history",
    "/config/history/1",
    "/config/export",
    "/config/import",
    "/audit",
    "/tools",
    "/logs",
    "/account",
];
const POSTS: &[&str] = &[
    "/logout",
    "/config/checks/new",
    "/config/checks/0",
    "/config/checks/0/delete",
    "/config/commit",
    "/config/discard",
    "/config/confirm",
    "/config/rollback-now",
    "/config/history/1/rollback",
    "/config/export",
    "/config/import",
    "/tools/ping",
    "/tools/tcp",
    "/tools/dns",
    "/tools/check",
    "/tools/wireguard/keypair",
    "/account/password",
    "/account/totp/enable",
    "/account/totp/disable",
    "/account/users",
];

const CHECK: &str = r#"
[[checks]]
name = "metrics-port"
kind = "tcp"
target = "127.0.0.1:9"
interval = "30s"
"#;

fn header<'a>(response: &'a siteward_tests::http::Response, name: &str) -> &'a str {
    response
        .header(name)
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[test]
fn first_run_needs_the_setup_token_and_then_pages_need_a_session() {
    let daemon = Daemon::start(CHECK);
    // Before setup, the login page sends to setup, and setup is refused with a wrong token.
    let login = daemon.api(&Request::get("/login"));
    assert_eq!(login.status, 303);
    assert_eq!(header(&login, "location"), "/setup");
    let setup = daemon.api(&Request::get("/setup"));
    assert!(setup
        .text()
        .contains(&daemon.state_dir().join("setup-token").display().to_string()));
    let wrong = webui::setup(&daemon, "not-the-token");
    assert_eq!(wrong.status, 401);
    assert!(webui::session_cookie(&wrong).is_none());

    let ui = UiClient::setup(&daemon);
    // The token is gone for good, and setup is closed.
    assert!(!daemon.state_dir().join("setup-token").exists());
    assert_eq!(daemon.api(&Request::get("/setup")).status, 303);

    for path in PAGES {
        let anonymous = daemon.api(&Request::get(path));
        assert_eq!(anonymous.status, 303, "GET {path} without a session");
        assert!(
            header(&anonymous, "location").starts_with("/login"),
            "GET {path}"
        );
        let htmx = daemon.api(&Request::get(path).header("hx-request", "true"));
        assert_eq!(htmx.status, 401, "htmx GET {path} without a session");
        assert!(htmx.header("hx-redirect").is_some());
        let signed_in = ui.get(path);
        assert_eq!(signed_in.status, 200, "GET {path}: {}", signed_in.text());
    }
    for path in POSTS {
        let anonymous = webui::post_form(&daemon, path, None, &[]);
        assert_eq!(anonymous.status, 401, "POST {path} without a session");
        let forged = ui.post_without_csrf(path, &[("name", "x")]);
        assert_eq!(forged.status, 403, "POST {path} without the CSRF token");
        let wrong = ui.post_without_csrf(path, &[("csrf", "0000")]);
        assert_eq!(wrong.status, 403, "POST {path} with a wrong CSRF token");
    }
}

#[test]
fn the_session_cookie_and_the_pages_carry_the_security_headers() {
    let daemon = Daemon::start("");
    let response = webui::setup(&daemon, &webui::setup_token(&daemon));
    let cookie = webui::session_set_cookie(&response).expect("a session cookie");
    for flag in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.contains(flag), "{flag} missing in {cookie}");
    }
    assert!(cookie.starts_with("__Host-"), "{cookie}");
    assert!(!cookie.contains("Domain"), "{cookie}");

    let ui = UiClient::login(&daemon, ADMIN, PASSWORD);
    let page = ui.get("/config");
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    assert!(header(&page, "strict-transport-security").starts_with("max-age="));
    assert_eq!(header(&page, "cache-control"), "no-store");
    // No inline script anywhere: every <script> loads a file of this origin.
    for path in PAGES {
        let html = ui.get(path).text();
        for tag in html.split("<script").skip(1) {
            let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
            assert!(
                tag.contains("src=\"/assets/"),
                "inline script on {path}: {tag}"
            );
        }
        assert!(!html.contains(" style=\""), "inline style on {path}");
        assert!(!html.contains("javascript:"), "javascript: URL on {path}");
    }
    let htmx = daemon.api(&Request::get("/assets/htmx.min.js"));
    assert_eq!(htmx.status, 200);
    assert!(header(&htmx, "content-type").starts_with("text/javascript"));
}

#[test]
fn logins_are_rate_limited_per_source() {
    let daemon = Daemon::start("");
    drop(UiClient::setup(&daemon));
    let wrong = webui::login(&daemon, ADMIN, "wrong password, long enough");
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("wrong user name or password"));
    assert!(webui::session_cookie(&wrong).is_none());
    for _ in 0..4 {
        assert_eq!(
            webui::login(&daemon, ADMIN, "wrong password, long enough").status,
            401
        );
    }
    // Five failures: now even the right password waits.
    let limited = webui::login(&daemon, ADMIN, PASSWORD);
    assert_eq!(limited.status, 429, "{}", limited.text());
    assert!(limited.text().contains("Too many failed logins"));
    assert!(webui::session_cookie(&limited).is_none());
    // The audit log has the failures, with the source address.
    let audit = std::fs::read_to_string(daemon.state_dir().join("config/audit.log")).unwrap();
    assert_eq!(audit.matches("\"login failed\"").count(), 5, "{audit}");
    assert!(audit.contains("127.0.0.1"));
}

#[test]
fn a_session_ends_after_its_idle_time() {
    let options = DaemonOptions {
        admin_extra: "session_idle = \"2s\"\n".into(),
        ..DaemonOptions::default()
    };
    let daemon = Daemon::start_with(options, "");
    let ui = UiClient::setup(&daemon);
    assert_eq!(ui.get("/config").status, 200);
    let last_request = std::time::Instant::now();
    // What is tested is the passing of time itself: no request may touch the session
    // while the idle limit runs out, so this waits on the clock.
    daemon.wait_until(Duration::from_secs(10), "the idle limit to pass", || {
        (last_request.elapsed() > Duration::from_millis(2500)).then_some(())
    });
    let response = ui.get("/");
    assert_eq!(response.status, 303);
    assert!(header(&response, "location").starts_with("/login"));
    // Logging out ends a session at once.
    let ui = UiClient::login(&daemon, ADMIN, PASSWORD);
    assert_eq!(ui.post("/logout", &[]).status, 303);
    assert_eq!(ui.get("/").status, 303);
}

#[test]
fn an_edit_with_an_error_is_not_staged_and_the_error_is_at_its_field() {
    let daemon = Daemon::start(CHECK);
    let ui = UiClient::setup(&daemon);
    let refused = stage_check(&ui, "db", "no-port-here");
    assert_eq!(refused.status, 422, "{}", refused.text());
    let html = refused.text();
    let field = &html[html.find("id=\"field-target\"").expect("the target field")..];
    let field = &field[..field.find("</label>").unwrap()];
    assert!(field.contains("class=\"message\""), "{field}");
    assert!(!daemon.state_dir().join("config/candidate.json").exists());

    let staged = stage_check(&ui, "db", "127.0.0.1:1521");
    assert_eq!(staged.status, 303, "{}", staged.text());
    // A form opened at an older revision is refused rather than overwriting.
    let stale = stage_check(&ui, "other", "127.0.0.1:1");
    assert_eq!(stale.status, 409);
    let review = ui.get("/config/review").text();
    assert!(review.contains("+ checks[db].target"), "{review}");
    // Nothing runs before the commit.
    assert!(!std::fs::read_to_string(daemon.config_path())
        .unwrap()
        .contains("\"db\""));
}

/// Posts the new-check form for a tcp check `name` → `target` (at revision 0: nothing
/// staged before).
fn stage_check(ui: &UiClient<'_>, name: &str, target: &str) -> siteward_tests::http::Response {
    ui.post(
        "/config/checks/new",
        &[
            ("revision", "0"),
            ("kind", "tcp"),
            ("name", name),
            ("target", target),
        ],
    )
}

/// Commits a staged check with a confirm window of `minutes`.
fn stage_and_commit(ui: &UiClient<'_>, name: &str, minutes: &str) {
    let staged = stage_check(ui, name, "127.0.0.1:1521");
    assert_eq!(staged.status, 303, "{}", staged.text());
    let committed = ui.post(
        "/config/commit",
        &[
            ("revision", "1"),
            ("confirm", "on"),
            ("minutes", minutes),
            ("comment", "trial"),
        ],
    );
    assert_eq!(committed.status, 303, "{}", committed.text());
}

/// The deadline of the commit waiting for confirmation, from its file.
fn pending_deadline_ms(daemon: &Daemon) -> u64 {
    let path = daemon.state_dir().join("config/pending.json");
    let pending: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("a pending commit")).unwrap();
    pending["deadline_ms"].as_u64().unwrap()
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn config_has(daemon: &Daemon, name: &str) -> bool {
    std::fs::read_to_string(daemon.config_path())
        .unwrap()
        .contains(&format!("\"{name}\""))
}

#[test]
fn an_unconfirmed_commit_rolls_back_and_a_confirmed_one_stays() {
    let daemon = Daemon::start(CHECK);
    let ui = UiClient::setup(&daemon);
    stage_and_commit(&ui, "kept", "5");
    assert!(config_has(&daemon, "kept"));
    assert!(ui.get("/").text().contains("pending-banner"));
    assert_eq!(ui.post("/config/confirm", &[]).status, 303);
    assert!(!ui.get("/").text().contains("pending-banner"));

    stage_and_commit(&ui, "trial", "0.05");
    assert!(config_has(&daemon, "trial"));
    // The pending commit is cleared last, once the restore is recorded and applied.
    let pending = daemon.state_dir().join("config/pending.json");
    daemon.wait_until(STATE_TIMEOUT, "the automatic rollback", || {
        (!config_has(&daemon, "trial") && !pending.exists()).then_some(())
    });
    assert!(config_has(&daemon, "kept"));
    let history = ui.get("/config/history").text();
    assert!(history.contains("not confirmed in time"), "{history}");
    let audit = ui.get("/audit").text();
    assert!(audit.contains("rollback"), "{audit}");
}

#[test]
fn commit_confirm_survives_a_restart_in_the_confirm_window() {
    let mut daemon = Daemon::start(CHECK);
    {
        let ui = UiClient::setup(&daemon);
        stage_and_commit(&ui, "trial", "0.15");
    }
    assert!(config_has(&daemon, "trial"));
    let pending = daemon.state_dir().join("config/pending.json");
    let deadline_ms = pending_deadline_ms(&daemon);
    // A crash in the window: the new process finds the pending commit and still rolls
    // it back at the deadline.
    daemon.kill_and_restart();
    assert!(
        unix_ms() < deadline_ms,
        "the restart took longer than the confirm window: nothing was tested"
    );
    daemon.wait_until(STATE_TIMEOUT, "the rollback after the restart", || {
        (!config_has(&daemon, "trial") && !pending.exists()).then_some(())
    });
    let ui = UiClient::login(&daemon, ADMIN, PASSWORD);
    let history = ui.get("/config/history").text();
    assert!(history.contains("not confirmed in time"), "{history}");
    // And the running checks are the restored ones.
    let token = daemon.create_token("t");
    let checks = daemon.checks(&token);
    let names: Vec<&str> = checks["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["metrics-port"]);
}

#[test]
fn a_commit_whose_window_passed_while_the_daemon_was_down_is_restored_at_start() {
    let mut daemon = Daemon::start(CHECK);
    {
        let ui = UiClient::setup(&daemon);
        stage_and_commit(&ui, "trial", "0.02");
    }
    daemon.process().signal(nix::sys::signal::Signal::SIGSTOP);
    // Stopped, the daemon cannot roll back; wait out the window on the file's pending
    // deadline, then let the restart find it expired.
    let deadline_ms = pending_deadline_ms(&daemon);
    daemon.wait_until(Duration::from_secs(10), "the deadline to pass", || {
        (unix_ms() > deadline_ms).then_some(())
    });
    daemon.kill_and_restart();
    assert!(!config_has(&daemon, "trial"));
    assert!(daemon
        .logs()
        .iter()
        .any(|l| l.contains("not confirmed in time")));
}

#[test]
fn secrets_are_never_on_a_page_or_in_an_export() {
    const TOKEN: &str = "uplink-token-0123456789-secret";
    const AMI: &str = "ami-secret-9876543210-value";
    const WG_KEY: &str = "oA8rQZ6pG3d2Y7bE1cJw9mK4tS0vN5xH2uLqR8iF3Ws=";
    let config = format!(
        r#"
[uplink]
url = "https://127.0.0.1:9/ingest"
token = "{TOKEN}"

[[checks]]
name = "pbx"
kind = "asterisk-ami"
target = "127.0.0.1:5038"
interval = "1h"
username = "monitor"
secret = "{AMI}"

[[tunnels]]
name = "wg-hq"
kind = "wireguard"
interface = "swt-ui0"
private_key = "{WG_KEY}"
addresses = ["10.77.0.1/24"]

[[tunnels.peers]]
name = "hq"
public_key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="
allowed_ips = ["10.77.0.2/32"]
"#
    );
    // The tunnel comes up inside a namespace of the test's own.
    let netns = Netns::new();
    let daemon = Daemon::start_in(&netns, &config);
    let ui = UiClient::setup(&daemon);
    let secrets = [TOKEN, AMI, WG_KEY];
    let mut pages: Vec<String> = PAGES.iter().map(|p| p.to_string()).collect();
    pages.extend(
        [
            "/config/checks/0",
            "/config/checks/1",
            "/config/tunnels/0",
            "/config/tunnels/0/peers/0",
            "/tools?kind=asterisk-ami",
            "/tools?endpoint_host=192.0.2.1",
        ]
        .map(String::from),
    );
    // A change to a secret shows in the diff as changed, never as its value.
    let staged = ui.post(
        "/config/uplink",
        &[("revision", "0"), ("token", "new-token-value-abcdefghij")],
    );
    assert_eq!(staged.status, 303, "{}", staged.text());
    for path in &pages {
        let page = ui.get(path);
        let text = page.text();
        for secret in secrets.iter().chain(&["new-token-value-abcdefghij"]) {
            assert!(!text.contains(secret), "a secret on {path}");
        }
    }
    let review = ui.get("/config/review").text();
    assert!(review.contains("(secret, changed)"), "{review}");
    let form = ui.get("/config/uplink").text();
    assert!(form.contains("A value is set."), "{form}");

    let export = ui.post("/config/export", &[("secrets", "omit")]);
    assert_eq!(export.status, 200);
    let exported = export.text();
    assert!(exported.contains("siteward-secret:omitted"), "{exported}");
    for secret in secrets {
        assert!(!exported.contains(secret), "a secret in the export");
    }
    let encrypted = ui.post(
        "/config/export",
        &[
            ("secrets", "encrypt"),
            ("passphrase", "a long export passphrase"),
        ],
    );
    assert_eq!(encrypted.status, 200);
    for secret in secrets {
        assert!(
            !encrypted.text().contains(secret),
            "a secret in the encrypted export"
        );
    }
    // The logs hold none either.
    for line in daemon.logs() {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
}

#[test]
fn an_encrypted_export_imports_back_and_a_wrong_passphrase_changes_nothing() {
    const AMI: &str = "ami-secret-for-the-import-test";
    let config = format!(
        "[[checks]]\nname = \"pbx\"\nkind = \"asterisk-ami\"\ntarget = \"127.0.0.1:5038\"\ninterval = \"1h\"\nusername = \"monitor\"\nsecret = \"{AMI}\"\n"
    );
    let daemon = Daemon::start(&config);
    let ui = UiClient::setup(&daemon);
    let exported = ui
        .post(
            "/config/export",
            &[
                ("secrets", "encrypt"),
                ("passphrase", "a long export passphrase"),
            ],
        )
        .text();
    let wrong = ui.post(
        "/config/import",
        &[
            ("revision", "0"),
            ("text", &exported),
            ("passphrase", "not the passphrase at all"),
        ],
    );
    assert_eq!(wrong.status, 400, "{}", wrong.text());
    assert!(!daemon.state_dir().join("config/candidate.json").exists());
    let right = ui.post(
        "/config/import",
        &[
            ("revision", "0"),
            ("text", &exported),
            ("passphrase", "a long export passphrase"),
        ],
    );
    assert_eq!(right.status, 303, "{}", right.text());
    let candidate =
        std::fs::read_to_string(daemon.state_dir().join("config/candidate.toml")).unwrap();
    assert_eq!(
        candidate,
        std::fs::read_to_string(daemon.config_path()).unwrap()
    );
    // Imported back, the file is the running one: nothing to commit.
    let review = ui.get("/config/review").text();
    assert!(review.contains("<p>0 changed line(s)"), "{review}");
}

#[test]
fn a_commit_the_daemon_cannot_start_with_is_rolled_back_at_once() {
    let mut daemon = Daemon::start(CHECK);
    // [metrics] changes take effect at the next start; this port will be taken then.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    {
        let ui = UiClient::setup(&daemon);
        let staged = ui.post(
            "/config/metrics",
            &[("revision", "0"), ("listen", taken_addr.as_str())],
        );
        assert_eq!(staged.status, 303, "{}", staged.text());
        let committed = ui.post(
            "/config/commit",
            &[("revision", "1"), ("confirm", "on"), ("minutes", "10")],
        );
        assert_eq!(committed.status, 303, "{}", committed.text());
        // The page after the commit says what waits for a restart.
        let location = committed.header("location").unwrap().to_string();
        let after = ui.get(&location).text();
        assert!(
            after.contains("Changes to [metrics] take effect at the next restart"),
            "{after}"
        );
    }
    assert!(std::fs::read_to_string(daemon.config_path())
        .unwrap()
        .contains(&taken_addr));
    // A restart in the window cannot bind the metrics port: the daemon restores the
    // version before the commit at once and exits, so the next start comes up.
    daemon.process().signal(nix::sys::signal::Signal::SIGTERM);
    assert!(daemon.process().wait_timeout(STATE_TIMEOUT).is_some());
    let mut failed = siteward_tests::ChildProcess::spawn(
        "siteward",
        siteward_tests::siteward_bin(),
        [
            "run".as_ref(),
            "--allow-root".as_ref(),
            "--config".as_ref(),
            daemon.config_path().as_os_str(),
        ],
    );
    let status = failed
        .wait_timeout(STATE_TIMEOUT)
        .expect("siteward exits when it cannot bind");
    assert!(!status.success());
    assert!(
        failed
            .stderr()
            .all()
            .iter()
            .any(|l| l.contains("was restored")),
        "{}",
        failed.stderr().tail(5)
    );
    assert!(!std::fs::read_to_string(daemon.config_path())
        .unwrap()
        .contains(&taken_addr));
    drop(taken);
    daemon.kill_and_restart();
    assert!(!daemon.state_dir().join("config/pending.json").exists());
}

#[test]
fn the_tools_answer_with_result_fragments() {
    let daemon = Daemon::start("");
    let ui = UiClient::setup(&daemon);
    let metrics = daemon.metrics_addr().to_string();
    let open = ui.post("/tools/tcp", &[("target", &metrics)]);
    assert_eq!(open.status, 200, "{}", open.text());
    assert!(open.text().contains("state up"), "{}", open.text());
    let bad = ui.post(
        "/tools/check",
        &[
            ("kind", "oracle-tns"),
            ("target", "127.0.0.1:99999"),
            ("timeout", "1s"),
        ],
    );
    assert_eq!(bad.status, 422, "{}", bad.text());
    assert!(
        bad.text().contains("<strong>target</strong>"),
        "{}",
        bad.text()
    );
    let keys = ui.post("/tools/wireguard/keypair", &[]);
    assert_eq!(keys.status, 200);
    assert!(keys.text().contains("new-private-key"));
    // A key pair handed out is not kept: it is not in the state directory or the log.
    let html = keys.text();
    let start = html.find("id=\"new-private-key\">").unwrap() + "id=\"new-private-key\">".len();
    let private_key = &html[start..start + html[start..].find('<').unwrap()];
    assert_eq!(private_key.len(), 44);
    for line in daemon.logs() {
        assert!(!line.contains(private_key));
    }
    let live = ui.get("/ui/logs?after=0&level=info");
    assert_eq!(live.status, 200);
    assert!(live.text().contains("siteward running"), "{}", live.text());
}

/// The current TOTP code of a base32 secret, from oathtool (what an authenticator app
/// computes).
fn oathtool(secret: &str) -> String {
    oathtool_at(secret, "now")
}

/// The TOTP code at `when` (a `date -d` time, like "now + 30 seconds").
fn oathtool_at(secret: &str, when: &str) -> String {
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "--base32", "--now", when, secret])
        .output()
        .expect("running oathtool (apt install oathtool)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn two_factor_login_with_codes_from_oathtool() {
    let daemon = Daemon::start("");
    let ui = UiClient::setup(&daemon);
    let page = ui.get("/account").text();
    let marker = "name=\"secret\" value=\"";
    let start = page.find(marker).expect("an enrolment secret") + marker.len();
    let secret = &page[start..start + page[start..].find('"').unwrap()];
    // A wrong code does not turn it on.
    let wrong = ui.post(
        "/account/totp/enable",
        &[
            ("secret", secret),
            ("new_code", "000000"),
            ("current", PASSWORD),
        ],
    );
    assert!(wrong.status == 400 || oathtool(secret) == "000000");
    let enrolled_with = oathtool(secret);
    let on = ui.post(
        "/account/totp/enable",
        &[
            ("secret", secret),
            ("new_code", &enrolled_with),
            ("current", PASSWORD),
        ],
    );
    assert_eq!(on.status, 303, "{}", on.text());
    assert!(ui.get("/account").text().contains("Two-factor login is on"));
    // The secret is never shown again.
    assert!(!ui.get("/account").text().contains(secret));

    let without = webui::login(&daemon, ADMIN, PASSWORD);
    assert_eq!(without.status, 401);
    let login_with = |code: &str| {
        webui::post_form(
            &daemon,
            "/login",
            None,
            &[("user", ADMIN), ("password", PASSWORD), ("code", code)],
        )
    };
    // A code works once (RFC 6238 §5.2): the enrolment used this one up.
    assert_eq!(login_with(&enrolled_with).status, 401);
    // The next step's code (a phone a little ahead; the current one if the clock moved
    // on since) logs in, once.
    let next = oathtool_at(secret, "now + 30 seconds");
    let with = login_with(&next);
    assert_eq!(with.status, 303, "{}", with.text());
    assert!(webui::session_cookie(&with).is_some());
    assert_eq!(login_with(&next).status, 401);

    // Locked out (a lost phone): `siteward passwd` sets a password and turns it off.
    let mut passwd = std::process::Command::new(siteward_tests::siteward_bin())
        .args(["passwd", ADMIN, "--config"])
        .arg(daemon.config_path())
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    passwd
        .stdin
        .take()
        .unwrap()
        .write_all(b"a new password for the admin\n")
        .unwrap();
    let out = passwd.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("two-factor login turned off"));
    drop(UiClient::login(
        &daemon,
        ADMIN,
        "a new password for the admin",
    ));
}

#[test]
fn review_warns_when_the_running_version_moved_under_staged_edits() {
    let daemon = Daemon::start(CHECK);
    let ui = UiClient::setup(&daemon);
    let staged = stage_check(&ui, "db", "127.0.0.1:1521");
    assert_eq!(staged.status, 303);
    assert!(!ui.get("/config/review").text().contains("stale-base"));
    // Someone edits the file on the box and reloads.
    daemon.write_checks("");
    daemon.sighup();
    daemon.wait_for_log(STATE_TIMEOUT, |v| v["message"] == "configuration reloaded");
    let review = ui.get("/config/review").text();
    assert!(review.contains("id=\"stale-base\""), "{review}");
    // The diff shows what committing would undo: the check removed on disk comes back.
    assert!(review.contains("+ checks[metrics-port].target"), "{review}");
}
