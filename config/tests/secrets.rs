//! Files a configuration refers to, through `siteward_config::load`: secret and WireGuard
//! key files (read at load, trailing newline dropped, relative to the configuration's
//! directory), CA and admin certificate files, and secrets never shown by `Debug` or errors.

use std::fs;
use std::path::Path;

use siteward_config::{
    load, AdminTls, Config, IpsecAuth, Probe, Secret, TlsTrust, TunnelKind, WgSecretKey,
};

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

// ---- WireGuard keys -------------------------------------------------------------------

/// Generated for these tests only (`wg genkey`, `wg genpsk`, `wg pubkey`).
const WG_PRIVATE: &str = "QEYRmlzFCRry5boUMiOnK2VLvmm0ZFVioeGd03vQv04=";
const WG_PSK: &str = "TC/L1J2cXW0TMu0wYOKDk7OOvJwf+lWOjhEew/fokiI=";
const WG_PEER: &str = "r9DP6n35wCbZ8LSn98HDtgRTXIjjTL9qOxOGA6MjEjM=";

/// A tunnel with `key_lines` for its private key and `psk_lines` for its one peer's.
fn wg(key_lines: &str, psk_lines: &str) -> String {
    format!(
        "{HEAD}[[tunnels]]\nname = \"cloud\"\nkind = \"wireguard\"\ninterface = \"wg-cloud\"\n{key_lines}\n\
         [[tunnels.peers]]\nname = \"gw-1\"\npublic_key = \"{WG_PEER}\"\nallowed_ips = [\"10.20.0.0/16\"]\n{psk_lines}\n"
    )
}

/// The tunnel's private key and its peer's pre-shared key, as base64.
fn wg_keys(config: &Config) -> (String, Option<String>) {
    let base64 = |key: &WgSecretKey| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(key.expose())
    };
    match &config.tunnels[0].kind {
        TunnelKind::Wireguard(wg) => (
            base64(&wg.private_key),
            wg.peers[0].preshared_key.as_ref().map(base64),
        ),
        other => panic!("not a WireGuard tunnel: {other:?}"),
    }
}

#[test]
fn key_files_are_relative_to_the_config_and_lose_their_trailing_newline() {
    let dir = Dir::new(
        &wg(
            "private_key_file = \"secrets/wg-cloud.key\"",
            "preshared_key_file = \"secrets/gw-1.psk\"",
        ),
        &[
            ("secrets/wg-cloud.key", &format!("{WG_PRIVATE}\n")),
            ("secrets/gw-1.psk", &format!("{WG_PSK}\r\n")),
        ],
    );
    let config = dir.load().unwrap();
    assert_eq!(
        wg_keys(&config),
        (WG_PRIVATE.to_string(), Some(WG_PSK.to_string()))
    );
}

#[test]
fn absolute_key_file_with_spaces_around_the_key() {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("wg.key");
    fs::write(&file, format!("  {WG_PRIVATE}  \n\n")).unwrap();
    let dir = Dir::new(
        &wg(
            &format!("private_key_file = {:?}", file.to_str().unwrap()),
            "",
        ),
        &[],
    );
    assert_eq!(
        wg_keys(&dir.load().unwrap()),
        (WG_PRIVATE.to_string(), None)
    );
}

#[test]
fn key_file_errors_are_reported_at_the_file_key_without_the_content() {
    let dir = Dir::new(&wg("private_key_file = \"wg.key\"", ""), &[]);
    let errors = dir.load().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].0, "tunnels[0].private_key_file");
    assert!(
        errors[0].1.starts_with(&format!(
            "cannot read secret file {}",
            dir.path().join("wg.key").display()
        )),
        "{errors:#?}"
    );

    let big = "A".repeat(4097);
    // 44 base64 digits without the padding: 33 bytes.
    let not_a_key = format!("{}SECRET", &WG_PRIVATE[..38]);
    for (content, names_the_file, fragment) in [
        (big.as_str(), false, "is larger than 4096 bytes"),
        (
            not_a_key.as_str(),
            true,
            "is not a WireGuard key: it is not valid base64",
        ),
        (
            "\n",
            true,
            "is not a WireGuard key: it must be 44 characters of base64 (32 bytes), as `wg genkey` prints, found 0 characters",
        ),
    ] {
        let dir = Dir::new(
            &wg(
                &format!("private_key = \"{WG_PRIVATE}\""),
                "preshared_key_file = \"wg.key\"",
            ),
            &[("wg.key", content)],
        );
        let errors = dir.load().unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].0, "tunnels[0].peers[0].preshared_key_file");
        assert!(errors[0].1.contains(fragment), "{errors:#?}");
        let prefix = format!("the content of {} ", dir.path().join("wg.key").display());
        assert_eq!(errors[0].1.starts_with(&prefix), names_the_file, "{errors:#?}");
        assert!(!format!("{errors:?}").contains("SECRET"), "{errors:#?}");
    }
}

