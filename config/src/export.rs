//! Export and import of the configuration file with its secrets left out or encrypted
//! with a passphrase, so that a backup can be stored or moved to another box.
//!
//! An encrypted secret is written `"siteward-secret:v1:<base64(salt|nonce|ciphertext)>"`:
//! AES-256-GCM (ring) under a key derived from the passphrase with Argon2id (19 MiB, 2
//! passes, 1 lane: the parameters are part of `v1`), one salt per export so the derivation
//! runs once per file; the plaintext is the value as TOML writes it, and the key's name is
//! authenticated with it, so a value cannot be moved to another key. An omitted secret is
//! written `"siteward-secret:omitted"`, so that import knows which secrets to take from the
//! running file.

use std::collections::HashMap;
use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use toml_edit::{DocumentMut, Item, TableLike, Value};

use crate::edit::bare;
use crate::schema::is_secret_key;
use crate::view::parse_document;

/// What happens to secret values in an export.
#[derive(Clone, Copy)]
pub enum SecretHandling<'a> {
    /// Replaced by `"siteward-secret:omitted"`; import takes them from the running file.
    Omit,
    /// Encrypted with a key derived from the passphrase (at least 12 characters).
    Encrypt { passphrase: &'a str },
}

impl fmt::Debug for SecretHandling<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretHandling::Omit => f.write_str("Omit"),
            SecretHandling::Encrypt { .. } => f.write_str("Encrypt { passphrase: *** }"),
        }
    }
}

/// An imported file, ready to be validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Imported {
    /// The file with its secrets decrypted or taken from the running file.
    pub text: String,
    /// Paths (`checks[2].secret`) of the omitted secrets taken from the running file.
    pub secrets_kept_from_current: Vec<String>,
    /// Paths of omitted secrets the running file does not have: left out of `text`.
    pub secrets_missing: Vec<String>,
}

impl fmt::Debug for Imported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text holds the secrets.
        f.debug_struct("Imported")
            .field("text", &format_args!("({} bytes)", self.text.len()))
            .field("secrets_kept_from_current", &self.secrets_kept_from_current)
            .field("secrets_missing", &self.secrets_missing)
            .finish()
    }
}

/// Why an export or import failed. Never holds a secret or the passphrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    #[error("{0}")]
    Syntax(String),
    #[error("the running configuration: {0}")]
    CurrentSyntax(String),
    #[error("the passphrase must have at least {MIN_PASSPHRASE_CHARS} characters")]
    PassphraseTooShort,
    #[error("{path}: the secret is encrypted; the export's passphrase is needed")]
    PassphraseNeeded { path: String },
    #[error("{path}: cannot decrypt the secret: wrong passphrase, or the value was altered")]
    Decrypt { path: String },
    #[error("{path}: not an encrypted secret of a format this version reads")]
    Malformed { path: String },
    #[error("cannot {0}")]
    Crypto(&'static str),
}

/// Shortest passphrase accepted for an export.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
const ENCRYPTED_PREFIX: &str = "siteward-secret:v1:";
const OMITTED: &str = "siteward-secret:omitted";
/// Any value starting so is one of ours; an unknown version is refused, not kept.
const MARKER_PREFIX: &str = "siteward-secret:";
const SALT_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// The file with every secret value omitted or encrypted; comments and layout are kept.
/// A passphrase shorter than [`MIN_PASSPHRASE_CHARS`] is refused.
pub fn export(text: &str, secrets: SecretHandling) -> Result<String, ExportError> {
    export_with(text, secrets, &Kdf::V1)
}

/// Back to a file: encrypted secrets are decrypted with the passphrase (a wrong one, or an
/// altered value, is an error naming the field path, and nothing is returned); an omitted
/// secret is taken from `current` when it has an entry of the same section and name with
/// that key. The result is not validated here.
pub fn import(
    text: &str,
    passphrase: Option<&str>,
    current: &str,
) -> Result<Imported, ExportError> {
    import_with(text, passphrase, current, &Kdf::V1)
}

/// The passphrase to key derivation; tests use a cheaper one.
struct Kdf {
    params: argon2::Params,
}

