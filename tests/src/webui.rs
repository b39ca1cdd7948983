//! The web UI from a plain HTTP client: first-run setup with the token, a session cookie,
//! form posts with the session's CSRF token. (`browser.rs` drives the same pages in
//! Chromium; this client is for what a browser does not show: status codes, headers,
//! refusals.)

use crate::daemon::Daemon;
use crate::http::{Request, Response};

pub const SESSION_COOKIE: &str = "__Host-siteward-session";
pub const ADMIN: &str = "admin";
pub const PASSWORD: &str = "correct horse battery staple";

/// A signed-in web UI session.
pub struct UiClient<'d> {
    daemon: &'d Daemon,
    pub cookie: String,
    pub csrf: String,
}

impl<'d> UiClient<'d> {
    /// Creates the first account with the setup token the daemon wrote, and signs in.
    pub fn setup(daemon: &'d Daemon) -> UiClient<'d> {
        let response = setup(daemon, &setup_token(daemon));
        assert_eq!(response.status, 303, "setup: {}", response.text());
        UiClient::from_login_response(daemon, &response)
    }

    /// Signs in with a user name and password.
    pub fn login(daemon: &'d Daemon, user: &str, password: &str) -> UiClient<'d> {
        let response = login(daemon, user, password);
        assert_eq!(response.status, 303, "login: {}", response.text());
        UiClient::from_login_response(daemon, &response)
    }

    fn from_login_response(daemon: &'d Daemon, response: &Response) -> UiClient<'d> {
        let cookie = session_cookie(response).expect("a session cookie after login");
        let mut client = UiClient {
            daemon,
            cookie,
            csrf: String::new(),
        };
        let page = client.get("/account");
        assert_eq!(page.status, 200, "the account page: {}", page.text());
        client.csrf = csrf_of(&page.text()).expect("a CSRF token on the account page");
        client
    }

    pub fn get(&self, path: &str) -> Response {
        self.daemon
            .api(&Request::get(path).header("cookie", format!("{SESSION_COOKIE}={}", self.cookie)))
    }

    /// Posts a form with this session's CSRF token.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut all = vec![("csrf", self.csrf.as_str())];
        all.extend_from_slice(fields);
        post_form(self.daemon, path, Some(&self.cookie), &all)
    }

    /// Posts a form without any CSRF token.
    pub fn post_without_csrf(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        post_form(self.daemon, path, Some(&self.cookie), fields)
    }
}

/// Posts the setup form: the first account [`ADMIN`] with [`PASSWORD`], and `token`.
pub fn setup(daemon: &Daemon, token: &str) -> Response {
    post_form(
        daemon,
        "/setup",
        None,
        &[
            ("token", token),
            ("user", ADMIN),
            ("password", PASSWORD),
            ("confirm", PASSWORD),
        ],
    )
}

/// The one-time setup token the daemon wrote to its state directory.
pub fn setup_token(daemon: &Daemon) -> String {
    let path = daemon.state_dir().join("setup-token");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .trim()
        .to_string()
}

pub fn login(daemon: &Daemon, user: &str, password: &str) -> Response {
    post_form(
        daemon,
        "/login",
        None,
        &[("user", user), ("password", password)],
    )
}

/// Posts `fields` as `application/x-www-form-urlencoded`.
pub fn post_form(
    daemon: &Daemon,
    path: &str,
    cookie: Option<&str>,
    fields: &[(&str, &str)],
) -> Response {
    let body = encode_form(fields);
    let mut request =
        Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("{SESSION_COOKIE}={cookie}"));
    }
    request.body = body.as_bytes();
    daemon.api(&request)
}

/// The `Set-Cookie` header of the session cookie a response sets, whole (with its flags).
pub fn session_set_cookie(response: &Response) -> Option<&str> {
    response
        .headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, value)| value.as_str())
        .find(|value| value.starts_with(&format!("{SESSION_COOKIE}=")))
}

/// The session cookie's value a response sets (not one that clears it).
pub fn session_cookie(response: &Response) -> Option<String> {
    session_set_cookie(response)
        .and_then(|header| header.split(';').next())
        .and_then(|pair| pair.split_once('='))
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// The first CSRF token of a page's forms.
fn csrf_of(html: &str) -> Option<String> {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].to_string())
}

pub fn encode_form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A loopback port in the test's namespace that forwards each connection to `target`
/// inside network namespace `netns`: how Chromium, which runs here, reaches a daemon
/// whose tunnels must live in a namespace of the test's own. Stops accepting on drop.
pub struct ForwardIntoNetns {
    pub addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl ForwardIntoNetns {
    pub fn start(netns: &str, target: std::net::SocketAddr) -> ForwardIntoNetns {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding the forward");
        let addr = listener.local_addr().expect("the forward's address");
        let stop = Arc::new(AtomicBool::new(false));
        let netns = netns.to_string();
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) =
                    crate::netns::connect(Some(&netns), target, std::time::Duration::from_secs(5))
                else {
                    continue;
                };
                let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                if let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) {
                    pipe(client, server);
                    pipe(s2, c2);
                }
            }
        });
        ForwardIntoNetns { addr, stop }
    }
}

impl Drop for ForwardIntoNetns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
