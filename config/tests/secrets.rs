//! Files a configuration refers to, through `siteward_config::load`: secret files (read at
//! load, trailing newline dropped, relative to the configuration's directory), CA and admin
//! certificate files, and secrets never shown by `Debug`.

use std::fs;
use std::path::Path;

use siteward_config::{load, AdminTls, Config, Probe, TlsTrust};

/// A configuration directory with `siteward.toml` holding `text` and the given files.
struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new(text: &str, files: &[(&str, &str)]) -> Dir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("siteward.toml"), text).unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        Dir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn load(&self) -> Result<Config, Vec<(String, String)>> {
        load(&self.path().join("siteward.toml")).map_err(|e| {
            e.field_errors()
                .into_iter()
                .map(|e| (e.path, e.message))
                .collect()
        })
    }
}

const HEAD: &str = "[appliance]\nname = \"plant-01\"\n";

fn ami(secret_lines: &str) -> String {
    format!(
        "{HEAD}[[checks]]\nname = \"pbx-ami\"\nkind = \"asterisk-ami\"\ntarget = \"pbx.corp.example\"\nusername = \"siteward\"\n{secret_lines}\n"
    )
}

fn saprouter(password_lines: &str) -> String {
    format!(
        "{HEAD}[[checks]]\nname = \"sap-route\"\nkind = \"saprouter\"\ntarget = \"saprouter.corp.example\"\nroute = \"/H/sapgw01.corp.example/S/3300\"\n{password_lines}\n"
    )
}

fn ami_secret(config: &Config) -> String {
    match &config.checks[0].probe {
        Probe::AsteriskAmi(p) => p.secret.expose().to_string(),
        other => panic!("{other:?}"),
    }
}

fn route_password(config: &Config) -> Option<String> {
    match &config.checks[0].probe {
        Probe::Saprouter(p) => p.password.as_ref().map(|s| s.expose().to_string()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn secret_file_is_relative_to_the_config_and_loses_its_trailing_newline() {
    let dir = Dir::new(
        &ami("secret_file = \"secrets/ami\""),
        &[("secrets/ami", "dummy-ami-secret\n")],
    );
    assert_eq!(ami_secret(&dir.load().unwrap()), "dummy-ami-secret");

    let dir = Dir::new(
        &saprouter("route_password_file = \"route.pw\""),
        &[("route.pw", "dummy-route-pw\r\n")],
    );
    assert_eq!(
        route_password(&dir.load().unwrap()).as_deref(),
        Some("dummy-route-pw")
    );
}

#[test]
fn absolute_secret_file_and_inner_spaces_are_kept() {
    let secrets = tempfile::tempdir().unwrap();
    let file = secrets.path().join("ami");
    fs::write(&file, " two words \n").unwrap();
    let dir = Dir::new(
        &ami(&format!("secret_file = {:?}", file.to_str().unwrap())),
        &[],
    );
    assert_eq!(ami_secret(&dir.load().unwrap()), " two words ");
}

#[test]
fn missing_secret_file() {
    let dir = Dir::new(&ami("secret_file = \"secrets/ami\""), &[]);
    let errors = dir.load().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].0, "checks[0].secret_file");
    let expected = format!(
        "cannot read secret file {}",
        dir.path().join("secrets/ami").display()
    );
    assert!(errors[0].1.starts_with(&expected), "{errors:#?}");

    let dir = Dir::new(&saprouter("route_password_file = \"route.pw\""), &[]);
    let errors = dir.load().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].0, "checks[0].route_password_file");
}

#[test]
fn bad_secret_file_contents_are_reported_at_the_file_key() {
    for (content, fragment) in [
        ("", "is empty"),
        ("\n", "is empty"),
        ("line1\nline2\n", "must not contain control characters"),
    ] {
        let dir = Dir::new(
            &ami("secret_file = \"ami.secret\""),
            &[("ami.secret", content)],
        );
        let errors = dir.load().unwrap_err();
        assert_eq!(errors.len(), 1, "{content:?}: {errors:#?}");
        assert_eq!(errors[0].0, "checks[0].secret_file");
        assert!(errors[0].1.contains(fragment), "{errors:#?}");
        assert!(!errors[0].1.contains("line1"), "secret leaked: {errors:#?}");
    }
}

