//! The command line of `stockctl`: global flags, commands and their help texts (clap derive).
//!
//! Parsing only: nothing here talks to a node. Flags that name the cluster can also come from the
//! environment, so that a shell session sets them once.

use clap::{Args, Parser, Subcommand, ValueEnum};
use flashstock_api::{
    validate_customer, validate_key, validate_limit, validate_order_token, validate_product_id,
    Line, NodeAddr, PURCHASE_QUANTITY_LIMIT,
};

const EXAMPLES: &str = "\
Examples:
  export STOCKCTL_ENDPOINTS=10.0.0.1:7001,10.0.0.2:7001,10.0.0.3:7001
  export STOCKCTL_SECRET=...            # or FLASHSTOCK_SECRET
  export STOCKCTL_GATEWAYS=http://10.0.0.11:8080,http://10.0.0.12:8080
  export STOCKCTL_ADMIN_TOKEN=...

  stockctl cluster status
  stockctl cluster status --output json
  stockctl cluster init
  stockctl cluster add-learner 4 10.0.0.4:7001 && stockctl cluster promote 4
  stockctl cluster remove 3
  stockctl cluster snapshot --node 2

  stockctl product create tee --name 'Tee shirt' --price-cents 1999 --stock 100
  stockctl product list --all
  stockctl product show tee --linearizable
  stockctl product restock tee 50
  stockctl buy tee 2 --key order-42
  stockctl product create drop --name 'Sneaker drop' --price-cents 14900 --stock 50 --limit-per-customer 2
  stockctl product limit drop none
  stockctl hold tee:2 mug:1 --customer alice
  stockctl confirm 1441792 --token 5f0c...
  stockctl release 1441792 --token 5f0c...
  stockctl cancel 1507328 --token 5f0c...
  stockctl cancel 1507328 --admin

  stockctl certs ca --dir /etc/flashstock/ca
  stockctl certs issue --dir /etc/flashstock/ca voter-1 10.0.0.1 voter-1.internal
  export STOCKCTL_TLS_CA=ca.pem STOCKCTL_TLS_CERT=operator.pem STOCKCTL_TLS_KEY=operator.key

  stockctl archive status
  stockctl archive report --since 24h
  stockctl archive report --from 2026-11-01T00:00:00Z --to 2026-12-01T00:00:00Z

Exit codes:
  0  success
  1  the operation failed, definitely not applied (the error code is printed, e.g. insufficient_stock)
  2  usage error
  3  outcome unknown: it may have been applied; retry with the same --key to learn the outcome";

