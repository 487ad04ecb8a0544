//! The command line of a node: `--config node.toml`; runs one node, voter or gateway, until
//! SIGTERM or Ctrl-C, then drains and exits. The `flashstock-node` binary is [`main`] with no
//! [`UnsafeFaults`]; the fault-injection harness builds a second binary with some set.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cluster_config::Config;
use tracing_subscriber::EnvFilter;

use crate::UnsafeFaults;

/// A flashstock node: a Raft voter holding the inventory, or a gateway serving the public API.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The node's TOML configuration file.
    #[arg(long, env = "FLASHSTOCK_CONFIG")]
    config: PathBuf,
    /// Log as JSON lines instead of text. The level comes from RUST_LOG (default: info).
    #[arg(long)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Prepare this voter's data directory, just unpacked from a backup, for a new incarnation,
    /// with the node stopped: keep the log up to what the backup had committed, and make every
    /// order placed from now on carry the new incarnation in its id, so that none takes the id
    /// of an order placed after the backup. Then copy the directory to the other voters (RUNBOOK,
    /// "Backup and restore")
    Restore {
        /// The incarnation to start. Default: claimed in the archive database, one above every
        /// incarnation started before (needs `archive.postgres_url`)
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=127))]
        incarnation: Option<u8>,
    },
}

/// Standard error for the log, where a failed write (a full disk behind a redirect, a closed
/// pipe) drops the line and counts it in [`crate::metrics::LOG_LINES_LOST`] instead of failing.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write_all(line)?;
        Ok(line.len())
    }

    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        if std::io::stderr().lock().write_all(line).is_err() {
            crate::metrics::LOG_LINES_LOST.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LossyStderr {
    type Writer = LossyStderr;

    fn make_writer(&'a self) -> LossyStderr {
        LossyStderr
    }
}

/// Parse the command line, run the node, and return its exit code: 0 after a clean shutdown, 2
/// for a configuration that cannot be used, 1 for a failure at start or while running.
pub fn main(faults: UnsafeFaults) -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // A log line that cannot be written is dropped and counted, never a panic: the default
    // writer's fallback prints the failure to stderr, and a failed print panics the task that
    // logged, openraft's core among them.
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(LossyStderr)
            .log_internal_errors(false)
            .init();
    } else {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(LossyStderr)
            .log_internal_errors(false)
            .init();
    }
    let config = match Config::load(&args.config) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("flashstock-node: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Restore { incarnation }) = args.command {
        return restore(&config, incarnation);
    }
    raise_open_files_limit();
    give_back_freed_memory();
    let runtime = main_runtime(config.node.role).expect("start the Tokio runtime");
    let result = runtime.block_on(async {
        let addr = config.node.listen;
        let listener =
            crate::listen(addr).map_err(|source| crate::StartError::Listen { addr, source })?;
        crate::run_with_faults(config, listener, shutdown_signal(), faults).await
    });
    // Drop every task (and with them the store) before `main` returns: RocksDB's background
    // threads must not outlive the process's static destructors.
    runtime.shutdown_timeout(std::time::Duration::from_secs(10));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flashstock-node: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime the node starts on: its Raft groups, its internal listener and its background
/// tasks. A voter runs everything on it, one worker per core (or `TOKIO_WORKER_THREADS`). A
/// gateway serves its clients on a runtime of their own ([`crate::public_runtime`]), so this
/// one carries only what keeps its replica up to date, and one worker does.
fn main_runtime(role: cluster_config::Role) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if role == cluster_config::Role::Gateway {
        builder.worker_threads(1);
    }
    builder.enable_all().build()
}

/// `flashstock-node restore`: see [`raft_store::restore`].
fn restore(config: &Config, incarnation: Option<u8>) -> ExitCode {
    let fail = |message: String| {
        eprintln!("flashstock-node restore: {message}");
        ExitCode::FAILURE
    };
    if config.node.role != cluster_config::Role::Voter {
        eprintln!("flashstock-node restore: only a voter's data is restored; a gateway starts empty and is added again as a learner");
        return ExitCode::from(2);
    }
    let dir = &crate::store_dir(config);
    let found = match raft_store::restore::inspect(dir) {
        Ok(found) => found,
        Err(e) => return fail(e),
    };
    if found.groups != config.cluster.groups {
        return fail(format!(
            "the backup holds {} Raft groups, and this node is configured with {} \
             (cluster.groups): restore it with the configuration it was taken with",
            found.groups, config.cluster.groups
        ));
    }
    let number = match incarnation {
        Some(number) => number,
        None => {
            let archive = match crate::archive::Archive::new(&config.archive) {
                Ok(Some(archive)) => archive,
                Ok(None) => {
                    return fail(
                        "archive.postgres_url is not set, so no incarnation can be claimed: \
                         give --incarnation N, above every incarnation this shop ever started"
                            .to_owned(),
                    )
                }
                Err(e) => return fail(e),
            };
            let runtime = tokio::runtime::Runtime::new().expect("start the Tokio runtime");
            let claimed =
                runtime.block_on(archive.claim_incarnation(found.incarnation, found.committed));
            match claimed {
                Ok(number) => number,
                Err(e) => return fail(format!("cannot claim an incarnation in the archive: {e}")),
            }
        }
    };
    match raft_store::restore::prepare(dir, number) {
        Ok(prepared) => {
            for group in &prepared {
                let which = match prepared.len() {
                    1 => String::new(),
                    _ => format!(" group {}:", group.group),
                };
                println!(
                    "restored {}:{which} incarnation {} (the backup's was {}); log kept up to \
                     index {}, {} uncommitted entries dropped after it.",
                    config.node.data_dir.display(),
                    group.incarnation,
                    group.previous,
                    group.kept_up_to,
                    group.dropped_entries
                );
            }
            println!("Copy this directory to every other voter before starting any of them.");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Raise the soft limit of open files to the hard limit: a gateway holds one descriptor per
/// client connection, thousands in a flash sale, and a common soft default is 1024.
fn raise_open_files_limit() {
    match flashstock_host::raise_open_files_limit() {
        Ok(limit) if limit.soft == limit.hard => {
            tracing::info!(open_files_max = limit.soft, "open files limit");
        }
        _ => tracing::warn!("could not raise the open files limit"),
    }
}

/// How often the node gives the memory its allocator holds free back to the operating system.
const GIVE_BACK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Start the thread that gives freed memory back every [`GIVE_BACK_EVERY`]
/// ([`flashstock_host::memory`]): without it, a node's resident memory after a burst stays at
/// its peak. One call walks the allocator's heaps in a few milliseconds, holding each heap's
/// lock in turn; on a thread of its own it holds back no task, only an allocation that needs
/// that heap meanwhile. The thread lives as long as the process.
fn give_back_freed_memory() {
    let started = std::thread::Builder::new()
        .name("give-back-memory".into())
        .spawn(|| loop {
            std::thread::sleep(GIVE_BACK_EVERY);
            let began = std::time::Instant::now();
            let returned = flashstock_host::return_free_memory();
            tracing::debug!(returned, took = ?began.elapsed(), "freed memory given back");
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "could not start the thread that gives freed memory back");
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install the SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C received"),
    }
}
