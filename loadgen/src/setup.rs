//! Creating a run's catalog through the public admin API (`POST /v1/admin/products`, or in bulk
//! `POST /v1/admin/products/bulk`), before the measured phase, and waiting until every server of
//! the target can see it.
//!
//! Creates are sent by a few dozen concurrent connections, each with an idempotency key derived
//! from the product id, so a create whose outcome was unknown is retried safely; a product that
//! already exists (a rerun) is fine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use flashstock_api::{
    BulkItem, BulkRequest, BulkResponse, BulkStatus, CreateProductRequest, ErrorCode,
};

use crate::driver::Progress;
use crate::http::{Connection, Target};
use crate::workload::Catalog;

/// Concurrent create requests.
pub const CREATE_CONNECTIONS: usize = 48;
/// Attempts of one create before the set-up fails.
const CREATE_ATTEMPTS: u32 = 20;
/// How long every server may take to see the last product created.
const VISIBLE_TIMEOUT: Duration = Duration::from_secs(120);

/// Create products `range` of `catalog` on `target`; returns how long it took.
pub async fn create_products(
    target: &Target,
    catalog: &Catalog,
    range: std::ops::Range<usize>,
    progress: bool,
) -> Result<Duration, String> {
    let SetUp {
        began,
        next,
        done,
        bar,
    } = SetUp::start(&range, progress, "created");
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..CREATE_CONNECTIONS.min(range.len().max(1)) {
        let mut connection = target.connection(target.url_for(index), Duration::from_secs(30))?;
        let token = target.admin_token.clone().unwrap_or_default();
        let catalog = catalog.clone();
        let next = next.clone();
        let done = done.clone();
        let end = range.end as u64;
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok(());
                }
                create_one(&mut connection, &token, &catalog, i as usize).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    finish(tasks, bar, target, catalog, &range).await?;
    Ok(began.elapsed())
}

async fn create_one(
    connection: &mut Connection,
    token: &str,
    catalog: &Catalog,
    index: usize,
) -> Result<(), String> {
    let id = catalog.id(index);
    let body = Bytes::from(
        serde_json::to_vec(&CreateProductRequest {
            id: id.clone(),
            name: product_name(index),
            price_cents: price_cents(index),
            stock: catalog.stock,
            limit_per_customer: None,
        })
        .expect("a create request serializes"),
    );
    let key = format!("create-{id}");
    let answer = post_until_definite(connection, "/v1/admin/products", &key, token, body)
        .await
        .map_err(|e| format!("creating {id}: {e}"))?;
    match answer.status {
        // Created, or there already (a rerun).
        200 | 201 | 409 => Ok(()),
        status => Err(format!(
            "creating {id}: {status} {}",
            String::from_utf8_lossy(&answer.body)
        )),
    }
}

/// Products per bulk request of [`import_products`]: one Raft entry each.
pub const IMPORT_CHUNK: usize = 1000;
/// Bulk requests in flight at once, as `stockctl product import` sends them by default.
pub const IMPORT_CONNECTIONS: usize = 4;

/// Create products `range` of `catalog` on `target` in bulk (`POST /v1/admin/products/bulk`,
/// [`IMPORT_CHUNK`] per request), as a shop imports its catalog; returns how long it took.
/// Only flashstock has the bulk route.
pub async fn import_products(
    target: &Target,
    catalog: &Catalog,
    range: std::ops::Range<usize>,
    progress: bool,
) -> Result<Duration, String> {
    let SetUp {
        began,
        next,
        done,
        bar,
    } = SetUp::start(&range, progress, "imported");
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..IMPORT_CONNECTIONS {
        let mut connection = target.connection(target.url_for(index), Duration::from_secs(60))?;
        let token = target.admin_token.clone().unwrap_or_default();
        let (catalog, next, done) = (catalog.clone(), next.clone(), done.clone());
        let end = range.end as u64;
        tasks.spawn(async move {
            loop {
                let start = next.fetch_add(IMPORT_CHUNK as u64, Ordering::Relaxed);
                if start >= end {
                    return Ok(());
                }
                let chunk = start as usize..(start + IMPORT_CHUNK as u64).min(end) as usize;
                let count = chunk.len() as u64;
                import_chunk(&mut connection, &token, &catalog, chunk).await?;
                done.fetch_add(count, Ordering::Relaxed);
            }
        });
    }
    finish(tasks, bar, target, catalog, &range).await?;
    Ok(began.elapsed())
}

