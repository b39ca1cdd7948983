//! Every validation rule of the configuration, through the public `parse`: the field path
//! and a meaningful part of the message, and that the rule adds no error of its own beyond
//! the one expected.

mod common;

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use siteward_config::{
    parse, Check, DnsRecordType, Host, HostPort, Probe, TlsTrust, Transport, CHECK_KINDS,
};

use common::{assert_only_error, base_dir, errors_of, parse_ok, HEAD};

/// A file of the valid head and one check with these lines.
fn with_check(body: &str) -> String {
    format!("{HEAD}[[checks]]\n{body}\n")
}

fn only_check(body: &str) -> Check {
    let mut config = parse_ok(&with_check(body));
    assert_eq!(config.checks.len(), 1);
    config.checks.remove(0)
}

/// Table-driven form of [`assert_only_error`] for checks: (check lines, path, fragment).
fn assert_check_cases(cases: &[(&str, &str, &str)]) {
    for (body, path, fragment) in cases {
        assert_only_error(&with_check(body), path, fragment);
    }
}

// ---- The file as a whole ------------------------------------------------------------

#[test]
fn toml_syntax_error_has_position_and_empty_path() {
    assert_only_error(
        "[appliance\nname = \"plant-01\"\n",
        "",
        "not valid TOML at line 1, column 11",
    );
    assert_only_error(
        "[appliance]\nname = \"plant-01\n",
        "",
        "not valid TOML at line 2",
    );
}

#[test]
fn unknown_top_level_section() {
    assert_only_error(
        &format!("{HEAD}[alerts]\nemail = \"ops@corp.example\"\n"),
        "alerts",
        "unknown section (expected one of appliance, admin, metrics, uplink, spool, checks, tunnels, connectors, relays)",
    );
}

#[test]
fn sections_must_be_tables() {
    assert_only_error(
        "appliance = \"plant-01\"\n",
        "appliance",
        "must be a table, found string",
    );
    assert_only_error(
        &format!("{HEAD}[checks]\nname = \"x\"\n"),
        "checks",
        "must be an array of tables ([[checks]])",
    );
    assert_only_error(
        // Before [appliance]: after it, the key would belong to that table.
        &format!("checks = [1]\n{HEAD}"),
        "checks[0]",
        "must be a table, found integer",
    );
}

#[test]
fn unknown_keys_are_reported_at_their_own_path() {
    // The section's other values are still validated, and no "missing name" is invented.
    assert_only_error(
        "[appliance]\nname = \"plant-01\"\nlocation = \"hall 3\"\n",
        "appliance.location",
        "unknown key (expected one of name, state_dir)",
    );
    assert_only_error(
        &format!("{HEAD}[admin]\nport = 8443\n"),
        "admin.port",
        "unknown key (expected one of listen, cert_file, key_file, session_idle, session_lifetime)",
    );
    assert_only_error(
        &format!("{HEAD}[metrics]\npath = \"/metrics\"\n"),
        "metrics.path",
        "unknown key (expected one of listen)",
    );
    assert_check_cases(&[
        (
            "name = \"a\"\nkind = \"tcp\"\ntarget = \"db.corp.example:22\"\nbogus = 1",
            "checks[0].bogus",
            "unknown key (kind \"tcp\" takes name, kind, target, interval, timeout, rise, fall, source, interface)",
        ),
        (
            "name = \"a\"\nkind = \"oracle-tns\"\ntarget = \"db.corp.example\"\nservice = \"EBS\"",
            "checks[0].service",
            "kind \"oracle-tns\" takes name, kind, target, interval, timeout, rise, fall, source, interface, service_name)",
        ),
        (
            "name = \"a\"\nkind = \"tcp\"\ntarget = \"db.corp.example:22\"\n\"two words\" = 1",
            "checks[0].\"two words\"",
            "unknown key",
        ),
    ]);
}

#[test]
fn every_unknown_key_of_a_table_is_reported() {
    let errors = errors_of(&with_check(
        "name = \"a\"\nkind = \"ftp\"\ntarget = \"h:21\"\nuser = \"x\"\npasswd = \"y\"",
    ));
    let mut paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["checks[0].kind", "checks[0].passwd", "checks[0].user"],
        "{errors:#?}"
    );
    // Without a known kind, the message lists every key a check can have.
    let (_, message) = errors.iter().find(|(p, _)| p == "checks[0].user").unwrap();
    assert!(
        message.contains("expected one of name, kind, target"),
        "{message}"
    );
    assert!(message.contains("accept_any_status"), "{message}");
}

#[test]
fn wrong_types() {
    assert_only_error(
        "[appliance]\nname = 5\n",
        "appliance.name",
        "invalid type: integer `5`, expected a string",
    );
    assert_only_error(
        &format!("{HEAD}[admin]\nlisten = 8443\n"),
        "admin.listen",
        "invalid type: integer `8443`, expected a string",
    );
    let ok = "name = \"a\"\nkind = \"tcp\"\ntarget = \"db.corp.example:22\"\n";
    let http = "name = \"a\"\nkind = \"http\"\nurl = \"http://ebs.corp.example:8000/\"\n";
    assert_check_cases(&[
        (
            &format!("{ok}rise = \"2\""),
            "checks[0].rise",
            "invalid type: string \"2\", expected u32",
        ),
        (
            &format!("{ok}fall = -1"),
            "checks[0].fall",
            "invalid value: integer `-1`, expected u32",
        ),
        (
            &format!("{ok}interval = 10"),
            "checks[0].interval",
            "expected a string",
        ),
        (
            "name = 7\nkind = \"tcp\"\ntarget = \"h:1\"",
            "checks[0].name",
            "expected a string",
        ),
        (
            &format!("{http}expect_status = [70000]"),
            "checks[0].expect_status[0]",
            "expected u16",
        ),
        (
            &format!("{http}expect_status = 200"),
            "checks[0].expect_status",
            "expected a sequence",
        ),
        (
            &format!("{http}insecure_skip_verify = \"yes\""),
            "checks[0].insecure_skip_verify",
            "expected a boolean",
        ),
    ]);
}

