//! `[[connectors]]` and `[[relays]]` in a whole file: the model they become, and their
//! errors with field paths.

mod common;

use std::time::Duration;

use common::{assert_errors, assert_only_error, errors_of, parse_ok, HEAD};
use siteward_config::{FileFormat, Source, WhenFull};

const UPLINK: &str =
    "[uplink]\nurl = \"https://ingest.example.net/v1/events\"\ntoken = \"platform-token-0123456789\"\n";

fn with_uplink(rest: &str) -> String {
    format!("{HEAD}{UPLINK}{rest}")
}

#[test]
fn every_kind_of_connector_becomes_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let config = parse_ok(&with_uplink(&format!(
        r#"
[[connectors]]
name = "ebs-hooks"
kind = "webhook"
listen = "0.0.0.0:8080"
path = "/hooks/ebs"
hmac_secret = "hook-secret-0123456789"
max_body_bytes = 65536

[[connectors]]
name = "pbx"
kind = "asterisk-ami"
when_full = "drop_oldest"
target = "192.0.2.10"
username = "siteward"
secret = "ami-secret-0123"
events = ["Hangup", "Cdr"]

[[connectors]]
name = "sap-exports"
kind = "file-drop"
directory = "{}"
format = "csv"
settle = "2s"

[[connectors]]
name = "logs"
kind = "syslog"
udp = "0.0.0.0:514"
tcp = "0.0.0.0:514"
"#,
        dir.path().display()
    )));
    let [hook, pbx, files, logs] = &config.connectors[..] else {
        panic!("four connectors: {:#?}", config.connectors);
    };
    let Source::Webhook(hook_source) = &hook.source else {
        panic!("a webhook: {hook:?}")
    };
    assert_eq!(hook.when_full, WhenFull::Block);
    assert_eq!(hook_source.path, "/hooks/ebs");
    assert_eq!(hook_source.max_body_bytes, 65536);
    let hmac = hook_source.hmac.as_ref().expect("an HMAC secret");
    assert_eq!(hmac.header, "x-hub-signature-256");
    assert_eq!(hmac.secret.expose(), "hook-secret-0123456789");
    assert!(!format!("{hook:?}").contains("hook-secret"), "{hook:?}");

    let Source::AsteriskAmi(ami) = &pbx.source else {
        panic!("AMI: {pbx:?}")
    };
    assert_eq!(pbx.when_full, WhenFull::DropOldest);
    assert_eq!(ami.target.port, 5038);
    assert_eq!(ami.events, ["Hangup", "Cdr"]);
    assert_eq!(ami.reconnect_max, Duration::from_secs(60));
    assert!(!format!("{pbx:?}").contains("ami-secret"));

    let Source::FileDrop(drop) = &files.source else {
        panic!("file-drop: {files:?}")
    };
    assert_eq!(drop.format, FileFormat::Csv);
    assert_eq!(drop.settle, Duration::from_secs(2));
    assert_eq!(drop.directory, dir.path());

    let Source::Syslog(syslog) = &logs.source else {
        panic!("syslog: {logs:?}")
    };
    // The same port over UDP and TCP does not collide.
    assert_eq!(syslog.udp, syslog.tcp);
    assert_eq!(syslog.max_message_bytes, 64 << 10);
}

#[test]
fn a_relay_becomes_the_model() {
    let config = parse_ok(&format!(
        "{HEAD}[[relays]]\nname = \"oracle\"\nlisten = \"0.0.0.0:1521\"\n\
         target = \"10.20.0.5:1521\"\nallow = [\"203.0.113.0/24\", \"2001:db8::1/64\"]\n\
         idle_timeout = \"30m\"\ninterface = \"wg-site\"\n"
    ));
    let relay = &config.relays[0];
    assert_eq!(relay.name, "oracle");
    assert_eq!(relay.max_connections, 1024);
    assert_eq!(relay.idle_timeout, Duration::from_secs(1800));
    // Host bits are cleared: the network is what is allowed.
    assert_eq!(relay.allow[1].to_string(), "2001:db8::/64");
    assert_eq!(relay.placement.interface.as_deref(), Some("wg-site"));
}

#[test]
fn connectors_need_an_uplink() {
    assert_only_error(
        &format!(
            "{HEAD}[[connectors]]\nname = \"logs\"\nkind = \"syslog\"\nudp = \"127.0.0.1:5514\"\n"
        ),
        "connectors",
        "[uplink]",
    );
}

