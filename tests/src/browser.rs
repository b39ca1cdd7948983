//! A real headless Chromium, driven over WebDriver (chromedriver + fantoccini), for the
//! web UI's end-to-end tests. Blocking like the rest of the harness: each call runs the
//! WebDriver request on the browser's own current-thread Tokio runtime.
//!
//! Element actions (`click`, `fill`, `text`...) look their element up with a bounded poll,
//! so a page that htmx is still swapping does not make a test flaky; every wait is a
//! bounded poll (never a fixed sleep) and a timeout panics with what was awaited, the URL,
//! the page's visible text and a screenshot.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::http::{self, Request};
use crate::process::ChildProcess;
use crate::{wait_until, READY_TIMEOUT};

/// How long waits and element look-ups poll by default (see [`Browser::set_timeout`]).
pub const BROWSER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one WebDriver command may take (a page load gets [`PAGE_LOAD_TIMEOUT`] of it)
/// before the harness gives up on a wedged browser instead of hanging the test.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// chromedriver's own bound on a navigation, reported as a WebDriver error.
const PAGE_LOAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on each command a failure report sends (the browser may be what failed).
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long ending the WebDriver session may take before chromedriver is killed anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Chromium's processes get to exit after the session ended.
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The environment variable that marks every process of one `Browser` (chromedriver
/// passes its environment to Chromium, which passes it to its crash handler).
const OWNER_VARIABLE: &str = "SITEWARD_BROWSER";
/// Visible text quoted in a failure message, at most (characters).
const MAX_QUOTED_TEXT: usize = 4_000;
/// chromedriver's line announcing the port it chose for `--port=0`.
const STARTED_ON_PORT: &str = "was started successfully on port ";

/// One cookie as the browser holds it (for the current page's domain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub http_only: bool,
    pub secure: bool,
    /// `Strict`, `Lax` or `None`, as the browser reports it.
    pub same_site: Option<String>,
    pub path: Option<String>,
}

/// A chromedriver and one Chromium session with a fresh profile. Dropping it ends the
/// session (which closes Chromium), stops chromedriver by PID, kills any Chromium process
/// that survived, and removes the profile directory.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    /// `None` only while dropping.
    client: Option<Client>,
    driver: ChildProcess,
    /// The value of [`OWNER_VARIABLE`] in this browser's processes.
    owner: String,
    /// `profile/` (the user data directory) and `home/` (`$HOME` of chromedriver and
    /// Chromium, so nothing is written to the real one).
    dir: TempDir,
    timeout: Duration,
    version: String,
}

impl Browser {
    /// Starts chromedriver on a loopback port of its choosing and opens a headless Chromium
    /// session that accepts the admin API's self-signed certificates.
    pub fn start() -> Browser {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("siteward-chromium-")
            .tempdir()
            .expect("creating Chromium's directory");
        let home = dir.path().join("home");
        let user_data_dir = dir.path().join("profile");
        for sub in [&home, &user_data_dir] {
            std::fs::create_dir(sub).unwrap_or_else(|e| panic!("creating {}: {e}", sub.display()));
        }
        let owner = crate::unique_name("browser");
        let mut command = Command::new(chromedriver_bin());
        command
            .arg("--port=0")
            .env(OWNER_VARIABLE, &owner)
            // Chromium's NSS database, crash reports and caches stay in the test's directory.
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"));
        let driver = ChildProcess::spawn_command("chromedriver", command);
        let port = driver_port(&driver);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        wait_for_driver_ready(&driver, addr);

        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("building the browser's Tokio runtime");
        let capabilities = session_capabilities(&user_data_dir);
        let url = format!("http://{addr}");
        let client = runtime
            .block_on(async {
                tokio::time::timeout(
                    READY_TIMEOUT,
                    ClientBuilder::new(HttpConnector::new())
                        .capabilities(capabilities)
                        .connect(&url),
                )
                .await
            })
            .unwrap_or_else(|_| {
                panic!(
                    "no Chromium session within {READY_TIMEOUT:?}\n{}",
                    driver.output_tail(40)
                )
            })
            .unwrap_or_else(|e| {
                panic!(
                    "opening a Chromium session through chromedriver at {url}: {e}\n{}",
                    driver.output_tail(40)
                )
            });
        let version = client
            .capabilities()
            .and_then(|c| c.get("browserVersion"))
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string();
        println!(
            "browser: Chromium {version} ready in {} ms (chromedriver PID {})",
            started.elapsed().as_millis(),
            driver.pid()
        );
        Browser {
            runtime,
            client: Some(client),
            driver,
            owner,
            dir,
            timeout: BROWSER_TIMEOUT,
            version,
        }
    }

