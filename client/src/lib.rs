//! flashstock's Rust client library.
//!
//! [`VoterClient`] speaks to the voters' internal API: it proposes batches of commands, following
//! "not leader" answers to the leader, reads replica state, and drives the admin API. It is what
//! gateways, tests and the operators' CLI use.
//!
//! Every error says whether the write may have happened: [`Error::is_definite`] is true when the
//! commands were definitely not applied (safe to give up or to retry with new keys), false when
//! the outcome is unknown (retry with the same idempotency keys to learn it).

pub mod voter;

pub use voter::{Error, VoterClient};
