//! The web UI in a real headless Chromium (driven over WebDriver): first-run setup with
//! the token, login with a wrong then a right password, a check added, committed,
//! confirmed and seen on the dashboard (which refreshes without a reload), a commit left
//! unconfirmed rolling back, a WireGuard tunnel with a peer, and a validation error at its
//! field. Screenshots of the main pages are saved as test artifacts (the path is printed).

use siteward_tests::browser::Browser;
use siteward_tests::netns::unique_ifname;
use siteward_tests::webui::{self, ForwardIntoNetns, ADMIN, PASSWORD};
use siteward_tests::{Daemon, Netns};

/// Creates the first account in the browser (from the login page, which sends to setup).
fn first_run(browser: &Browser, daemon: &Daemon, base: &str) {
    browser.goto(&format!("{base}/"));
    browser.wait_for_text("h2", "First-run setup");
    browser.fill("input[name=token]", &webui::setup_token(daemon));
    browser.fill("input[name=user]", ADMIN);
    browser.fill("input[name=password]", PASSWORD);
    browser.fill("input[name=confirm]", PASSWORD);
    browser.click("form[action='/setup'] button[type=submit]");
    browser.wait_for_text("h1", "Dashboard");
}

fn base(daemon: &Daemon) -> String {
    format!("https://{}", daemon.admin_addr())
}

/// Stages a new check through the form.
fn add_check(browser: &Browser, base: &str, name: &str, target: &str) {
    browser.goto(&format!("{base}/config"));
    browser.click("#add-checks-tcp");
    browser.wait_for("#entry-form");
    browser.fill("#entry-form input[name=name]", name);
    browser.fill("#entry-form input[name=target]", target);
    browser.fill("#entry-form input[name=interval]", "1s");
    browser.click("#stage");
    browser.wait_for_text("#staged-banner", "staged");
}

/// Commits what is staged, with a confirm window of `minutes` (None: no confirmation).
fn commit(browser: &Browser, base: &str, minutes: Option<&str>) {
    browser.goto(&format!("{base}/config/review"));
    browser.wait_for("#commit-form");
    match minutes {
        Some(minutes) => {
            browser.set_checkbox("#commit-form input[name=confirm]", true);
            browser.fill("#commit-form input[name=minutes]", minutes);
        }
        None => browser.set_checkbox("#commit-form input[name=confirm]", false),
    }
    browser.click("#commit");
    browser.wait_for("#notice");
}