    /// Changes how long waits and element look-ups poll before they fail.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The Chromium version the session runs (`browserVersion`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// chromedriver's PID; Chromium's processes are its descendants.
    pub fn driver_pid(&self) -> Pid {
        self.driver.pid()
    }

    /// Chromium's running processes (browser, zygotes, renderers, utilities, and the crash
    /// handler, which detaches from chromedriver's process tree).
    pub fn browser_pids(&self) -> Vec<Pid> {
        self.chromium_processes()
            .into_iter()
            .map(|p| p.pid)
            .collect()
    }

    /// The directory holding the profile (`--user-data-dir`) and Chromium's `$HOME`,
    /// removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Navigates to `url` and returns once the page has loaded.
    pub fn goto(&self, url: &str) {
        self.run(self.client().goto(url))
            .unwrap_or_else(|e| self.fail(&format!("opening {}: {e}", shorten(url))));
    }

    pub fn current_url(&self) -> String {
        self.run(self.client().current_url())
            .map(|u| u.to_string())
            .unwrap_or_else(|e| panic!("reading the current URL: {e}"))
    }

    /// Replaces the text of the input or textarea matching `css` with `text`.
    pub fn fill(&self, css: &str, text: &str) {
        self.on_element("an input to fill", css, |el| {
            self.run(async {
                el.clear().await?;
                el.send_keys(text).await
            })
        });
    }

    /// Picks the option whose `value` is `value` in the `<select>` matching `css`.
    pub fn select(&self, css: &str, value: &str) {
        let option = format!("option[value={}]", css_string(value));
        self.on_element(&format!("a <select> with {option}"), css, |el| {
            self.run(el.select_by(Locator::Css(&option)))
        });
    }

    /// Checks or unchecks the checkbox matching `css` (clicking it only if it must change).
    pub fn set_checkbox(&self, css: &str, checked: bool) {
        self.on_element("a checkbox", css, |el| {
            self.run(async {
                if el.is_selected().await? != checked {
                    el.click().await?;
                }
                Ok(())
            })
        });
    }

    pub fn click(&self, css: &str) {
        self.on_element("an element to click", css, |el| self.run(el.click()));
    }

    /// Submits the form matching `css` as pressing Enter in it would: `requestSubmit()`
    /// fires the submit event (which htmx listens to) and runs the form's validation.
    pub fn submit_form(&self, css: &str) {
        self.on_element("a form to submit", css, |el| {
            let arg = serde_json::to_value(&el).map_err(CmdError::Json)?;
            self.run(
                self.client()
                    .execute("arguments[0].requestSubmit();", vec![arg]),
            )
            .map(|_| ())
        });
    }

    /// The visible text of the first element matching `css` (waiting for it).
    pub fn text(&self, css: &str) -> String {
        self.on_element("an element's text", css, |el| self.run(el.text()))
    }

    /// The visible text of every element matching `css` now (none: empty).
    pub fn texts(&self, css: &str) -> Vec<String> {
        self.retrying(&format!("the texts of `{css}`"), || {
            self.run(async {
                let mut texts = Vec::new();
                for el in self.client().find_all(Locator::Css(css)).await? {
                    texts.push(el.text().await?);
                }
                Ok(texts)
            })
        })
    }

    /// The current DOM, serialized.
    pub fn page_source(&self) -> String {
        self.run(self.client().source())
            .unwrap_or_else(|e| panic!("reading the page source: {e}"))
    }

    /// Whether an element matches `css` now (no waiting).
    pub fn exists(&self, css: &str) -> bool {
        self.retrying(&format!("looking up `{css}`"), || {
            self.run(self.client().find_all(Locator::Css(css)))
                .map(|found| !found.is_empty())
        })
    }

    /// Waits until an element matches `css`.
    pub fn wait_for(&self, css: &str) {
        self.try_wait_for(css, self.timeout)
            .unwrap_or_else(|e| self.fail(&e));
    }

