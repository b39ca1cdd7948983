//! What the IPsec suites (Siteward against strongSwan, Siteward against itself, and the
//! IPsec benchmark) write into configurations: one IPsec tunnel for Siteward
//! ([`SitewardIpsec::toml`]) and its mirror image as a swanctl.conf connection for charon
//! ([`SwanctlConn::text`]), both between the two sites of a [`crate::strongswan::SitePair`].

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::pki::Leaf;
use crate::strongswan::{LEFT_SUBNET, LEFT_UNDERLAY, RIGHT_SUBNET, RIGHT_UNDERLAY};
use crate::CharonConfig;

/// The name of the connection and of its CHILD_SA in charon's swanctl.conf.
pub const CONN: &str = "site";
pub const CHILD: &str = "net";

/// A fresh pre-shared key: 32 random bytes as 64 hex characters (used as text by both
/// ends).
pub fn random_psk() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// How one end proves who it is.
#[derive(Clone, Debug)]
pub enum Credentials {
    Psk(String),
    /// This end's certificate and key, and the CA certificates it trusts for the peer.
    Cert {
        leaf: Leaf,
        trusted: Vec<String>,
    },
}

/// One IPsec tunnel of Siteward, on the left site by default.
#[derive(Clone, Debug)]
pub struct SitewardIpsec {
    pub name: String,
    pub interface: String,
    pub local_addr: Ipv4Addr,
    pub remote_addr: Ipv4Addr,
    pub local_id: Option<String>,
    pub remote_id: Option<String>,
    pub credentials: Credentials,
    pub proposals: Vec<String>,
    pub esp_proposals: Vec<String>,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    /// `initiate`, `respond` or `trap`.
    pub start: &'static str,
    pub dpd_delay: Option<String>,
    pub dpd_action: Option<&'static str>,
    pub encap: bool,
    /// Further `key = value` lines.
    pub extra: String,
}

impl SitewardIpsec {
    /// Left site to right site with `credentials`, the given proposals, and `start`.
    pub fn left(interface: &str, credentials: Credentials, start: &'static str) -> SitewardIpsec {
        SitewardIpsec {
            name: "site".into(),
            interface: interface.into(),
            local_addr: LEFT_UNDERLAY,
            remote_addr: RIGHT_UNDERLAY,
            local_id: None,
            remote_id: None,
            credentials,
            proposals: vec!["aes256gcm16-prfsha256-x25519".into()],
            esp_proposals: vec!["aes256gcm16".into()],
            local_ts: vec![LEFT_SUBNET.into()],
            remote_ts: vec![RIGHT_SUBNET.into()],
            start,
            dpd_delay: None,
            dpd_action: None,
            encap: false,
            extra: String::new(),
        }
    }

    /// The same tunnel seen from the right site.
    pub fn mirrored(&self, interface: &str, credentials: Credentials) -> SitewardIpsec {
        SitewardIpsec {
            interface: interface.into(),
            local_addr: self.remote_addr,
            remote_addr: self.local_addr,
            local_id: self.remote_id.clone(),
            remote_id: self.local_id.clone(),
            credentials,
            local_ts: self.remote_ts.clone(),
            remote_ts: self.local_ts.clone(),
            ..self.clone()
        }
    }

    pub fn proposals(mut self, ike: &str, esp: &str) -> SitewardIpsec {
        self.proposals = vec![ike.into()];
        self.esp_proposals = vec![esp.into()];
        self
    }

