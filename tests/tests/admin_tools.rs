//! The web UI's Tools through the HTTPS API of the real binary: TCP port test, ping, DNS
//! lookup, one-shot checks against simulators (secrets never echoed or logged), the live
//! log view with its long-poll, WireGuard key pairs and peer snippets, and 401 without a
//! token on every one of these routes.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use siteward_tests::http::{Request, Response};
use siteward_tests::netns::unique_ifname;
use siteward_tests::wireguard::public_key_of;
use siteward_tests::{Daemon, Netns, Simulator, WgKeys, STATE_TIMEOUT};

/// `POST path` with a JSON body and the token.
fn post_json(daemon: &Daemon, token: &str, path: &str, body: &Value) -> Response {
    let body = body.to_string().into_bytes();
    let request = Request {
        body: &body,
        ..Request::post(path)
    };
    daemon.api(
        &request
            .bearer(token)
            .header("Content-Type", "application/json"),
    )
}

/// `POST path` with `body`; panics unless 200, returns the JSON answer.
fn tool(daemon: &Daemon, token: &str, path: &str, body: &Value) -> Value {
    let response = post_json(daemon, token, path, body);
    assert_eq!(
        response.status,
        200,
        "POST {path} {body}: {}",
        response.text()
    );
    response.json()
}