    /// Like [`Browser::wait_for`] with its own bound; `Err` says what was missing.
    pub fn try_wait_for(&self, css: &str, timeout: Duration) -> Result<(), String> {
        self.try_wait_until(&format!("an element matching `{css}`"), timeout, || {
            self.exists(css)
        })
    }

    /// Waits until an element matching `css` has visible text containing `needle`, and
    /// returns that text.
    pub fn wait_for_text(&self, css: &str, needle: &str) -> String {
        self.try_wait_for_text(css, needle, self.timeout)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// Like [`Browser::wait_for_text`] with its own bound; `Err` says what was awaited and
    /// what the matching elements said instead.
    pub fn try_wait_for_text(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> Result<String, String> {
        let mut last_seen = Vec::new();
        let found = wait_until(timeout, || {
            last_seen = self.texts(css);
            last_seen.iter().find(|t| t.contains(needle)).cloned()
        });
        found.ok_or_else(|| {
            format!(
                "an element matching `{css}` with text containing {needle:?} within \
                 {timeout:?} (matching elements said: {last_seen:?})"
            )
        })
    }

    /// Waits until the current URL satisfies `pred`, and returns it.
    pub fn wait_until_url(&self, mut pred: impl FnMut(&str) -> bool) -> String {
        let mut last = String::new();
        wait_until(self.timeout, || {
            last = self.current_url();
            pred(&last).then(|| last.clone())
        })
        .unwrap_or_else(|| {
            self.fail(&format!(
                "a URL the test accepts within {:?} (last: {})",
                self.timeout,
                shorten(&last)
            ))
        })
    }

    /// Waits until `condition` (described by `what`) holds, for states the other waits do
    /// not cover (an element gone, a count reached).
    pub fn wait_until(&self, what: &str, condition: impl FnMut() -> bool) {
        self.try_wait_until(what, self.timeout, condition)
            .unwrap_or_else(|e| self.fail(&e));
    }

    /// Like [`Browser::wait_until`] with its own bound; `Err` says what was awaited.
    pub fn try_wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut() -> bool,
    ) -> Result<(), String> {
        wait_until(timeout, || condition().then_some(()))
            .ok_or_else(|| format!("{what} within {timeout:?}"))
    }

    /// The cookies the browser holds for the current page.
    pub fn cookies(&self) -> Vec<BrowserCookie> {
        let cookies = self
            .run(self.client().get_all_cookies())
            .unwrap_or_else(|e| panic!("reading the cookies: {e}"));
        cookies
            .into_iter()
            .map(|c| BrowserCookie {
                name: c.name().to_string(),
                value: c.value().to_string(),
                http_only: c.http_only().unwrap_or(false),
                secure: c.secure().unwrap_or(false),
                same_site: c.same_site().map(|s| s.to_string()),
                path: c.path().map(str::to_string),
            })
            .collect()
    }

    /// The cookie called `name` for the current page, if the browser holds one.
    pub fn cookie(&self, name: &str) -> Option<BrowserCookie> {
        self.cookies().into_iter().find(|c| c.name == name)
    }

    /// Runs `js` in the page (a WebDriver script: its `return` value comes back as JSON).
    /// For tests that must look past the UI, never as the way a test drives a page.
    pub fn execute(&self, js: &str) -> Value {
        self.run(self.client().execute(js, Vec::new()))
            .unwrap_or_else(|e| panic!("running a script in the page: {e}\n{js}"))
    }

    /// Saves a PNG of the viewport as `<target>/ui-screenshots/<test binary>/<name>.png`
    /// (kept by CI as an artifact), prints and returns its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .run(self.client().screenshot())
            .unwrap_or_else(|e| panic!("taking the screenshot {name:?}: {e}"));
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let path = dir.join(format!("{}.png", file_stem(name)));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!("screenshot: {}", path.display());
        path
    }

    fn client(&self) -> &Client {
        self.client
            .as_ref()
            .expect("the WebDriver session is open until drop")
    }

    /// Runs one WebDriver exchange on the browser's runtime, bounded by [`COMMAND_TIMEOUT`].
    fn run<T>(&self, command: impl Future<Output = Result<T, CmdError>>) -> Result<T, CmdError> {
        self.run_within(COMMAND_TIMEOUT, command)
    }

