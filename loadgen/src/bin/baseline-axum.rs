//! `baseline-axum --listen ADDR`: the bare axum baseline (see `flashstock_loadgen::baseline::bare`).
//! Prints `listening on http://ADDR` once it accepts connections; runs until killed.

use std::net::SocketAddr;

use clap::Parser;

/// Answers every `GET /v1/products/{id}` with one fixed product view.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    flashstock_loadgen::limits::raise_open_files(0).map_err(std::io::Error::other)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        flashstock_loadgen::baseline::nodelay(listener),
        flashstock_loadgen::baseline::bare::router(),
    )
    .await
}