impl Kdf {
    const V1: Kdf = Kdf {
        params: argon2::Params::DEFAULT,
    };

    fn key(&self, passphrase: &str, salt: &[u8]) -> Result<LessSafeKey, ExportError> {
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            self.params.clone(),
        );
        let mut key = [0u8; KEY_LEN];
        argon
            .hash_password_into(passphrase.as_bytes(), salt, &mut key)
            .map_err(|_| ExportError::Crypto("derive a key from the passphrase"))?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key)
            .map_err(|_| ExportError::Crypto("make an AES-256-GCM key"));
        key.fill(0);
        Ok(LessSafeKey::new(unbound?))
    }
}

fn export_with(text: &str, secrets: SecretHandling, kdf: &Kdf) -> Result<String, ExportError> {
    let mut doc = parse_document(text).map_err(ExportError::Syntax)?;
    let rng = SystemRandom::new();
    let sealer = match secrets {
        SecretHandling::Omit => None,
        SecretHandling::Encrypt { passphrase } => {
            if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
                return Err(ExportError::PassphraseTooShort);
            }
            let mut salt = [0u8; SALT_LEN];
            rng.fill(&mut salt)
                .map_err(|_| ExportError::Crypto("draw a random salt"))?;
            Some((salt, kdf.key(passphrase, &salt)?))
        }
    };
    let mut failure = None;
    visit_secrets(&mut doc, &mut |secret| {
        if failure.is_some() {
            return;
        }
        let replacement = match &sealer {
            None => Ok(Value::from(OMITTED)),
            Some((salt, key)) => seal(secret.item, secret.key, salt, key, &rng).map(Value::from),
        };
        match replacement {
            Ok(value) => replace(secret.item, value),
            Err(e) => failure = Some(e),
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(doc.to_string()),
    }
}

fn import_with(
    text: &str,
    passphrase: Option<&str>,
    current: &str,
    kdf: &Kdf,
) -> Result<Imported, ExportError> {
    let mut doc = parse_document(text).map_err(ExportError::Syntax)?;
    let mut current_doc = parse_document(current).map_err(ExportError::CurrentSyntax)?;
    // The running file's inline secrets by entry (found by name) and key.
    let mut running: HashMap<(String, String), Value> = HashMap::new();
    visit_secrets(&mut current_doc, &mut |secret| {
        let (Some(locator), Some(value)) = (secret.locator, secret.item.as_value()) else {
            return;
        };
        if value.as_str() != Some(OMITTED) {
            running.insert((locator.to_string(), secret.key.to_string()), value.clone());
        }
    });

    let mut keys: HashMap<[u8; SALT_LEN], LessSafeKey> = HashMap::new();
    let mut kept = Vec::new();
    let mut missing = Vec::new();
    let mut failure = None;
    visit_secrets(&mut doc, &mut |secret| {
        if failure.is_some() {
            return;
        }
        let Some(written) = secret.item.as_str() else {
            return;
        };
        let path = secret.path.to_string();
        if written == OMITTED {
            let found = secret
                .locator
                .and_then(|locator| running.get(&(locator.to_string(), secret.key.to_string())));
            match found {
                Some(value) => {
                    replace(secret.item, value.clone());
                    kept.push(path);
                }
                None => {
                    *secret.item = Item::None;
                    missing.push(path);
                }
            }
        } else if let Some(sealed) = written.strip_prefix(ENCRYPTED_PREFIX) {
            let Some(passphrase) = passphrase else {
                failure = Some(ExportError::PassphraseNeeded { path });
                return;
            };
            match open(sealed, secret.key, passphrase, kdf, &mut keys, &path) {
                Ok(value) => replace(secret.item, value),
                Err(e) => failure = Some(e),
            }
        } else if written.starts_with(MARKER_PREFIX) {
            failure = Some(ExportError::Malformed { path });
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    Ok(Imported {
        text: doc.to_string(),
        secrets_kept_from_current: kept,
        secrets_missing: missing,
    })
}

/// Encrypts the value as TOML writes it; `key_name` is authenticated with it.
fn seal(
    item: &Item,
    key_name: &str,
    salt: &[u8; SALT_LEN],
    key: &LessSafeKey,
    rng: &SystemRandom,
) -> Result<String, ExportError> {
    let mut plaintext = match item.clone().into_value() {
        Ok(value) => bare(&value).to_string().into_bytes(),
        Err(item) => item.to_string().into_bytes(),
    };
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)
        .map_err(|_| ExportError::Crypto("draw a random nonce"))?;
    let sealed = key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad(key_name)),
        &mut plaintext,
    );
    if sealed.is_err() {
        plaintext.fill(0);
        return Err(ExportError::Crypto("encrypt a secret"));
    }
    let mut blob = Vec::with_capacity(SALT_LEN + NONCE_LEN + plaintext.len());
    blob.extend_from_slice(salt);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&plaintext);
    Ok(format!("{ENCRYPTED_PREFIX}{}", STANDARD.encode(blob)))
}