/// The operators' CLI of flashstock.
#[derive(Debug, Parser)]
#[command(name = "stockctl", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts; the cluster's addresses and credentials.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Nodes' internal addresses (host:port), comma separated
    #[arg(
        long,
        global = true,
        env = "STOCKCTL_ENDPOINTS",
        value_delimiter = ',',
        value_name = "HOST:PORT,..."
    )]
    pub endpoints: Vec<String>,

    /// The Raft group that node commands speak to (status, hand-off, membership, snapshot), in
    /// a cluster of several (`cluster.groups`); default 0. `cluster status` without it shows
    /// every group's leader and lag
    #[arg(long, global = true, env = "STOCKCTL_GROUP", value_name = "N")]
    pub group: Option<u16>,

    /// Operator secret for the internal API (one of the nodes' cluster.operator_secrets)
    /// [env: STOCKCTL_SECRET, or FLASHSTOCK_SECRET]; prefer the environment, arguments are
    /// visible to other users
    #[arg(
        long,
        global = true,
        env = "STOCKCTL_SECRET",
        hide_env = true,
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Gateways' public base URLs, comma separated
    #[arg(
        long,
        global = true,
        env = "STOCKCTL_GATEWAYS",
        value_delimiter = ',',
        value_name = "URL,..."
    )]
    pub gateways: Vec<String>,

    /// Bearer token of the public admin API (product create, restock)
    #[arg(
        long,
        global = true,
        env = "STOCKCTL_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,

    /// PEM file of the cluster's CA, to speak mutual TLS to nodes' internal listeners (with
    /// --tls-cert and --tls-key: an operator's certificate from that CA)
    #[arg(long, global = true, env = "STOCKCTL_TLS_CA", value_name = "FILE",
          requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<std::path::PathBuf>,

    /// PEM file of the operator's certificate, for mutual TLS with the nodes
    #[arg(
        long,
        global = true,
        env = "STOCKCTL_TLS_CERT",
        value_name = "FILE",
        requires = "tls_ca"
    )]
    pub tls_cert: Option<std::path::PathBuf>,

    /// PEM file of that certificate's private key
    #[arg(
        long,
        global = true,
        env = "STOCKCTL_TLS_KEY",
        value_name = "FILE",
        requires = "tls_ca"
    )]
    pub tls_key: Option<std::path::PathBuf>,

    /// PEM file of the CAs that gateways' HTTPS certificates chain to (for https:// gateways;
    /// a public CA's bundle, e.g. /etc/ssl/certs/ca-certificates.crt, or the shop's own)
    #[arg(long, global = true, env = "STOCKCTL_GATEWAY_CA", value_name = "FILE")]
    pub gateway_ca: Option<std::path::PathBuf>,

    /// Output format
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// How long one command may take, in milliseconds
    #[arg(long, global = true, default_value_t = 15_000, value_name = "MS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns with a header row
    Table,
    /// Pretty-printed JSON of the API's types
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and change the Raft cluster (internal API: --endpoints, --secret: the operator secret)
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Read and manage the catalog (public API: --gateways, --admin-token)
    #[command(subcommand)]
    Product(ProductCommand),
    /// Buy items through the public API and print the order
    Buy(BuyArgs),
    /// Hold the stock of a cart for a buyer while it pays (public API); prints the hold and its
    /// token
    Hold(HoldArgs),
    /// Confirm a hold: its stock becomes an order (public API, with the hold's token)
    Confirm(HoldActionArgs),
    /// Release a hold: its stock is available again (public API, with the hold's token)
    Release(HoldActionArgs),
    /// Cancel an order: its stock is available again (with the order's token, within the
    /// cluster's checkout.cancel_window_ms; or --admin, without either)
    Cancel(CancelArgs),
    /// The order archive in PostgreSQL (internal API: --endpoints, --secret: the operator secret)
    #[command(subcommand)]
    Archive(ArchiveCommand),
    /// Make a cluster's CA and its nodes' and operators' certificates (local files only)
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Make a new CA: DIR/ca.pem (install on every node as tls.internal_ca_path) and DIR/ca.key
    /// (keep it off the servers)
    Ca {
        /// Where to write the CA; refused if it already holds one
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
        /// The CA's name (its common name)
        #[arg(long, default_value = "flashstock cluster CA")]
        name: String,
    },
    /// Issue a certificate signed by the CA in DIR: DIR/NAME.pem and DIR/NAME.key, valid for
    /// server and client authentication (a node's tls.internal_* or an operator's --tls-*)
    Issue {
        /// Where the CA is; the certificate is written there too
        #[arg(long, value_name = "DIR")]
        dir: std::path::PathBuf,
        /// The certificate's name (its common name and file name), e.g. voter-1 or operator
        #[arg(value_parser = file_name)]
        name: String,
        /// The IP addresses and DNS names peers dial it by (its node.advertise host; a
        /// gateway's public name too, if this certificate also serves HTTPS); none for an
        /// operator's certificate, which only ever connects
        #[arg(value_name = "ADDRESS")]
        addresses: Vec<String>,
    },
}

/// A certificate's name doubles as a file name: letters, digits, `-`, `_` and `.`, not leading.
fn file_name(raw: &str) -> Result<String, String> {
    let fine = !raw.is_empty()
        && !raw.starts_with('.')
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if fine {
        Ok(raw.to_owned())
    } else {
        Err("use letters, digits, '-', '_' and '.', not leading '.'".into())
    }
}