#[test]
fn every_wrong_type_of_a_check_is_reported_and_nothing_else_of_it() {
    let errors = errors_of(&with_check(
        "name = \"a\"\nkind = \"tcp\"\ntarget = 22\nrise = \"2\"\ntimeout = \"99s\"",
    ));
    let mut paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    paths.sort();
    // `timeout` >= the default interval is not reported: the check's types are wrong, and
    // its values are judged once they are fixed.
    assert_eq!(paths, ["checks[0].rise", "checks[0].target"], "{errors:#?}");
}

#[test]
fn a_secret_of_the_wrong_type_is_not_quoted() {
    for key in ["secret", "route_password"] {
        let kind = if key == "secret" {
            "asterisk-ami\"\nusername = \"siteward"
        } else {
            "saprouter\"\nroute = \"/H/sapgw01/S/3300"
        };
        let toml = with_check(&format!(
            "name = \"a\"\nkind = \"{kind}\"\ntarget = \"pbx.corp.example\"\n{key} = 918273645"
        ));
        assert_only_error(&toml, &format!("checks[0].{key}"), "value not shown");
        assert!(!format!("{:?}", errors_of(&toml)).contains("918273645"));
    }
}

// ---- [appliance] ----------------------------------------------------------------------

#[test]
fn appliance_name_is_required() {
    assert_only_error(
        "",
        "appliance.name",
        "missing: every appliance needs a name",
    );
    assert_only_error(
        "[appliance]\nstate_dir = \"/var/lib/siteward\"\n",
        "appliance.name",
        "missing",
    );
}

#[test]
fn appliance_names() {
    let too_long = "p".repeat(65);
    for bad in ["plant 01", "", "plant/01", "plänt", too_long.as_str()] {
        assert_only_error(
            &format!("[appliance]\nname = \"{bad}\"\n"),
            "appliance.name",
            "must be 1-64 characters of letters, digits, '-', '_' and '.'",
        );
    }
    let good = "P".repeat(64);
    for name in ["plant-01", "plant_01.hall-3", good.as_str()] {
        assert_eq!(
            parse_ok(&format!("[appliance]\nname = \"{name}\"\n"))
                .appliance
                .name,
            name
        );
    }
}

#[test]
fn defaults_of_the_sections() {
    let config = parse_ok(HEAD);
    assert_eq!(config.appliance.state_dir, Path::new("/var/lib/siteward"));
    assert_eq!(config.admin.listen, "0.0.0.0:8443".parse().unwrap());
    assert_eq!(config.admin.tls, None);
    assert_eq!(config.metrics.listen, "0.0.0.0:9108".parse().unwrap());
    assert!(config.checks.is_empty());
    let relative = parse_ok("[appliance]\nname = \"a\"\nstate_dir = \"state\"\n");
    assert_eq!(relative.appliance.state_dir, base_dir().join("state"));
}

// ---- [admin] and [metrics] --------------------------------------------------------------

#[test]
fn listen_addresses() {
    for (section, value) in [
        ("admin", "localhost:8443"),
        ("admin", "8443"),
        ("metrics", "127.0.0.1"),
        ("metrics", "127.0.0.1:99999"),
        ("metrics", "::1:9108"),
    ] {
        assert_only_error(
            &format!("{HEAD}[{section}]\nlisten = \"{value}\"\n"),
            &format!("{section}.listen"),
            "is not an address:port like \"127.0.0.1:8443\" or \"[::]:8443\"",
        );
    }
    let config = parse_ok(&format!(
        "{HEAD}[admin]\nlisten = \"[::1]:8443\"\n[metrics]\nlisten = \"192.0.2.10:9108\"\n"
    ));
    assert_eq!(config.admin.listen, "[::1]:8443".parse().unwrap());
    assert_eq!(config.metrics.listen, "192.0.2.10:9108".parse().unwrap());
}

#[test]
fn admin_and_metrics_cannot_share_an_address() {
    for (admin, metrics) in [
        ("127.0.0.1:9000", "127.0.0.1:9000"),
        ("0.0.0.0:9000", "127.0.0.1:9000"),
        ("127.0.0.1:9108", "0.0.0.0:9108"),
        ("[::]:9000", "192.0.2.1:9000"),
    ] {
        assert_only_error(
            &format!("{HEAD}[admin]\nlisten = \"{admin}\"\n[metrics]\nlisten = \"{metrics}\"\n"),
            "metrics.listen",
            &format!("{metrics} collides with admin.listen ({admin})"),
        );
    }
    // Port 0 (tests): the kernel picks two different ports.
    parse_ok(&format!(
        "{HEAD}[admin]\nlisten = \"127.0.0.1:0\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n"
    ));
    parse_ok(&format!(
        "{HEAD}[admin]\nlisten = \"127.0.0.1:9000\"\n[metrics]\nlisten = \"127.0.0.2:9000\"\n"
    ));
}

#[test]
fn admin_cert_and_key_go_together_and_must_exist() {
    assert_only_error(
        &format!("{HEAD}[admin]\ncert_file = \"admin.crt\"\n"),
        "admin.key_file",
        "missing: cert_file and key_file go together",
    );
    assert_only_error(
        &format!("{HEAD}[admin]\nkey_file = \"admin.key\"\n"),
        "admin.cert_file",
        "missing: cert_file and key_file go together",
    );
    let errors = errors_of(&format!(
        "{HEAD}[admin]\ncert_file = \"admin.crt\"\nkey_file = \"/nonexistent/admin.key\"\n"
    ));
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert_eq!(errors[0].0, "admin.cert_file");
    // Relative to the configuration file's directory.
    assert!(errors[0]
        .1
        .contains("cannot read /nonexistent/siteward-config-tests/admin.crt"));
    assert_eq!(errors[1].0, "admin.key_file");
    assert!(errors[1].1.contains("cannot read /nonexistent/admin.key"));
}

// ---- What every check has ------------------------------------------------------------