#[test]
fn connector_errors_name_their_field() {
    assert_only_error(
        &with_uplink("[[connectors]]\nname = \"h\"\nkind = \"webhook\"\n"),
        "connectors[0].listen",
        "missing",
    );
    assert_only_error(
        &with_uplink(
            "[[connectors]]\nname = \"h\"\nkind = \"webhook\"\nlisten = \"127.0.0.1:8080\"\npath = \"hooks\"\n",
        ),
        "connectors[0].path",
        "must start with /",
    );
    assert_only_error(
        &with_uplink(
            "[[connectors]]\nname = \"h\"\nkind = \"webhook\"\nlisten = \"127.0.0.1:8080\"\nudp = \"127.0.0.1:514\"\n",
        ),
        "connectors[0].udp",
        "not used by kind \"webhook\"",
    );
    assert_only_error(
        &with_uplink(
            "[[connectors]]\nname = \"h\"\nkind = \"webhook\"\nlisten = \"127.0.0.1:8080\"\nwhen_full = \"wait\"\n",
        ),
        "connectors[0].when_full",
        "block, drop_oldest",
    );
    assert_only_error(
        &with_uplink("[[connectors]]\nname = \"h\"\nkind = \"mqtt\"\n"),
        "connectors[0].kind",
        "unknown kind \"mqtt\"",
    );
    assert_only_error(
        &with_uplink("[[connectors]]\nname = \"p\"\nkind = \"asterisk-ami\"\ntarget = \"192.0.2.1\"\nusername = \"u\"\n"),
        "connectors[0].secret",
        "missing",
    );
    assert_only_error(
        &with_uplink("[[connectors]]\nname = \"p\"\nkind = \"asterisk-ami\"\ntarget = \"192.0.2.1\"\nusername = \"u\"\nsecret = \"s\"\nevents = [\"Hangup\", \"Hangup\"]\n"),
        "connectors[0].events[1]",
        "duplicate",
    );
    assert_only_error(
        &with_uplink("[[connectors]]\nname = \"f\"\nkind = \"file-drop\"\ndirectory = \"drops\"\n"),
        "connectors[0].directory",
        "cannot read",
    );
    assert_only_error(
        &with_uplink("[[connectors]]\nname = \"l\"\nkind = \"syslog\"\n"),
        "connectors[0].udp",
        "udp and/or tcp",
    );
    assert_only_error(
        &with_uplink("[[connectors]]\nname = \"l\"\nkind = \"syslog\"\ntcp = \"127.0.0.1:514\"\nmax_message_bytes = 100\n"),
        "connectors[0].max_message_bytes",
        "must be 480 to",
    );
}

#[test]
fn an_hmac_secret_of_the_wrong_type_is_not_shown() {
    let errors = errors_of(&with_uplink(
        "[[connectors]]\nname = \"h\"\nkind = \"webhook\"\nlisten = \"127.0.0.1:8080\"\nhmac_secret = 1234567\n",
    ));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "connectors[0].hmac_secret");
    assert!(!errors[0].1.contains("1234567"), "{errors:?}");
}

#[test]
fn listeners_must_not_collide() {
    assert_errors(
        &with_uplink(
            "[[connectors]]\nname = \"h\"\nkind = \"webhook\"\nlisten = \"0.0.0.0:8443\"\n\
             [[connectors]]\nname = \"l\"\nkind = \"syslog\"\ntcp = \"127.0.0.1:1521\"\nudp = \"127.0.0.1:1521\"\n\
             [[relays]]\nname = \"oracle\"\nlisten = \"127.0.0.1:1521\"\ntarget = \"10.0.0.5:1521\"\nallow = [\"10.0.0.0/8\"]\n",
        ),
        &[
            ("connectors[0].listen", "collides with admin.listen"),
            ("relays[0].listen", "collides with connectors[1].tcp"),
        ],
    );
}

#[test]
fn names_are_unique() {
    assert_only_error(
        &with_uplink(
            "[[connectors]]\nname = \"x\"\nkind = \"syslog\"\nudp = \"127.0.0.1:5514\"\n\
             [[connectors]]\nname = \"x\"\nkind = \"syslog\"\nudp = \"127.0.0.1:5515\"\n",
        ),
        "connectors[1].name",
        "duplicate connector name \"x\"",
    );
}

#[test]
fn relay_errors_name_their_field() {
    let relay = |extra: &str| {
        format!("{HEAD}[[relays]]\nname = \"r\"\nlisten = \"127.0.0.1:1521\"\ntarget = \"10.0.0.5:1521\"\n{extra}")
    };
    assert_only_error(&relay(""), "relays[0].allow", "missing");
    assert_only_error(&relay("allow = []\n"), "relays[0].allow", "nobody");
    assert_only_error(
        &relay("allow = [\"10.0.0.1\"]\n"),
        "relays[0].allow[0]",
        "prefix length",
    );
    assert_only_error(
        &relay("allow = [\"10.0.0.0/8\"]\nmax_connections = 0\n"),
        "relays[0].max_connections",
        "must be 1 to",
    );
    assert_only_error(
        &relay("allow = [\"10.0.0.0/8\"]\nsource = \"2001:db8::1\"\n"),
        "relays[0].source",
        "different address families",
    );
    assert_only_error(
        &format!("{HEAD}[[relays]]\nname = \"r\"\nlisten = \"127.0.0.1:1521\"\ntarget = \"db\"\nallow = [\"10.0.0.0/8\"]\n"),
        "relays[0].target",
        "needs a port",
    );
}