#[derive(Debug, Subcommand)]
pub enum ArchiveCommand {
    /// Show the archive cursor, the backlog of orders not archived yet, and the last error
    Status,
    /// Units sold and revenue per product over a time range, read from the archive database
    Report(ReportArgs),
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Orders of this long ago until now, e.g. 90m, 24h, 7days
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "from",
          default_value = "24h")]
    pub since: std::time::Duration,
    /// Start of the range (RFC 3339, e.g. 2026-11-01T00:00:00Z)
    #[arg(long, value_parser = timestamp_ms, requires = "to")]
    pub from: Option<u64>,
    /// End of the range, excluded (RFC 3339); with --from
    #[arg(long, value_parser = timestamp_ms, requires = "from")]
    pub to: Option<u64>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// Show every endpoint's Raft state, indexes and replication lag
    Status,
    /// Initialize a new cluster through the first endpoint (at most 7 voters)
    Init {
        /// A voter as ID=HOST:PORT; repeat for each, at most 7 (more is refused). Default: the
        /// node's configured voters
        #[arg(long = "voter", value_name = "ID=HOST:PORT", value_parser = parse_voter)]
        voters: Vec<NodeAddr>,
    },
    /// Add a node as a learner; returns once it has caught up with the log
    AddLearner {
        /// The new node's id
        id: u64,
        /// Its internal address (host:port)
        addr: String,
        /// Return once it is a member, without waiting for it to catch up
        #[arg(long)]
        no_wait: bool,
    },
    /// Make a learner a voter (current voters + ID; at most 7 voters)
    Promote {
        /// The learner's id
        id: u64,
    },
    /// Remove a voter from the cluster (current voters - ID)
    Remove {
        /// The voter's id
        id: u64,
    },
    /// Replace a voter's disk, each step checked before the next: remove it from the
    /// membership, wait while you stop it, wipe its data directory and start it again empty,
    /// add it back as a learner, wait until it has caught up, promote it. With several Raft
    /// groups, each step is done in every group before the next
    ReplaceDisk {
        /// The voter's id
        id: u64,
        /// How long to wait for the node to come back with an empty disk
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
        restart_wait: std::time::Duration,
    },
    /// Hand leadership from the leader to another voter, before a planned stop of the leader:
    /// writes wait milliseconds instead of the seconds of an election
    HandOff {
        /// The voter to hand to; default: the one whose log is furthest along
        #[arg(long, value_name = "ID")]
        to: Option<u64>,
    },
    /// Restart every member one at a time with no failed purchase: gateways first, then the
    /// followers, the leader last after a hand-off. Each node is checked back (a new start time)
    /// and caught up before the next; a voter restarts only while every other voter is caught up.
    /// With several Raft groups, every group a voter leads is handed off before it restarts
    RollingRestart {
        /// Shell command that restarts one node, run through `sh -c`; `{id}`, `{host}` and
        /// `{addr}` (its internal address) are replaced, e.g. 'ssh {host} sudo systemctl
        /// restart flashstock-node'. Default: ask for each restart on stderr and wait for it
        #[arg(long, value_name = "COMMAND")]
        command: Option<String>,
        /// How long each node may take to come back and catch up
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
        restart_wait: std::time::Duration,
        /// Restart only this node (repeat for several); the order stays the safe one
        #[arg(long = "node", value_name = "ID")]
        nodes: Vec<u64>,
    },
    /// Build a snapshot on a node now and wait until it is visible
    Snapshot {
        /// The node to snapshot; default: the leader
        #[arg(long, value_name = "ID")]
        node: Option<u64>,
        /// Return once the snapshot is triggered, without waiting for it
        #[arg(long)]
        no_wait: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProductCommand {
    /// List products in id order, one page or all of them
    List {
        /// Start after this product id
        #[arg(long, value_name = "ID", value_parser = product_id)]
        after: Option<String>,
        /// Products per page
        #[arg(long, default_value_t = 100, value_name = "N",
              value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
        /// Follow pages to the end of the catalog
        #[arg(long)]
        all: bool,
    },
    /// Show one product and its stock
    Show {
        /// Product id
        #[arg(value_parser = product_id)]
        id: String,
        /// Read at least everything committed when asked (asks the leader), not the gateway's replica
        #[arg(long)]
        linearizable: bool,
    },
    /// Add a product to the catalog (admin)
    Create {
        /// Product id: 1 to 64 ASCII letters, digits, '-' or '_'
        #[arg(value_parser = product_id)]
        id: String,
        /// Display name
        #[arg(long)]
        name: String,
        /// Unit price in cents
        #[arg(long, value_name = "N")]
        price_cents: u64,
        /// Initial stock
        #[arg(long, value_name = "N")]
        stock: u64,
        /// Most items one customer may hold and buy of it; every purchase, cart and hold of it
        /// must then name the customer (cluster version 2)
        #[arg(long, value_name = "N",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(PURCHASE_QUANTITY_LIMIT)))]
        limit_per_customer: Option<u32>,
    },
    /// Set or remove a product's limit per customer (admin): N items, or `none`
    Limit {
        /// Product id
        #[arg(value_parser = product_id)]
        id: String,
        /// The most items one customer may hold and buy, or `none` to remove the limit
        #[arg(value_name = "N|none", value_parser = limit)]
        limit: Limit,
        /// Idempotency key. Default: a fresh key
        #[arg(long, value_parser = idempotency_key)]
        key: Option<String>,
    },
    /// Add items to a product's stock (admin)
    Restock {
        /// Product id
        #[arg(value_parser = product_id)]
        id: String,
        /// Items to add
        quantity: u64,
    },
    /// Create and restock products in bulk from a CSV or JSON-lines file (admin)
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file ('-' for standard input): JSON lines, one item per line
    /// ({"id","name","price_cents","stock"} creates, {"op":"restock","id","quantity"} restocks),
    /// or CSV with a header naming its columns (op, id, name, price_cents, stock, quantity)
    pub file: std::path::PathBuf,
    /// Lines per request: one Raft entry each (at most the cluster's
    /// limits.commands_per_entry_max)
    #[arg(long, default_value_t = 1000, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=65535))]
    pub chunk: usize,
    /// Requests in flight at once
    #[arg(long, default_value_t = 4, value_name = "N",
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub parallel: usize,
    /// Prefix of the requests' idempotency keys (default: derived from the file's content, so
    /// that running the same import again applies nothing twice)
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct BuyArgs {
    /// Product id
    #[arg(value_parser = product_id)]
    pub product: String,
    /// Items to buy
    #[arg(default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(PURCHASE_QUANTITY_LIMIT)))]
    pub quantity: u32,
    /// Idempotency key: a retry with the same key returns the same order. Default: a fresh key
    #[arg(long, value_parser = idempotency_key)]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The cart: PRODUCT:QUANTITY for each line, one line per product
    #[arg(value_name = "PRODUCT:QTY", required = true, value_parser = cart_line)]
    pub lines: Vec<Line>,
    /// The shop's reference of the buyer (required for a product with a limit per customer)
    #[arg(long, value_parser = customer)]
    pub customer: Option<String>,
    /// Idempotency key: a retry with the same key returns the same hold. Default: a fresh key
    #[arg(long, value_parser = idempotency_key)]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct HoldActionArgs {
    /// The hold's id
    pub hold: u64,
    /// The hold's token, from `stockctl hold`
    #[arg(long, value_parser = token)]
    pub token: String,
    /// Idempotency key. Default: a fresh key
    #[arg(long, value_parser = idempotency_key)]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The order's id
    pub order: u64,
    /// The order's token (its owner's cancellation, within the cluster's window)
    #[arg(long, value_parser = token, required_unless_present = "admin", conflicts_with = "admin")]
    pub token: Option<String>,
    /// Cancel as an admin (--admin-token), without the order's token or a window
    #[arg(long)]
    pub admin: bool,
    /// Idempotency key. Default: a fresh key
    #[arg(long, value_parser = idempotency_key)]
    pub key: Option<String>,
}

/// A limit per customer, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Items(u32),
    None,
}

fn limit(text: &str) -> Result<Limit, String> {
    if text == "none" {
        return Ok(Limit::None);
    }
    let items: u32 = text
        .parse()
        .map_err(|_| format!("expected a number of items or `none`, got {text:?}"))?;
    validate_limit(items)?;
    Ok(Limit::Items(items))
}

/// `PRODUCT:QUANTITY`.
fn cart_line(text: &str) -> Result<Line, String> {
    let (product, quantity) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected PRODUCT:QUANTITY, got {text:?}"))?;
    validate_product_id(product)?;
    let quantity: u32 = quantity
        .parse()
        .ok()
        .filter(|q| (1..=PURCHASE_QUANTITY_LIMIT).contains(q))
        .ok_or_else(|| {
            format!("quantity must be 1 to {PURCHASE_QUANTITY_LIMIT}, got {quantity:?}")
        })?;
    Ok(Line {
        product: product.to_owned(),
        quantity,
    })
}

fn customer(text: &str) -> Result<String, String> {
    validate_customer(text).map(|()| text.to_owned())
}

fn token(text: &str) -> Result<String, String> {
    validate_order_token(text).map(|()| text.to_owned())
}

/// A product id as the API accepts it; checked here, since it becomes part of a URL path.
fn product_id(text: &str) -> Result<String, String> {
    validate_product_id(text).map(|()| text.to_owned())
}

/// An RFC 3339 time (`2026-11-01T00:00:00Z`; a date alone means its midnight UTC) as
/// milliseconds since the Unix epoch.
fn timestamp_ms(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let full = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    let time = humantime::parse_rfc3339_weak(&full)
        .map_err(|e| format!("expected an RFC 3339 time like 2026-11-01T00:00:00Z: {e}"))?;
    let since_epoch = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| "times before 1970 are not supported".to_string())?;
    Ok(since_epoch.as_millis() as u64)
}