/// Decrypts one value, deriving the key of its salt once.
fn open(
    sealed: &str,
    key_name: &str,
    passphrase: &str,
    kdf: &Kdf,
    keys: &mut HashMap<[u8; SALT_LEN], LessSafeKey>,
    path: &str,
) -> Result<Value, ExportError> {
    let malformed = || ExportError::Malformed {
        path: path.to_string(),
    };
    let wrong = || ExportError::Decrypt {
        path: path.to_string(),
    };
    let mut blob = STANDARD.decode(sealed.trim()).map_err(|_| malformed())?;
    if blob.len() < SALT_LEN + NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(malformed());
    }
    let (salt, rest) = blob.split_at_mut(SALT_LEN);
    let (nonce, ciphertext) = rest.split_at_mut(NONCE_LEN);
    let salt: [u8; SALT_LEN] = (&*salt).try_into().map_err(|_| malformed())?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed())?;
    let key = match keys.entry(salt) {
        std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
        std::collections::hash_map::Entry::Vacant(slot) => slot.insert(kdf.key(passphrase, &salt)?),
    };
    let plaintext = key
        .open_in_place(nonce, Aad::from(aad(key_name)), ciphertext)
        .map_err(|_| wrong())?;
    let value = std::str::from_utf8(plaintext)
        .ok()
        .and_then(|text| text.parse::<Value>().ok());
    plaintext.fill(0);
    // Authentic but not a value: only a writer holding the passphrase could make it.
    value.ok_or_else(wrong)
}

fn aad(key_name: &str) -> Vec<u8> {
    format!("{ENCRYPTED_PREFIX}{key_name}").into_bytes()
}

/// Puts `value` where `item` is, keeping the spacing and comment around the old value.
fn replace(item: &mut Item, mut value: Value) {
    if let Some(old) = item.as_value() {
        *value.decor_mut() = old.decor().clone();
    }
    *item = Item::Value(value);
}

/// One secret of a file, as [`visit_secrets`] finds it.
struct SecretAt<'a> {
    /// Validation's path: `checks[2].secret`, `tunnels[0].peers[1].preshared_key`.
    path: &'a str,
    /// The entry by section and name (`checks["db1"]`), `None` when some entry on the way
    /// has no unique name.
    locator: Option<&'a str>,
    key: &'a str,
    item: &'a mut Item,
}

/// Calls `f` with every secret of the file, at any depth: every key the schema says is a
/// secret, in tables, inline tables and arrays of them.
fn visit_secrets(doc: &mut DocumentMut, f: &mut dyn FnMut(SecretAt)) {
    visit_table(doc.as_table_mut(), "", Some(""), f);
}