#[test]
fn check_name_and_kind_are_required() {
    assert_check_cases(&[
        (
            "kind = \"tcp\"\ntarget = \"h:1\"",
            "checks[0].name",
            "missing: every check needs a unique name",
        ),
        (
            "name = \"a\"\ntarget = \"h:1\"",
            "checks[0].kind",
            "missing: one of tcp, tls, http, dns, icmp, oracle-tns, sap-ni, saprouter, asterisk-ami, sip-options",
        ),
    ]);
}

#[test]
fn check_names() {
    let too_long = "c".repeat(65);
    for bad in [
        "ebs listener",
        "",
        "ebs/listener",
        "ébs",
        "a:b",
        too_long.as_str(),
    ] {
        assert_only_error(
            &with_check(&format!(
                "name = \"{bad}\"\nkind = \"tcp\"\ntarget = \"h:1\""
            )),
            "checks[0].name",
            "must be 1-64 characters of letters, digits, '-', '_' and '.'",
        );
    }
}

#[test]
fn duplicate_check_names_point_at_the_first() {
    let check = |name: &str, port: u16| {
        format!("[[checks]]\nname = \"{name}\"\nkind = \"tcp\"\ntarget = \"h:{port}\"\n")
    };
    let toml = format!(
        "{HEAD}{}{}{}{}",
        check("ebs", 1),
        check("sap", 2),
        check("ebs", 3),
        check("ebs", 4)
    );
    let errors = errors_of(&toml);
    assert_eq!(
        errors,
        [
            (
                "checks[2].name".to_string(),
                "duplicate check name \"ebs\" (first used by checks[0])".to_string()
            ),
            (
                "checks[3].name".to_string(),
                "duplicate check name \"ebs\" (first used by checks[0])".to_string()
            ),
        ]
    );
}

#[test]
fn unknown_kind_lists_the_kinds_and_common_keys_are_still_checked() {
    assert_only_error(
        &with_check("name = \"a\"\nkind = \"ftp\"\ntarget = \"h:21\""),
        "checks[0].kind",
        &format!(
            "unknown kind \"ftp\" (expected one of {})",
            CHECK_KINDS.join(", ")
        ),
    );
    let errors = errors_of(&with_check(
        "name = \"a\"\nkind = \"ftp\"\ntarget = \"h:21\"\ninterval = \"1\"\nrise = 0",
    ));
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["checks[0].kind", "checks[0].interval", "checks[0].rise"]
    );
}

#[test]
fn keys_not_used_by_the_kind() {
    assert_check_cases(&[
        (
            "name = \"a\"\nkind = \"tcp\"\ntarget = \"h:1\"\nservice_name = \"EBS\"",
            "checks[0].service_name",
            "not used by kind \"tcp\"",
        ),
        (
            "name = \"a\"\nkind = \"dns\"\ntarget = \"192.0.2.53\"\nquery = \"corp.example\"\nurl = \"http://x/\"",
            "checks[0].url",
            "not used by kind \"dns\"",
        ),
        (
            "name = \"a\"\nkind = \"sip-options\"\ntarget = \"pbx.corp.example\"\nsecret = \"x\"",
            "checks[0].secret",
            "not used by kind \"sip-options\"",
        ),
        (
            "name = \"a\"\nkind = \"tls\"\ntarget = \"h\"\ncount = 3",
            "checks[0].count",
            "not used by kind \"tls\"",
        ),
        (
            "name = \"a\"\nkind = \"sap-ni\"\ntarget = \"h:3300\"\ntransport = \"tcp\"",
            "checks[0].transport",
            "not used by kind \"sap-ni\"",
        ),
    ]);
}

const TCP: &str = "name = \"a\"\nkind = \"tcp\"\ntarget = \"db.corp.example:22\"\n";

#[test]
fn interval_and_timeout() {
    let cases = [
        (
            "interval = \"10\"",
            "checks[0].interval",
            "\"10\" is not a duration like \"10s\" or \"1m30s\"",
        ),
        (
            "interval = \"ten seconds\"",
            "checks[0].interval",
            "is not a duration",
        ),
        (
            "interval = \"50ms\"",
            "checks[0].interval",
            "50ms is out of range: must be between 100ms and 24h",
        ),
        // No second error about the default timeout of a zero interval.
        ("interval = \"0s\"", "checks[0].interval", "out of range"),
        (
            "interval = \"25h\"",
            "checks[0].interval",
            "1day 1h is out of range",
        ),
        (
            "timeout = \"3\"",
            "checks[0].timeout",
            "\"3\" is not a duration",
        ),
        (
            "timeout = \"0s\"",
            "checks[0].timeout",
            "must be greater than 0",
        ),
        (
            "interval = \"5s\"\ntimeout = \"5s\"",
            "checks[0].timeout",
            "5s must be shorter than the interval (5s)",
        ),
        (
            "interval = \"5s\"\ntimeout = \"1m\"",
            "checks[0].timeout",
            "1m must be shorter than the interval (5s)",
        ),
        // Against the default interval of 10s.
        (
            "timeout = \"10s\"",
            "checks[0].timeout",
            "10s must be shorter than the interval (10s)",
        ),
    ];
    for (lines, path, fragment) in cases {
        assert_only_error(&with_check(&format!("{TCP}{lines}")), path, fragment);
    }
}

#[test]
fn interval_and_timeout_defaults_and_limits() {
    let check = only_check(TCP);
    assert_eq!(check.interval, Duration::from_secs(10));
    assert_eq!(check.timeout, Duration::from_secs(3));
    assert_eq!((check.rise, check.fall), (1, 1));
    // The default timeout shrinks to three quarters of a short interval.
    let check = only_check(&format!("{TCP}interval = \"1s\""));
    assert_eq!(check.timeout, Duration::from_millis(750));
    let check = only_check(&format!("{TCP}interval = \"100ms\""));
    assert_eq!(check.timeout, Duration::from_millis(75));
    let check = only_check(&format!("{TCP}interval = \"24h\"\ntimeout = \"1m30s\""));
    assert_eq!(check.interval, Duration::from_secs(86400));
    assert_eq!(check.timeout, Duration::from_secs(90));
    let check = only_check(&format!("{TCP}interval = \"500ms\"\ntimeout = \"499ms\""));
    assert_eq!(check.timeout, Duration::from_millis(499));
}