    fn run_within<T>(
        &self,
        timeout: Duration,
        command: impl Future<Output = Result<T, CmdError>>,
    ) -> Result<T, CmdError> {
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, command).await })
            .unwrap_or_else(|_| {
                Err(CmdError::Lost(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("chromedriver did not answer within {timeout:?}"),
                )))
            })
    }

    /// Finds the first element matching `css` and applies `action` to it, trying again
    /// (within the timeout) while the element is missing, stale, hidden or covered.
    fn on_element<T>(
        &self,
        what: &str,
        css: &str,
        mut action: impl FnMut(Element) -> Result<T, CmdError>,
    ) -> T {
        let mut last_error = String::from("no element matched");
        let done = wait_until(self.timeout, || {
            let result = self
                .run(self.client().find(Locator::Css(css)))
                .and_then(&mut action);
            match result {
                Ok(value) => Some(value),
                Err(e) if transient(&e) => {
                    last_error = e.to_string();
                    None
                }
                Err(e) => self.fail(&format!("{what} `{css}`: {e}")),
            }
        });
        done.unwrap_or_else(|| {
            self.fail(&format!(
                "{what} matching `{css}` within {:?} (last: {last_error})",
                self.timeout
            ))
        })
    }

    /// Runs a read of the page again while it fails only because the page changed under it.
    fn retrying<T>(&self, what: &str, mut read: impl FnMut() -> Result<T, CmdError>) -> T {
        let mut last_error = String::new();
        let done = wait_until(self.timeout, || match read() {
            Ok(value) => Some(value),
            Err(e) if e.is_stale_element_reference() || replaced_under_us(&e) => {
                last_error = e.to_string();
                None
            }
            Err(e) => panic!("{what}: {e}"),
        });
        done.unwrap_or_else(|| {
            panic!(
                "{what}: still failing after {:?}: {last_error}",
                self.timeout
            )
        })
    }

    /// Panics with `what` went wrong, the URL, a screenshot and the page's visible text.
    fn fail(&self, what: &str) -> ! {
        let url = self
            .run_within(REPORT_TIMEOUT, self.client().current_url())
            .map(|u| shorten(u.as_str()))
            .unwrap_or_else(|e| format!("(unknown: {e})"));
        let text = self
            .run_within(REPORT_TIMEOUT, async {
                self.client().find(Locator::Css("body")).await?.text().await
            })
            .unwrap_or_else(|e| format!("(unreadable: {e})"));
        let screenshot = self
            .run_within(REPORT_TIMEOUT, self.client().screenshot())
            .ok()
            .and_then(|png| {
                let dir = screenshot_dir();
                // Named after the test (libtest names its thread so), replaced by the next run.
                let test = std::thread::current()
                    .name()
                    .map_or_else(|| crate::unique_name("test"), str::to_string);
                let path = dir.join(format!("{}.png", file_stem(&format!("failed-{test}"))));
                std::fs::create_dir_all(&dir).ok()?;
                std::fs::write(&path, png).ok()?;
                Some(path.display().to_string())
            })
            .unwrap_or_else(|| "(none)".into());
        panic!(
            "browser: {what}\n  url: {url}\n  screenshot: {screenshot}\n  page text:\n{}",
            quote(&text)
        );
    }
}

impl Browser {
    /// Chromium's processes: those carrying this browser's [`OWNER_VARIABLE`] (the crash
    /// handler detaches to PID 1) and every descendant of chromedriver or of those.
    fn chromium_processes(&self) -> Vec<ProcessId> {
        let driver = self.driver.pid();
        let mark = format!("{OWNER_VARIABLE}={}", self.owner);
        let table = process_table();
        let marked: Vec<ProcessId> = table
            .iter()
            .filter(|p| p.id.pid != driver && environment_has(p.id.pid, &mark))
            .map(|p| p.id)
            .collect();
        let mut found = marked.clone();
        let mut queue: VecDeque<Pid> = marked.iter().map(|p| p.pid).collect();
        queue.push_back(driver);
        while let Some(parent) = queue.pop_front() {
            for child in table.iter().filter(|p| p.parent == parent) {
                if !found.contains(&child.id) {
                    found.push(child.id);
                    queue.push_back(child.id.pid);
                }
            }
        }
        found
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium's processes, found now while chromedriver is still their ancestor.
        let chromium = self.chromium_processes();
        if let Some(client) = self.client.take() {
            let closed = self
                .runtime
                .block_on(async { tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await });
            match closed {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("browser: ending the WebDriver session: {e}"),
                Err(_) => {
                    eprintln!("browser: the WebDriver session did not end within {CLOSE_TIMEOUT:?}")
                }
            }
        }
        // SIGTERM alone would leave Chromium running: ChildProcess also kills chromedriver's
        // process group, which holds Chromium's processes but not its crash handler.
        self.driver.stop();
        // The session's end closes Chromium and its crash handler follows; whatever still
        // runs after a short wait (a hung process) is killed by PID.
        let _ = wait_until(EXIT_TIMEOUT, || {
            (!chromium.iter().any(ProcessId::is_running)).then_some(())
        });
        for process in chromium.iter().filter(|p| p.is_running()) {
            eprintln!(
                "browser: killing Chromium process {} that outlived its session",
                process.pid
            );
            let _ = kill(process.pid, Signal::SIGKILL);
        }
    }
}