fn visit_table(
    table: &mut dyn TableLike,
    path: &str,
    locator: Option<&str>,
    f: &mut dyn FnMut(SecretAt),
) {
    for (key, item) in table.iter_mut() {
        let key = key.get().to_string();
        let item_path = join(path, &key);
        let item_locator = locator.map(|l| join(l, &key));
        if is_secret_key(&key) {
            f(SecretAt {
                path: &item_path,
                locator: item_locator.as_deref(),
                key: &key,
                item,
            });
            continue;
        }
        match item {
            Item::Table(table) => visit_table(table, &item_path, item_locator.as_deref(), f),
            Item::ArrayOfTables(array) => {
                let mut entries: Vec<&mut dyn TableLike> =
                    array.iter_mut().map(|t| t as &mut dyn TableLike).collect();
                visit_entries(&mut entries, &item_path, item_locator.as_deref(), f);
            }
            Item::Value(value) => visit_value(value, &item_path, item_locator.as_deref(), f),
            Item::None => {}
        }
    }
}

fn visit_value(value: &mut Value, path: &str, locator: Option<&str>, f: &mut dyn FnMut(SecretAt)) {
    match value {
        Value::InlineTable(table) => visit_table(table, path, locator, f),
        Value::Array(array) => {
            if array.iter().all(Value::is_inline_table) {
                let mut entries: Vec<&mut dyn TableLike> = array
                    .iter_mut()
                    .filter_map(Value::as_inline_table_mut)
                    .map(|t| t as &mut dyn TableLike)
                    .collect();
                visit_entries(&mut entries, path, locator, f);
            } else {
                for (i, value) in array.iter_mut().enumerate() {
                    visit_value(value, &format!("{path}[{i}]"), None, f);
                }
            }
        }
        _ => {}
    }
}

