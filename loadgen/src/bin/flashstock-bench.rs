//! `flashstock-bench`: the whole benchmark, in one process (run by `bench/run.sh`).
//!
//! Starts a six-node cluster and the baselines on loopback, runs the standard scenarios and the
//! cost curves with the same load generator, and writes `<out>/<date>.json`, `<date>.md` and
//! `<date>-*.svg`; the steps are [`flashstock_loadgen::bench`]'s.
//!
//! `--scale full` is the brief's scale (6000 connections, curves to 12 000 connections and a
//! million products: long); `--scale quick` a reduced one; every figure can be set by a flag.
//! Nothing asserts on speed; the exit status is non-zero when a run saw an error or a check
//! failed.

use std::process::ExitCode;

use clap::Parser;
use flashstock_loadgen::bench::settings::{Flags, Settings};

/// Runs flashstock's benchmark: cluster, baselines, scenarios, cost curves, results.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    flags: Flags,
}

fn main() -> ExitCode {
    let Args { flags } = Args::parse();
    let settings = Settings::from(&flags);
    if let Err(e) = flashstock_loadgen::limits::raise_open_files(settings.connections_max()) {
        eprintln!("flashstock-bench: {e}");
        return ExitCode::from(2);
    }
    // The nodes log warnings only: per-request logging is not what is measured.
    std::env::set_var("RUST_LOG", "warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(flashstock_loadgen::bench::run(
        settings,
        &flags.out,
        !flags.no_progress,
    )) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("flashstock-bench: {e}");
            ExitCode::from(2)
        }
    }
}
