//! The node's TLS, from `[tls]`: the identities its listeners present, the client config of its
//! calls to other nodes, and the task that reads the certificate files again when they change.
//!
//! - **Internal** (`tls.internal_*`): mutual TLS on the internal listener (Raft RPCs, forwarding,
//!   admin) and on every call this node makes to another (Raft RPCs, forwards, probes).
//! - **Public** (`tls.public_*`, gateways): HTTPS on `gateway.public_listen`; clients present no
//!   certificate.
//!
//! Without `[tls]` the node speaks plaintext HTTP, as a local cluster on loopback does, and logs
//! a warning at start saying so.

use std::sync::Arc;
use std::time::Duration;

use cluster_config::TlsSection;
use flashstock_client::TlsConfig;
use flashstock_tls::{Files, Identity};
use tokio::sync::watch;

/// The node's TLS material; every part `None` when `[tls]` leaves it out.
pub struct NodeTls {
    pub internal: Option<Arc<Identity>>,
    pub public: Option<Arc<Identity>>,
    /// The client config of calls to other nodes (from `internal`).
    client: Option<TlsConfig>,
}

impl NodeTls {
    /// Read the files `section` names; fails, naming the file, if any cannot be used.
    pub fn load(section: &TlsSection) -> Result<NodeTls, flashstock_tls::Error> {
        let internal = match (
            &section.internal_ca_path,
            &section.internal_cert_path,
            &section.internal_key_path,
        ) {
            (Some(ca), Some(cert), Some(key)) => Some(Identity::load(Files {
                cert: cert.clone(),
                key: key.clone(),
                ca: Some(ca.clone()),
            })?),
            _ => None,
        };
        let public = match (&section.public_cert_path, &section.public_key_path) {
            (Some(cert), Some(key)) => Some(Identity::load(Files {
                cert: cert.clone(),
                key: key.clone(),
                ca: None,
            })?),
            _ => None,
        };
        let client = match &internal {
            Some(identity) => Some(Arc::new(identity.client_config()?)),
            None => None,
        };
        Ok(NodeTls {
            internal,
            public,
            client,
        })
    }

    /// What calls to other nodes use: `Some` means `https://` with this node's certificate.
    pub fn client(&self) -> Option<TlsConfig> {
        self.client.clone()
    }

    /// Check the files every `every` until `stopping`; a changed file is read again and serves
    /// from the next handshake on. A file that cannot be read keeps the old material in use.
    pub fn watch(&self, id: u64, every: Duration, mut stopping: watch::Receiver<bool>) {
        let identities: Vec<(&'static str, Arc<Identity>)> = [
            ("internal", self.internal.clone()),
            ("public", self.public.clone()),
        ]
        .into_iter()
        .filter_map(|(which, identity)| Some((which, identity?)))
        .collect();
        if identities.is_empty() {
            return;
        }
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopping.changed() => return,
                }
                for (which, identity) in &identities {
                    match identity.reload_if_changed() {
                        Ok(true) => tracing::info!(
                            id,
                            which,
                            cert = %identity.files().cert.display(),
                            "TLS certificate reloaded; new connections use it"
                        ),
                        Ok(false) => {}
                        Err(error) => tracing::warn!(
                            id,
                            which,
                            %error,
                            "TLS files changed but cannot be used; keeping the previous ones"
                        ),
                    }
                }
            }
        });
    }
}
