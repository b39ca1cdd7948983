//! The configuration on the REST API of the real binary, as the web UI's pages do it:
//! every route of the OpenAPI document needs a token (but the document and health); a
//! check added, reviewed, committed with confirmation, confirmed and running; errors at
//! their field path (422) and stale revisions (409); an unconfirmed commit rolled back by
//! itself, with its audit line; export and import round trips; and secrets that appear in
//! no answer of any GET route nor in an export that leaves them out.

use std::net::TcpListener;

use serde_json::{json, Value};
use siteward_tests::http::{Request, Response};
use siteward_tests::netns::unique_ifname;
use siteward_tests::wireguard::PresharedKey;
use siteward_tests::{Daemon, Netns, WgKeys, STATE_TIMEOUT};

/// The API with a token, JSON in and out.
struct Api<'a> {
    daemon: &'a Daemon,
    token: String,
}

impl<'a> Api<'a> {
    fn new(daemon: &'a Daemon) -> Api<'a> {
        Api {
            daemon,
            token: daemon.create_token("ops"),
        }
    }

    fn send(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let request = Request {
            method,
            body,
            ..Request::get(path)
        };
        self.daemon.api(
            &request
                .bearer(&self.token)
                .header("Content-Type", "application/json"),
        )
    }

    fn get(&self, path: &str) -> Response {
        self.send("GET", path, b"")
    }

    fn json(&self, method: &str, path: &str, body: &Value) -> Response {
        self.send(method, path, body.to_string().as_bytes())
    }

    /// `method path` with `body`; panics unless the answer is `status`, returns its JSON.
    fn expect(&self, status: u16, method: &str, path: &str, body: &Value) -> Value {
        let response = self.json(method, path, body);
        assert_eq!(
            response.status,
            status,
            "{method} {path} {body}: {}",
            response.text()
        );
        response.json()
    }

    /// `GET path`; panics unless 200.
    fn read(&self, path: &str) -> Value {
        let response = self.get(path);
        assert_eq!(response.status, 200, "GET {path}: {}", response.text());
        response.json()
    }

    fn revision(&self) -> u64 {
        self.read("/api/v1/config/candidate")["revision"]
            .as_u64()
            .expect("the candidate has a revision")
    }
}

/// The OpenAPI document, fetched without a token.
fn openapi(daemon: &Daemon) -> Value {
    let response = daemon.api(&Request::get("/api/v1/openapi.json"));
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()
}

/// Every `(method, path)` of the document, methods in upper case.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item is an object")
                .iter()
                .map(move |(method, operation)| {
                    (method.to_uppercase(), path.clone(), operation.clone())
                })
        })
        .collect()
}