/// chromedriver from `PATH`, else Debian's `/usr/bin/chromedriver`.
fn chromedriver_bin() -> PathBuf {
    let from_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("chromedriver"))
            .find(|candidate| candidate.is_file())
    });
    let bin = from_path.unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    assert!(
        bin.is_file(),
        "chromedriver is not installed (neither in PATH nor /usr/bin): run scripts/install-test-deps"
    );
    bin
}

/// The port chromedriver announces after binding `--port=0`.
fn driver_port(driver: &ChildProcess) -> u16 {
    let line = driver
        .stdout()
        .wait_for(READY_TIMEOUT, |l| l.contains(STARTED_ON_PORT))
        .unwrap_or_else(|e| {
            panic!(
                "chromedriver did not announce its port: {e}\n{}",
                driver.output_tail(40)
            )
        });
    line.split_once(STARTED_ON_PORT)
        .map(|(_, rest)| rest.trim_end_matches('.'))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in chromedriver's line {line:?}"))
}

/// Polls chromedriver's `/status` until it says it is ready for a new session.
fn wait_for_driver_ready(driver: &ChildProcess, addr: SocketAddr) {
    let ready = wait_until(READY_TIMEOUT, || {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        let response = http::plain(stream, addr, &Request::get("/status")).ok()?;
        let status: Value = serde_json::from_slice(&response.body).ok()?;
        (response.status == 200 && status["value"]["ready"] == true).then_some(())
    });
    ready.unwrap_or_else(|| {
        panic!(
            "chromedriver at {addr} was not ready within {READY_TIMEOUT:?}\n{}",
            driver.output_tail(40)
        )
    });
}

/// The session's capabilities: headless Chromium with a private profile, trusting the
/// daemon's self-signed certificate.
fn session_capabilities(user_data_dir: &Path) -> serde_json::Map<String, Value> {
    let args = [
        "--headless".to_string(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-background-networking".into(),
        "--no-first-run".into(),
        format!("--user-data-dir={}", user_data_dir.display()),
        "--window-size=1280,900".into(),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "acceptInsecureCerts": true,
        "timeouts": {
            "pageLoad": PAGE_LOAD_TIMEOUT.as_millis() as u64,
            "script": PAGE_LOAD_TIMEOUT.as_millis() as u64,
        },
        "goog:chromeOptions": { "args": args },
    });
    match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// Errors that mean the page is not there yet (or is changing): worth another try.
fn transient(e: &CmdError) -> bool {
    e.is_no_such_element()
        || e.is_stale_element_reference()
        || e.is_element_not_interactable()
        || matches!(e, CmdError::Standard(w) if w.error == ErrorStatus::ElementClickIntercepted)
        || replaced_under_us(e)
}

/// Chromium's way of saying "stale element" when the element's document was replaced by
/// a navigation between finding it and reading it (seen on a loaded CI box).
fn replaced_under_us(e: &CmdError) -> bool {
    matches!(e, CmdError::Standard(w)
        if w.error == ErrorStatus::UnknownError
            && w.message.contains("does not belong to the document"))
}

/// `<target>/ui-screenshots/<test binary>`, the target directory found from the test
/// executable's place (`<target>/<profile>/deps/<binary>-<hash>`) like `siteward_bin`.
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("locating the test executable");
    let profile = crate::profile_dir();
    let target = profile.parent().unwrap_or(&profile);
    let binary = exe
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Cargo names test executables `<name>-<16 hex digits>`.
    let binary = match binary.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => binary,
    };
    target.join("ui-screenshots").join(file_stem(&binary))
}