#[test]
fn debug_of_a_tunnel_never_shows_its_keys() {
    let dir = Dir::new(
        &wg(
            "private_key_file = \"wg.key\"",
            &format!("preshared_key = \"{WG_PSK}\""),
        ),
        &[("wg.key", WG_PRIVATE)],
    );
    let config = dir.load().unwrap();
    let (private, psk) = wg_keys(&config);
    let bytes = |text: &str| -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
    };
    for rendered in [format!("{config:?}"), format!("{config:#?}")] {
        for secret in [private.as_str(), psk.as_deref().unwrap()] {
            assert!(!rendered.contains(secret), "{rendered}");
            // Nor as the bytes a derived Debug would print.
            let as_bytes = format!("{:?}", bytes(secret));
            assert!(
                !rendered.contains(&as_bytes[1..as_bytes.len() - 1]),
                "{rendered}"
            );
        }
        assert_eq!(
            rendered.matches("WgSecretKey(***)").count(),
            2,
            "{rendered}"
        );
        // The public key is not a secret: it is printed, to tell peers apart.
        assert!(rendered.contains(WG_PEER), "{rendered}");
    }
}

#[test]
fn errors_never_quote_a_wireguard_key() {
    let private = "SECRETPRIVATEKEYxxxxxxxxxxxxxxxxxxxxxxxxxxx=";
    let psk = "SECRETPSK";
    let text = format!(
        "{HEAD}[[tunnels]]\nname = \"a\"\nkind = \"wireguard\"\ninterface = \"wg-a\"\nprivate_key = \"{private}\"\n\
         [[tunnels.peers]]\nname = \"gw-1\"\npublic_key = \"{WG_PEER}\"\nallowed_ips = []\npreshared_key = \"{psk}\"\n\
         private_key = \"misplaced-SECRET-1\"\n\
         [[tunnels]]\nname = \"b\"\nkind = \"wireguard\"\ninterface = \"wg-b\"\nprivate_key = [\"array-SECRET-2\"]\n\
         privatekey = \"typo-SECRET-3\"\n\
         [[tunnels]]\nname = \"c\"\nkind = \"wireguard\"\ninterface = \"wg-c\"\nprivate_key = \"inline-SECRET-4\"\n\
         private_key_file = \"key\"\n\
         [[tunnels.peers]]\nname = \"gw-1\"\npublic_key = \"{WG_PEER}\"\nallowed_ips = []\npreshared_key = 7\n\
         [[tunnels]]\nname = \"d\"\nkind = \"wireguard\"\ninterface = \"wg-d\"\nprivate_key_file = \"key\"\n"
    );
    let dir = Dir::new(
        &text,
        &[("key", "file-SECRET-5-xxxxxxxxxxxxxxxxxxxxxxxxxxxxx")],
    );
    let errors = dir.load().unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "tunnels[0].private_key",
            "tunnels[0].peers[0].private_key",
            "tunnels[0].peers[0].preshared_key",
            "tunnels[1].privatekey",
            "tunnels[1].private_key",
            "tunnels[2].private_key",
            "tunnels[2].peers[0].preshared_key",
            "tunnels[3].private_key_file",
        ],
        "{errors:#?}"
    );
    assert!(!format!("{errors:?}").contains("SECRET"), "{errors:#?}");
}

// ---- IPsec: pre-shared key, certificates and private key ------------------------------

const IPSEC_HEAD: &str = "[[tunnels]]\nname = \"hq\"\nkind = \"ipsec\"\ninterface = \"ipsec-hq\"\n\
     local_ts = [\"192.0.2.0/24\"]\nremote_ts = [\"198.51.100.0/24\"]\n";
