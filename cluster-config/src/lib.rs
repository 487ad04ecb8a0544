//! Typed configuration for one flashstock node, read once at start.
//!
//! This crate owns the on-disk TOML format that every node (voter or gateway)
//! is started with: the schema ([`Config`] and its sections), the default of
//! every optional key ([`defaults`]), and the rules a configuration must satisfy
//! before a node may use it ([`Config::validate`]). It does no I/O besides
//! reading the file in [`Config::load`], and it knows nothing about Raft,
//! storage or HTTP beyond the numbers those crates are configured with.
//!
//! Invariants:
//! - A [`Config`] returned by [`Config::from_toml_str`] or [`Config::load`] has
//!   passed [`Config::validate`]; callers do not re-check ranges.
//! - Unknown keys are errors, in every table, so a misspelt key never silently
//!   falls back to a default.
//! - Every default is defined once, as a constant in [`defaults`]; the
//!   `Default` impls of the sections only refer to those constants.
//! - Every validation error names the offending key in dotted form
//!   (`raft.heartbeat_interval_ms`, `cluster.voters[2].addr`), and parse errors
//!   carry toml's message, which names the key and line.
//! - Bad input never panics; it is reported as a [`ConfigError`].
//! - A valid config survives [`Config::to_toml_string`] followed by
//!   [`Config::from_toml_str`] unchanged.
//!
//! Key names end in their unit: `_ms` (milliseconds), `_us` (microseconds),
//! `_bytes`, `_per_s` (a rate per second), `_max` (an upper bound on a count).

pub mod defaults;
mod error;
mod schema;
mod source_range;
mod validate;

use std::path::Path;

pub use error::ConfigError;
pub use schema::{
    ArchiveSection, CheckoutSection, ClusterSection, Config, GatewaySection, LimitsSection, NodeId,
    NodeSection, Peer, RaftSection, Role, TlsSection, Transport,
};
pub use source_range::SourceRange;

/// Prefix of a credential given as its digest in `cluster.*_secrets`.
pub const DIGEST_PREFIX: &str = "sha256:";

/// The digest form of a secret, as `cluster.*_secrets` accepts it: `"sha256:"` and the
/// SHA-256 of the secret's UTF-8 bytes in lowercase hex (what `printf %s SECRET | sha256sum`
/// prints).
pub fn secret_digest(secret: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(secret.as_bytes());
    let mut text = String::with_capacity(DIGEST_PREFIX.len() + 64);
    text.push_str(DIGEST_PREFIX);
    for byte in digest.iter() {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The 32 bytes of a `"sha256:<64 lowercase hex>"` entry; `None` when `entry` is not one.
pub fn parse_digest(entry: &str) -> Option<[u8; 32]> {
    let hex = entry.strip_prefix(DIGEST_PREFIX)?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(bytes)
}

impl Config {
    /// Parses a TOML document and validates it.
    ///
    /// Syntax errors, unknown keys, missing required keys and wrongly typed
    /// values are reported as [`ConfigError::Parse`] with toml's message;
    /// values that break a rule of [`Config::validate`] as
    /// [`ConfigError::Invalid`].
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(s)
            .map_err(|e| ConfigError::Parse(e.to_string().trim_end().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the file at `path`, then parses and validates it as
    /// [`Config::from_toml_str`] does. A read failure names the path.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text)
    }

    /// The `host:port` other nodes use to reach this node: `node.advertise`
    /// if set, otherwise `node.listen`.
    pub fn advertise_addr(&self) -> String {
        match &self.node.advertise {
            Some(addr) => addr.clone(),
            None => self.node.listen.to_string(),
        }
    }

    /// The address this node's outgoing connections leave from: its listen address when that
    /// names one interface (not `0.0.0.0` or `::`), so peers and fault injectors can tell nodes
    /// apart by source address.
    pub fn source_ip(&self) -> Option<std::net::IpAddr> {
        let ip = self.node.listen.ip();
        (!ip.is_unspecified()).then_some(ip)
    }

    /// Serializes the config as a TOML document, every key written out
    /// (defaults included), that [`Config::from_toml_str`] reads back as an
    /// equal `Config` if the config is valid.
    ///
    /// # Panics
    ///
    /// Only if the config holds a value TOML cannot represent: an integer
    /// above `i64::MAX` or a non-UTF-8 `node.data_dir`. [`Config::validate`]
    /// rejects both, and a parsed config can hold neither.
    pub fn to_toml_string(&self) -> String {
        match toml::to_string(self) {
            Ok(text) => text,
            Err(e) => panic!("config cannot be written as TOML (run Config::validate first): {e}"),
        }
    }
}
