//! `jepsen`: a long fault-injection run against a local six-node cluster.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo run --release -p jepsen-tests --bin jepsen -- --seconds 60 --clients 64 --seed 7 \
//!     [--faults all | kill,pause,partition,leader,gateway,postgres,...] [--archive] [--dir DIR]
//!     [--out DIR] [--unknown-retries N]
//! ```
//!
//! Exit status: 0 when every invariant holds and the cluster recovered from every fault; 1 when
//! an invariant failed; 2 when the invariants held but the cluster did not recover from a fault
//! (or confirmed nothing after it); 3 when the run itself could not finish; 130 on Ctrl-C (node
//! processes are killed and partition rules deleted first).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use flashstock_deploy::netns;
use jepsen_tests::nemesis::FaultKind;
use jepsen_tests::run::{run, RunConfig};

#[derive(Parser, Debug)]
#[command(about = "Run flashstock under faults and check the history")]
struct Args {
    /// Seconds of workload.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Concurrent client tasks.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seed of the fault schedule and of every client's choices.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Kinds of fault, comma-separated: kill, pause, partition, leader, gateway, postgres,
    /// voters, isolate-leader, split, bridge, ring, gateway-cut, loss, rejoin, latency,
    /// restart, backup, postgres-failover, stale-gateway; `all` for every kind, empty for none;
    /// and `upgrade` (not in `all`), which needs --upgrade-to. The postgres kinds need
    /// --archive; the partition kinds (stale-gateway too) need root.
    #[arg(long, default_value = "kill,pause,partition,leader,gateway,postgres")]
    faults: String,
    /// Archive orders in PostgreSQL started for the run (Debian's postgresql package: a primary
    /// and its synchronous standby), and check that the archive holds every order exactly once.
    #[arg(long)]
    archive: bool,
    /// Lay the cluster out in this new directory and keep it (configs, data, node logs).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write history.jsonl (every operation as invoke then ok/fail/info, and every fault, as
    /// JSON lines), report.json and timeline.svg (throughput and latency over time with the
    /// faults marked) into this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// How many times a write whose outcome is unknown is sent again with the same key (0
    /// leaves more outcomes unknown, to exercise that part of the checker).
    #[arg(long, default_value_t = 3)]
    unknown_retries: u32,
    /// Where the nodes run: `namespaces` (each in a network namespace of its own on a private
    /// bridge, 198.18.0.0/15, no default route; the harness runs in a private namespace too;
    /// root only), `loopback` (127.0.0.N), or `auto` (namespaces when possible).
    #[arg(long, value_enum, default_value_t = Net::Auto)]
    net: Net,
    /// Build a snapshot every N log entries (and purge the log behind it); default: the
    /// nodes' own default (raft.snapshot_every_logs)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(10..))]
    snapshot_every: Option<u64>,
    /// TLS on every link: clients reach the gateways over HTTPS, nodes speak mutual TLS, with
    /// certificates made for the run in the cluster's directory (tls/).
    #[arg(long)]
    tls: bool,
    /// A rolling upgrade: the cluster starts with the node binary of FLASHSTOCK_NODE_BIN (the
    /// previous release, e.g. built by deploy/build-previous.sh), and the `upgrade` fault
    /// restarts every node, one at a time, with this binary.
    #[arg(long, value_name = "NODE_BINARY")]
    upgrade_to: Option<PathBuf>,
    /// Raft groups of the cluster (`cluster.groups`): the workload and the faults cover every
    /// group; `upgrade` (from the previous release, which has no groups) is left out of a run
    /// of several groups
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    groups: u16,
    /// The short run of CI: every kind of fault once, the archive on, about a minute; takes
    /// --seed, --net, --tls and --out, ignores the other settings.
    #[arg(long)]
    short: bool,
    /// Internal: run as the fault proxy in front of a voter (see jepsen_tests::proxy).
    #[arg(long, hide = true, requires_all = ["proxy_to", "proxy_control"])]
    proxy_listen: Option<std::net::SocketAddr>,
    #[arg(long, hide = true)]
    proxy_to: Option<std::net::SocketAddr>,
    #[arg(long, hide = true)]
    proxy_control: Option<std::net::SocketAddr>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Net {
    Auto,
    Namespaces,
    Loopback,
}

fn config(args: &Args) -> Result<RunConfig, String> {
    let faults = FaultKind::parse_list(&args.faults)?;
    if faults.contains(&FaultKind::Upgrade) != args.upgrade_to.is_some() {
        return Err("the upgrade fault and --upgrade-to go together".into());
    }
    if args.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    if let Some(dir) = &args.dir {
        let used = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
        if used {
            return Err(format!("--dir {} must be new or empty", dir.display()));
        }
    }
    let with_groups = |config: &mut RunConfig| {
        let left_out = config.with_groups(args.groups);
        if !left_out.is_empty() {
            let names: Vec<&str> = left_out.iter().map(|kind| kind.name()).collect();
            eprintln!(
                "jepsen: {} Raft groups: faults {} left out (the previous release has no groups)",
                args.groups,
                names.join(", ")
            );
        }
    };
    if args.short {
        let mut config = RunConfig::short(args.seed);
        config.tls = args.tls;
        with_groups(&mut config);
        return Ok(config);
    }
    let mut config = RunConfig::new(args.seconds, args.clients, args.seed, faults);
    config.dir = args.dir.clone();
    config.archive = args.archive;
    config.workload.unknown_retries = args.unknown_retries;
    config.snapshot_every_logs = args.snapshot_every;
    config.tls = args.tls;
    config.nemesis.upgrade_to = args.upgrade_to.clone();
    with_groups(&mut config);
    Ok(config)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let (Some(listen), Some(to), Some(control)) =
        (args.proxy_listen, args.proxy_to, args.proxy_control)
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("start the Tokio runtime");
        return match runtime.block_on(jepsen_tests::proxy::serve(listen, to, control)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("jepsen proxy {listen} -> {to}: {e}");
                ExitCode::from(3)
            }
        };
    }
    let mut config = match config(&args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("jepsen: {e}");
            return ExitCode::from(3);
        }
    };
    let namespaces = match args.net {
        Net::Loopback => false,
        Net::Namespaces => match netns::available() {
            Ok(()) => true,
            Err(why) => {
                eprintln!("jepsen: --net namespaces: {why}");
                return ExitCode::from(3);
            }
        },
        Net::Auto => match netns::available() {
            Ok(()) => true,
            Err(why) => {
                println!("jepsen: network namespaces unavailable ({why}); nodes on loopback");
                false
            }
        },
    };
    if namespaces {
        // Everything from here on, nodes and clients, runs in a private network namespace.
        match netns::run_in_private_network() {
            Ok(Some(exit)) => return exit,
            Ok(None) => config.namespaces = true,
            Err(e) => {
                eprintln!("jepsen: {e}");
                return ExitCode::from(3);
            }
        }
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("start the Tokio runtime")
        .block_on(run_and_report(&args, &config))
}

async fn run_and_report(args: &Args, config: &RunConfig) -> ExitCode {
    let config = config.clone();
    let outcome = tokio::select! {
        outcome = run(&config) => outcome,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("jepsen: interrupted; nodes killed, partition rules deleted");
            return ExitCode::from(130);
        }
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("jepsen: the run did not finish: {e}");
            return ExitCode::from(3);
        }
    };
    println!("{}", outcome.report.render());
    if let Some(dir) = &args.out {
        match outcome.save(dir) {
            Ok(paths) => {
                for path in paths {
                    println!("jepsen: wrote {}", path.display());
                }
            }
            Err(e) => eprintln!("jepsen: writing into {}: {e}", dir.display()),
        }
    }
    let report = &outcome.report;
    if !report.passed() || !report.availability_problems().is_empty() {
        println!("node logs (tails):\n{}", outcome.log_tails);
    }
    if !report.passed() {
        ExitCode::from(1)
    } else if !report.availability_problems().is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