async fn import_chunk(
    connection: &mut Connection,
    token: &str,
    catalog: &Catalog,
    chunk: std::ops::Range<usize>,
) -> Result<(), String> {
    let first = catalog.id(chunk.start);
    let items = chunk
        .map(|index| BulkItem::Create {
            id: catalog.id(index),
            name: product_name(index),
            price_cents: price_cents(index),
            stock: catalog.stock,
        })
        .collect();
    let body =
        Bytes::from(serde_json::to_vec(&BulkRequest { items }).expect("a bulk request serializes"));
    let key = format!("import-{first}");
    let answer = post_until_definite(connection, "/v1/admin/products/bulk", &key, token, body)
        .await
        .map_err(|e| format!("importing from {first}: {e}"))?;
    let text = || String::from_utf8_lossy(&answer.body).into_owned();
    if answer.status != 200 {
        return Err(format!(
            "importing from {first}: {} {}",
            answer.status,
            text()
        ));
    }
    let response: BulkResponse = serde_json::from_slice(&answer.body)
        .map_err(|e| format!("importing from {first}: {e}: {}", text()))?;
    for result in response.results {
        let exists = result
            .error
            .as_ref()
            .is_some_and(|e| e.code == ErrorCode::ProductExists);
        if result.status != BulkStatus::Created && !exists {
            return Err(format!("importing {}: {:?}", result.id, result.error));
        }
    }
    Ok(())
}

fn product_name(index: usize) -> String {
    format!("Load product {index}")
}

fn price_cents(index: usize) -> u64 {
    1000 + (index as u64 % 9000)
}

/// Post an admin write until its answer is definite: overloaded, unavailable and unknown
/// outcomes are retried with the same key, which is safe. The definite answer, whatever it is.
async fn post_until_definite(
    connection: &mut Connection,
    path: &str,
    key: &str,
    token: &str,
    body: Bytes,
) -> Result<crate::http::Answer, String> {
    let bearer = format!("Bearer {token}");
    let mut last = String::new();
    for attempt in 0..CREATE_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt.min(10)))).await;
        }
        let answer = connection
            .post_json(
                path,
                &[("idempotency-key", key), ("authorization", &bearer)],
                body.clone(),
            )
            .await;
        match answer {
            Ok(a) if a.status == 503 || a.status == 504 => {
                last = format!("{}: {}", a.status, String::from_utf8_lossy(&a.body));
            }
            Ok(a) => return Ok(a),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("gave up after {CREATE_ATTEMPTS} attempts: {last}"))
}

/// What a set-up's tasks share: when it began, the next index to take, how many are done, and
/// the progress bar that shows it.
struct SetUp {
    began: Instant,
    next: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    bar: Progress,
}

impl SetUp {
    fn start(range: &std::ops::Range<usize>, progress: bool, verb: &'static str) -> SetUp {
        let done = Arc::new(AtomicU64::new(0));
        let total = range.len() as u64;
        let bar = {
            let done = done.clone();
            Progress::start(progress, "catalog", total, move || {
                let n = done.load(Ordering::Relaxed);
                (n, format!("{n} of {total} products {verb}"))
            })
        };
        SetUp {
            began: Instant::now(),
            next: Arc::new(AtomicU64::new(range.start as u64)),
            done,
            bar,
        }
    }
}

/// Wait for every set-up task (the first error is the answer), end the progress bar, then wait
/// until every server shows the last product of `range`.
async fn finish(
    mut tasks: tokio::task::JoinSet<Result<(), String>>,
    bar: Progress,
    target: &Target,
    catalog: &Catalog,
    range: &std::ops::Range<usize>,
) -> Result<(), String> {
    let mut outcome = Ok(());
    while let Some(result) = tasks.join_next().await {
        let result = result.expect("a set-up task does not panic");
        if outcome.is_ok() {
            outcome = result;
        }
    }
    bar.finish();
    outcome?;
    if !range.is_empty() {
        wait_visible(target, &catalog.id(range.end - 1)).await?;
    }
    Ok(())
}

/// Wait until every server of `target` answers a view of `id`.
pub async fn wait_visible(target: &Target, id: &str) -> Result<(), String> {
    let deadline = Instant::now() + VISIBLE_TIMEOUT;
    for url in &target.urls {
        let mut connection = target.connection(url, Duration::from_secs(10))?;
        loop {
            match connection.get(&format!("/v1/products/{id}")).await {
                Ok(answer) if answer.status == 200 => break,
                _ if Instant::now() > deadline => {
                    return Err(format!(
                        "{url} does not show {id} after {VISIBLE_TIMEOUT:?}"
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    Ok(())
}