/// The entries of an array of tables, located by their `name` when it is unique.
fn visit_entries(
    entries: &mut [&mut dyn TableLike],
    path: &str,
    locator: Option<&str>,
    f: &mut dyn FnMut(SecretAt),
) {
    let names: Vec<Option<String>> = entries
        .iter()
        .map(|entry| entry.get("name").and_then(Item::as_str).map(str::to_string))
        .collect();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for name in names.iter().flatten() {
        *counts.entry(name).or_default() += 1;
    }
    for (index, entry) in entries.iter_mut().enumerate() {
        let name = names.get(index).and_then(Option::as_deref);
        let unique = name.filter(|name| counts.get(name) == Some(&1));
        let entry_locator = match (locator, unique) {
            (Some(locator), Some(name)) => Some(format!("{locator}[{name:?}]")),
            _ => None,
        };
        visit_table(
            &mut **entry,
            &format!("{path}[{index}]"),
            entry_locator.as_deref(),
            f,
        );
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Argon2id at its least cost, for tests that run many exports.
    fn cheap() -> Kdf {
        Kdf {
            params: argon2::Params::new(8, 1, 1, Some(KEY_LEN)).expect("valid parameters"),
        }
    }

    const PASSPHRASE: &str = "correct horse battery";

    const FILE: &str = r#"# Plant 07: the comments stay.
[uplink]
url = "https://p.example/"
token = "uplink-token-1"   # from the platform team

[[checks]]
name = "pbx"
kind = "asterisk-ami"
target = "pbx:5038"
username = "siteward"
secret = 'ami-literal-2'

[[checks]]
name = "router"
kind = "saprouter"
target = "router:3299"
route = "/H/gw/S/3300"
route_password = "route-pw-3"

[[tunnels]]
name = "wg"
kind = "wireguard"
interface = "wg0"
private_key = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="

[[tunnels.peers]]
name = "hq"
public_key = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw="
preshared_key = "peer-psk-4"
allowed_ips = []

[[tunnels]]
name = "ipsec-hq"
kind = "ipsec"
interface = "ipsec0"
psk = """multi-line
psk-5"""

[[connectors]]
name = "hooks"
kind = "webhook"
listen = "0.0.0.0:8080"
hmac_secret = "hmac-6"
"#;

    const SECRETS: [&str; 7] = [
        "uplink-token-1",
        "ami-literal-2",
        "route-pw-3",
        "yAnz5TF+lXXJte14tji3zlMNq",
        "peer-psk-4",
        "psk-5",
        "hmac-6",
    ];

    const PATHS: [&str; 7] = [
        "uplink.token",
        "checks[0].secret",
        "checks[1].route_password",
        "tunnels[0].private_key",
        "tunnels[0].peers[0].preshared_key",
        "tunnels[1].psk",
        "connectors[0].hmac_secret",
    ];

    fn sealed_values(text: &str) -> Vec<Vec<u8>> {
        text.match_indices(ENCRYPTED_PREFIX)
            .map(|(at, _)| {
                let rest = &text[at + ENCRYPTED_PREFIX.len()..];
                let end = rest.find('"').expect("a quoted value");
                STANDARD.decode(&rest[..end]).expect("base64")
            })
            .collect()
    }

    #[test]
    fn an_encrypted_export_imports_back_to_the_same_file() {
        let passphrase = SecretHandling::Encrypt {
            passphrase: PASSPHRASE,
        };
        let exported = export(FILE, passphrase).unwrap();
        for secret in SECRETS {
            assert!(!exported.contains(secret), "{secret} in\n{exported}");
        }
        assert!(exported.starts_with("# Plant 07: the comments stay.\n"));
        assert!(
            exported.contains("\"   # from the platform team\n"),
            "{exported}"
        );
        // One salt for the file, a nonce per value.
        let sealed = sealed_values(&exported);
        assert_eq!(sealed.len(), SECRETS.len());
        assert!(sealed
            .iter()
            .all(|s| s[..SALT_LEN] == sealed[0][..SALT_LEN]));
        let nonces: std::collections::HashSet<&[u8]> = sealed
            .iter()
            .map(|s| &s[SALT_LEN..SALT_LEN + NONCE_LEN])
            .collect();
        assert_eq!(nonces.len(), sealed.len());

        let imported = import(&exported, Some(PASSPHRASE), "").unwrap();
        assert_eq!(imported.text, FILE);
        assert!(imported.secrets_kept_from_current.is_empty());
        assert!(imported.secrets_missing.is_empty());
        // And once more: a second export has its own salt.
        let again = export(FILE, passphrase).unwrap();
        assert_ne!(sealed_values(&again)[0][..SALT_LEN], sealed[0][..SALT_LEN]);
    }

    #[test]
    fn a_wrong_passphrase_or_an_altered_value_is_refused_at_its_path() {
        let kdf = cheap();
        let exported = export_with(
            FILE,
            SecretHandling::Encrypt {
                passphrase: PASSPHRASE,
            },
            &kdf,
        )
        .unwrap();
        let wrong = import_with(&exported, Some("correct horse battery!"), "", &kdf);
        assert_eq!(
            wrong.unwrap_err(),
            ExportError::Decrypt {
                path: PATHS[0].into()
            }
        );
        let needed = import_with(&exported, None, "", &kdf).unwrap_err();
        assert_eq!(
            needed.to_string(),
            "uplink.token: the secret is encrypted; the export's passphrase is needed"
        );

        // One bit of the third value's ciphertext flipped.
        let third = &sealed_values(&exported)[2];
        let mut flipped = third.clone();
        let last = flipped.len() - 1;
        flipped[SALT_LEN + NONCE_LEN] ^= 0x01;
        let tampered = exported.replace(&STANDARD.encode(third), &STANDARD.encode(&flipped));
        assert_ne!(tampered, exported);
        let e = import_with(&tampered, Some(PASSPHRASE), "", &kdf).unwrap_err();
        assert_eq!(
            e,
            ExportError::Decrypt {
                path: PATHS[2].into()
            }
        );
        // The tag flipped, and the value cut short.
        let mut tag = third.clone();
        tag[last] ^= 0x80;
        let tampered = exported.replace(&STANDARD.encode(third), &STANDARD.encode(&tag));
        let e = import_with(&tampered, Some(PASSPHRASE), "", &kdf).unwrap_err();
        assert_eq!(
            e,
            ExportError::Decrypt {
                path: PATHS[2].into()
            }
        );
        let short = exported.replace(&STANDARD.encode(third), &STANDARD.encode(&third[..20]));
        let e = import_with(&short, Some(PASSPHRASE), "", &kdf).unwrap_err();
        assert_eq!(
            e,
            ExportError::Malformed {
                path: PATHS[2].into()
            }
        );
        let bad = exported.replace(&STANDARD.encode(third), "not base64!");
        let e = import_with(&bad, Some(PASSPHRASE), "", &kdf).unwrap_err();
        assert_eq!(
            e,
            ExportError::Malformed {
                path: PATHS[2].into()
            }
        );
        // A value moved to another key does not decrypt there.
        let hmac = STANDARD.encode(&sealed_values(&exported)[6]);
        let moved = exported.replace(&STANDARD.encode(third), &hmac);
        let e = import_with(&moved, Some(PASSPHRASE), "", &kdf).unwrap_err();
        assert_eq!(
            e,
            ExportError::Decrypt {
                path: PATHS[2].into()
            }
        );
        // A format from a later version is not taken as a plain secret.
        let later = exported.replace("siteward-secret:v1:", "siteward-secret:v2:");
        let e = import_with(&later, Some(PASSPHRASE), "", &kdf).unwrap_err();
        assert_eq!(
            e,
            ExportError::Malformed {
                path: PATHS[0].into()
            }
        );
    }

    #[test]
    fn short_passphrases_are_refused() {
        let kdf = cheap();
        let short = SecretHandling::Encrypt {
            passphrase: "ñ23456789ab",
        };
        assert_eq!(
            export_with(FILE, short, &kdf),
            Err(ExportError::PassphraseTooShort)
        );
        let twelve = SecretHandling::Encrypt {
            passphrase: "ñ23456789abc",
        };
        assert!(export_with(FILE, twelve, &kdf).is_ok());
        assert_eq!(format!("{twelve:?}"), "Encrypt { passphrase: *** }");
    }

    #[test]
    fn omitted_secrets_are_taken_from_the_running_file_by_name() {
        let exported = export(FILE, SecretHandling::Omit).unwrap();
        for secret in SECRETS {
            assert!(!exported.contains(secret), "{secret}");
        }
        assert_eq!(exported.matches(OMITTED).count(), SECRETS.len());
        assert!(exported.contains("token = \"siteward-secret:omitted\"   # from the platform team"));

        // The two checks swapped, the webhook renamed, a new peer that the running file
        // does not have, and a secret written in plain.
        let checks_start = exported.find("[[checks]]").unwrap();
        let second = checks_start + 1 + exported[checks_start + 1..].find("[[checks]]").unwrap();
        let tunnels = exported.find("[[tunnels]]").unwrap();
        let swapped = format!(
            "{}{}\n{}{}",
            &exported[..checks_start],
            exported[second..tunnels].trim_end(),
            &exported[checks_start..second],
            &exported[tunnels..],
        )
        .replace("name = \"hooks\"", "name = \"hooks-2\"")
        .replace(
            "psk = \"siteward-secret:omitted\"\n",
            "psk = \"typed-in-psk-0123\"\n",
        )
            + "\n[[tunnels.peers]]\nname = \"new\"\npreshared_key = \"siteward-secret:omitted\"\n";
        let imported = import(&swapped, None, FILE).unwrap();
        assert_eq!(
            imported.secrets_kept_from_current,
            [
                "uplink.token",
                "checks[0].route_password",
                "checks[1].secret",
                "tunnels[0].private_key",
                "tunnels[0].peers[0].preshared_key",
            ]
        );
        assert_eq!(
            imported.secrets_missing,
            [
                "tunnels[1].peers[0].preshared_key",
                "connectors[0].hmac_secret"
            ]
        );
        let parsed: toml::Table = imported.text.parse().unwrap();
        assert_eq!(parsed["uplink"]["token"].as_str(), Some("uplink-token-1"));
        assert_eq!(
            parsed["checks"][0]["route_password"].as_str(),
            Some("route-pw-3")
        );
        assert_eq!(
            parsed["checks"][1]["secret"].as_str(),
            Some("ami-literal-2")
        );
        assert_eq!(
            parsed["tunnels"][1]["psk"].as_str(),
            Some("typed-in-psk-0123")
        );
        assert!(parsed["connectors"][0].get("hmac_secret").is_none());
        assert!(parsed["tunnels"][1]["peers"][0]
            .get("preshared_key")
            .is_none());
        assert!(!imported.text.contains(OMITTED));
        // The text holds secrets: Debug does not show it.
        let debug = format!("{imported:?}");
        assert!(!debug.contains("uplink-token-1"), "{debug}");
    }

    #[test]
    fn entries_without_a_unique_name_are_not_matched() {
        let running = "[[relays]]\nname = \"r\"\n[relays.x]\ntoken = \"a-token-1\"\n\
                       [[relays]]\nname = \"r\"\n[relays.x]\ntoken = \"a-token-2\"\n";
        let exported = export(running, SecretHandling::Omit).unwrap();
        let imported = import(&exported, None, running).unwrap();
        assert!(imported.secrets_kept_from_current.is_empty());
        assert_eq!(
            imported.secrets_missing,
            ["relays[0].x.token", "relays[1].x.token"]
        );
    }

    #[test]
    fn secrets_in_inline_tables_and_arrays_are_handled_too() {
        let text = "weird = [1, { psk = \"inline-psk-1\" }, [{ token = \"nested-token-2\" }]]\n\
                    [x]\ny = { secret = \"inline-secret-3\" }\n";
        let omitted = export(text, SecretHandling::Omit).unwrap();
        let kdf = cheap();
        let handling = SecretHandling::Encrypt {
            passphrase: PASSPHRASE,
        };
        let encrypted = export_with(text, handling, &kdf).unwrap();
        for secret in ["inline-psk-1", "nested-token-2", "inline-secret-3"] {
            assert!(
                !omitted.contains(secret) && !encrypted.contains(secret),
                "{secret}"
            );
        }
        assert_eq!(omitted.matches(OMITTED).count(), 3);
        let imported = import_with(&encrypted, Some(PASSPHRASE), "", &kdf).unwrap();
        assert_eq!(imported.text, text);
        let imported = import(&omitted, None, text).unwrap();
        assert_eq!(imported.secrets_kept_from_current, ["x.y.secret"]);
        assert_eq!(
            imported.secrets_missing,
            ["weird[1].psk", "weird[2][0].token"]
        );
    }

    #[test]
    fn syntax_errors_do_not_quote_the_file() {
        let e = export("token = \"hunter2-secret", SecretHandling::Omit).unwrap_err();
        assert!(matches!(e, ExportError::Syntax(_)));
        assert!(!e.to_string().contains("hunter2"), "{e}");
        let e = import("a = 1", None, "psk = 'hunter2-secret").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("the running configuration: not valid TOML"));
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    fn secret() -> impl Strategy<Value = String> {
        "[ -~\u{a0}-\u{2ff}\n\t]{8,40}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn an_encrypted_export_holds_no_plaintext_secret_and_imports_back(
            secrets in prop::array::uniform7(secret()),
        ) {
            let mut doc: DocumentMut = FILE.parse().unwrap();
            let value = |i: usize| toml_edit::value(secrets[i].as_str());
            doc["uplink"]["token"] = value(0);
            doc["checks"][0]["secret"] = value(1);
            doc["checks"][1]["route_password"] = value(2);
            doc["tunnels"][0]["private_key"] = value(3);
            doc["tunnels"][0]["peers"][0]["preshared_key"] = value(4);
            doc["tunnels"][1]["psk"] = value(5);
            doc["connectors"][0]["hmac_secret"] = value(6);
            let text = doc.to_string();
            let kdf = cheap();
            let handling = SecretHandling::Encrypt { passphrase: PASSPHRASE };
            let exported = export_with(&text, handling, &kdf).unwrap();
            for secret in &secrets {
                let escaped = format!("{secret:?}");
                prop_assert!(!exported.contains(secret.as_str()));
                prop_assert!(!exported.contains(escaped.trim_matches('"')));
            }
            let imported = import_with(&exported, Some(PASSPHRASE), "", &kdf).unwrap();
            prop_assert_eq!(imported.text, text);
            let omitted = export_with(&exported, SecretHandling::Omit, &kdf).unwrap();
            prop_assert!(!omitted.contains(ENCRYPTED_PREFIX));
        }
    }
}