/// `name` reduced to characters safe in a file name.
fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    match stem.trim_start_matches('.') {
        "" => "screenshot".into(),
        s => s.to_string(),
    }
}

/// `value` as a CSS string literal, for attribute selectors.
fn css_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // Control characters (a newline too) as CSS hex escapes.
            c if c.is_control() => out.push_str(&format!("\\{:x} ", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `url` cut to a readable length for a failure message (a `data:` URL holds a page).
fn shorten(url: &str) -> String {
    const MAX: usize = 200;
    match url.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}[...]", &url[..cut]),
        None => url.to_string(),
    }
}

/// `text` indented and cut to [`MAX_QUOTED_TEXT`] characters for a failure message.
fn quote(text: &str) -> String {
    let mut quoted: String = text.chars().take(MAX_QUOTED_TEXT).collect();
    if quoted.len() < text.len() {
        quoted.push_str("\n[...]");
    }
    quoted
        .lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A process identified by PID and start time, so a reused PID is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcessId {
    pid: Pid,
    start_time: u64,
}

impl ProcessId {
    /// Whether this very process still runs (a zombie does not).
    fn is_running(&self) -> bool {
        proc_stat(self.pid).is_some_and(|s| s.start_time == self.start_time && s.state != 'Z')
    }
}

/// Whether `pid` names a running process (not gone, not a zombie waiting to be reaped).
pub fn process_running(pid: Pid) -> bool {
    proc_stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The fields of `/proc/PID/stat` the harness needs.
struct ProcStat {
    state: char,
    parent: i32,
    start_time: u64,
}

fn proc_stat(pid: Pid) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields resume after the
    // last ')'. Then: state (3), ppid (4), ..., starttime (22).
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        parent: fields.get(1)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// One running process and its parent.
struct ProcessEntry {
    id: ProcessId,
    parent: Pid,
}

/// Every running process (zombies left out), from `/proc`.
fn process_table() -> Vec<ProcessEntry> {
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    entries
        .filter_map(|entry| {
            let pid = Pid::from_raw(entry.file_name().to_str()?.parse().ok()?);
            let stat = proc_stat(pid).filter(|s| s.state != 'Z')?;
            Some(ProcessEntry {
                id: ProcessId {
                    pid,
                    start_time: stat.start_time,
                },
                parent: Pid::from_raw(stat.parent),
            })
        })
        .collect()
}

/// Whether `pid`'s environment holds the entry `name=value` (false if unreadable).
fn environment_has(pid: Pid, entry: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/environ"))
        .is_ok_and(|environ| environ.split(|&b| b == 0).any(|e| e == entry.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn css_strings_escape_quotes_backslashes_and_control_characters() {
        assert_eq!(css_string("eu-west"), r#""eu-west""#);
        assert_eq!(css_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(css_string("a\nb"), "\"a\\a b\"");
    }

    #[test]
    fn screenshot_names_keep_only_safe_characters() {
        assert_eq!(file_stem("dashboard"), "dashboard");
        assert_eq!(file_stem("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_stem("a b/c"), "a_b_c");
        assert_eq!(file_stem(".."), "screenshot");
    }

    #[test]
    fn long_urls_are_shortened() {
        assert_eq!(shorten("https://127.0.0.1:1/"), "https://127.0.0.1:1/");
        let long = format!("data:text/html,{}", "%20".repeat(100));
        assert_eq!(shorten(&long).len(), 200 + "[...]".len());
    }

    #[test]
    fn quoted_text_is_indented_and_cut() {
        assert_eq!(quote("a\nb"), "    a\n    b");
        let long = "x".repeat(MAX_QUOTED_TEXT + 10);
        assert!(quote(&long).ends_with("[...]"));
    }

    #[test]
    fn the_process_table_and_environment_see_this_process() {
        let me = Pid::this();
        assert!(process_running(me));
        let table = process_table();
        let entry = table.iter().find(|p| p.id.pid == me).expect("this process");
        assert_eq!(entry.parent, Pid::parent());
        assert!(entry.id.is_running());
        let path = std::env::var("PATH").unwrap_or_default();
        assert!(environment_has(me, &format!("PATH={path}")));
        assert!(!environment_has(me, "PATH=/nowhere/at/all"));
    }
}