const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBdummyCERT\n-----END CERTIFICATE-----\n";
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBdummyCA\n-----END CERTIFICATE-----\n";
/// Stands for a key: only the PEM framing is checked at load.
const KEY_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMIGHAgEAKEY-SECRET-BODY\n-----END PRIVATE KEY-----\n";

fn ipsec(auth_lines: &str) -> String {
    format!("{HEAD}{IPSEC_HEAD}{auth_lines}\n")
}

fn ipsec_cert() -> String {
    ipsec(
        "auth = \"cert\"\ncert_file = \"certs/gw.pem\"\nkey_file = \"secrets/gw.key\"\n\
         ca_file = \"certs/ca.pem\"",
    )
}

fn ipsec_auth(config: &Config) -> IpsecAuth {
    match &config.tunnels[0].kind {
        TunnelKind::Ipsec(ipsec) => ipsec.auth.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn psk_file_is_relative_to_the_config_and_loses_its_trailing_newline() {
    let dir = Dir::new(
        &ipsec("auth = \"psk\"\npsk_file = \"secrets/hq.psk\""),
        &[("secrets/hq.psk", "a psk of twenty-four b\n")],
    );
    assert_eq!(
        ipsec_auth(&dir.load().unwrap()),
        IpsecAuth::Psk(Secret::new("a psk of twenty-four b"))
    );
}

#[test]
fn psk_file_problems_are_reported_at_psk_file() {
    let dir = Dir::new(
        &ipsec("auth = \"psk\"\npsk_file = \"hq.psk\""),
        &[("hq.psk", "SECRET-short\n")],
    );
    let errors = dir.load().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].0, "tunnels[0].psk_file");
    assert!(
        errors[0].1.contains("is 12 bytes; at least 16 are needed"),
        "{errors:#?}"
    );
    assert!(!errors[0].1.contains("SECRET"), "{errors:#?}");

    let dir = Dir::new(&ipsec("auth = \"psk\"\npsk_file = \"/dev/zero\""), &[]);
    let errors = dir.load().unwrap_err();
    assert_eq!(errors[0].0, "tunnels[0].psk_file");
    assert!(
        errors[0].1.contains("is larger than 4096 bytes"),
        "{errors:#?}"
    );

    let dir = Dir::new(&ipsec("auth = \"psk\"\npsk_file = \"none.psk\""), &[]);
    let errors = dir.load().unwrap_err();
    assert_eq!(errors[0].0, "tunnels[0].psk_file");
    assert!(
        errors[0].1.starts_with("cannot read secret file"),
        "{errors:#?}"
    );
}

#[test]
fn certificate_files_are_read_relative_to_the_config() {
    let dir = Dir::new(
        &ipsec_cert(),
        &[
            ("certs/gw.pem", CERT_PEM),
            ("secrets/gw.key", KEY_PEM),
            ("certs/ca.pem", CA_PEM),
        ],
    );
    let config = dir.load().unwrap();
    match ipsec_auth(&config) {
        IpsecAuth::Cert {
            cert_file,
            cert_pem,
            key_file,
            key_pem,
            ca_file,
            ca_pem,
        } => {
            assert_eq!(cert_file, dir.path().join("certs/gw.pem"));
            assert_eq!(cert_pem, CERT_PEM.as_bytes());
            assert_eq!(key_file, dir.path().join("secrets/gw.key"));
            // The trailing newline goes, as with every secret file.
            assert_eq!(key_pem.expose(), KEY_PEM.trim_end());
            assert_eq!(ca_file, dir.path().join("certs/ca.pem"));
            assert_eq!(ca_pem, CA_PEM.as_bytes());
        }
        other => panic!("{other:?}"),
    }
    // The private key never shows in Debug output.
    let rendered = format!("{config:?}{config:#?}");
    assert!(!rendered.contains("KEY-SECRET-BODY"), "{rendered}");
    assert!(rendered.contains("key_pem: Secret(***)"), "{rendered}");
}

