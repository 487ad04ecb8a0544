//! The one error type of this crate.

use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The document is not valid TOML for this schema: bad syntax, an unknown
    /// or missing key, or a value of the wrong type. Holds toml's message,
    /// which names the key and the line.
    #[error("cannot parse config: {0}")]
    Parse(String),

    /// The document parsed but a value breaks a rule.
    #[error("invalid config: {key}: {message}")]
    Invalid {
        /// The offending key in dotted form, e.g. `raft.heartbeat_interval_ms`
        /// or `cluster.voters[1].addr`.
        key: String,
        /// What is wrong, including the value found.
        message: String,
    },
}

impl ConfigError {
    /// Builds a [`ConfigError::Invalid`].
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}
