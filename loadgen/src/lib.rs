//! flashstock's load generator, its baselines and its benchmark pipeline.
//!
//! The load generator drives real TCP connections (one HTTP/1.1 keep-alive connection per
//! simulated client, spread over the gateways) and measures what a shopper would see. It is a
//! library so that the command-line tools and the CI smoke test run the same code path.
//!
//! Layout, bottom-up:
//! - [`limits`]: raise the open-files limit, or say clearly why it cannot be raised enough.
//! - [`http`]: [`http::Connection`], one persistent HTTP/1.1 connection, and [`http::Target`],
//!   the base URLs a run spreads its connections over.
//! - [`workload`]: the catalog a run creates and the operations it draws (standard mix, flash
//!   sale, spread), each purchase with a unique idempotency key.
//! - [`record`]: what one client saw: HdrHistogram latencies per operation kind, answers counted
//!   by status and error code, and a ledger of confirmed purchases per product.
//! - [`driver`]: the three ways to send load: closed loop, burst and open loop (fixed arrival
//!   rate, latency from the intended send time so that coordinated omission hides no stall).
//! - [`setup`] and [`check`]: create the catalog before a run; afterwards read the final state and
//!   check no oversell and conservation for every product the run created.
//! - [`scenario`]: one run end to end (set-up, load, check, report).
//! - [`report`]: the figures of one run (JSON, summary table); [`results`]: a whole benchmark's
//!   results, its Markdown and the brief's targets judged; [`charts`]: SVG charts of a
//!   benchmark; [`probe`]: the floor probe (one fsync, one loopback round trip); [`proc_info`]:
//!   memory of processes and the machine.
//! - [`baseline`]: the two baselines, a bare axum server and PostgreSQL behind axum.
//! - [`bench`](mod@bench): the whole benchmark (cluster, baselines, scenarios, curves,
//!   results), which the `flashstock-bench` binary runs.
//!
//! Binaries: `loadgen` (one run against running servers), `baseline-axum`, `baseline-pg`, and
//! `flashstock-bench` (the whole benchmark: cluster, baselines, scenarios, curves, results),
//! which `bench/run.sh` runs.
//!
//! Nothing here asserts on speed: figures are reported, correctness (no error, no oversell,
//! conservation) is checked.

pub mod baseline;
pub mod bench;
pub mod charts;
pub mod check;
pub mod driver;
pub mod http;
pub mod limits;
pub mod probe;
pub mod proc_info;
pub mod record;
pub mod report;
pub mod results;
pub mod scenario;
pub mod setup;
pub mod workload;
