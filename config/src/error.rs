use std::fmt;
use std::path::PathBuf;

/// One problem in a configuration, at a field path such as `checks[3].target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path with array indexes from 0; empty for a problem with the file as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, section by section (keys of a table in name order). Never empty.
    #[error("{} error(s) in configuration:\n{}", .0.len(), render_list(.0))]
    Invalid(Vec<FieldError>),
}

impl ConfigError {
    /// The individual problems (one for a read failure).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ConfigError::Read { .. } => vec![FieldError {
                path: String::new(),
                message: self.to_string(),
            }],
            ConfigError::Invalid(errors) => errors.clone(),
        }
    }
}

fn render_list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}
