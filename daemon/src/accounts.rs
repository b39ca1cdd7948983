//! Web UI accounts: names with argon2id password hashes in `<state_dir>/accounts.json`
//! (0600), and the one-time setup token that lets the first admin in.
//!
//! There is no default password. While no account exists, the daemon keeps a random setup
//! token in `<state_dir>/setup-token` (0600) and logs where it is; whoever can read that file
//! (root on the box) can create the first account with it, once. `siteward passwd USER`
//! sets a password from the shell (and creates the account if needed).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config_store::unix_now;
use crate::state_files::{remove_if_exists, write_private};

const ACCOUNTS_FILE: &str = "accounts.json";
const SETUP_TOKEN_FILE: &str = "setup-token";
/// NIST SP 800-63B's floor for a password chosen by its user is 8; an appliance reachable
/// over the network deserves more.
pub const MIN_PASSWORD_CHARS: usize = 12;
const MAX_PASSWORD_BYTES: usize = 1024;

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    /// PHC string (`$argon2id$v=19$m=...`): algorithm, parameters, salt and hash.
    pub password_hash: String,
    /// Unix seconds.
    pub created_at: u64,
    pub password_changed_at: u64,
    /// The TOTP secret (base32) when two-factor login is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_secret: Option<String>,
    /// The time step of the newest code accepted (at enrolment or a login). Codes of it
    /// and of earlier steps are refused, so a code read over a shoulder or from a log does
    /// not work a second time (RFC 6238 §5.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp_last_step: Option<u64>,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the hash nor the TOTP secret: Debug output ends up in logs.
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("created_at", &self.created_at)
            .field("password_changed_at", &self.password_changed_at)
            .field("two_factor", &self.totp_secret.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    accounts: Vec<Account>,
}

/// Why a setup or login was refused; deliberately vague toward the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("wrong user name or password (or two-factor code)")]
    WrongCredentials,
    #[error("the setup token is wrong or already used")]
    BadSetupToken,
    #[error("{0}")]
    WeakPassword(String),
    #[error("{0}")]
    BadName(String),
}

/// The account store of one state directory.
#[derive(Clone)]
pub struct AccountStore {
    dir: PathBuf,
    /// Held across each read-modify-write of the file, so two requests at once (two
    /// logins with one code, a login and a password change) cannot both read the old file.
    writing: Arc<Mutex<()>>,
}

impl AccountStore {
    pub fn in_state_dir(state_dir: &Path) -> AccountStore {
        AccountStore {
            dir: state_dir.to_path_buf(),
            writing: Arc::default(),
        }
    }

    pub fn setup_token_path(&self) -> PathBuf {
        self.dir.join(SETUP_TOKEN_FILE)
    }

    /// While no account exists: makes sure a setup token exists and returns its file (the
    /// daemon logs it). With accounts: removes any leftover token and returns `None`.
    pub fn ensure_setup_token(&self) -> anyhow::Result<Option<PathBuf>> {
        let path = self.setup_token_path();
        if !self.read()?.accounts.is_empty() {
            remove_if_exists(&path)?;
            return Ok(None);
        }
        if !path.is_file() {
            let mut secret = [0u8; 20];
            rand::rng().fill_bytes(&mut secret);
            write_private(&path, format!("{}\n", hex::encode(secret)).as_bytes())?;
        }
        Ok(Some(path))
    }

