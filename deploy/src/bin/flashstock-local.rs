//! `flashstock-local [--dir DIR]`: a whole flashstock cluster on this machine, in one command.
//!
//! Three voters and three gateways as real `flashstock-node` processes on loopback, the demo
//! catalog loaded, until Ctrl-C or SIGTERM; a rerun with the same `DIR` resumes the same cluster.
//! The launcher itself is [`flashstock_deploy::launch`]; this is its command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use flashstock_deploy::launch::{self, Options};

/// Runs a local flashstock cluster (3 voters, 3 gateways) with a demo catalog until Ctrl-C.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory of the cluster's configs, data and logs. Reused on a rerun, so the same cluster
    /// resumes on the same ports. Default: .local-cluster in the repository.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Demo products to create, a JSON array of {"id", "name", "price_cents", "stock"}. Default:
    /// deploy/demo-catalog.json in the repository.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Seconds the cluster may take to form (elect a leader, add the gateways).
    #[arg(long, default_value_t = 60)]
    form_timeout_secs: u64,
    /// Archive confirmed orders in this PostgreSQL database (a libpq URL,
    /// e.g. postgres://user:password@127.0.0.1:5432/shop). Default: the archive is off.
    #[arg(
        long,
        env = "FLASHSTOCK_ARCHIVE_URL",
        value_name = "URL",
        conflicts_with = "with_archive"
    )]
    archive_url: Option<String>,
    /// Start a PostgreSQL server for the archive in DIR/postgres (kept between runs).
    #[arg(long)]
    with_archive: bool,
    /// Split the products over this many Raft groups (`cluster.groups`, 1 to 64), for a new
    /// cluster; a cluster laid out before keeps its number (a node refuses another).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    groups: Option<u16>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    launch::run(Options {
        dir: args.dir,
        catalog: args.catalog,
        form_timeout: Duration::from_secs(args.form_timeout_secs),
        archive_url: args.archive_url,
        with_archive: args.with_archive,
        groups: args.groups,
    })
}
