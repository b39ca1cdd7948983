//! The browser harness's own guarantees, which the web UI suites rely on: Chromium reaches
//! the daemon over its self-signed certificate, actions and waits do what they say, a wait
//! fails within its bound with the page's text, screenshots are PNG files, and no
//! chromedriver or Chromium process outlives its `Browser`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use siteward_tests::browser::process_running;
use siteward_tests::{Browser, Daemon};

/// A page as a `data:` URL (every byte but letters and digits percent-encoded).
fn data_url(html: &str) -> String {
    let mut url = String::from("data:text/html;charset=utf-8,");
    for b in html.bytes() {
        if b.is_ascii_alphanumeric() {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

#[test]
fn chromium_reads_the_admin_api_over_its_self_signed_certificate_and_leaves_nothing_behind() {
    let daemon = Daemon::start("");
    let browser = Browser::start();
    assert!(
        browser.version().starts_with(|c: char| c.is_ascii_digit()),
        "no Chromium version: {:?}",
        browser.version()
    );

    let url = format!("https://{}/api/v1/health", daemon.admin_addr());
    browser.goto(&url);
    // The certificate is self-signed per test: only acceptInsecureCerts lets the page load.
    let body = browser.wait_for_text("body", r#""status":"ok""#);
    // Chromium shows JSON as text (below its "Pretty-print" bar).
    let json_text = body.find('{').map_or("", |start| &body[start..]);
    let health: Value = serde_json::from_str(json_text.trim())
        .unwrap_or_else(|e| panic!("the page is not the health JSON ({e}): {body}"));
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(browser.current_url(), url);
    assert_eq!(browser.execute("return location.protocol"), json!("https:"));

    // Cookies come back with their flags (a page-set one: the API sets none).
    browser.execute("document.cookie = 'probe=42; Secure; SameSite=Strict; Path=/'; return null");
    let probe = browser.cookie("probe").expect("the cookie the page set");
    assert_eq!(probe.value, "42");
    assert!(probe.secure && !probe.http_only, "{probe:?}");
    assert_eq!(probe.same_site.as_deref(), Some("Strict"));
    assert_eq!(probe.path.as_deref(), Some("/"));

    let path = browser.screenshot("health");
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert!(png.len() > 100, "a {}-byte screenshot", png.len());
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // IHDR: the screenshot is the viewport, as wide as the window the session asked for.
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(
        browser.execute("return [innerWidth, innerHeight]"),
        json!([width, height])
    );
    assert_eq!(width, 1280);

    // The URL a page changes later is waited for.
    browser.execute(
        "setTimeout(() => history.pushState(null, '', '/api/v1/health?later=1'), 300); return null",
    );
    let later = browser.wait_until_url(|u| u.ends_with("?later=1"));
    assert_eq!(later, format!("{url}?later=1"));

    let driver = browser.driver_pid();
    let chromium = browser.browser_pids();
    assert!(
        !chromium.is_empty(),
        "chromedriver {driver} has no Chromium process"
    );
    let dir = browser.dir().to_path_buf();
    assert!(dir.join("profile").is_dir());
    drop(browser);
    assert!(
        !process_running(driver),
        "chromedriver {driver} outlived its Browser"
    );
    let survivors: Vec<_> = chromium
        .into_iter()
        .filter(|&p| process_running(p))
        .collect();
    assert!(
        survivors.is_empty(),
        "Chromium processes outlived their Browser: {survivors:?}"
    );
    assert!(!dir.exists(), "{} was left behind", dir.display());
}

#[test]
fn actions_drive_a_form_and_wait_for_what_appears_later() {
    let browser = Browser::start();
    browser.goto(&data_url(
        r#"<!doctype html><title>form</title>
        <form id="f">
          <input name="user" value="preset">
          <select name="site"><option value="a">A</option><option value='b "quoted"'>B</option></select>
          <input type="checkbox" name="notify">
          <button type="submit">Save</button>
        </form>
        <pre id="out"></pre>
        <ul id="list"><li>one</li></ul>
        <script>
          document.getElementById('f').addEventListener('submit', (e) => {
            e.preventDefault();
            const data = Object.fromEntries(new FormData(e.target));
            document.getElementById('out').textContent = JSON.stringify(data);
          });
          // An element that appears later, as an htmx swap would bring it.
          setTimeout(() => {
            const b = document.createElement('button');
            b.id = 'late';
            b.textContent = 'late';
            b.onclick = () => {
              const li = document.createElement('li');
              li.textContent = 'two';
              document.getElementById('list').append(li);
            };
            document.body.append(b);
          }, 400);
        </script>"#,
    ));

    // fill clears what was there.
    browser.fill("input[name=user]", "first");
    browser.fill("input[name=user]", "alice");
    browser.select("select[name=site]", r#"b "quoted""#);
    browser.set_checkbox("input[name=notify]", true);
    browser.set_checkbox("input[name=notify]", true);
    browser.submit_form("#f");
    let out = browser.wait_for_text("#out", "alice");
    let submitted: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        submitted,
        json!({"user": "alice", "site": r#"b "quoted""#, "notify": "on"})
    );

    browser.set_checkbox("input[name=notify]", false);
    browser.click("button[type=submit]");
    browser.wait_for_text("#out", r#""site":"b \"quoted\"""#);
    let out: Value = serde_json::from_str(&browser.text("#out")).unwrap();
    assert_eq!(out.get("notify"), None, "unchecked boxes are not submitted");

    // click waits for the button the page adds later.
    assert_eq!(browser.texts("#list li"), ["one"]);
    browser.click("#late");
    browser.wait_for("#list li:nth-child(2)");
    assert_eq!(browser.texts("#list li"), ["one", "two"]);
    assert!(browser.exists("#late") && !browser.exists("#absent"));
    assert!(browser.texts("#absent").is_empty());

    assert!(browser.current_url().starts_with("data:text/html"));
    assert!(browser.page_source().contains(r#"id="late""#));
    assert_eq!(browser.execute("return 6 * 7"), json!(42));
}

#[test]
fn a_wait_fails_within_its_bound_with_the_url_and_the_page_text() {
    let mut browser = Browser::start();
    browser.goto(&data_url("<h1>Login</h1><p>Enter your token</p>"));
    let bound = Duration::from_millis(500);

    let started = Instant::now();
    let err = browser
        .try_wait_for_text("h1", "Dashboard", bound)
        .unwrap_err();
    let took = started.elapsed();
    assert!(took >= bound, "gave up after {took:?}, before its bound");
    assert!(took < bound + Duration::from_secs(10), "took {took:?}");
    assert!(
        err.contains("Dashboard") && err.contains(r#"["Login"]"#),
        "{err}"
    );
    assert!(browser.try_wait_for("#missing", bound).is_err());

    browser.set_timeout(bound);
    let started = Instant::now();
    let panic = catch_unwind(AssertUnwindSafe(|| {
        browser.wait_for_text("h1", "Dashboard")
    }))
    .expect_err("waiting for absent text must fail");
    assert!(started.elapsed() < bound + Duration::from_secs(10));
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("Dashboard"), "{message}");
    assert!(message.contains("url: data:text/html"), "{message}");
    assert!(
        message.contains("Enter your token"),
        "no page text in: {message}"
    );
    assert!(message.contains(".png"), "no screenshot in: {message}");

    // An action on an element that never comes fails the same way.
    let panic = catch_unwind(AssertUnwindSafe(|| browser.click("#never")))
        .expect_err("clicking a missing element must fail");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("#never") && message.contains("Enter your token"),
        "{message}"
    );

    // The browser is still usable after a failed wait.
    assert_eq!(browser.text("h1"), "Login");
}