#[test]
fn certificate_file_problems_are_reported_at_their_key() {
    let files = |cert: &'static str, key: &'static str, ca: &'static str| {
        [
            ("certs/gw.pem", cert),
            ("secrets/gw.key", key),
            ("certs/ca.pem", ca),
        ]
    };
    let rsa_key =
        "-----BEGIN RSA PRIVATE KEY-----\nKEY-SECRET-BODY\n-----END RSA PRIVATE KEY-----\n";
    let ec_key = "-----BEGIN EC PRIVATE KEY-----\nKEY-SECRET-BODY\n-----END EC PRIVATE KEY-----\n";
    for key in [rsa_key, ec_key] {
        let dir = Dir::new(&ipsec_cert(), &files(CERT_PEM, key, CA_PEM));
        assert!(dir.load().is_ok(), "{key}");
    }
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nKEY-SECRET-BODY\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let openssh =
        "-----BEGIN OPENSSH PRIVATE KEY-----\nKEY-SECRET-BODY\n-----END OPENSSH PRIVATE KEY-----\n";
    let der = "0\u{1}KEY-SECRET-BODY";
    for (files, path, fragment) in [
        (
            files("MIIB-not-pem", KEY_PEM, CA_PEM),
            "tunnels[0].cert_file",
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----); a DER file converts",
        ),
        (
            files(CERT_PEM, KEY_PEM, KEY_PEM),
            "tunnels[0].ca_file",
            "holds no PEM certificate",
        ),
        (
            files(CERT_PEM, encrypted, CA_PEM),
            "tunnels[0].key_file",
            "is encrypted with a passphrase; store the key without one",
        ),
        (
            files(CERT_PEM, openssh, CA_PEM),
            "tunnels[0].key_file",
            "holds no PEM private key",
        ),
        (
            files(CERT_PEM, der, CA_PEM),
            "tunnels[0].key_file",
            "holds no PEM private key",
        ),
    ] {
        let dir = Dir::new(&ipsec_cert(), &files);
        let errors = dir.load().unwrap_err();
        assert!(
            errors.len() == 1 && errors[0].0 == path && errors[0].1.contains(fragment),
            "{path}: {errors:#?}"
        );
        assert!(!format!("{errors:?}").contains("SECRET"), "{errors:#?}");
    }

    // Missing files: each reported, all three at once.
    let dir = Dir::new(&ipsec_cert(), &[]);
    let errors = dir.load().unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|(path, _)| path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "tunnels[0].cert_file",
            "tunnels[0].key_file",
            "tunnels[0].ca_file"
        ],
        "{errors:#?}"
    );
    assert!(errors[0].1.starts_with("cannot read"), "{errors:#?}");
    assert!(
        errors[1].1.starts_with("cannot read secret file"),
        "{errors:#?}"
    );
}

#[test]
fn a_key_file_is_a_secret_file_and_a_certificate_file_is_bounded() {
    let big_key = format!("{KEY_PEM}{}", "x".repeat(4096));
    let dir = Dir::new(
        &ipsec_cert(),
        &[
            ("certs/gw.pem", CERT_PEM),
            ("secrets/gw.key", &big_key),
            ("certs/ca.pem", CA_PEM),
        ],
    );
    let errors = dir.load().unwrap_err();
    assert!(
        errors.len() == 1
            && errors[0].0 == "tunnels[0].key_file"
            && errors[0].1.contains("is larger than 4096 bytes"),
        "{errors:#?}"
    );
    // Certificates may be longer than a secret, up to 256 KiB.
    let chain = CERT_PEM.repeat(2000);
    let dir = Dir::new(
        &ipsec_cert(),
        &[
            ("certs/gw.pem", &chain[..chain.len().min(256 * 1024)]),
            ("secrets/gw.key", KEY_PEM),
            ("certs/ca.pem", CA_PEM),
        ],
    );
    assert!(dir.load().is_ok());
    let dir = Dir::new(
        &ipsec_cert().replace("certs/ca.pem", "/dev/zero"),
        &[("certs/gw.pem", CERT_PEM), ("secrets/gw.key", KEY_PEM)],
    );
    let errors = dir.load().unwrap_err();
    assert!(
        errors.len() == 1
            && errors[0].0 == "tunnels[0].ca_file"
            && errors[0].1.contains("is larger than 256 KiB"),
        "{errors:#?}"
    );
}