#[test]
fn first_run_setup_then_a_wrong_and_a_right_login() {
    let daemon = Daemon::start("");
    let browser = Browser::start();
    let base = base(&daemon);
    browser.goto(&format!("{base}/"));
    browser.wait_for_text("h2", "First-run setup");
    assert!(browser.current_url().ends_with("/setup"));
    browser.screenshot("setup");
    first_run(&browser, &daemon, &base);
    browser.screenshot("dashboard");

    let cookie = browser
        .cookie(webui::SESSION_COOKIE)
        .expect("the session cookie");
    assert!(cookie.http_only && cookie.secure, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Strict"));

    browser.click("form[action='/logout'] button");
    browser.wait_for_text("h2", "Log in");
    browser.fill("input[name=user]", ADMIN);
    browser.fill("input[name=password]", "not the password, but long");
    browser.click("form[action='/login'] button[type=submit]");
    browser.wait_for_text("#login-error", "wrong user name or password");
    browser.screenshot("login-wrong-password");
    browser.fill("input[name=password]", PASSWORD);
    browser.click("form[action='/login'] button[type=submit]");
    browser.wait_for_text("h1", "Dashboard");
}

#[test]
fn a_check_added_committed_and_confirmed_shows_on_the_dashboard() {
    let daemon = Daemon::start("");
    let browser = Browser::start();
    let base = base(&daemon);
    first_run(&browser, &daemon, &base);
    let metrics = daemon.metrics_addr().to_string();
    add_check(&browser, &base, "metrics-port", &metrics);
    browser.screenshot("config-staged");
    browser.goto(&format!("{base}/config/review"));
    browser.wait_for_text("#diff", "+ checks[metrics-port].target");
    browser.screenshot("review");
    commit(&browser, &base, Some("5"));
    browser.wait_for("#pending-banner");
    browser.screenshot("commit-pending-confirmation");
    browser.click("#confirm-commit");
    browser.wait_for_text("#notice", "Confirmed");
    assert!(!browser.exists("#pending-banner"));

    browser.goto(&format!("{base}/"));
    browser.wait_for_text("#checks", "metrics-port");
    // The dashboard refreshes itself: the check turns up without a page load.
    browser.execute("window.sitewardMarker = 'same page'; return null;");
    browser.wait_until("the check to be up on the live dashboard", || {
        browser
            .texts("#checks tr[data-check='metrics-port'] .state")
            .iter()
            .any(|s| s == "up")
    });
    assert_eq!(
        browser.execute("return window.sitewardMarker;"),
        serde_json::json!("same page")
    );
    browser.screenshot("dashboard-with-check");
    browser.goto(&format!("{base}/config/history"));
    browser.wait_for_text("#history", "committed");
    browser.screenshot("history");
    browser.goto(&format!("{base}/audit"));
    browser.wait_for_text("#audit", "confirm");
    browser.screenshot("audit");
}

#[test]
fn a_commit_left_unconfirmed_rolls_back_by_itself() {
    let daemon = Daemon::start("");
    let browser = Browser::start();
    let base = base(&daemon);
    first_run(&browser, &daemon, &base);
    add_check(&browser, &base, "trial", "127.0.0.1:9");
    // Six seconds to confirm, and nobody does.
    commit(&browser, &base, Some("0.1"));
    browser.wait_for("#pending-banner");
    // The banner goes when the restore is complete (recorded and applied).
    browser.wait_until("the automatic rollback", || {
        browser.goto(&format!("{base}/config/history"));
        browser.text("#history").contains("not confirmed in time")
            && !browser.exists("#pending-banner")
    });
    browser.screenshot("history-after-rollback");
    browser.goto(&format!("{base}/"));
    browser.wait_for("#live");
    assert!(!browser.page_source().contains("data-check=\"trial\""));
    assert!(!std::fs::read_to_string(daemon.config_path())
        .unwrap()
        .contains("trial"));
}

#[test]
fn a_wireguard_tunnel_and_its_peer_are_added_through_the_forms() {
    // The tunnel comes up inside a namespace of the test's own; Chromium reaches the
    // daemon there through a loopback forward.
    let netns = Netns::new();
    let daemon = Daemon::start_in(&netns, "");
    let forward = ForwardIntoNetns::start(netns.name(), daemon.admin_addr());
    let base = format!("https://{}", forward.addr);
    let browser = Browser::start();
    first_run(&browser, &daemon, &base);

    // Keys from the Tools page.
    browser.goto(&format!("{base}/tools"));
    browser.click("#generate-keypair");
    browser.wait_for("#new-private-key");
    let private_key = browser.text("#new-private-key");
    browser.click("#generate-keypair");
    browser.wait_until("a second key pair", || {
        browser.text("#new-private-key") != private_key
    });
    let peer_public_key = browser.text("#new-public-key");

    browser.goto(&format!("{base}/config"));
    browser.click("#add-tunnels-wireguard");
    browser.wait_for("#entry-form");
    browser.fill("#entry-form input[name=name]", "wg-hq");
    browser.fill("#entry-form input[name=interface]", &unique_ifname('u'));
    browser.fill("#entry-form input[name=private_key]", &private_key);
    browser.fill("#entry-form input[name=listen_port]", "51820");
    browser.fill("#entry-form textarea[name=addresses]", "10.88.0.1/24");
    browser.screenshot("tunnel-form");
    browser.click("#stage");
    browser.wait_for_text("#list-tunnels", "wg-hq");
    browser.click("#list-tunnels a[href='/config/tunnels/0']");
    browser.click("#add-peer");
    browser.wait_for("#entry-form");
    browser.fill("#entry-form input[name=name]", "hq");
    browser.fill("#entry-form input[name=public_key]", &peer_public_key);
    browser.fill("#entry-form textarea[name=allowed_ips]", "10.88.0.2/32");
    browser.fill("#entry-form input[name=endpoint]", "192.0.2.10:51820");
    browser.click("#stage");
    browser.wait_for_text("#peers", "hq");
    commit(&browser, &base, None);

    browser.goto(&format!("{base}/"));
    browser.wait_for_text("#tunnels", "wg-hq");
    browser.screenshot("dashboard-with-tunnel");
    // The secret key never comes back: the form says it is set, the pages never show it.
    browser.goto(&format!("{base}/config/tunnels/0"));
    browser.wait_for_text("#field-private_key", "A value is set.");
    assert!(!browser.page_source().contains(&private_key));
    browser.goto(&format!("{base}/tools?endpoint_host=192.0.2.1"));
    browser.wait_for_text("#wireguard-tools", "[Peer]");
    assert!(browser.text("#wireguard-tools").contains("192.0.2.1:51820"));
    assert!(!browser.page_source().contains(&private_key));
    browser.screenshot("tools");
    drop(browser);
    drop(forward);
}

#[test]
fn a_validation_error_is_shown_at_its_field() {
    let daemon = Daemon::start("");
    let browser = Browser::start();
    let base = base(&daemon);
    first_run(&browser, &daemon, &base);
    browser.goto(&format!("{base}/config"));
    browser.click("#add-checks-tcp");
    browser.wait_for("#entry-form");
    browser.fill("#entry-form input[name=name]", "db");
    browser.fill("#entry-form input[name=target]", "no-port-here");
    browser.fill("#entry-form input[name=rise]", "2");
    browser.click("#stage");
    let message = browser.wait_for_text("#field-target .message", "");
    assert!(!message.trim().is_empty());
    assert!(browser.exists("#field-target.field-error"));
    assert!(!browser.exists("#field-name.field-error"));
    // What was typed stays in the form.
    assert_eq!(
        browser.execute("return document.querySelector('#entry-form input[name=name]').value;"),
        serde_json::json!("db")
    );
    browser.screenshot("field-error");
    assert!(!browser.exists("#staged-banner"));
}