#[test]
fn oversized_or_special_secret_files_are_refused_without_reading_them_whole() {
    let big = "x".repeat(4097);
    let dir = Dir::new(
        &ami("secret_file = \"ami.secret\""),
        &[("ami.secret", &big)],
    );
    let errors = dir.load().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].0, "checks[0].secret_file");
    assert!(
        errors[0].1.contains("is larger than 4096 bytes"),
        "{errors:#?}"
    );
    // 4096 bytes are fine.
    let dir = Dir::new(
        &ami("secret_file = \"ami.secret\""),
        &[("ami.secret", &big[1..])],
    );
    assert_eq!(ami_secret(&dir.load().unwrap()).len(), 4096);
    // An endless file ends the same way instead of filling the memory.
    let dir = Dir::new(&ami("secret_file = \"/dev/zero\""), &[]);
    let errors = dir.load().unwrap_err();
    assert_eq!(errors[0].0, "checks[0].secret_file");
    assert!(
        errors[0].1.contains("is larger than 4096 bytes"),
        "{errors:#?}"
    );
}

#[test]
fn a_saprouter_route_without_password_has_none() {
    let dir = Dir::new(&saprouter(""), &[]);
    assert_eq!(route_password(&dir.load().unwrap()), None);
}

#[test]
fn ca_file_and_admin_certificate_are_resolved_against_the_config_directory() {
    let text = format!(
        "{HEAD}[admin]\ncert_file = \"tls/admin.crt\"\nkey_file = \"tls/admin.key\"\n\
         [[checks]]\nname = \"portal\"\nkind = \"tls\"\ntarget = \"portal.corp.example\"\nca_file = \"tls/corp-ca.pem\"\n"
    );
    let dir = Dir::new(
        &text,
        &[
            ("tls/admin.crt", "cert"),
            ("tls/admin.key", "key"),
            ("tls/corp-ca.pem", "ca"),
        ],
    );
    let config = dir.load().unwrap();
    assert_eq!(
        config.admin.tls,
        Some(AdminTls {
            cert_file: dir.path().join("tls/admin.crt"),
            key_file: dir.path().join("tls/admin.key"),
        })
    );
    match &config.checks[0].probe {
        Probe::Tls(p) => assert_eq!(
            p.trust,
            TlsTrust::CaFile(dir.path().join("tls/corp-ca.pem"))
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_directory_is_not_a_ca_file() {
    let text = format!(
        "{HEAD}[[checks]]\nname = \"portal\"\nkind = \"tls\"\ntarget = \"portal.corp.example\"\nca_file = \"tls\"\n"
    );
    let dir = Dir::new(&text, &[("tls/corp-ca.pem", "ca")]);
    let errors = dir.load().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].0, "checks[0].ca_file");
    assert!(errors[0].1.ends_with("is not a file"), "{errors:#?}");
}

#[test]
fn unreadable_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let errors = load(&path).unwrap_err().field_errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, "");
    assert!(errors[0].message.starts_with(&format!(
        "cannot read configuration file {}",
        path.display()
    )));
}

#[test]
fn debug_of_a_loaded_config_never_shows_a_secret() {
    let text = format!(
        "{}[[checks]]\nname = \"sap-route\"\nkind = \"saprouter\"\ntarget = \"saprouter.corp.example\"\n\
         route = \"/H/sapgw01.corp.example/S/3300\"\nroute_password_file = \"secrets/route\"\n",
        ami("secret = \"inline-ami-SECRET-7731\"")
    );
    let dir = Dir::new(&text, &[("secrets/route", "file-route-SECRET-4410\n")]);
    let config = dir.load().unwrap();
    // The secrets are there...
    assert_eq!(ami_secret(&config), "inline-ami-SECRET-7731");
    // ...and no rendering of the configuration shows them.
    for rendered in [format!("{config:?}"), format!("{config:#?}")] {
        assert!(!rendered.contains("SECRET"), "{rendered}");
        assert_eq!(rendered.matches("Secret(***)").count(), 2, "{rendered}");
    }
    for check in &config.checks {
        assert!(!check.probe.target_display().contains("SECRET"));
    }
}

#[test]
fn errors_never_quote_a_secret() {
    // Everything wrong around the secrets; no message may carry their values.
    let text = format!(
        "{HEAD}[[checks]]\nname = \"pbx-ami\"\nkind = \"asterisk-ami\"\ntarget = \"pbx.corp.example\"\n\
         secret = \"inline-SECRET-1\"\nsecret_file = \"secrets/ami\"\n\
         [[checks]]\nname = \"sap-route\"\nkind = \"saprouter\"\ntarget = \"saprouter.corp.example\"\n\
         route = \"/H/sapgw01/S/3300/W/route-SECRET-2\"\nroute_password = \"inline\\nSECRET-3\"\n\
         [[checks]]\nname = \"web\"\nkind = \"tcp\"\ntarget = \"h:1\"\nsecret = \"misplaced-SECRET-4\"\n"
    );
    let dir = Dir::new(&text, &[("secrets/ami", "file-SECRET-5\n")]);
    let errors = dir.load().unwrap_err();
    assert!(errors.len() >= 4, "{errors:#?}");
    assert!(!format!("{errors:?}").contains("SECRET"), "{errors:#?}");
}