fn lines_with<'v>(answer: &'v Value, key: &str, needle: &str) -> Vec<&'v str> {
    answer[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {answer:#}"))
        .iter()
        .filter_map(|line| {
            let text = line.as_str().or_else(|| line["text"].as_str())?;
            text.contains(needle).then_some(text)
        })
        .collect()
}

#[test]
fn every_documented_route_needs_a_token_but_the_document_and_health() {
    let daemon = Daemon::start("");
    let doc = openapi(&daemon);
    assert_eq!(doc["openapi"], "3.1.0");
    let operations = operations(&doc);
    for expected in [
        ("GET", "/api/v1/checks"),
        ("POST", "/api/v1/tools/ping"),
        ("GET", "/api/v1/logs"),
        ("POST", "/api/v1/config/candidate/{section}"),
        (
            "PUT",
            "/api/v1/config/candidate/tunnels/{tunnel}/peers/{peer}",
        ),
        ("POST", "/api/v1/config/commit"),
        ("GET", "/api/v1/audit"),
    ] {
        assert!(
            operations
                .iter()
                .any(|(m, p, _)| m == expected.0 && p == expected.1),
            "the document lacks {expected:?}"
        );
    }

    let mut public = Vec::new();
    for (method, path, operation) in &operations {
        let concrete = path.replace(['{', '}'], "");
        let is_public = operation["security"] == json!([]);
        for authorization in [None, Some("Bearer swt_0000"), Some("Basic b3BzOm9wcw==")] {
            let mut request = Request {
                method,
                body: b"{\"revision\": 0}",
                ..Request::get(&concrete)
            };
            if let Some(value) = authorization {
                request = request.header("Authorization", value);
            }
            let response = daemon.api(&request);
            let context = format!("{method} {concrete} with {authorization:?}");
            if is_public {
                assert_eq!(response.status, 200, "{context}: {}", response.text());
                continue;
            }
            assert_eq!(response.status, 401, "{context}: {}", response.text());
            assert_eq!(
                response.header("www-authenticate"),
                Some("Bearer realm=\"siteward\""),
                "{context}"
            );
            assert_eq!(
                response.json(),
                json!({ "error": "a valid bearer token is required" }),
                "{context}"
            );
        }
        if is_public {
            public.push(format!("{method} {path}"));
        }
    }
    public.sort();
    assert_eq!(public, ["GET /api/v1/health", "GET /api/v1/openapi.json"]);
    // Nothing was staged or written by any of those requests.
    let history = std::fs::read_dir(daemon.state_dir().join("config/history"))
        .unwrap()
        .count();
    assert_eq!(history, 2, "one version (its .toml and .json) is recorded");
    assert!(!daemon.state_dir().join("config/candidate.json").exists());
}

#[test]
fn a_check_added_through_the_api_is_reviewed_committed_confirmed_and_runs() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = listener.local_addr().unwrap().to_string();
    let daemon = Daemon::start("");
    let api = Api::new(&daemon);

    let candidate = api.read("/api/v1/config/candidate");
    assert_eq!(candidate["staged"], false);
    assert_eq!(candidate["revision"], 0);

    let response = api.json(
        "POST",
        "/api/v1/config/candidate/checks",
        &json!({ "revision": 0, "name": "web", "kind": "tcp", "target": target, "interval": "1s" }),
    );
    assert_eq!(response.status, 201, "{}", response.text());
    assert_eq!(
        response.header("location"),
        Some("/api/v1/config/candidate/checks/0")
    );
    let added = response.json();
    assert_eq!(added["entry"], "checks[0]");
    assert_eq!(added["values"]["target"], target.as_str());
    assert_eq!(added["revision"], 1);
    assert_eq!(
        api.read("/api/v1/config/candidate/checks/0")["values"]["name"],
        "web"
    );

    // A field error comes back at its whole path, and nothing is staged.
    let refused = api.expect(
        422,
        "POST",
        "/api/v1/config/candidate/checks",
        &json!({ "revision": 1, "name": "db", "kind": "tcp", "target": "no-port-here" }),
    );
    let fields = refused["fields"].as_object().unwrap();
    assert_eq!(
        fields.keys().collect::<Vec<_>>(),
        ["checks[1].target"],
        "{refused:#}"
    );
    assert!(refused["error"].as_str().is_some_and(|e| !e.is_empty()));
    let refused = api.expect(
        422,
        "PUT",
        "/api/v1/config/candidate/checks/0",
        &json!({ "revision": 1, "rise": "often" }),
    );
    assert!(
        refused["fields"]["checks[0].rise"].is_string(),
        "{refused:#}"
    );
    let refused = api.expect(
        422,
        "PUT",
        "/api/v1/config/candidate/checks/0",
        &json!({ "revision": 1, "no_such_key": "x" }),
    );
    assert!(
        refused["fields"]["checks[0].no_such_key"].is_string(),
        "{refused:#}"
    );
    assert_eq!(api.revision(), 1);

    // A stale revision is refused with 409, whatever the change.
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/config/candidate/checks",
            json!({ "revision": 0, "name": "db", "kind": "tcp", "target": "127.0.0.1:9" }),
        ),
        (
            "PUT",
            "/api/v1/config/candidate/checks/0",
            json!({ "revision": 7, "interval": "5s" }),
        ),
        ("POST", "/api/v1/config/commit", json!({ "revision": 0 })),
    ] {
        let answer = api.expect(409, method, path, &body);
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("revision")),
            "{answer}"
        );
    }
    let response = api.send(
        "DELETE",
        "/api/v1/config/candidate/checks/0?revision=0",
        b"",
    );
    assert_eq!(response.status, 409, "{}", response.text());
    // An entry that is not there is 404, not an edit.
    api.expect(
        404,
        "PUT",
        "/api/v1/config/candidate/checks/5",
        &json!({ "revision": 1, "interval": "5s" }),
    );
    assert_eq!(api.revision(), 1);

    // The diff shows the new check; the review has no errors.
    let review = api.read("/api/v1/config/diff");
    assert_eq!(review["staged"], true);
    assert_eq!(review["errors"], json!({}));
    let added: Vec<&str> = review["diff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["change"] == "added")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert!(
        added.contains(&format!("checks[web].target = \"{target}\"").as_str()),
        "{review:#}"
    );
    assert_eq!(review["changes"], added.len());

    let committed = api.expect(
        200,
        "POST",
        "/api/v1/config/commit",
        &json!({ "revision": 1, "confirm_seconds": 600, "comment": "add web" }),
    );
    let version = committed["version"].as_u64().unwrap();
    assert!(
        committed["confirm_by_ms"].as_u64().is_some(),
        "{committed:#}"
    );
    assert!(std::fs::read_to_string(daemon.config_path())
        .unwrap()
        .contains(&target));
    let history = api.read("/api/v1/config/history");
    assert_eq!(history["running"], version);
    assert_eq!(history["pending"]["version"], version);
    assert_eq!(history["versions"][0]["comment"], "add web");
    assert_eq!(history["versions"][0]["by"]["name"], "token:ops");
    assert_eq!(api.read("/api/v1/config/candidate")["staged"], false);

    let confirmed = api.expect(200, "POST", "/api/v1/config/confirm", &json!({}));
    assert_eq!(confirmed["confirmed"], version);
    assert_eq!(api.read("/api/v1/config/history")["pending"], Value::Null);
    api.expect(409, "POST", "/api/v1/config/confirm", &json!({}));

    let checks = daemon.checks(&api.token);
    assert!(
        checks["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "web" && c["target"] == target.as_str()),
        "{checks:#}"
    );
    daemon.wait_for_check_state(&api.token, "web", "up", "ok");

    // Every step is in the audit log, by the token, from the client's address.
    let audit = api.read("/api/v1/audit?limit=10");
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["by"]["name"] == "token:ops" && e["by"]["from"] == "127.0.0.1")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(actions, ["confirm", "commit", "stage"], "{audit:#}");
    assert_eq!(
        api.read("/api/v1/audit?limit=1")["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    api.expect(422, "GET", "/api/v1/audit?limit=many", &json!({}));
}

#[test]
fn an_unconfirmed_commit_is_rolled_back_by_itself() {
    let daemon = Daemon::start(
        "[[checks]]\nname = \"keep\"\nkind = \"tcp\"\ntarget = \"127.0.0.1:9\"\ninterval = \"24h\"\n",
    );
    let api = Api::new(&daemon);
    let original = std::fs::read_to_string(daemon.config_path()).unwrap();
    let before = api.read("/api/v1/config/history")["running"]
        .as_u64()
        .unwrap();

    api.expect(
        201,
        "POST",
        "/api/v1/config/candidate/checks",
        &json!({ "revision": 0, "name": "trial", "kind": "tcp", "target": "127.0.0.1:10", "interval": "24h" }),
    );
    let committed = api.expect(
        200,
        "POST",
        "/api/v1/config/commit",
        &json!({ "revision": 1, "confirm_seconds": 2 }),
    );
    let trial_version = committed["version"].as_u64().unwrap();
    assert!(trial_version > before);
    let version = api.read(&format!("/api/v1/config/history/{trial_version}"));
    assert!(
        !lines_with(&version, "lines", "checks[trial]").is_empty(),
        "{version:#}"
    );
    assert_eq!(version["previous"], before);
    assert!(
        !lines_with(&version, "diff", "checks[trial].target").is_empty(),
        "{version:#}"
    );

    // Nobody confirms: the previous configuration comes back, on disk and running.
    let history = daemon.wait_until(STATE_TIMEOUT, "the commit is rolled back", || {
        let history = api.read("/api/v1/config/history");
        (history["pending"].is_null() && history["running"] != trial_version).then_some(history)
    });
    let restored = history["versions"][0].clone();
    assert_eq!(restored["by"]["name"], "siteward", "{history:#}");
    assert!(
        restored["action"]
            .as_str()
            .is_some_and(|a| a.contains("not confirmed in time")),
        "{history:#}"
    );
    assert_eq!(
        std::fs::read_to_string(daemon.config_path()).unwrap(),
        original
    );
    daemon.wait_until(STATE_TIMEOUT, "the trial check is gone", || {
        let checks = daemon.checks(&api.token);
        let names: Vec<String> = checks["checks"]
            .as_array()?
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect();
        (names == ["keep"]).then_some(())
    });
    let running = api.read("/api/v1/config/running");
    assert!(
        lines_with(&running, "lines", "trial").is_empty(),
        "{running:#}"
    );

    let audit = api.read("/api/v1/audit");
    let rollback = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "rollback")
        .unwrap_or_else(|| panic!("no rollback in the audit log: {audit:#}"));
    assert_eq!(rollback["by"]["name"], "siteward");
    let detail = rollback["detail"].as_str().unwrap();
    assert!(
        detail.contains("not confirmed in time") && detail.contains(&trial_version.to_string()),
        "{rollback}"
    );

    // Nothing waits any more; a rollback to the trial version must be asked for.
    api.expect(409, "POST", "/api/v1/config/rollback-now", &json!({}));
    let again = api.expect(
        200,
        "POST",
        &format!("/api/v1/config/history/{trial_version}/rollback"),
        &json!({ "confirm_seconds": 600 }),
    );
    assert!(again["confirm_by_ms"].is_u64(), "{again:#}");
    let undone = api.expect(200, "POST", "/api/v1/config/rollback-now", &json!({}));
    assert_eq!(undone["rolled_back"], true);
    assert_eq!(
        std::fs::read_to_string(daemon.config_path()).unwrap(),
        original
    );
    api.expect(
        404,
        "POST",
        "/api/v1/config/history/9999/rollback",
        &json!({}),
    );
}

