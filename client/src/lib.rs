//! flashstock's Rust client library.
//!
//! [`ShopClient`] speaks the public API that gateways serve: views, purchases with idempotency
//! keys, admin calls; it fails over between gateways and retries with the same key.
//!
//! [`VoterClient`] speaks to the voters' internal API: it proposes batches of commands, following
//! "not leader" answers to the leader, reads replica state, and drives the admin API. It is what
//! gateways, tests and the operators' CLI use.
//!
//! Every error says whether the write may have happened: [`Error::is_definite`] is true when the
//! commands were definitely not applied (safe to give up or to retry with new keys), false when
//! the outcome is unknown (retry with the same idempotency keys to learn it).

pub mod shop;
pub mod voter;
pub mod wire;

pub use shop::{for_group, http_builder, new_key, RetryPolicy, Served, ShopClient, ShopError};
pub use voter::{log_lag, CatchUp, Error, VoterClient, CAUGHT_UP_LAG_MAX};

/// The TLS config of this crate's clients; see [`flashstock_tls`] for how to build one.
pub type TlsConfig = std::sync::Arc<flashstock_tls::rustls::ClientConfig>;

/// How long this crate's clients (and the nodes' Raft network) keep an idle pooled connection.
/// Below the servers' `limits.idle_timeout_ms` (default 20 s): a client that drops an idle
/// connection first never sends a request on one the server is closing at that instant.
pub const POOL_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