fn idempotency_key(text: &str) -> Result<String, String> {
    validate_key(text).map(|()| text.to_owned())
}

/// Parse `ID=HOST:PORT`.
fn parse_voter(text: &str) -> Result<NodeAddr, String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT, got {text:?}"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("node id must be a number, got {id:?}"))?;
    if id == 0 {
        return Err("node id must be at least 1".into());
    }
    let addr = addr.trim();
    if addr.is_empty() {
        return Err(format!("missing address in {text:?}"));
    }
    Ok(NodeAddr {
        id,
        addr: addr.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn voters_parse() {
        let voter = parse_voter("2=10.0.0.2:7001").unwrap();
        assert_eq!((voter.id, voter.addr.as_str()), (2, "10.0.0.2:7001"));
        assert!(parse_voter("10.0.0.2:7001").is_err());
        assert!(parse_voter("x=a:1").is_err());
        assert!(parse_voter("0=a:1").is_err());
        assert!(parse_voter("1=").is_err());
    }

    #[test]
    fn report_ranges_parse() {
        assert_eq!(timestamp_ms("1970-01-02"), Ok(86_400_000));
        assert_eq!(timestamp_ms("1970-01-01T00:00:01Z"), Ok(1000));
        assert!(timestamp_ms("yesterday").is_err());
        let cli = Cli::try_parse_from(["stockctl", "archive", "report", "--since", "2h"]).unwrap();
        let Command::Archive(ArchiveCommand::Report(report)) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(report.since, std::time::Duration::from_secs(7200));
        assert!(
            Cli::try_parse_from(["stockctl", "archive", "report", "--from", "2026-01-01"]).is_err()
        );
    }

    #[test]
    fn checkout_commands_parse() {
        let cli =
            Cli::try_parse_from(["stockctl", "hold", "tee:2", "mug:1", "--customer", "alice"])
                .unwrap();
        let Command::Hold(hold) = cli.command else {
            panic!("parsed as {:?}", cli.command);
        };
        assert_eq!(hold.lines.len(), 2);
        assert_eq!(
            (hold.lines[0].product.as_str(), hold.lines[0].quantity),
            ("tee", 2)
        );
        assert_eq!(hold.customer.as_deref(), Some("alice"));
        assert!(Cli::try_parse_from(["stockctl", "hold"]).is_err());
        assert!(Cli::try_parse_from(["stockctl", "hold", "tee"]).is_err());
        assert!(Cli::try_parse_from(["stockctl", "hold", "tee:0"]).is_err());
        let token = "ab".repeat(16);
        assert!(Cli::try_parse_from(["stockctl", "confirm", "7", "--token", &token]).is_ok());
        assert!(Cli::try_parse_from(["stockctl", "release", "7", "--token", "nope"]).is_err());
        assert!(Cli::try_parse_from(["stockctl", "cancel", "7"]).is_err());
        assert!(Cli::try_parse_from(["stockctl", "cancel", "7", "--admin"]).is_ok());
        assert!(
            Cli::try_parse_from(["stockctl", "cancel", "7", "--admin", "--token", &token]).is_err()
        );
        let cli = Cli::try_parse_from(["stockctl", "product", "limit", "drop", "none"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Product(ProductCommand::Limit {
                limit: Limit::None,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["stockctl", "product", "limit", "drop", "0"]).is_err());
    }

    #[test]
    fn endpoints_split_on_commas() {
        let cli = Cli::try_parse_from(["stockctl", "--endpoints", "a:1,b:2", "cluster", "status"])
            .unwrap();
        assert_eq!(cli.global.endpoints, ["a:1", "b:2"]);
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Status)
        ));
    }
}
