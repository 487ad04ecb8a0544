//! `baseline-pg [--database-url URL] [--listen ADDR] [--pool 300]`: the relational baseline
//! (see `flashstock_loadgen::baseline::relational`). Without a URL it starts a throwaway
//! PostgreSQL server (deploy's helper: fsync and synchronous commit on, in a temporary directory)
//! and removes it on exit. Prints `listening on http://ADDR` once it accepts connections; runs
//! until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use flashstock_deploy::postgres::{Postgres, PostgresOptions};
use flashstock_loadgen::baseline::{relational, serve_until_stopped};

/// PostgreSQL behind the gateway's purchase and view routes.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// PostgreSQL to use; default: start a throwaway server.
    #[arg(long)]
    database_url: Option<String>,
    /// Connections of the pool (the brief's C = 300).
    #[arg(long, default_value_t = relational::POOL_SIZE_DEFAULT)]
    pool: usize,
}

/// `max_connections` of a throwaway server: the pool plus room for superuser and tools.
const EXTRA_SERVER_CONNECTIONS: usize = 20;

#[tokio::main]
async fn main() -> ExitCode {
    flashstock_loadgen::baseline::exit_code("baseline-pg", serve(Args::parse()).await)
}

async fn serve(args: Args) -> Result<(), String> {
    flashstock_loadgen::limits::raise_open_files(args.pool).map_err(|e| e.to_string())?;
    // Kept alive until the server stops: dropping it stops PostgreSQL and removes its data.
    let (_server, url) = match args.database_url {
        Some(url) => (None, url),
        None => {
            let server = Postgres::start(PostgresOptions {
                max_connections: (args.pool + EXTRA_SERVER_CONNECTIONS) as u32,
                ..PostgresOptions::default()
            })
            .map_err(|e| format!("starting PostgreSQL: {e}"))?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let pool = relational::connect(&url, args.pool).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| e.to_string())?;
    let what = format!("PostgreSQL {url}, pool of {}", args.pool);
    serve_until_stopped(listener, relational::router(pool), &what).await
}