    /// The `[[tunnels]]` table. Certificates and keys are written into `files` (a
    /// directory the test keeps), the key 0600.
    pub fn toml(&self, files: &Path) -> String {
        let list = |items: &[String]| {
            let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        let mut text = format!(
            "[[tunnels]]\nname = {:?}\nkind = \"ipsec\"\ninterface = {:?}\n\
             local_addrs = [\"{}\"]\nremote_addrs = [\"{}\"]\n\
             proposals = {}\nesp_proposals = {}\nlocal_ts = {}\nremote_ts = {}\n\
             start = {:?}\nencap = {}\n",
            self.name,
            self.interface,
            self.local_addr,
            self.remote_addr,
            list(&self.proposals),
            list(&self.esp_proposals),
            list(&self.local_ts),
            list(&self.remote_ts),
            self.start,
            self.encap,
        );
        if let Some(id) = &self.local_id {
            let _ = writeln!(text, "local_id = {id:?}");
        }
        if let Some(id) = &self.remote_id {
            let _ = writeln!(text, "remote_id = {id:?}");
        }
        if let Some(delay) = &self.dpd_delay {
            let _ = writeln!(text, "dpd_delay = {delay:?}");
        }
        if let Some(action) = self.dpd_action {
            let _ = writeln!(text, "dpd_action = {action:?}");
        }
        match &self.credentials {
            Credentials::Psk(psk) => {
                let _ = writeln!(text, "auth = \"psk\"\npsk = {psk:?}");
            }
            Credentials::Cert { leaf, trusted } => {
                let stem = &self.interface;
                let cert = write_file(files, &format!("{stem}-cert.pem"), &leaf.cert_pem);
                let key = write_file(files, &format!("{stem}-key.pem"), &leaf.key_pem);
                let ca = write_file(files, &format!("{stem}-ca.pem"), &trusted.concat());
                let _ = writeln!(
                    text,
                    "auth = \"cert\"\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}",
                    cert.display().to_string(),
                    key.display().to_string(),
                    ca.display().to_string()
                );
            }
        }
        text.push_str(&self.extra);
        text
    }
}

fn write_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    file.write_all(content.as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// charon's side of a tunnel: connection [`CONN`] with child [`CHILD`], on the right site
/// by default, ESP UDP-encapsulated (kernel-libipsec handles nothing else).
#[derive(Clone, Debug)]
pub struct SwanctlConn {
    pub local_addr: Ipv4Addr,
    pub remote_addr: Ipv4Addr,
    pub local_id: String,
    pub remote_id: String,
    pub credentials: Credentials,
    pub proposals: String,
    pub esp_proposals: String,
    pub local_ts: String,
    pub remote_ts: String,
    /// Further lines inside the connection section (`dpd_delay = 2s`).
    pub extra: String,
}

impl SwanctlConn {
    /// The mirror image of Siteward's `tunnel`, with `credentials` for charon's end.
    pub fn mirror_of(tunnel: &SitewardIpsec, credentials: Credentials) -> SwanctlConn {
        let address_id = |ip: Ipv4Addr| ip.to_string();
        SwanctlConn {
            local_addr: tunnel.remote_addr,
            remote_addr: tunnel.local_addr,
            local_id: tunnel
                .remote_id
                .clone()
                .unwrap_or_else(|| address_id(tunnel.remote_addr)),
            remote_id: tunnel
                .local_id
                .clone()
                .unwrap_or_else(|| match &tunnel.credentials {
                    // Siteward's default with a PSK is its address; with certificates,
                    // whatever its certificate proves.
                    Credentials::Psk(_) => address_id(tunnel.local_addr),
                    Credentials::Cert { .. } => "%any".into(),
                }),
            credentials,
            proposals: tunnel.proposals.join(","),
            esp_proposals: tunnel.esp_proposals.join(","),
            local_ts: tunnel.remote_ts.join(","),
            remote_ts: tunnel.local_ts.join(","),
            extra: String::new(),
        }
    }

    /// charon on the left site, to a charon on the right (the harness's own suite), known
    /// by `ids.0` and expecting `ids.1`; by their addresses without `ids`.
    pub fn left(
        credentials: Credentials,
        ids: Option<(&str, &str)>,
        proposals: &str,
        esp_proposals: &str,
    ) -> SwanctlConn {
        let (local_id, remote_id) = match ids {
            Some((local, remote)) => (local.to_string(), remote.to_string()),
            None => (LEFT_UNDERLAY.to_string(), RIGHT_UNDERLAY.to_string()),
        };
        SwanctlConn {
            local_addr: LEFT_UNDERLAY,
            remote_addr: RIGHT_UNDERLAY,
            local_id,
            remote_id,
            credentials,
            proposals: proposals.into(),
            esp_proposals: esp_proposals.into(),
            local_ts: LEFT_SUBNET.into(),
            remote_ts: RIGHT_SUBNET.into(),
            extra: String::new(),
        }
    }

    /// The same connection seen from the other end, which proves itself with
    /// `credentials`.
    pub fn mirrored(&self, credentials: Credentials) -> SwanctlConn {
        SwanctlConn {
            local_addr: self.remote_addr,
            remote_addr: self.local_addr,
            local_id: self.remote_id.clone(),
            remote_id: self.local_id.clone(),
            credentials,
            local_ts: self.remote_ts.clone(),
            remote_ts: self.local_ts.clone(),
            ..self.clone()
        }
    }

    /// The swanctl.conf text.
    pub fn text(&self) -> String {
        let (local_auth, remote_auth, secrets) = match &self.credentials {
            Credentials::Psk(secret) => (
                "auth = psk".to_string(),
                "auth = psk".to_string(),
                format!(
                    "secrets {{\n  ike-site {{\n    id-1 = {}\n    id-2 = {}\n    secret = \"{secret}\"\n  }}\n}}\n",
                    quote_id(&self.local_id),
                    quote_id(&self.remote_id),
                ),
            ),
            Credentials::Cert { .. } => (
                "auth = pubkey\n      certs = local.pem".to_string(),
                "auth = pubkey".to_string(),
                // swanctl loads every key in `private/` by itself.
                String::new(),
            ),
        };
        format!(
            r#"connections {{
  {CONN} {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    encap = yes
    proposals = {ike}
    {extra}
    local {{
      {local_auth}
      id = {local_id}
    }}
    remote {{
      {remote_auth}
      id = {remote_id}
    }}
    children {{
      {CHILD} {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = {esp}
      }}
    }}
  }}
}}
{secrets}"#,
            local = self.local_addr,
            remote = self.remote_addr,
            ike = self.proposals,
            extra = self.extra,
            local_id = quote_id(&self.local_id),
            remote_id = quote_id(&self.remote_id),
            local_ts = self.local_ts,
            remote_ts = self.remote_ts,
            esp = self.esp_proposals,
        )
    }

    /// A harness configuration for charon: the connection and, with certificates, its
    /// certificate, key and trusted CAs.
    pub fn charon_config(&self) -> CharonConfig {
        let mut files = Vec::new();
        if let Credentials::Cert { leaf, trusted } = &self.credentials {
            for (i, pem) in trusted.iter().enumerate() {
                files.push((format!("x509ca/ca-{i}.pem"), pem.clone().into_bytes()));
            }
            files.push(("x509/local.pem".into(), leaf.cert_pem.clone().into_bytes()));
            files.push((
                "private/local.pem".into(),
                leaf.key_pem.clone().into_bytes(),
            ));
        }
        CharonConfig {
            connections: self.text(),
            files,
            ..CharonConfig::default()
        }
    }
}

/// Identities with spaces or `=` (DNs) are quoted in swanctl.conf.
fn quote_id(id: &str) -> String {
    if id.contains([' ', '=', ',']) {
        format!("\"{id}\"")
    } else {
        id.to_string()
    }
}
