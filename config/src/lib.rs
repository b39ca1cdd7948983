//! Siteward configuration: one TOML file, parsed into a validated [`Config`].
//!
//! Loading happens in two stages. [`raw`] mirrors the file with serde
//! (`deny_unknown_fields`); [`validate`] turns it into the [`model`] types and collects
//! *every* problem with its field path (`checks[3].target: ...`) rather than stopping at
//! the first. Secrets given as `*_file` are read during loading, so a missing secret file
//! is a configuration error, and a changed secret file counts as a changed check on reload.
//!
//! For the web UI, without I/O: [`schema`] describes every key for forms, [`edit`] writes
//! form values into the file keeping its comments, [`view`] shows a file masked and diffs
//! two, [`export`] exports and imports it with secrets omitted or encrypted.
#![forbid(unsafe_code)]

mod connectors;
pub mod edit;
mod error;
pub mod export;
mod ipsec;
mod model;
mod raw;
pub mod schema;
mod secret;
mod tunnels;
mod uplink;
mod validate;
pub mod view;
mod wg_key;

pub use edit::{EditError, EntryRef, ShownValue};
pub use error::{ConfigError, FieldError};
pub use export::{ExportError, Imported, SecretHandling};
pub use model::*;
pub use schema::{Field, FieldType, Section};
pub use secret::Secret;
pub use view::{DiffLine, ViewError};
pub use wg_key::{WgKeyError, WgPublicKey, WgSecretKey};

use std::path::Path;

/// Default location of the configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/siteward/siteward.toml";

/// Reads and validates the configuration file at `path`. Relative file paths inside it
/// (`ca_file`, `secret_file`, ...) are taken relative to the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base)
}

/// Validates configuration text; `base_dir` anchors relative paths.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    validate::parse(text, base_dir).map_err(ConfigError::Invalid)
}
