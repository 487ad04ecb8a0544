//! `stale-gateway`: one gateway cut off from every voter (iptables), while clients still reach
//! it. Cut off, it hears no leader: within `gateway.ready_leader_silence_ms` its `/v1/ready` must
//! answer 503, and every view it serves must say how stale it is (`x-staleness-ms`, see
//! `node/src/freshness.rs`).
//!
//! The header is the time since the last leader contact whose commit index the replica had
//! applied; every contact arrived before the cut, so a view that reached the gateway `t` ms after
//! the cut carries at least `t` ms (less [`STALENESS_TOLERANCE_MS`]: an append that arrived just
//! before the rules went in may be handled just after). A probe polls `/v1/ready` and reads a
//! product through the cut gateway only, so that views from it are in the history even when every
//! client has moved to another gateway; the checker
//! ([`crate::checker::stale_views::cut_off_gateways_own_up`]) judges those and the workload's.

use std::time::Duration;

use flashstock_client::{RetryPolicy, ShopClient, TlsConfig};
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::history::{Clock, OpKind, OpRecord};

/// The probe's `client` in the history.
pub const PROBE_CLIENT: usize = usize::MAX - 1;
/// How often the probe asks `/v1/ready`.
const READY_EVERY: Duration = Duration::from_millis(20);
/// How often the probe reads a product through the cut gateway.
const VIEW_EVERY: Duration = Duration::from_millis(100);
/// How long one probe call may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// What a view's staleness may fall short of the time since the cut: a leader's append that
/// reached the gateway just before the rules went in may be handled just after, on a loaded
/// machine.
pub const STALENESS_TOLERANCE_MS: u64 = 250;
/// What the machine may add to `gateway.ready_leader_silence_ms` before `/v1/ready` says 503:
/// the probe's poll and scheduling on two shared cores.
pub const NOT_READY_TOLERANCE_MS: u64 = 1000;
/// How long the fault is held past the bound, so that views after the bound are seen.
pub const HOLD_PAST_BOUND: Duration = Duration::from_millis(1500);

/// What a `stale-gateway` fault measured, and what the checker needs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Figures {
    pub gateway: u64,
    /// The gateway's public base URL, as views in the history name it.
    pub url: String,
    /// `gateway.ready_leader_silence_ms`.
    pub bound_ms: u64,
    /// When the iptables rules were in place.
    pub cut_ms: u64,
    /// When their removal began: views answered before this were served cut off.
    pub reconnect_ms: u64,
    /// From the cut until `/v1/ready` first answered 503; `None`: it never did.
    pub not_ready_after_ms: Option<u64>,
}

impl Figures {
    pub fn describe(&self) -> String {
        match self.not_ready_after_ms {
            Some(ms) => format!(
                "gateway {} not ready {ms} ms after the cut (bound {} ms)",
                self.gateway, self.bound_ms
            ),
            None => format!(
                "gateway {} NEVER answered not-ready (bound {} ms)",
                self.gateway, self.bound_ms
            ),
        }
    }
}

/// The cut in place, and its probe.
pub struct Active {
    figures: Figures,
    probe: JoinHandle<(Option<u64>, Vec<OpRecord>)>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Start the probe of gateway `id` at `url`, cut at `cut_ms`; `product` is read through it.
pub fn start_probe(
    id: u64,
    url: String,
    tls: Option<TlsConfig>,
    bound_ms: u64,
    cut_ms: u64,
    clock: Clock,
    product: String,
) -> Active {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let shop = ShopClient::new(vec![url.clone()])
        .with_tls(tls.clone())
        .with_timeout(PROBE_TIMEOUT)
        .with_retry(RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        });
    let http = flashstock_client::http_builder(PROBE_TIMEOUT, None, tls.as_ref())
        .timeout(PROBE_TIMEOUT)
        .build()
        .expect("a client of a rustls config always builds");
    let ready_url = format!("{url}/v1/ready");
    let probe = tokio::spawn(async move {
        let mut not_ready = None;
        let mut views = Vec::new();
        let mut next_view = clock.ms();
        loop {
            let stop = *stopped.borrow();
            if stop {
                break;
            }
            if not_ready.is_none() {
                if let Ok(answer) = http.get(&ready_url).send().await {
                    if answer.status().as_u16() == 503 {
                        not_ready = Some(clock.ms().saturating_sub(cut_ms));
                    }
                }
            }
            if clock.ms() >= next_view {
                views.push(view(&shop, &product, clock).await);
                next_view = clock.ms() + VIEW_EVERY.as_millis() as u64;
            }
            if let Ok(Err(_)) = tokio::time::timeout(READY_EVERY, stopped.changed()).await {
                // The nemesis dropped the fault without stopping the probe.
                break;
            }
        }
        (not_ready, views)
    });
    Active {
        figures: Figures {
            gateway: id,
            url,
            bound_ms,
            cut_ms,
            reconnect_ms: 0,
            not_ready_after_ms: None,
        },
        probe,
        stop,
    }
}

/// One local view through the cut gateway, as the workload records views.
async fn view(shop: &ShopClient, product: &str, clock: Clock) -> OpRecord {
    let invoked_ms = clock.ms();
    let result = crate::workload::view_result(shop.product_served(product, false).await);
    OpRecord {
        client: PROBE_CLIENT,
        kind: OpKind::View,
        key: None,
        product: product.to_owned(),
        quantity: 0,
        invoked_ms,
        completed_ms: clock.ms(),
        attempts: 1,
        unknown_attempts: 0,
        expected: None,
        target: Default::default(),
        result,
    }
}

/// Just before the rules are removed: stop the probe; the figures and the probe's views.
pub async fn stop_probe(active: Active, reconnect_ms: u64) -> (Figures, Vec<OpRecord>) {
    let _ = active.stop.send(true);
    let (not_ready, views) = active.probe.await.unwrap_or_default();
    let figures = Figures {
        reconnect_ms,
        not_ready_after_ms: not_ready,
        ..active.figures
    };
    (figures, views)
}