const PASSPHRASE: &str = "correct horse battery staple";

#[test]
fn export_and_import_round_trip_with_encrypted_and_omitted_secrets() {
    let secret = format!("ami-s3cret-{}", std::process::id());
    let daemon = Daemon::start(&format!(
        "[[checks]]\nname = \"pbx\"\nkind = \"asterisk-ami\"\ntarget = \"127.0.0.1:9\"\n\
         username = \"monitor\"\nsecret = \"{secret}\"\ninterval = \"24h\"\n"
    ));
    let api = Api::new(&daemon);

    let response = api.json(
        "POST",
        "/api/v1/config/export",
        &json!({ "secrets": "encrypt", "passphrase": PASSPHRASE }),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(response
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/toml")));
    let encrypted = response.text();
    assert!(encrypted.contains("siteward-secret:v1:"), "{encrypted}");
    assert!(!encrypted.contains(&secret));
    api.expect(
        422,
        "POST",
        "/api/v1/config/export",
        &json!({ "secrets": "encrypt", "passphrase": "short" }),
    );
    api.expect(
        422,
        "POST",
        "/api/v1/config/export",
        &json!({ "secrets": "all" }),
    );

    // A wrong passphrase: refused at the secret's path, nothing staged.
    let refused = api.expect(
        422,
        "POST",
        "/api/v1/config/import",
        &json!({ "text": encrypted, "passphrase": "not the right one", "revision": 0 }),
    );
    let paths: Vec<&String> = refused["fields"].as_object().unwrap().keys().collect();
    assert_eq!(paths.len(), 1, "{refused:#}");
    assert!(paths[0].ends_with(".secret"), "{refused:#}");
    assert_eq!(api.read("/api/v1/config/candidate")["staged"], false);

    // The export, changed and imported: the change shows, the secret comes back intact.
    let changed = encrypted.replace("interval = \"24h\"", "interval = \"12h\"");
    assert_ne!(changed, encrypted);
    let staged = api.expect(
        200,
        "POST",
        "/api/v1/config/import",
        &json!({ "text": changed, "passphrase": PASSPHRASE, "revision": 0 }),
    );
    assert_eq!(staged["staged"], true);
    let review = api.read("/api/v1/config/diff");
    let changes: Vec<&str> = review["diff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["change"] != "same")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(
        changes,
        [
            "checks[pbx].interval = \"24h\"",
            "checks[pbx].interval = \"12h\""
        ],
        "{review:#}"
    );
    let revision = staged["revision"].as_u64().unwrap();
    api.expect(
        200,
        "POST",
        "/api/v1/config/commit",
        &json!({ "revision": revision }),
    );
    let file = std::fs::read_to_string(daemon.config_path()).unwrap();
    assert!(file.contains(&format!("secret = \"{secret}\"")), "{file}");
    assert!(file.contains("interval = \"12h\""), "{file}");

    // Left out, and given back as a whole file: the secret is kept from the running one.
    let response = api.json(
        "POST",
        "/api/v1/config/export",
        &json!({ "secrets": "omit" }),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let omitted = response.text();
    assert!(omitted.contains("siteward-secret:omitted"), "{omitted}");
    assert!(!omitted.contains(&secret));
    let changed = omitted.replace("interval = \"12h\"", "interval = \"6h\"");
    let response = api.send(
        "PUT",
        "/api/v1/config/candidate?revision=0",
        changed.as_bytes(),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let staged = response.json();
    assert_eq!(
        staged["secrets_kept_from_current"],
        json!(["checks[0].secret"]),
        "{staged:#}"
    );
    let review = api.read("/api/v1/config/diff");
    assert_eq!(review["changes"], 2, "{review:#}");
    assert!(lines_with(&review, "diff", "(secret, changed)").is_empty());
    // Not valid TOML: 422 at `text`, and the staged candidate stays.
    let response = api.send(
        "PUT",
        &format!("/api/v1/config/candidate?revision={}", staged["revision"]),
        b"[[checks]\nname = ",
    );
    assert_eq!(response.status, 422, "{}", response.text());
    assert!(response.json()["fields"]["text"].is_string());
    assert_eq!(api.revision(), staged["revision"].as_u64().unwrap());
    let discarded = api.expect(200, "DELETE", "/api/v1/config/candidate", &json!({}));
    assert_eq!(discarded["discarded"], true);
    assert_eq!(api.read("/api/v1/config/candidate")["staged"], false);

    let audit = api.read("/api/v1/audit");
    let exports = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "export" && e["by"]["name"] == "token:ops")
        .count();
    assert_eq!(exports, 2, "{audit:#}");
}

/// Real values for the placeholders of a GET path, from what the daemon has: every check,
/// tunnel, section, entry, peer and version. Panics on a placeholder it does not know, so
/// a new route is walked too.
fn concrete_paths(api: &Api, path: &str) -> Vec<String> {
    let names = |list: &str, key: &str| -> Vec<String> {
        api.read(list)[key]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|item| item["name"].as_str().map(str::to_string))
            .collect()
    };
    let sections: Vec<String> = api.read("/api/v1/config/schema")["sections"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["key"].as_str().map(str::to_string))
        .filter(|key| key != "tunnels.peers")
        .collect();
    let repeated = |section: &str| -> Vec<Value> {
        api.read(&format!("/api/v1/config/candidate/{section}"))["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    match path {
        "/api/v1/checks/{name}" => names("/api/v1/checks", "checks")
            .iter()
            .map(|n| format!("/api/v1/checks/{n}"))
            .collect(),
        "/api/v1/tunnels/{name}" => names("/api/v1/tunnels", "tunnels")
            .iter()
            .map(|n| format!("/api/v1/tunnels/{n}"))
            .collect(),
        "/api/v1/tools/wireguard/{tunnel}/peer" => names("/api/v1/tunnels", "tunnels")
            .iter()
            .map(|n| format!("/api/v1/tools/wireguard/{n}/peer"))
            .collect(),
        "/api/v1/config/candidate/{section}" => sections
            .iter()
            .map(|s| format!("/api/v1/config/candidate/{s}"))
            .collect(),
        "/api/v1/config/candidate/{section}/{index}" => {
            ["checks", "tunnels", "connectors", "relays"]
                .iter()
                .flat_map(|section| {
                    repeated(section)
                        .iter()
                        .map(|e| format!("/api/v1/config/candidate/{section}/{}", e["index"]))
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        "/api/v1/config/candidate/tunnels/{tunnel}/peers/{peer}" => repeated("tunnels")
            .iter()
            .flat_map(|tunnel| {
                let t = tunnel["index"].clone();
                tunnel["peers"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|p| format!("/api/v1/config/candidate/tunnels/{t}/peers/{}", p["index"]))
                    .collect::<Vec<_>>()
            })
            .collect(),
        "/api/v1/config/history/{version}" => api.read("/api/v1/config/history")["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| format!("/api/v1/config/history/{}", v["version"]))
            .collect(),
        other if !other.contains('{') => vec![other.to_string()],
        other => panic!("no real values for the placeholders of GET {other}: add them here"),
    }
}

#[test]
fn secrets_appear_in_no_api_answer_nor_in_an_export_without_them() {
    let ns = Netns::new();
    let pid = std::process::id();
    let uplink_token = format!("uplink-t0ken-{pid}");
    let new_uplink_token = format!("uplink-r0tated-{pid}");
    let ami_secret = format!("ami-s3cret-{pid}");
    let hmac_secret = format!("hook-hm4c-{pid}");
    let keys = WgKeys::generate();
    let far_end = WgKeys::generate();
    let psk = PresharedKey::generate();
    let second_peer = WgKeys::generate();
    let second_psk = PresharedKey::generate();
    let ifname = unique_ifname('w');
    let daemon = Daemon::start_in(
        &ns,
        &format!(
            r#"
[uplink]
url = "https://127.0.0.1:9/events"
token = "{uplink_token}"
status_interval = "0s"

[[checks]]
name = "pbx"
kind = "asterisk-ami"
target = "127.0.0.1:9"
username = "monitor"
secret = "{ami_secret}"
interval = "24h"

[[connectors]]
name = "hooks"
kind = "webhook"
listen = "127.0.0.1:0"
path = "/hooks"
hmac_secret = "{hmac_secret}"

[[tunnels]]
name = "hq"
kind = "wireguard"
interface = "{ifname}"
private_key = "{private}"
addresses = ["10.77.0.1/24"]

[[tunnels.peers]]
name = "hub"
public_key = "{public}"
preshared_key = "{psk}"
allowed_ips = ["10.88.0.0/16"]
"#,
            private = keys.private,
            public = far_end.public,
            psk = psk.base64(),
        ),
    );
    daemon.wait_for_tunnel("hq");
    let api = Api::new(&daemon);
    let secrets = [
        ("the uplink token", uplink_token.as_str()),
        ("the new uplink token", new_uplink_token.as_str()),
        ("the AMI secret", ami_secret.as_str()),
        ("the webhook's HMAC secret", hmac_secret.as_str()),
        ("the WireGuard private key", keys.private.as_str()),
        ("the WireGuard pre-shared key", psk.base64()),
        ("the added peer's pre-shared key", second_psk.base64()),
    ];
    let file = std::fs::read_to_string(daemon.config_path()).unwrap();
    for (what, value) in &secrets[..] {
        if *value != new_uplink_token && *value != second_psk.base64() {
            assert!(file.contains(value), "the test's file lacks {what}");
        }
    }

    // Answers of changes count too: rotate the uplink token (committed), and stage an
    // edit of the tunnel's peer and a new peer with its own key, so the history and the
    // candidate differ in secrets.
    let mut answers: Vec<(String, String)> = Vec::new();
    let mut change = |method: &str, path: &str, body: Value, status: u16| {
        let answer = api.expect(status, method, path, &body);
        answers.push((format!("{method} {path}"), answer.to_string()));
        answer
    };
    change(
        "PUT",
        "/api/v1/config/candidate/uplink",
        json!({ "revision": 0, "token": new_uplink_token }),
        200,
    );
    change(
        "POST",
        "/api/v1/config/commit",
        json!({ "revision": 1 }),
        200,
    );
    let staged = change(
        "PUT",
        "/api/v1/config/candidate/tunnels/0/peers/0",
        json!({ "revision": 0, "persistent_keepalive": "25s" }),
        200,
    );
    assert_eq!(staged["values"]["preshared_key"], json!({ "set": true }));
    let added = change(
        "POST",
        "/api/v1/config/candidate/tunnels/0/peers",
        json!({
            "revision": staged["revision"],
            "name": "branch",
            "public_key": second_peer.public,
            "preshared_key": second_psk.base64(),
            "allowed_ips": ["10.89.0.0/16"],
        }),
        201,
    );
    assert_eq!(added["entry"], "tunnels[0].peers[1]");
    assert_eq!(added["values"]["preshared_key"], json!({ "set": true }));
    let file = std::fs::read_to_string(daemon.config_path()).unwrap();
    assert!(
        file.contains(&new_uplink_token),
        "the rotated token was committed"
    );

    // Every GET route of the document, with real parameters.
    let doc = openapi(&daemon);
    let mut walked = 0;
    for (method, path, _) in operations(&doc) {
        if method != "GET" {
            continue;
        }
        let concrete = concrete_paths(&api, &path);
        assert!(!concrete.is_empty(), "nothing to walk for GET {path}");
        for path in concrete {
            let response = api.get(&path);
            assert!(
                response.status == 200,
                "GET {path}: {} {}",
                response.status,
                response.text()
            );
            answers.push((format!("GET {path}"), response.text()));
            walked += 1;
        }
    }
    let response = api.json(
        "POST",
        "/api/v1/config/export",
        &json!({ "secrets": "omit" }),
    );
    assert_eq!(response.status, 200, "{}", response.text());
    answers.push(("the export without secrets".into(), response.text()));

    for (where_, text) in &answers {
        for (what, value) in &secrets {
            assert!(!text.contains(value), "{what} appears in {where_}: {text}");
        }
    }
    // The walk saw what it should: secrets shown as set, masked lines, a changed secret.
    let all = answers
        .iter()
        .map(|(_, text)| text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(walked > 20, "only {walked} GET answers");
    assert!(
        all.contains(r#""token":{"set":true}"#),
        "the uplink's token shows as set"
    );
    assert!(all.contains(r#""private_key":{"set":true}"#));
    assert!(
        all.contains("uplink.token = (secret)"),
        "the masked lines show the token"
    );
    assert!(
        all.contains("(secret, changed)"),
        "the history shows the rotated token as changed"
    );
    assert!(all.contains("siteward-secret:omitted"));
}
