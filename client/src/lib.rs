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

pub use shop::{new_key, RetryPolicy, ShopClient, ShopError};
pub use voter::{Error, VoterClient};
