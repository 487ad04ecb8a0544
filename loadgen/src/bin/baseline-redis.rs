//! `baseline-redis [--redis-url URL] [--listen ADDR] [--connections 8]`: the Redis baseline (see
//! `flashstock_loadgen::baseline::redis_stack`). Without a URL it starts a throwaway
//! `redis-server` (deploy's helper: in memory, no snapshot, no append-only file) and kills it on
//! exit. Prints `listening on http://ADDR` once it accepts connections; runs until SIGTERM or
//! Ctrl-C.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use flashstock_deploy::redis::RedisServer;
use flashstock_loadgen::baseline::{redis_stack, serve_until_stopped};

/// Redis behind the gateway's purchase and view routes, a purchase one Lua script.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Redis to use; default: start a throwaway server.
    #[arg(long)]
    redis_url: Option<String>,
    /// Multiplexed connections to Redis, used in turn.
    #[arg(long, default_value_t = redis_stack::CONNECTIONS_DEFAULT)]
    connections: usize,
}

/// `maxclients` of a throwaway server: the connections plus room for tools.
const EXTRA_SERVER_CLIENTS: usize = 16;

#[tokio::main]
async fn main() -> ExitCode {
    flashstock_loadgen::baseline::exit_code("baseline-redis", serve(Args::parse()).await)
}

async fn serve(args: Args) -> Result<(), String> {
    flashstock_loadgen::limits::raise_open_files(args.connections).map_err(|e| e.to_string())?;
    // Kept alive until the server stops: dropping it kills Redis and removes its directory.
    let (_server, url) = match args.redis_url {
        Some(url) => (None, url),
        None => {
            let server = RedisServer::start((args.connections + EXTRA_SERVER_CLIENTS) as u32)
                .map_err(|e| format!("starting Redis: {e}"))?;
            let url = server.url();
            (Some(server), url)
        }
    };
    let shop = redis_stack::connect(&url, args.connections).await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| e.to_string())?;
    let what = format!("Redis {url}, {} multiplexed connections", args.connections);
    serve_until_stopped(listener, redis_stack::router(shop), &what).await
}