#[test]
fn rise_and_fall() {
    for (lines, path, fragment) in [
        (
            "rise = 0",
            "checks[0].rise",
            "must be between 1 and 100, got 0",
        ),
        (
            "rise = 101",
            "checks[0].rise",
            "must be between 1 and 100, got 101",
        ),
        (
            "fall = 0",
            "checks[0].fall",
            "must be between 1 and 100, got 0",
        ),
        (
            "fall = 101",
            "checks[0].fall",
            "must be between 1 and 100, got 101",
        ),
    ] {
        assert_only_error(&with_check(&format!("{TCP}{lines}")), path, fragment);
    }
    let check = only_check(&format!("{TCP}rise = 100\nfall = 3"));
    assert_eq!((check.rise, check.fall), (100, 3));
}

#[test]
fn source_address() {
    for source in ["192.0.2", "plant-gw.corp.example", "192.0.2.1/24", ""] {
        assert_only_error(
            &with_check(&format!("{TCP}source = \"{source}\"")),
            "checks[0].source",
            &format!("\"{source}\" is not an IP address"),
        );
    }
    let check = only_check(&format!("{TCP}source = \"192.0.2.10\""));
    assert_eq!(
        check.placement.source,
        Some("192.0.2.10".parse::<IpAddr>().unwrap())
    );
}

#[test]
fn source_family_must_match_a_literal_target() {
    assert_check_cases(&[
        (
            "name = \"a\"\nkind = \"oracle-tns\"\ntarget = \"[2001:db8::5]:1521\"\nsource = \"192.0.2.10\"",
            "checks[0].source",
            "192.0.2.10 and the target 2001:db8::5 are of different address families",
        ),
        (
            "name = \"a\"\nkind = \"icmp\"\ntarget = \"198.51.100.7\"\nsource = \"2001:db8::1\"",
            "checks[0].source",
            "different address families",
        ),
        (
            "name = \"a\"\nkind = \"http\"\nurl = \"http://[2001:db8::8]:8000/\"\nsource = \"192.0.2.10\"",
            "checks[0].source",
            "different address families",
        ),
        (
            "name = \"a\"\nkind = \"http\"\nurl = \"http://ebs.corp.example/\"\ntarget = \"203.0.113.8:8000\"\nsource = \"2001:db8::1\"",
            "checks[0].source",
            "different address families",
        ),
    ]);
    // A host name may resolve to either family.
    only_check(
        "name = \"a\"\nkind = \"tcp\"\ntarget = \"db.corp.example:22\"\nsource = \"2001:db8::1\"",
    );
    only_check(
        "name = \"a\"\nkind = \"tcp\"\ntarget = \"[2001:db8::5]:22\"\nsource = \"2001:db8::1\"",
    );
}

#[test]
fn interface_names() {
    for bad in [
        "",
        "wg/cloud",
        "wg cloud",
        "wg:0",
        "..",
        ".",
        "this-is-too-long0",
    ] {
        assert_only_error(
            &with_check(&format!("{TCP}interface = \"{bad}\"")),
            "checks[0].interface",
            "is not a valid interface name (1-15 characters, no '/', ':' or spaces)",
        );
    }
    for good in ["wg-cloud", "eth0", "ens3.100", "this-is-15-char"] {
        let check = only_check(&format!("{TCP}interface = \"{good}\""));
        assert_eq!(check.placement.interface.as_deref(), Some(good));
    }
}

// ---- Targets ---------------------------------------------------------------------------

fn target_of(kind: &str, target: &str, extra: &str) -> HostPort {
    let check = only_check(&format!(
        "name = \"a\"\nkind = \"{kind}\"\ntarget = \"{target}\"\n{extra}"
    ));
    match check.probe {
        Probe::Tcp(p) => p.target,
        Probe::Tls(p) => p.target,
        Probe::Dns(p) => p.server,
        Probe::OracleTns(p) => p.target,
        Probe::SapNi(p) => p.target,
        Probe::Saprouter(p) => p.router,
        Probe::AsteriskAmi(p) => p.target,
        Probe::SipOptions(p) => p.target,
        other => panic!("no host:port target in {other:?}"),
    }
}

/// The keys a kind needs besides its target.
fn needs(kind: &str) -> &'static str {
    match kind {
        "dns" => "query = \"corp.example\"",
        "saprouter" => "route = \"/H/sapgw01/S/3300\"",
        "asterisk-ami" => "username = \"siteward\"\nsecret = \"dummy\"",
        _ => "",
    }
}

#[test]
fn default_ports_per_kind() {
    for (kind, port) in [
        ("tls", 443),
        ("dns", 53),
        ("oracle-tns", 1521),
        ("saprouter", 3299),
        ("asterisk-ami", 5038),
        ("sip-options", 5060),
    ] {
        let target = target_of(kind, "host.corp.example", needs(kind));
        assert_eq!(target.port, port, "{kind}");
        assert_eq!(target.host, Host::Name("host.corp.example".into()));
        // An explicit port wins.
        assert_eq!(
            target_of(kind, "host.corp.example:7000", needs(kind)).port,
            7000
        );
    }
}

#[test]
fn targets_missing_or_without_a_needed_port() {
    for kind in [
        "tcp",
        "tls",
        "dns",
        "oracle-tns",
        "sap-ni",
        "saprouter",
        "asterisk-ami",
        "sip-options",
    ] {
        assert_only_error(
            &with_check(&format!("name = \"a\"\nkind = \"{kind}\"\n{}", needs(kind))),
            "checks[0].target",
            &format!("missing: kind \"{kind}\" needs a target"),
        );
    }
    assert_only_error(
        &with_check("name = \"a\"\nkind = \"icmp\""),
        "checks[0].target",
        "missing: kind \"icmp\" needs a target host",
    );
    for kind in ["tcp", "sap-ni"] {
        assert_only_error(
            &with_check(&format!(
                "name = \"a\"\nkind = \"{kind}\"\ntarget = \"sapgw01.corp.example\""
            )),
            "checks[0].target",
            "\"sapgw01.corp.example\" needs a port (host:port)",
        );
    }
}

