//! `stockctl`, the operators' CLI of flashstock.
//!
//! `cluster ...` and `archive ...` commands speak to the nodes' internal admin API
//! (`--endpoints`, `--secret`: the operator secret);
//! `product ...`, `buy`, `hold`, `confirm`, `release` and `cancel` to the gateways' public API (`--gateways`, `--admin-token`); `certs ...`
//! makes certificates in local files. With `--tls-*`, calls to the nodes use mutual TLS. Results go
//! to stdout as a table or JSON; errors to stderr as `stockctl: <code>: <message>`, with exit
//! code 1 (failed, definitely not applied), 2 (usage) or 3 (outcome unknown).

mod archive;
mod args;
mod certs;
mod cluster;
mod context;
mod error;
mod import;
mod output;
mod restart;
mod shop;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};
use crate::context::Context;
use crate::error::CliError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("stockctl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Context::new(cli.global)?;
    match cli.command {
        Command::Cluster(command) => cluster::run(&ctx, command).await,
        Command::Product(command) => shop::product(&ctx, command).await,
        Command::Buy(args) => shop::buy(&ctx, args).await,
        Command::Hold(args) => shop::hold(&ctx, args).await,
        Command::Confirm(args) => shop::confirm(&ctx, args).await,
        Command::Release(args) => shop::release(&ctx, args).await,
        Command::Cancel(args) => shop::cancel(&ctx, args).await,
        Command::Archive(command) => archive::run(&ctx, command).await,
        Command::Certs(command) => certs::run(&ctx, command),
    }
}
