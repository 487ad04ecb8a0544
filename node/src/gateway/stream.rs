//! `GET /v1/stream[?product=ID]`: stock changes as server-sent events.
//!
//! Each `stock` event carries a [`StockEvent`] as JSON (available, held and sold, the limit per
//! customer), in log order: with several Raft groups, each group's events in its log order
//! (`log_index` is the group's), interleaved as they are applied. A stream for one product
//! starts with that product's current state. A subscriber too slow to keep up gets a `lagged`
//! event with the number of changes it missed, then the stream goes on; a client should reload
//! the products it shows.
//!
//! Bounds: a gateway holds at most `limits.streams_max` streams (below `limits.connections_max`,
//! so streams never take every connection from buyers); one more is refused at once with 503
//! `overloaded` and `Retry-After`. A stream ends after `limits.stream_lifetime_ms`, or when the
//! node shuts down. Events carry no id: a browser's `EventSource` reconnects on its own after
//! the end (without `Last-Event-ID`), and a client re-reads the state it shows when it
//! reconnects; a stream for one product starts with that product's current state anyway. A
//! comment every [`KEEP_ALIVE`] keeps an idle stream open through proxies.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flashstock_api::{validate_product_id, ErrorCode, Product, ProductTerms, StockEvent};
use futures::{stream, Stream, StreamExt};
use raft_store::ProductChange;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::routes::product_confirmed;
use super::Gateway;
use crate::api_error::ApiError;

/// Interval of keep-alive comments on an idle stream, so proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Seconds a client refused for `limits.streams_max` is asked to wait before it tries again.
pub const STREAMS_FULL_RETRY_AFTER_SECONDS: u32 = 5;

/// One open stream: counted in `gateway_streams_open`, its slot given back when dropped.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.streams_open.dec();
    }
}

/// A slot for one more stream, or 503 `overloaded` at once.
fn take_slot(gateway: &Gateway) -> Result<Slot, ApiError> {
    let metrics = gateway.node.metrics.clone();
    match gateway.streams.clone().try_acquire_owned() {
        Ok(permit) => {
            metrics.streams_open.inc();
            Ok(Slot {
                _permit: permit,
                metrics,
            })
        }
        Err(_) => {
            metrics.streams_refused.inc();
            Err(ApiError {
                retry_after_seconds: Some(STREAMS_FULL_RETRY_AFTER_SECONDS),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Overloaded,
                    format!(
                        "this gateway holds its most event streams (limits.streams_max = {}); \
                         retry shortly, or on another gateway",
                        gateway.node.config.limits.streams_max
                    ),
                )
            })
        }
    }
}

#[derive(Deserialize)]
pub struct StreamQuery {
    product: Option<String>,
}

/// A `stock` event: a product's [`StockEvent`] as of `log_index`.
fn stock_event(product: &Product, terms: &ProductTerms, log_index: u64) -> Event {
    let event = StockEvent::new(product, terms, log_index);
    Event::default()
        .event("stock")
        .json_data(event)
        .expect("a stock event serializes")
}

pub async fn stock_events(
    State(gateway): State<Arc<Gateway>>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let slot = take_slot(&gateway)?;
    let filter = query.ok().and_then(|Query(q)| q.product);
    // Subscribe before reading the current state, so no change falls between the two. One
    // product's stream follows its group; the whole shop's, every group's changes as they come.
    let mut first = Vec::new();
    let changes = match &filter {
        Some(id) => {
            validate_product_id(id).map_err(ApiError::invalid)?;
            let group = gateway.node.group_of(id);
            let changes = vec![group.reader.subscribe()];
            let (applied_index, record) = product_confirmed(&gateway, group, id).await;
            let record = record
                .map_err(ApiError::storage)?
                .ok_or_else(|| ApiError::unknown_product(id))?;
            first.push(stock_event(&record.product, &record.terms, applied_index));
            changes
        }
        None => gateway
            .node
            .groups
            .iter()
            .map(|group| group.reader.subscribe())
            .collect(),
    };
    let live = stream::select_all(
        changes
            .into_iter()
            .map(|changes| Box::pin(group_events(changes, filter.clone()))),
    );
    let mut stopping = gateway.stopping.clone();
    let lifetime = Duration::from_millis(gateway.node.config.limits.stream_lifetime_ms);
    let ended = async move {
        tokio::select! {
            _ = stopping.wait_for(|stopping| *stopping) => {}
            _ = tokio::time::sleep(lifetime) => {}
        }
    };
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> = Box::pin(
        stream::iter(first)
            .chain(live)
            .take_until(ended)
            // The slot lives as long as the stream.
            .map(move |event| {
                let _slot = &slot;
                Ok(event)
            }),
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// One group's changes as `stock` events (only `filter`'s product, if given), and a `lagged`
/// event when the subscriber fell behind and missed some.
fn group_events(
    changes: tokio::sync::broadcast::Receiver<ProductChange>,
    filter: Option<String>,
) -> impl Stream<Item = Event> + Send {
    stream::unfold(changes, move |mut changes| {
        let filter = filter.clone();
        async move {
            loop {
                match changes.recv().await {
                    Ok(ProductChange {
                        log_index,
                        product,
                        terms,
                    }) => {
                        if filter.as_ref().is_none_or(|id| *id == product.id) {
                            return Some((stock_event(&product, &terms, log_index), changes));
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        let event = Event::default().event("lagged").data(missed.to_string());
                        return Some((event, changes));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}