    /// Creates the first account with the setup token, which is then gone for good.
    pub fn setup(&self, token: &str, name: &str, password: &str) -> anyhow::Result<()> {
        let path = self.setup_token_path();
        let expected = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(AuthError::BadSetupToken.into())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let matches =
            !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(token.trim().as_bytes()));
        if !matches || !self.read()?.accounts.is_empty() {
            return Err(AuthError::BadSetupToken.into());
        }
        self.set_password(name, password)?;
        remove_if_exists(&path)
    }

    /// Sets `name`'s password, creating the account if it does not exist.
    pub fn set_password(&self, name: &str, password: &str) -> anyhow::Result<()> {
        check_name(name)?;
        check_password(password, name)?;
        let hash = hash_password(password)?;
        let now = unix_now();
        let _writing = self.writing();
        let mut file = self.read()?;
        match file.accounts.iter_mut().find(|a| a.name == name) {
            Some(account) => {
                account.password_hash = hash;
                account.password_changed_at = now;
            }
            None => file.accounts.push(Account {
                name: name.to_string(),
                password_hash: hash,
                created_at: now,
                password_changed_at: now,
                totp_secret: None,
                totp_last_step: None,
            }),
        }
        self.write(&file)?;
        // An account exists now: the setup token must not let anyone else in.
        remove_if_exists(&self.setup_token_path())
    }

    /// Checks a login: the password, and the TOTP code when the account has two-factor
    /// login on; an accepted code is used up. An unknown user costs the same hashing time
    /// as a known one, so the answer's timing does not tell which names exist; a wrong or
    /// used code gets the same answer as a wrong password.
    pub fn verify(&self, name: &str, password: &str, code: Option<&str>) -> Result<(), AuthError> {
        self.verify_password(name, password)?;
        let refuse = |e: anyhow::Error| {
            tracing::error!("{e:#}; refusing the login");
            AuthError::WrongCredentials
        };
        let _writing = self.writing();
        let mut file = self.read().map_err(refuse)?;
        let account = file
            .accounts
            .iter_mut()
            .find(|a| a.name == name)
            .ok_or(AuthError::WrongCredentials)?;
        let Some(secret) = account.totp_secret.as_deref() else {
            return Ok(());
        };
        let secret = crate::totp::base32_decode(secret).ok_or(AuthError::WrongCredentials)?;
        let step = code
            .and_then(|code| crate::totp::matching_step(&secret, code, unix_now()))
            .ok_or(AuthError::WrongCredentials)?;
        if account.totp_last_step.is_some_and(|last| step <= last) {
            return Err(AuthError::WrongCredentials);
        }
        account.totp_last_step = Some(step);
        self.write(&file).map_err(refuse)
    }

    /// Turns two-factor login on for `name` with `secret` (base32), whose code of time
    /// step `accepted_step` confirmed the enrolment (and is used up by it).
    pub fn enable_totp(&self, name: &str, secret: &str, accepted_step: u64) -> anyhow::Result<()> {
        self.update(name, |account| {
            account.totp_secret = Some(secret.to_string());
            account.totp_last_step = Some(accepted_step);
        })
    }

    /// Turns two-factor login off for `name`.
    pub fn disable_totp(&self, name: &str) -> anyhow::Result<()> {
        self.update(name, |account| {
            account.totp_secret = None;
            account.totp_last_step = None;
        })
    }

    /// Removes an account; the last one stays (nobody could log in any more).
    pub fn remove(&self, name: &str) -> anyhow::Result<()> {
        let _writing = self.writing();
        let mut file = self.read()?;
        if !file.accounts.iter().any(|a| a.name == name) {
            anyhow::bail!("no account named \"{name}\"");
        }
        if file.accounts.len() == 1 {
            anyhow::bail!("\"{name}\" is the last account: it stays");
        }
        file.accounts.retain(|a| a.name != name);
        self.write(&file)
    }

    pub fn account(&self, name: &str) -> anyhow::Result<Option<Account>> {
        Ok(self.read()?.accounts.into_iter().find(|a| a.name == name))
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Account)) -> anyhow::Result<()> {
        let _writing = self.writing();
        let mut file = self.read()?;
        let account = file
            .accounts
            .iter_mut()
            .find(|a| a.name == name)
            .ok_or_else(|| anyhow::anyhow!("no account named \"{name}\""))?;
        change(account);
        self.write(&file)
    }

    fn verify_password(&self, name: &str, password: &str) -> Result<(), AuthError> {
        let file = self.read().map_err(|e| {
            tracing::error!("{e:#}; refusing logins");
            AuthError::WrongCredentials
        })?;
        let account = file.accounts.iter().find(|a| a.name == name);
        let stored = account.map_or_else(dummy_hash, |a| a.password_hash.clone());
        let verified = PasswordHash::new(&stored).ok().is_some_and(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        });
        if verified && account.is_some() {
            Ok(())
        } else {
            Err(AuthError::WrongCredentials)
        }
    }

    pub fn list(&self) -> anyhow::Result<Vec<Account>> {
        Ok(self.read()?.accounts)
    }

    fn writing(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> anyhow::Result<AccountsFile> {
        let path = self.dir.join(ACCOUNTS_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parsing {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccountsFile::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn write(&self, file: &AccountsFile) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(file).context("encoding the accounts")?;
        json.push(b'\n');
        write_private(&self.dir.join(ACCOUNTS_FILE), &json)
    }
}

fn check_name(name: &str) -> Result<(), AuthError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if valid {
        Ok(())
    } else {
        Err(AuthError::BadName(format!(
            "user name \"{name}\" must be 1-64 characters of letters, digits, '-', '_', '.' and '@'"
        )))
    }
}

fn check_password(password: &str, name: &str) -> Result<(), AuthError> {
    let weak = |why: &str| Err(AuthError::WeakPassword(why.to_string()));
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return weak(&format!(
            "the password must have at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return weak(&format!(
            "the password must have at most {MAX_PASSWORD_BYTES} bytes"
        ));
    }
    if password.eq_ignore_ascii_case(name) {
        return weak("the password must not be the user name");
    }
    Ok(())
}

fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))
}

/// A valid hash of a random password, verified against when the user does not exist.
fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| {
            let mut random = [0u8; 16];
            rand::rng().fill_bytes(&mut random);
            hash_password(&hex::encode(random)).unwrap_or_default()
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const PASSWORD: &str = "correct horse battery";

    #[test]
    fn the_setup_token_creates_the_first_account_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::in_state_dir(dir.path());
        let path = store
            .ensure_setup_token()
            .unwrap()
            .expect("a token while no account exists");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let token = std::fs::read_to_string(&path).unwrap();
        // The same token across restarts until it is used.
        store.ensure_setup_token().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), token);

        let wrong = store.setup("0000", "admin", PASSWORD).unwrap_err();
        assert_eq!(wrong.downcast_ref(), Some(&AuthError::BadSetupToken));
        store.setup(&token, "admin", PASSWORD).unwrap();
        assert!(!path.exists(), "the token is gone once used");
        let again = store.setup(&token, "eve", PASSWORD).unwrap_err();
        assert_eq!(again.downcast_ref(), Some(&AuthError::BadSetupToken));
        assert_eq!(store.ensure_setup_token().unwrap(), None);
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn logins_check_the_password_and_files_hold_only_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::in_state_dir(dir.path());
        store.set_password("admin", PASSWORD).unwrap();
        assert_eq!(store.verify("admin", PASSWORD, None), Ok(()));
        assert_eq!(
            store.verify("admin", "correct horse battery!", None),
            Err(AuthError::WrongCredentials)
        );
        assert_eq!(
            store.verify("nobody", PASSWORD, None),
            Err(AuthError::WrongCredentials)
        );
        let text = std::fs::read_to_string(dir.path().join(ACCOUNTS_FILE)).unwrap();
        assert!(!text.contains(PASSWORD));
        assert!(text.contains("$argon2id$"), "{text}");
        // A reset replaces the password.
        store
            .set_password("admin", "another long passphrase")
            .unwrap();
        assert_eq!(
            store.verify("admin", PASSWORD, None),
            Err(AuthError::WrongCredentials)
        );
        assert_eq!(
            store.verify("admin", "another long passphrase", None),
            Ok(())
        );
    }

    #[test]
    fn weak_passwords_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::in_state_dir(dir.path());
        for (name, password) in [
            ("admin", "short"),
            ("administrator1", "Administrator1"),
            ("bad name", PASSWORD),
            ("", PASSWORD),
        ] {
            assert!(store.set_password(name, password).is_err(), "{name:?}");
        }
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn two_factor_login_needs_the_current_code() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::in_state_dir(dir.path());
        store.set_password("admin", PASSWORD).unwrap();
        let secret = crate::totp::new_secret();
        let now = unix_now();
        // Enrolled with the previous step's code: that one is used up.
        store
            .enable_totp("admin", &crate::totp::base32_encode(&secret), now / 30 - 1)
            .unwrap();
        let previous = crate::totp::code_at(&secret, now - 30);
        let code = crate::totp::code_at(&secret, now);
        if previous != code {
            assert_eq!(
                store.verify("admin", PASSWORD, Some(&previous)),
                Err(AuthError::WrongCredentials)
            );
        }
        assert_eq!(store.verify("admin", PASSWORD, Some(&code)), Ok(()));
        // Once only: the same code again is refused, the next step's works.
        assert_eq!(
            store.verify("admin", PASSWORD, Some(&code)),
            Err(AuthError::WrongCredentials)
        );
        let next = crate::totp::code_at(&secret, now + 30);
        assert_eq!(store.verify("admin", PASSWORD, Some(&next)), Ok(()));
        assert_eq!(
            store.verify("admin", PASSWORD, None),
            Err(AuthError::WrongCredentials)
        );
        let wrong = if code == "000000" { "111111" } else { "000000" };
        assert_eq!(
            store.verify("admin", PASSWORD, Some(wrong)),
            Err(AuthError::WrongCredentials)
        );
        // The secret is in the file, never in Debug output.
        let account = store.account("admin").unwrap().unwrap();
        assert!(!format!("{account:?}").contains(account.totp_secret.as_deref().unwrap()));
        store.disable_totp("admin").unwrap();
        assert_eq!(store.verify("admin", PASSWORD, None), Ok(()));
    }

    #[test]
    fn the_last_account_cannot_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccountStore::in_state_dir(dir.path());
        store.set_password("admin", PASSWORD).unwrap();
        store.set_password("second", PASSWORD).unwrap();
        store.remove("second").unwrap();
        assert!(store.remove("admin").is_err());
        assert!(store.remove("nobody").is_err());
        assert_eq!(store.list().unwrap().len(), 1);
    }
}
