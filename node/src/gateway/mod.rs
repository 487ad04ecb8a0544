//! The gateway role: the public JSON API, served from a local replica.
//!
//! A gateway is an openraft learner: it receives the same log as the voters and applies it to its
//! own RocksDB, milliseconds behind. Every view is served from that replica, without touching the
//! voters, and says how fresh it is (`applied_index` in the body, `x-applied-index` header, and
//! how old it may be in `x-staleness-ms`, from the leader's last contact: [`crate::freshness`]).
//! `/v1/ready` turns 503 when the replica has not heard from a leader within
//! `gateway.ready_leader_silence_ms` or trails its commit index by more than
//! `gateway.ready_lag_entries_max`. A view asked with `?consistency=linearizable` first learns
//! the leader's commit index through a quorum-confirmed read index, and waits until the replica
//! has applied it.
//!
//! Writes go to the leader through the [`forwarder`], coalesced into batches: one forwarder per
//! Raft group, each following its group's leader, a command going to the group of its product,
//! hold or order ([`Gateway::group_for`]). Checkout (holds,
//! carts, cancellations, limits per customer; cluster version 2) is forwarded the same way
//! (`checkout.rs`); on voters, [`crate::hold_expiry`] makes holds expire on time when no other
//! entry comes. Stock changes are
//! pushed to subscribers as server-sent events from the replica's apply stream.
//!
//! The gateway also serves the shop's web pages ([`pages`]): catalog, product, order and
//! operations pages, rendered from the replica and kept live by small scripts that use the same
//! public API. The shop's script fails over to the other gateways of `gateway.public_origins`,
//! which grant those origins CORS ([`cors`]). The operations page and `GET /v1/ops/cluster`
//! read the [`ops`] service, which probes the members and samples purchases per second.
//!
//! Limits: each client's rate of purchases and of views ([`admission`], 429 `rate_limited`
//! with `Retry-After`, trusted sources exempt), request bodies (`limits.body_bytes_max`),
//! concurrent connections (`limits.connections_max`, further connections wait in the listen
//! backlog; each connection's idle, head and request time bounded by [`crate::server`]), event
//! streams (`limits.streams_max`, each ending after `limits.stream_lifetime_ms`), queued
//! purchases (`gateway.queue_max`, beyond which requests get 503 `overloaded` with
//! `Retry-After`; `gateway.queue_per_client_max` of one client, beyond which that client gets
//! 429, the queue served round robin across clients),
//! in-flight batches (`gateway.forward_connections_max`), each exchange with a voter
//! (`gateway.forward_attempt_timeout_ms`) and a batch's retries together
//! (`gateway.forward_timeout_ms`).

pub mod admission;
mod cart;
mod checkout;
pub mod cors;
pub mod forwarder;
mod hold_across;
pub mod misses;
pub mod ops;
pub mod pages;
mod routes;
mod stream;

use std::sync::Arc;

use axum::Router;
use flashstock_client::VoterClient;
use tokio::sync::watch;

use crate::NodeState;
pub use forwarder::{Client, ForwardError, Forwarded, Forwarder};

/// The OpenAPI document of the public API, as written; [`openapi_document`] is what is served.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The OpenAPI document served at `/v1/openapi.json`: [`OPENAPI`] with the limits this
/// gateway is configured with, so that it states exactly what the gateway accepts.
pub fn openapi_document(config: &cluster_config::Config) -> String {
    let mut doc: serde_json::Value =
        serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON");
    // The edge's limit, and never above the state machine's own.
    let quantity_max = config
        .limits
        .purchase_quantity_max
        .min(flashstock_api::PURCHASE_QUANTITY_LIMIT);
    doc["components"]["schemas"]["PurchaseRequest"]["properties"]["quantity"]["maximum"] =
        quantity_max.into();
    doc["components"]["schemas"]["BulkRequest"]["properties"]["items"]["maxItems"] =
        config.limits.commands_per_entry_max.into();
    doc["components"]["schemas"]["CartRequest"]["properties"]["lines"]["maxItems"] = config
        .checkout
        .cart_lines_max
        .min(flashstock_api::CART_LINES_LIMIT)
        .into();
    doc["components"]["schemas"]["Line"]["properties"]["quantity"]["maximum"] = quantity_max.into();
    doc.to_string()
}