#[test]
fn bad_ports() {
    for port in ["0", "65536", "abc", "+80", "", "-1"] {
        assert_only_error(
            &with_check(&format!(
                "name = \"a\"\nkind = \"tcp\"\ntarget = \"h:{port}\""
            )),
            "checks[0].target",
            &format!("\"{port}\" is not a port (1-65535)"),
        );
    }
}

#[test]
fn ipv6_targets() {
    let v6 = |s: &str| Host::Ip(IpAddr::V6(s.parse::<Ipv6Addr>().unwrap()));
    let t = target_of("oracle-tns", "[::1]:1521", "");
    assert_eq!((t.host, t.port), (v6("::1"), 1521));
    let t = target_of("oracle-tns", "[2001:db8::5]", "");
    assert_eq!((t.host, t.port), (v6("2001:db8::5"), 1521));
    // Bare, with a default port: the whole text is the address.
    let t = target_of("tls", "2001:db8::5", "");
    assert_eq!((t.host, t.port), (v6("2001:db8::5"), 443));
    assert_eq!(
        target_of("tcp", "[2001:db8::5]:22", "").to_string(),
        "[2001:db8::5]:22"
    );
    assert_check_cases(&[
        (
            "name = \"a\"\nkind = \"tcp\"\ntarget = \"2001:db8::5\"",
            "checks[0].target",
            "\"2001:db8::5\" needs a port",
        ),
        (
            "name = \"a\"\nkind = \"tcp\"\ntarget = \"[2001:db8::5:22\"",
            "checks[0].target",
            "missing ] after IPv6 address",
        ),
        (
            "name = \"a\"\nkind = \"tcp\"\ntarget = \"[2001:db8::5]22\"",
            "checks[0].target",
            "expected :port after ]",
        ),
        (
            "name = \"a\"\nkind = \"tcp\"\ntarget = \"[db.corp.example]:22\"",
            "checks[0].target",
            "only an IPv6 address goes between [ and ]",
        ),
    ]);
}

#[test]
fn bad_host_names() {
    let long_label = format!("{}.corp.example", "a".repeat(64));
    for host in [
        "-db.corp.example",
        "db-.corp.example",
        "db..corp.example",
        "db corp.example",
        "db/corp",
        "10.0.0.300",
        "192.0.2",
        long_label.as_str(),
    ] {
        assert_only_error(
            &with_check(&format!(
                "name = \"a\"\nkind = \"tcp\"\ntarget = \"{host}:22\""
            )),
            "checks[0].target",
            &format!("\"{host}\" is not a valid host name or IP address"),
        );
    }
    for host in [
        "db",
        "ebs-db.corp.example",
        "ebs-db.corp.example.",
        "192.0.2.5",
        "DB01.Corp.Example",
    ] {
        target_of("tcp", &format!("{host}:22"), "");
    }
}

// ---- tls ------------------------------------------------------------------------------