fn get(daemon: &Daemon, token: &str, path: &str) -> Response {
    daemon.api(&Request::get(path).bearer(token))
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[test]
fn every_tool_route_needs_a_token() {
    let daemon = Daemon::start("");
    let body = br#"{"target": "127.0.0.1:1"}"#;
    let requests = [
        Request::post("/api/v1/tools/ping"),
        Request::post("/api/v1/tools/tcp"),
        Request::post("/api/v1/tools/dns"),
        Request::post("/api/v1/tools/check"),
        Request::post("/api/v1/tools/wireguard/keypair"),
        Request::get("/api/v1/tools/wireguard/hq/peer"),
        Request::get("/api/v1/tools/wireguard/hq/peer?endpoint_host=192.0.2.1"),
        Request::get("/api/v1/logs"),
        Request::get("/api/v1/logs?after=0&wait=20"),
        Request::get("/api/v1/tools/nope"),
    ];
    for request in requests {
        for authorization in [None, Some("Bearer swt_0000")] {
            let mut request = Request {
                body,
                ..request.clone()
            };
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            let started = Instant::now();
            let response = daemon.api(&request);
            let context = format!("{} {} with {authorization:?}", request.method, request.path);
            assert_eq!(response.status, 401, "{context}: {}", response.text());
            assert_eq!(
                response.json(),
                json!({ "error": "a valid bearer token is required" }),
                "{context}"
            );
            // Refused before anything runs: the long-poll did not wait.
            assert!(started.elapsed() < Duration::from_secs(15), "{context}");
        }
    }
}

#[test]
fn a_tcp_test_tells_an_open_port_from_a_closed_one() {
    let daemon = Daemon::start("");
    let token = daemon.create_token("ops");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().to_string();

    let run = tool(
        &daemon,
        &token,
        "/api/v1/tools/tcp",
        &json!({ "target": open }),
    );
    assert_eq!(run["kind"], "tcp");
    assert_eq!(run["target"], open);
    assert_eq!(run["up"], true, "{run:#}");
    assert_eq!(run["reason"], "ok");
    assert!(
        run["latency_seconds"].as_f64().is_some_and(|s| s >= 0.0),
        "{run:#}"
    );

    let closed = format!("127.0.0.1:{}", closed_port());
    let run = tool(
        &daemon,
        &token,
        "/api/v1/tools/tcp",
        &json!({ "target": closed }),
    );
    assert_eq!(run["up"], false, "{run:#}");
    assert_eq!(run["reason"], "refused", "{run:#}");

    // Bad input: 400 with the problem at the user's key, and nothing run.
    let response = post_json(
        &daemon,
        &token,
        "/api/v1/tools/tcp",
        &json!({ "target": "127.0.0.1", "timeout": "1m", "interval": "5s" }),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    let fields = body["fields"].as_object().unwrap();
    let keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    assert_eq!(keys, ["interval", "target", "timeout"], "{body:#}");
    assert_eq!(body["fields"]["timeout"], "at most 10s for a diagnostic");
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    for not_an_object in [&b"[1, 2]"[..], b"{\"target\": ", b""] {
        let request = Request {
            body: not_an_object,
            ..Request::post("/api/v1/tools/tcp")
        };
        let response = daemon.api(&request.bearer(&token));
        assert_eq!(response.status, 400, "{}", response.text());
        assert!(response.json()["error"].is_string());
    }
}

#[test]
fn ping_answers_from_loopback() {
    let daemon = Daemon::start("");
    let token = daemon.create_token("ops");
    let run = tool(
        &daemon,
        &token,
        "/api/v1/tools/ping",
        &json!({ "target": "127.0.0.1", "count": 3 }),
    );
    assert_eq!(run["kind"], "icmp");
    assert_eq!(run["up"], true, "{run:#}");
    assert_eq!(run["reason"], "ok");
    assert!(
        run["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{run:#}"
    );
    // At most ten echo requests per diagnostic.
    let response = post_json(
        &daemon,
        &token,
        "/api/v1/tools/ping",
        &json!({ "target": "127.0.0.1", "count": 50 }),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    assert_eq!(
        response.json()["fields"]["count"],
        "at most 10 for a diagnostic"
    );
}

#[test]
fn dns_lookups_answer_from_etc_hosts() {
    let daemon = Daemon::start("");
    let token = daemon.create_token("ops");
    let lookup = tool(
        &daemon,
        &token,
        "/api/v1/tools/dns",
        &json!({ "name": "localhost", "type": "A" }),
    );
    assert_eq!(lookup["type"], "A");
    assert_eq!(lookup["error"], Value::Null, "{lookup:#}");
    let answers = lookup["answers"].as_array().unwrap();
    assert!(
        answers
            .iter()
            .any(|a| a["type"] == "A" && a["data"] == "127.0.0.1"),
        "{lookup:#}"
    );
    assert!(lookup["elapsed_seconds"].as_f64().is_some(), "{lookup:#}");

    // An address is looked up by its reverse name.
    let lookup = tool(
        &daemon,
        &token,
        "/api/v1/tools/dns",
        &json!({ "name": "127.0.0.1" }),
    );
    assert_eq!(lookup["type"], "PTR");
    assert_eq!(lookup["name"], "1.0.0.127.in-addr.arpa.");
    assert!(
        lookup["answers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["data"]
                .as_str()
                .is_some_and(|d| d.starts_with("localhost"))),
        "{lookup:#}"
    );

    let response = post_json(
        &daemon,
        &token,
        "/api/v1/tools/dns",
        &json!({ "name": "bad name", "type": "AXFR" }),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert!(body["fields"]["name"].is_string(), "{body:#}");
    assert!(body["fields"]["type"].is_string(), "{body:#}");
}

#[test]
fn one_shot_checks_run_against_simulators_and_keep_secrets() {
    let tns = Simulator::start("oracle-tns", &["--service", "EBSPROD"]);
    let secrets = tempfile::tempdir().unwrap();
    let secret_file = secrets.path().join("ami.secret");
    std::fs::write(&secret_file, "pbx-s3cret\n").unwrap();
    let pbx = Simulator::start(
        "asterisk-ami",
        &[
            "--username",
            "monitor",
            "--secret-file",
            secret_file.to_str().unwrap(),
        ],
    );
    let daemon = Daemon::start("");
    let token = daemon.create_token("ops");
    let tns_addr = tns.addr.to_string();

    let run = tool(
        &daemon,
        &token,
        "/api/v1/tools/check",
        &json!({ "kind": "oracle-tns", "target": tns_addr, "service_name": "EBSPROD" }),
    );
    assert_eq!(run["kind"], "oracle-tns");
    assert_eq!(run["up"], true, "{run:#}");
    let run = tool(
        &daemon,
        &token,
        "/api/v1/tools/check",
        &json!({ "kind": "oracle-tns", "target": tns_addr, "service_name": "NOSUCH" }),
    );
    assert_eq!(run["up"], false, "{run:#}");
    assert!(
        run["detail"].as_str().unwrap().contains("ERR=12514"),
        "{run:#}"
    );

    // The same validation as the configuration file, keyed by what the user typed.
    let response = post_json(
        &daemon,
        &token,
        "/api/v1/tools/check",
        &json!({ "kind": "oracle-tns", "target": tns_addr, "service_name": "no spaces", "count": 2 }),
    );
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert!(body["fields"]["service_name"].is_string(), "{body:#}");
    assert_eq!(body["fields"]["count"], "not used by kind \"oracle-tns\"");

    // AMI with the right and a wrong secret: neither is ever shown or logged.
    let pbx_addr = pbx.addr.to_string();
    let run = tool(
        &daemon,
        &token,
        "/api/v1/tools/check",
        &json!({ "kind": "asterisk-ami", "target": pbx_addr, "username": "monitor", "secret": "pbx-s3cret" }),
    );
    assert_eq!(run["up"], true, "{run:#}");
    let wrong = tool(
        &daemon,
        &token,
        "/api/v1/tools/check",
        &json!({ "kind": "asterisk-ami", "target": pbx_addr, "username": "monitor", "secret": "guess-wrong" }),
    );
    assert_eq!(wrong["reason"], "auth_failed", "{wrong:#}");
    let refused = post_json(
        &daemon,
        &token,
        "/api/v1/tools/check",
        &json!({ "kind": "tcp", "target": pbx_addr, "secret": "typed-by-mistake" }),
    );
    assert_eq!(refused.status, 400);
    let logs = get(&daemon, &token, "/api/v1/logs?limit=2000");
    let everything = format!(
        "{run}\n{wrong}\n{}\n{}\n{}",
        refused.text(),
        logs.text(),
        daemon.logs().join("\n")
    );
    for secret in ["pbx-s3cret", "guess-wrong", "typed-by-mistake"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    assert!(logs.text().contains("diagnostic check run"));
}

#[test]
fn log_lines_arrive_through_the_log_view_and_its_long_poll() {
    let daemon = Daemon::start("");
    let token = daemon.create_token("ops");
    let page = get(&daemon, &token, "/api/v1/logs");
    assert_eq!(page.status, 200, "{}", page.text());
    let page = page.json();
    let lines = page["lines"].as_array().unwrap();
    let running = lines
        .iter()
        .find(|l| l["message"] == "siteward running")
        .unwrap_or_else(|| panic!("no \"siteward running\" line: {page:#}"));
    assert_eq!(running["level"], "INFO");
    assert!(
        running["fields"].as_str().unwrap().contains("checks=0"),
        "{running:#}"
    );
    assert!(running["seq"].as_u64().is_some() && running["time"].is_string());
    let mut after = page["next_after"].as_u64().unwrap();
    assert_eq!(after, lines.last().unwrap()["seq"].as_u64().unwrap());

    // Nothing at ERROR yet: a short poll ends empty and keeps its place.
    let quiet = get(
        &daemon,
        &token,
        &format!("/api/v1/logs?after={after}&level=error"),
    );
    let quiet = quiet.json();
    assert_eq!(quiet["lines"], json!([]), "{quiet:#}");

    // A long-poll waiting when a diagnostic runs gets its line.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let found = std::thread::scope(|scope| {
        let polling = scope.spawn(|| {
            let deadline = Instant::now() + STATE_TIMEOUT;
            while Instant::now() < deadline {
                let path = format!("/api/v1/logs?after={after}&level=info&wait=20");
                let page = get(&daemon, &token, &path).json();
                after = page["next_after"].as_u64().unwrap();
                if let Some(line) = page["lines"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["message"] == "diagnostic check run")
                {
                    return Some(line.clone());
                }
            }
            None
        });
        tool(
            &daemon,
            &token,
            "/api/v1/tools/tcp",
            &json!({ "target": target }),
        );
        polling.join().unwrap()
    });
    let line = found.expect("the diagnostic's log line never reached the long-poll");
    let fields = line["fields"].as_str().unwrap();
    assert!(fields.contains("kind=\"tcp\""), "{line:#}");
    assert!(fields.contains(&format!("target={target}")), "{line:#}");

    let response = get(&daemon, &token, "/api/v1/logs?level=loud&since=3");
    assert_eq!(response.status, 400, "{}", response.text());
    let body = response.json();
    assert!(body["fields"]["level"].is_string() && body["fields"]["since"].is_string());
}

#[test]
fn key_pairs_are_fresh_and_match_wg() {
    let daemon = Daemon::start("");
    let token = daemon.create_token("ops");
    let first = tool(
        &daemon,
        &token,
        "/api/v1/tools/wireguard/keypair",
        &json!({}),
    );
    let second = tool(
        &daemon,
        &token,
        "/api/v1/tools/wireguard/keypair",
        &json!({}),
    );
    for pair in [&first, &second] {
        let private = pair["private_key"].as_str().unwrap();
        let public = pair["public_key"].as_str().unwrap();
        assert_eq!((private.len(), public.len()), (44, 44), "{pair:#}");
        assert!(private.ends_with('=') && public.ends_with('='));
        assert_eq!(public, public_key_of(private), "wg pubkey disagrees");
    }
    assert_ne!(first["private_key"], second["private_key"]);
    // Handed out once: never in the logs.
    let logs = daemon.logs().join("\n");
    assert!(!logs.contains(first["private_key"].as_str().unwrap()));
}

#[test]
fn a_running_tunnel_gets_a_peer_snippet_with_its_real_port() {
    let ns = Netns::new();
    let ifname = unique_ifname('w');
    let keys = WgKeys::generate();
    let far_end = WgKeys::generate();
    // No listen_port: the kernel picks it, and the snippet must carry the one in use.
    let daemon = Daemon::start_in(
        &ns,
        &format!(
            "[[tunnels]]\nname = \"hq\"\nkind = \"wireguard\"\ninterface = \"{ifname}\"\n\
             private_key = \"{}\"\naddresses = [\"10.77.0.1/24\"]\n\n\
             [[tunnels.peers]]\nname = \"hub\"\npublic_key = \"{}\"\nallowed_ips = [\"10.88.0.0/16\"]\n",
            keys.private, far_end.public
        ),
    );
    daemon.wait_for_tunnel("hq");
    let token = daemon.create_token("ops");
    let port = daemon.tunnel(&token, "hq")["listen_port"].as_u64().unwrap();
    assert_ne!(port, 0);

    let response = get(&daemon, &token, "/api/v1/tools/wireguard/hq/peer");
    assert_eq!(response.status, 200, "{}", response.text());
    let peer = response.json();
    assert_eq!(peer["public_key"], keys.public.as_str());
    assert_eq!(peer["endpoint"], format!("127.0.0.1:{port}"));
    assert_eq!(peer["allowed_ips"], json!(["10.77.0.0/24"]));
    assert_eq!(
        peer["snippet"],
        format!(
            "[Peer]\n# siteward appliance \"{}\", tunnel \"hq\"\nPublicKey = {}\n\
             Endpoint = 127.0.0.1:{port}\nAllowedIPs = 10.77.0.0/24\nPersistentKeepalive = 25\n",
            daemon.appliance(),
            keys.public
        )
    );

    let path = "/api/v1/tools/wireguard/hq/peer?endpoint_host=vpn.example.com";
    let peer = get(&daemon, &token, path).json();
    assert_eq!(peer["endpoint"], format!("vpn.example.com:{port}"));

    let path = "/api/v1/tools/wireguard/hq/peer?endpoint_host=evil%0APublicKey%3Dx";
    let response = get(&daemon, &token, path);
    assert_eq!(response.status, 400, "{}", response.text());
    assert!(response.json()["fields"]["endpoint_host"].is_string());
    let response = get(&daemon, &token, "/api/v1/tools/wireguard/nope/peer");
    assert_eq!(response.status, 404, "{}", response.text());

    let everything = format!("{peer}\n{}", daemon.logs().join("\n"));
    assert!(!everything.contains(&keys.private));
}
