//! Bearer tokens of the admin API, stored as SHA-256 hashes in the state directory.
//!
//! Tokens are 256 random bits, so a plain SHA-256 is the right hash (a slow password hash
//! buys nothing against a value that cannot be guessed). The daemon re-reads the file when
//! it changes, so `siteward token create` takes effect without a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use anyhow::{bail, Context};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config_store::unix_now;
use crate::state_files::write_private;

const FILE_NAME: &str = "api-tokens.json";
const TOKEN_PREFIX: &str = "swt_";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    /// Hex SHA-256 of the whole token.
    pub sha256: String,
    /// Unix seconds.
    pub created_at: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

/// The token store of one state directory.
pub struct TokenStore {
    path: PathBuf,
    /// Entries as of the file's last modification time.
    cache: Mutex<(Option<SystemTime>, Vec<TokenEntry>)>,
}

impl TokenStore {
    pub fn in_state_dir(state_dir: &Path) -> Self {
        TokenStore {
            path: state_dir.join(FILE_NAME),
            cache: Mutex::new((None, Vec::new())),
        }
    }

    /// Creates a token called `name` and returns it; only its hash is kept.
    pub fn create(&self, name: &str) -> anyhow::Result<String> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !valid {
            bail!("token name \"{name}\" must be 1-64 characters of letters, digits, '-', '_' and '.'");
        }
        let mut file = self.read()?;
        if file.tokens.iter().any(|t| t.name == name) {
            bail!("a token named \"{name}\" exists; revoke it first");
        }
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(secret));
        file.tokens.push(TokenEntry {
            name: name.to_string(),
            sha256: hash(&token),
            created_at: unix_now(),
        });
        self.write(&file)?;
        Ok(token)
    }

    pub fn list(&self) -> anyhow::Result<Vec<TokenEntry>> {
        Ok(self.read()?.tokens)
    }

    /// Removes the token called `name`; errors if there is none.
    pub fn revoke(&self, name: &str) -> anyhow::Result<()> {
        let mut file = self.read()?;
        let before = file.tokens.len();
        file.tokens.retain(|t| t.name != name);
        if file.tokens.len() == before {
            bail!("no token named \"{name}\"");
        }
        self.write(&file)
    }

    /// The name of the token `presented` matches, if any. Compares hashes in constant time.
    pub fn verify(&self, presented: &str) -> Option<String> {
        let presented_hash = hash(presented);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified != cache.0 || modified.is_none() {
            match self.read() {
                Ok(file) => *cache = (modified, file.tokens),
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "cannot read the API token store; refusing all tokens"
                    );
                    *cache = (None, Vec::new());
                }
            }
        }
        let mut found = None;
        // Check every entry so the time taken does not tell which one matched.
        for entry in &cache.1 {
            if bool::from(entry.sha256.as_bytes().ct_eq(presented_hash.as_bytes())) {
                found = Some(entry.name.clone());
            }
        }
        found
    }

    fn read(&self) -> anyhow::Result<TokenFile> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    fn write(&self, file: &TokenFile) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(file).context("encoding the token store")?;
        json.push(b'\n');
        write_private(&self.path, &json)
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_verify_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::in_state_dir(dir.path());
        let token = store.create("grafana").unwrap();
        assert!(token.starts_with(TOKEN_PREFIX));
        assert_eq!(store.verify(&token).as_deref(), Some("grafana"));
        assert_eq!(store.verify("swt_wrong"), None);
        assert!(
            store.create("grafana").is_err(),
            "duplicate names are refused"
        );
        assert!(store.create("bad name").is_err());

        // The file holds the hash, never the token.
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains(&token));

        // A second store (the CLI) revokes; the first notices the file changed.
        TokenStore::in_state_dir(dir.path())
            .revoke("grafana")
            .unwrap();
        assert_eq!(store.verify(&token), None);
        assert!(store.revoke("grafana").is_err());
    }
}