/// What the public handlers share.
pub struct Gateway {
    pub node: Arc<NodeState>,
    /// One forwarder per Raft group, by number: each follows its group's leader.
    pub forwarders: Vec<Forwarder>,
    /// Per-client rate limits and trusted sources.
    pub admission: admission::Admission,
    /// A client of the voters for each Raft group, by number (each remembers its group's
    /// leader).
    pub voters: Vec<VoterClient>,
    /// The operations view: status probes and the per-second history of purchases.
    pub ops: ops::Ops,
    /// Flips to true when the node shuts down, to end event streams.
    pub stopping: watch::Receiver<bool>,
    /// The OpenAPI document this gateway serves ([`openapi_document`]).
    pub openapi: axum::body::Bytes,
    /// One permit per event stream that may open (`limits.streams_max`).
    pub streams: Arc<tokio::sync::Semaphore>,
    /// What pages are sent with and tell the shop's script ([`pages::Storefront`]).
    pub storefront: pages::Storefront,
    /// One per Raft group, by number: catches this replica up with the group's leader before
    /// a product it lacks is denied ([`misses`]).
    pub misses: Vec<misses::MissConfirmer>,
}

impl Gateway {
    pub fn new(node: Arc<NodeState>, stopping: watch::Receiver<bool>) -> Gateway {
        let config = &node.config;
        let endpoints = config
            .cluster
            .voters
            .iter()
            .map(|peer| peer.addr.clone())
            .collect();
        let voters = VoterClient::new(
            endpoints,
            node.credentials.own_secret(),
            std::time::Duration::from_millis(config.gateway.forward_attempt_timeout_ms),
        )
        .with_local_address(config.source_ip())
        .with_tls(node.tls.client())
        .with_wire(config.raft.transport == cluster_config::Transport::Wire);
        let voters: Vec<VoterClient> = node
            .groups
            .iter()
            .map(|group| voters.for_group(group.number))
            .collect();
        // The gateway's batches in flight are shared by its groups: as many as with one group
        // (at least one each), so that each group's batches grow under load as one group's do,
        // instead of G times as many entries each a G-th the size.
        let slots = config.gateway.forward_connections_max / node.groups.len();
        let forwarders = node
            .groups
            .iter()
            .zip(&voters)
            .map(|(group, voters)| {
                Forwarder::start(
                    config,
                    voters.clone(),
                    group.raft.clone(),
                    slots,
                    node.metrics.clone(),
                    node.unsafe_faults,
                )
            })
            .collect();
        let ops = ops::Ops::start(&node, stopping.clone());
        let openapi = openapi_document(config).into();
        let admission = admission::Admission::new(&config.limits);
        let streams = Arc::new(tokio::sync::Semaphore::new(config.limits.streams_max));
        let storefront = pages::Storefront::new(config);
        let misses = node
            .groups
            .iter()
            .zip(&voters)
            .map(|(group, voters)| {
                misses::MissConfirmer::start(voters.clone(), group.reader.watch_applied())
            })
            .collect();
        Gateway {
            misses,
            storefront,
            streams,
            node,
            forwarders,
            admission,
            voters,
            ops,
            stopping,
            openapi,
        }
    }
}

impl Gateway {
    /// The replica's freshness now ([`crate::freshness`]): of its least fresh group, when it
    /// replicates several.
    pub fn freshness(&self) -> crate::freshness::FreshnessView {
        let now = std::time::Instant::now();
        let mut views = self
            .node
            .groups
            .iter()
            .map(|group| group.freshness.view(group.reader.applied_index(), now));
        let first = views.next().expect("a node runs at least one group");
        views.fold(first, crate::freshness::FreshnessView::least_fresh)
    }

    /// The group that must apply `op`, or why none can
    /// ([`flashstock_api::placement::group_of_op`]).
    pub fn group_for(&self, op: &flashstock_api::Op) -> Result<&crate::Group, SpansGroups> {
        use flashstock_api::placement::{group_of_op, Placed};
        match group_of_op(op, self.node.groups.len() as u16) {
            Placed::In(group) => Ok(&self.node.groups[usize::from(group)]),
            Placed::Anywhere => Ok(self.node.group0()),
            Placed::Spans(first, second) => Err(SpansGroups(first, second)),
        }
    }

    /// The forwarder of `group`.
    pub fn forwarder(&self, group: &crate::Group) -> &Forwarder {
        &self.forwarders[usize::from(group.number)]
    }
}

/// A command whose products lie in two Raft groups (these two, at least): no single group can
/// apply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpansGroups(pub u16, pub u16);

/// The public router: the JSON API and the shop's pages.
pub fn router(gateway: Arc<Gateway>) -> Router {
    routes::router(gateway)
}
