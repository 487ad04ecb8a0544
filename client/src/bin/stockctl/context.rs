//! The resolved global flags of one run, and the clients built from them.
//!
//! A command asks for what it needs (the nodes' endpoints and the operator secret, or the
//! gateways); a
//! missing piece is a usage error that names the flag and its environment variable.

use std::time::{Duration, Instant};

use std::sync::Arc;

use flashstock_client::{ShopClient, TlsConfig, VoterClient};

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
    /// Mutual TLS to the nodes (`--tls-*`).
    internal_tls: Option<TlsConfig>,
    /// The trust of `https://` gateways (`--gateway-ca`).
    gateway_tls: Option<TlsConfig>,
    /// The Raft group node commands speak to (`--group`); `None`: group 0, and `cluster status`
    /// shows every group.
    pub group: Option<u16>,
}

impl Context {
    pub fn new(global: GlobalArgs) -> Result<Context, CliError> {
        let tls_error = |e: flashstock_tls::Error| CliError::Usage(format!("TLS: {e}"));
        let internal_tls = match (&global.tls_ca, &global.tls_cert, &global.tls_key) {
            (Some(ca), Some(cert), Some(key)) => {
                let identity = flashstock_tls::Identity::load(flashstock_tls::Files {
                    cert: cert.clone(),
                    key: key.clone(),
                    ca: Some(ca.clone()),
                })
                .map_err(tls_error)?;
                Some(Arc::new(identity.client_config().map_err(tls_error)?))
            }
            _ => None,
        };
        let gateway_tls = match &global.gateway_ca {
            Some(ca) => Some(Arc::new(flashstock_tls::trusting(ca).map_err(tls_error)?)),
            None => None,
        };
        let timeout = Duration::from_millis(global.timeout_ms);
        let secret = global
            .secret
            .or_else(|| std::env::var(SECRET_ENV_FALLBACK).ok())
            .filter(|s| !s.is_empty());
        Ok(Context {
            output: global.output,
            timeout,
            deadline: Instant::now() + timeout,
            endpoints: clean_list(global.endpoints),
            secret,
            gateways: clean_list(global.gateways),
            admin_token: global.admin_token.filter(|t| !t.is_empty()),
            internal_tls,
            gateway_tls,
            group: global.group,
        })
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
        let client =
            VoterClient::new(endpoints, secret, self.timeout).with_tls(self.internal_tls.clone());
        Ok(client.for_group(self.group.unwrap_or(0)))
    }

    /// A client of the public API over the gateways, with the admin token if one is given.
    pub fn shop_client(&self) -> Result<ShopClient, CliError> {
        if self.gateways.is_empty() {
            return Err(CliError::Usage(
                "no gateways: pass --gateways http://host:port,... or set STOCKCTL_GATEWAYS".into(),
            ));
        }
        if self.gateway_tls.is_none() && self.gateways.iter().any(|g| g.starts_with("https:")) {
            return Err(CliError::Usage(
                "https:// gateways: pass --gateway-ca FILE (or set STOCKCTL_GATEWAY_CA) with the \
                 CAs their certificates chain to"
                    .into(),
            ));
        }
        let client = ShopClient::new(self.gateways.clone()).with_tls(self.gateway_tls.clone());
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
