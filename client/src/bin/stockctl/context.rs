//! The resolved global flags of one run, and the clients built from them.
//!
//! A command asks for what it needs (the nodes' endpoints and the operator secret, or the
//! gateways); a
//! missing piece is a usage error that names the flag and its environment variable.

use std::time::{Duration, Instant};

use flashstock_client::{ShopClient, VoterClient};

use crate::args::{GlobalArgs, OutputFormat};
use crate::error::CliError;

/// The fallback environment variable of the operator secret, shared with the nodes' tooling.
const SECRET_ENV_FALLBACK: &str = "FLASHSTOCK_SECRET";

#[derive(Clone)]
pub struct Context {
    pub output: OutputFormat,
    pub timeout: Duration,
    /// When the command has to give up.
    pub deadline: Instant,
    endpoints: Vec<String>,
    secret: Option<String>,
    gateways: Vec<String>,
    admin_token: Option<String>,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Context {
        let timeout = Duration::from_millis(global.timeout_ms);
        let secret = global
            .secret
            .or_else(|| std::env::var(SECRET_ENV_FALLBACK).ok())
            .filter(|s| !s.is_empty());
        Context {
            output: global.output,
            timeout,
            deadline: Instant::now() + timeout,
            endpoints: clean_list(global.endpoints),
            secret,
            gateways: clean_list(global.gateways),
            admin_token: global.admin_token.filter(|t| !t.is_empty()),
        }
    }

    /// The nodes' internal addresses.
    pub fn endpoints(&self) -> Result<&[String], CliError> {
        if self.endpoints.is_empty() {
            return Err(CliError::Usage(
                "no endpoints: pass --endpoints host:port,... or set STOCKCTL_ENDPOINTS".into(),
            ));
        }
        Ok(&self.endpoints)
    }

    /// A client of the internal API over the endpoints.
    pub fn voter_client(&self) -> Result<VoterClient, CliError> {
        let endpoints = self.endpoints()?.to_vec();
        let secret = self.secret.as_deref().ok_or_else(|| {
            CliError::Usage(
                "no operator secret: set STOCKCTL_SECRET (or FLASHSTOCK_SECRET), or pass --secret"
                    .into(),
            )
        })?;
        Ok(VoterClient::new(endpoints, secret, self.timeout))
    }

    /// A client of the public API over the gateways, with the admin token if one is given.
    pub fn shop_client(&self) -> Result<ShopClient, CliError> {
        if self.gateways.is_empty() {
            return Err(CliError::Usage(
                "no gateways: pass --gateways http://host:port,... or set STOCKCTL_GATEWAYS".into(),
            ));
        }
        let client = ShopClient::new(self.gateways.clone());
        Ok(match &self.admin_token {
            Some(token) => client.with_admin_token(token),
            None => client,
        })
    }

    /// The same context with a new deadline `timeout` from now: one step of a longer procedure.
    pub fn for_step(&self, timeout: Duration) -> Context {
        let mut step = self.clone();
        step.timeout = timeout;
        step.deadline = Instant::now() + timeout;
        step
    }

    /// Time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Trimmed, non-empty entries.
fn clean_list(items: Vec<String>) -> Vec<String> {
    items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}