#[test]
fn tls_trust_and_server_name() {
    let tls = |extra: &str| match only_check(&format!(
        "name = \"a\"\nkind = \"tls\"\ntarget = \"portal.corp.example\"\n{extra}"
    ))
    .probe
    {
        Probe::Tls(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(tls("").trust, TlsTrust::SystemRoots);
    assert_eq!(tls("").server_name, None);
    assert_eq!(
        tls("insecure_skip_verify = true").trust,
        TlsTrust::InsecureSkipVerify
    );
    assert_eq!(
        tls("server_name = \"www.example.net\"")
            .server_name
            .as_deref(),
        Some("www.example.net")
    );
    let base = "name = \"a\"\nkind = \"tls\"\ntarget = \"portal.corp.example\"\n";
    assert_check_cases(&[
        (
            &format!("{base}ca_file = \"corp-ca.pem\""),
            "checks[0].ca_file",
            "cannot read /nonexistent/siteward-config-tests/corp-ca.pem",
        ),
        (
            &format!("{base}ca_file = \"/nonexistent/ca.pem\"\ninsecure_skip_verify = true"),
            "checks[0].insecure_skip_verify",
            "cannot be combined with ca_file",
        ),
        (
            &format!("{base}server_name = \"bad name\""),
            "checks[0].server_name",
            "\"bad name\" is not a valid host name",
        ),
    ]);
}

// ---- http -----------------------------------------------------------------------------

fn http(extra: &str) -> siteward_config::HttpProbe {
    match only_check(&format!("name = \"a\"\nkind = \"http\"\n{extra}")).probe {
        Probe::Http(p) => p,
        other => panic!("{other:?}"),
    }
}

const HTTP: &str = "name = \"a\"\nkind = \"http\"\n";

#[test]
fn http_url_rules() {
    assert_check_cases(&[
        (HTTP, "checks[0].url", "missing: kind \"http\" needs a url"),
        (
            &format!("{HTTP}url = \"ftp://ebs.corp.example/\""),
            "checks[0].url",
            "\"ftp://ebs.corp.example/\" must start with http:// or https://",
        ),
        (
            &format!("{HTTP}url = \"ebs.corp.example:8000\""),
            "checks[0].url",
            "must start with http:// or https://",
        ),
        (
            &format!("{HTTP}url = \"http://monitor:pw@ebs.corp.example:8000/\""),
            "checks[0].url",
            "credentials in the URL are not supported",
        ),
        (
            &format!("{HTTP}url = \"http://ebs.corp.example/a b\""),
            "checks[0].url",
            "without spaces",
        ),
        (
            &format!("{HTTP}url = \"http://-ebs.corp.example:8000/\""),
            "checks[0].url",
            "\"-ebs.corp.example:8000\" is not a valid host[:port]",
        ),
        (
            &format!("{HTTP}url = \"http://ebs.corp.example:0/\""),
            "checks[0].url",
            "is not a valid host[:port]",
        ),
        (
            &format!("{HTTP}url = \"http:///path\""),
            "checks[0].url",
            "is not a valid host[:port]",
        ),
    ]);
    let p = http("url = \"https://ebs.corp.example:8000/OA_HTML/AppsLogin\"");
    assert_eq!(p.url, "https://ebs.corp.example:8000/OA_HTML/AppsLogin");
    assert_eq!(p.expect_status, (200..300).collect::<Vec<u16>>());
    assert_eq!(p.connect_to, None);
    assert_eq!(p.trust, TlsTrust::SystemRoots);
}

#[test]
fn http_preset_sap_icm() {
    for url in [
        "http://sapicm.corp.example:8000",
        "http://sapicm.corp.example:8000/",
    ] {
        let p = http(&format!("url = \"{url}\"\npreset = \"sap-icm\""));
        assert_eq!(
            p.url,
            "http://sapicm.corp.example:8000/sap/public/icman/ping"
        );
        assert_eq!(p.expect_status, [200]);
    }
    // An explicit path and an explicit status list are kept.
    let p = http("url = \"http://sapicm.corp.example:8000/custom/ping\"\npreset = \"sap-icm\"");
    assert_eq!(p.url, "http://sapicm.corp.example:8000/custom/ping");
    assert_eq!(p.expect_status, [200]);
    let p = http(
        "url = \"https://sapicm.corp.example\"\npreset = \"sap-icm\"\nexpect_status = [200, 401]",
    );
    assert_eq!(p.url, "https://sapicm.corp.example/sap/public/icman/ping");
    assert_eq!(p.expect_status, [200, 401]);
    assert_only_error(
        &with_check(&format!("{HTTP}url = \"http://h/\"\npreset = \"icm\"")),
        "checks[0].preset",
        "unknown preset \"icm\" (expected sap-icm)",
    );
}

#[test]
fn http_expect_status_body_and_connect_to() {
    let url = "url = \"http://ebs.corp.example:8000/\"\n";
    assert_check_cases(&[
        (
            &format!("{HTTP}{url}expect_status = []"),
            "checks[0].expect_status",
            "must list at least one status",
        ),
        (
            &format!("{HTTP}{url}expect_status = [200, 99]"),
            "checks[0].expect_status",
            "99 is not an HTTP status (100-599)",
        ),
        (
            &format!("{HTTP}{url}expect_status = [600]"),
            "checks[0].expect_status",
            "600 is not an HTTP status (100-599)",
        ),
        (
            &format!("{HTTP}{url}body_contains = \"\""),
            "checks[0].body_contains",
            "must be 1-1024 bytes",
        ),
        (
            &format!("{HTTP}{url}target = \"203.0.113.8\""),
            "checks[0].target",
            "\"203.0.113.8\" needs a port",
        ),
    ]);
    let p = http(&format!(
        "{url}expect_status = [200, 302]\nbody_contains = \"Oracle\"\ntarget = \"203.0.113.8:8000\""
    ));
    assert_eq!(p.expect_status, [200, 302]);
    assert_eq!(p.body_contains.as_deref(), Some("Oracle"));
    assert_eq!(p.connect_to.unwrap().to_string(), "203.0.113.8:8000");
    // A bad connect-to target does not hide the errors after it.
    let errors = errors_of(&with_check(&format!(
        "{HTTP}{url}target = \"203.0.113.8\"\nbody_contains = \"\""
    )));
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["checks[0].target", "checks[0].body_contains"]);
}

// ---- dns --------------------------------------------------------------------------------

#[test]
fn dns_rules() {
    let dns = "name = \"a\"\nkind = \"dns\"\ntarget = \"192.0.2.53\"\n";
    assert_check_cases(&[
        (dns, "checks[0].query", "missing: the name to look up"),
        (&format!("{dns}query = \"corp example\""), "checks[0].query", "\"corp example\" is not a valid DNS name"),
        (&format!("{dns}query = \"corp..example\""), "checks[0].query", "is not a valid DNS name"),
        (
            &format!("{dns}query = \"corp.example\"\nrecord_type = \"AXFR\""),
            "checks[0].record_type",
            "unknown record type \"AXFR\" (expected one of A, AAAA, CNAME, MX, NS, PTR, SOA, SRV, TXT)",
        ),
        (
            &format!("{dns}query = \"corp.example\"\ntransport = \"doh\""),
            "checks[0].transport",
            "unknown transport \"doh\" (expected udp or tcp)",
        ),
    ]);
    let probe = |extra: &str| match only_check(&format!("{dns}{extra}")).probe {
        Probe::Dns(p) => p,
        other => panic!("{other:?}"),
    };
    let p = probe("query = \"ebs-db.corp.example\"");
    assert_eq!(p.server.to_string(), "192.0.2.53:53");
    assert_eq!(p.record_type, DnsRecordType::A);
    assert_eq!(p.transport, Transport::Udp);
    assert!(p.expect_answer.is_empty());
    let p = probe(
        "query = \"corp.example.\"\nrecord_type = \"mx\"\ntransport = \"tcp\"\nexpect_answer = [\"10 mail.corp.example.\"]",
    );
    assert_eq!(p.query, "corp.example.");
    assert_eq!(p.record_type, DnsRecordType::Mx);
    assert_eq!(p.transport, Transport::Tcp);
    assert_eq!(p.expect_answer, ["10 mail.corp.example."]);
    assert_eq!(probe("query = \".\"\nrecord_type = \"SOA\"").query, ".");
}

// ---- icmp -------------------------------------------------------------------------------

#[test]
fn icmp_rules() {
    let icmp = "name = \"a\"\nkind = \"icmp\"\ntarget = \"198.51.100.7\"\n";
    assert_check_cases(&[
        (
            &format!("{icmp}count = 0"),
            "checks[0].count",
            "must be between 1 and 100, got 0",
        ),
        (
            &format!("{icmp}count = 101"),
            "checks[0].count",
            "must be between 1 and 100, got 101",
        ),
        (
            &format!("{icmp}max_loss_percent = 101"),
            "checks[0].max_loss_percent",
            "must be at most 100, got 101",
        ),
        (
            &format!("{icmp}max_loss_percent = 300"),
            "checks[0].max_loss_percent",
            "expected u8",
        ),
        (
            "name = \"a\"\nkind = \"icmp\"\ntarget = \"gw.corp.example:80\"",
            "checks[0].target",
            "\"gw.corp.example:80\": give a host without a port",
        ),
        (
            "name = \"a\"\nkind = \"icmp\"\ntarget = \"gw corp\"",
            "checks[0].target",
            "is not a valid host name",
        ),
    ]);
    let probe = |toml: &str| match only_check(toml).probe {
        Probe::Icmp(p) => p,
        other => panic!("{other:?}"),
    };
    let p = probe(icmp);
    assert_eq!((p.count, p.max_loss_percent), (3, 100));
    let p = probe(&format!("{icmp}count = 100\nmax_loss_percent = 0"));
    assert_eq!((p.count, p.max_loss_percent), (100, 0));
    let p = probe("name = \"a\"\nkind = \"icmp\"\ntarget = \"[2001:db8::1]\"");
    assert_eq!(p.target, Host::Ip("2001:db8::1".parse().unwrap()));
}

// ---- oracle-tns, sap-ni, saprouter ------------------------------------------------------

#[test]
fn oracle_tns_service_name() {
    let tns = "name = \"a\"\nkind = \"oracle-tns\"\ntarget = \"ebs-db.corp.example\"\n";
    for bad in ["EBS PROD", "", "ebs/prod"] {
        assert_only_error(
            &with_check(&format!("{tns}service_name = \"{bad}\"")),
            "checks[0].service_name",
            "must be 1-128 characters of letters, digits and . _ - $ #",
        );
    }
    match only_check(&format!("{tns}service_name = \"EBSPROD.corp.example\"")).probe {
        Probe::OracleTns(p) => assert_eq!(p.service_name.as_deref(), Some("EBSPROD.corp.example")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn saprouter_route() {
    let sr = "name = \"a\"\nkind = \"saprouter\"\ntarget = \"saprouter.corp.example\"\n";
    assert_check_cases(&[
        (sr, "checks[0].route", "missing: the hops after the router"),
        (
            &format!("{sr}route = \"/H/sapgw01/S/3300/W/s3cr3t\""),
            "checks[0].route",
            "passwords (/W/) go in route_password or route_password_file",
        ),
        (&format!("{sr}route = \"sapgw01:3300\""), "checks[0].route", "is not a SAP route string like \"/H/sapgw01/S/3300\""),
        (&format!("{sr}route = \"/H/sapgw01/P/3300\""), "checks[0].route", "expected /H/<host>/S/<service> hops"),
        (&format!("{sr}route = \"/H/sapgw01/S/33 00\""), "checks[0].route", "is not a port or SAP service name"),
        (
            &format!("{sr}route = \"/H/sapgw01/S/3300\"\nroute_password = \"a\"\nroute_password_file = \"pw\""),
            "checks[0].route_password",
            "set either route_password or route_password_file, not both",
        ),
        (
            &format!("{sr}route = \"/H/sapgw01/S/3300\"\nroute_password_file = \"saprouter.pw\""),
            "checks[0].route_password_file",
            "cannot read secret file /nonexistent/siteward-config-tests/saprouter.pw",
        ),
    ]);
    let errors = errors_of(&with_check(&format!(
        "{sr}route = \"/H/sapgw01/S/3300/W/s3cr3t\""
    )));
    assert!(!format!("{errors:?}").contains("s3cr3t"));

    let probe = match only_check(&format!(
        "{sr}route = \"/H/saprouter2.example.net/S/3299/H/sapgw01.corp.example/S/sapgw00\"\nroute_password = \"dummy\""
    ))
    .probe
    {
        Probe::Saprouter(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(probe.router.to_string(), "saprouter.corp.example:3299");
    assert_eq!(
        probe.route_display(),
        "/H/saprouter2.example.net/S/3299/H/sapgw01.corp.example/S/sapgw00"
    );
    assert_eq!(probe.password.unwrap().expose(), "dummy");
}

#[test]
fn sap_ni_needs_only_a_target() {
    match only_check("name = \"a\"\nkind = \"sap-ni\"\ntarget = \"sapgw01.corp.example:3300\"")
        .probe
    {
        Probe::SapNi(p) => assert_eq!(p.target.to_string(), "sapgw01.corp.example:3300"),
        other => panic!("{other:?}"),
    }
}

// ---- asterisk-ami -----------------------------------------------------------------------

#[test]
fn asterisk_ami_credentials() {
    let ami = "name = \"a\"\nkind = \"asterisk-ami\"\ntarget = \"pbx.corp.example\"\n";
    assert_check_cases(&[
        (
            &format!("{ami}secret = \"dummy\""),
            "checks[0].username",
            "missing: the AMI user of manager.conf",
        ),
        (
            &format!("{ami}username = \"siteward\""),
            "checks[0].secret",
            "missing: set secret or secret_file",
        ),
        (
            &format!("{ami}username = \"\"\nsecret = \"dummy\""),
            "checks[0].username",
            "must be 1-80 characters",
        ),
        (
            &format!("{ami}username = \"a\\r\\nAction: Logoff\"\nsecret = \"dummy\""),
            "checks[0].username",
            "without control characters",
        ),
        (
            &format!("{ami}username = \"siteward\"\nsecret = \"a\\nb\""),
            "checks[0].secret",
            "must not contain control characters or line breaks",
        ),
        (
            &format!("{ami}username = \"siteward\"\nsecret = \"\""),
            "checks[0].secret",
            "is empty",
        ),
        (
            &format!(
                "{ami}username = \"siteward\"\nsecret = \"dummy\"\nsecret_file = \"ami.secret\""
            ),
            "checks[0].secret",
            "set either secret or secret_file, not both",
        ),
        (
            &format!("{ami}username = \"siteward\"\nsecret_file = \"ami.secret\""),
            "checks[0].secret_file",
            "cannot read secret file /nonexistent/siteward-config-tests/ami.secret",
        ),
    ]);
    match only_check(&format!("{ami}username = \"siteward\"\nsecret = \"dummy\"")).probe {
        Probe::AsteriskAmi(p) => {
            assert_eq!(p.target.to_string(), "pbx.corp.example:5038");
            assert_eq!(p.username, "siteward");
            assert_eq!(p.secret.expose(), "dummy");
        }
        other => panic!("{other:?}"),
    }
}

// ---- sip-options ------------------------------------------------------------------------

#[test]
fn sip_options_rules() {
    let sip = "name = \"a\"\nkind = \"sip-options\"\ntarget = \"pbx.corp.example\"\n";
    assert_check_cases(&[
        (
            &format!("{sip}transport = \"tls\""),
            "checks[0].transport",
            "unknown transport \"tls\" (expected udp or tcp)",
        ),
        (
            &format!("{sip}request_uri = \"http://pbx.corp.example\""),
            "checks[0].request_uri",
            "must be a sip: URI without spaces",
        ),
        (
            &format!("{sip}request_uri = \"sip:pbx corp\""),
            "checks[0].request_uri",
            "must be a sip: URI",
        ),
        (
            &format!("{sip}request_uri = \"sip:\""),
            "checks[0].request_uri",
            "must be a sip: URI",
        ),
        (
            &format!("{sip}from_user = \"site ward\""),
            "checks[0].from_user",
            "must be 1-64 characters allowed in a SIP user part",
        ),
        (
            &format!("{sip}from_user = \"\""),
            "checks[0].from_user",
            "must be 1-64 characters",
        ),
        (
            &format!("{sip}from_user = \"a@b\""),
            "checks[0].from_user",
            "must be 1-64 characters",
        ),
    ]);
    let probe = |extra: &str| match only_check(&format!("{sip}{extra}")).probe {
        Probe::SipOptions(p) => p,
        other => panic!("{other:?}"),
    };
    let p = probe("");
    assert_eq!(p.target.to_string(), "pbx.corp.example:5060");
    assert_eq!(p.transport, Transport::Udp);
    assert_eq!(p.request_uri, None);
    assert_eq!(p.from_user, "siteward");
    assert!(!p.accept_any_status);
    let p = probe(
        "transport = \"tcp\"\nrequest_uri = \"sips:100@pbx.corp.example\"\nfrom_user = \"mon-1\"\naccept_any_status = true",
    );
    assert_eq!(p.transport, Transport::Tcp);
    assert_eq!(p.request_uri.as_deref(), Some("sips:100@pbx.corp.example"));
    assert_eq!(p.from_user, "mon-1");
    assert!(p.accept_any_status);
}

// ---- Collection -------------------------------------------------------------------------

#[test]
fn all_independent_errors_are_collected_in_one_run() {
    let toml = r#"
[appliance]
name = "plant-01"

[admin]
listen = "localhost:8443"

[alerts]
email = "ops@corp.example"

[[checks]]
name = "ebs-listener"
kind = "oracle-tns"
target = "ebs-db.corp.example:1521"
rise = 0

[[checks]]
name = "sap-gw"
kind = "sap-ni"
target = "sapgw01.corp.example:99999"

[[checks]]
name = "pbx-ami"
kind = "asterisk-ami"
target = "pbx.corp.example"
username = "siteward"
secret_file = "secrets/ami"
"#;
    let errors = errors_of(toml);
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "alerts",
            "admin.listen",
            "checks[0].rise",
            "checks[1].target",
            "checks[2].secret_file",
        ],
        "{errors:#?}"
    );
    // The rendered error names the count and every problem.
    let rendered = parse(toml, base_dir()).unwrap_err().to_string();
    assert!(
        rendered.starts_with("5 error(s) in configuration:\n"),
        "{rendered}"
    );
    assert!(rendered.contains("  checks[1].target: \"99999\" is not a port (1-65535)"));
}

#[test]
fn every_kind_in_one_valid_file() {
    let toml = format!(
        r#"{HEAD}
[[checks]]
name = "t"
kind = "tcp"
target = "db.corp.example:22"
[[checks]]
name = "tl"
kind = "tls"
target = "portal.corp.example"
[[checks]]
name = "h"
kind = "http"
url = "http://ebs.corp.example:8000/"
[[checks]]
name = "d"
kind = "dns"
target = "192.0.2.53"
query = "corp.example"
[[checks]]
name = "i"
kind = "icmp"
target = "198.51.100.1"
[[checks]]
name = "o"
kind = "oracle-tns"
target = "ebs-db.corp.example"
[[checks]]
name = "n"
kind = "sap-ni"
target = "sapgw01.corp.example:3300"
[[checks]]
name = "r"
kind = "saprouter"
target = "saprouter.corp.example"
route = "/H/sapgw01/S/3300"
[[checks]]
name = "a"
kind = "asterisk-ami"
target = "pbx.corp.example"
username = "siteward"
secret = "dummy"
[[checks]]
name = "s"
kind = "sip-options"
target = "pbx.corp.example"
"#
    );
    let kinds: Vec<&str> = parse_ok(&toml)
        .checks
        .iter()
        .map(|c| c.probe.kind())
        .collect();
    assert_eq!(kinds, CHECK_KINDS);
}

#[test]
fn web_ui_sessions_default_to_4h_idle_and_12h_at_most() {
    let config = parse_ok(HEAD);
    assert_eq!(config.admin.session_idle, Duration::from_secs(4 * 3600));
    assert_eq!(
        config.admin.session_lifetime,
        Duration::from_secs(12 * 3600)
    );
    let config = parse_ok(&format!(
        "{HEAD}[admin]\nsession_idle = \"15m\"\nsession_lifetime = \"8h\"\n"
    ));
    assert_eq!(config.admin.session_idle, Duration::from_secs(15 * 60));
    assert_eq!(config.admin.session_lifetime, Duration::from_secs(8 * 3600));
}

#[test]
fn web_ui_session_limits_must_make_sense() {
    assert_only_error(
        &format!("{HEAD}[admin]\nsession_idle = \"13h\"\n"),
        "admin.session_idle",
        "longer than session_lifetime (12h)",
    );
    assert_only_error(
        &format!("{HEAD}[admin]\nsession_idle = \"0s\"\n"),
        "admin.session_idle",
        "at least 1s",
    );
    assert_only_error(
        &format!("{HEAD}[admin]\nsession_idle = \"soon\"\n"),
        "admin.session_idle",
        "not a duration",
    );
}
