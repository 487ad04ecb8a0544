//! A client of the public API (`/v1`), served by every gateway.
//!
//! [`ShopClient`] knows several gateways and fails over between them. Every write carries an
//! idempotency key (generated unless given) and is retried with the **same key** after an
//! overload, an unreachable gateway or an unknown outcome, so a retry never buys twice. Errors
//! keep what a caller may conclude apart: [`ShopError::Rejected`] and [`ShopError::Unavailable`]
//! mean definitely not applied, [`ShopError::OutcomeUnknown`] means it may have been.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use flashstock_api::{
    BulkRequest, BulkResponse, CartRequest, CreateProductRequest, ErrorBody, ErrorCode,
    HoldReleased, HoldResponse, HoldView, Line, OrderChanged, OrderView, ProductChanged,
    ProductList, ProductView, PurchaseRequest, PurchaseResponse, RestockRequest, SetLimitRequest,
    IDEMPOTENCY_KEY_HEADER, ORDER_TOKEN_HEADER, STALENESS_HEADER, WIRE_VERSION_HEADER,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopError {
    /// The gateway answered with a definite refusal: bad input, unknown product, sold out, key
    /// reused, unauthorized. Nothing was applied; retrying the same request changes nothing.
    #[error("{code} ({status}): {message}")]
    Rejected {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// No gateway could apply the request in the retry budget (unreachable, overloaded, no
    /// leader). Definitely not applied.
    #[error("unavailable: {message}")]
    Unavailable { message: String },
    /// The request may or may not have been applied. Retry with the same key to learn which.
    #[error("outcome unknown: {message}")]
    OutcomeUnknown { message: String },
}

impl ShopError {
    /// True when the request was definitely not applied.
    pub fn is_definite(&self) -> bool {
        !matches!(self, ShopError::OutcomeUnknown { .. })
    }

    /// The stable error code: the server's, or `unavailable` / `outcome_unknown`.
    pub fn code(&self) -> ErrorCode {
        match self {
            ShopError::Rejected { code, .. } => code.clone(),
            ShopError::Unavailable { .. } => ErrorCode::Unavailable,
            ShopError::OutcomeUnknown { .. } => ErrorCode::OutcomeUnknown,
        }
    }
}

/// Default bound of one HTTP exchange of a [`ShopClient`].
const EXCHANGE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// How hard a call tries before it gives up. A call retries one idempotency key for at most
/// [`RetryPolicy::horizon`], which must stay within the cluster's `limits.client_retry_horizon_ms`
/// (the idempotency window outlasts it): a retry after the key is forgotten could apply twice.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call, over all gateways.
    pub attempts: usize,
    /// Pause before the second attempt; doubles up to `backoff_max`.
    pub backoff: Duration,
    pub backoff_max: Duration,
}

impl RetryPolicy {
    /// The longest a call keeps retrying one key when each exchange takes at most `exchange`.
    pub fn horizon(&self, exchange: Duration) -> Duration {
        let attempts = self.attempts.max(1) as u32;
        (exchange + self.backoff_max) * attempts
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            backoff: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// A read's answer with where it came from: the gateway that served it and the staleness it
/// declared ([`STALENESS_HEADER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served<T> {
    pub value: T,
    /// The base URL of the gateway that answered, as given to [`ShopClient::new`].
    pub gateway: String,
    /// The answer's `x-staleness-ms`, verbatim (milliseconds, or `unknown`); `None` when the
    /// answer had none.
    pub staleness: Option<String>,
}

/// One attempt's result, classified.
enum Attempt<T> {
    Done(T),
    /// A definite answer that retrying cannot change.
    Final(ShopError),
    /// Not applied; another attempt may succeed.
    RetryNotApplied(String),
    /// May have been applied; another attempt with the same key tells.
    RetryUnknown(String),
}

/// A client of the shop's public API over a set of gateways.
pub struct ShopClient {
    http: reqwest::Client,
    timeout: Duration,
    tls: Option<crate::TlsConfig>,
    gateways: Vec<String>,
    /// The gateway to try first: the last that answered.
    preferred: AtomicUsize,
    admin_token: Option<String>,
    retry: RetryPolicy,
}

/// A fresh idempotency key: 128 bits from the operating system's random source, as hex.
///
/// A key must be unguessable, not only unique: a write replayed with a key answers with the
/// first outcome, and an order's answer carries its token, which can cancel it.
pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl ShopClient {
    /// `gateways` are base URLs, e.g. `http://127.0.0.1:8081`.
    pub fn new(gateways: Vec<String>) -> ShopClient {
        assert!(!gateways.is_empty(), "at least one gateway");
        let http = http_client(EXCHANGE_TIMEOUT_DEFAULT, None, None);
        let gateways = gateways
            .into_iter()
            .map(|g| g.trim_end_matches('/').to_owned())
            .collect();
        ShopClient {
            http,
            timeout: EXCHANGE_TIMEOUT_DEFAULT,
            tls: None,
            gateways,
            preferred: AtomicUsize::new(0),
            admin_token: None,
            retry: RetryPolicy::default(),
        }
    }

    /// Send this bearer token on admin calls.
    pub fn with_admin_token(mut self, token: impl Into<String>) -> ShopClient {
        self.admin_token = Some(token.into());
        self
    }

    /// Give each HTTP exchange at most `timeout` (default 10 s). Keep
    /// [`RetryPolicy::horizon`] of it within the cluster's `limits.client_retry_horizon_ms`.
    pub fn with_timeout(mut self, timeout: Duration) -> ShopClient {
        self.timeout = timeout;
        self.http = http_client(timeout, None, self.tls.as_ref());
        self
    }

    /// Reach `https://` gateways with this TLS config (e.g. [`flashstock_tls::trusting`] the
    /// CA of the gateways' certificates).
    pub fn with_tls(mut self, tls: Option<crate::TlsConfig>) -> ShopClient {
        self.tls = tls;
        self.http = http_client(self.timeout, None, self.tls.as_ref());
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> ShopClient {
        self.retry = retry;
        self
    }

    pub fn gateways(&self) -> &[String] {
        &self.gateways
    }

    pub async fn products(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ProductList, ShopError> {
        let mut path = format!("/v1/products?limit={limit}");
        if let Some(after) = after {
            path.push_str(&format!("&after={}", segment(after)));
        }
        self.read(&path).await
    }

    /// A product, with what is held and its limit per customer, as this client's gateway's
    /// replica has it.
    pub async fn product(&self, id: &str) -> Result<ProductView, ShopError> {
        self.read(&format!("/v1/products/{}", segment(id))).await
    }

    /// A product, with the gateway that served it and the staleness it declared: a local view
    /// of that gateway's replica, or a linearizable one.
    pub async fn product_served(
        &self,
        id: &str,
        linearizable: bool,
    ) -> Result<Served<ProductView>, ShopError> {
        let query = if linearizable {
            "?consistency=linearizable"
        } else {
            ""
        };
        let path = format!("/v1/products/{}{query}", segment(id));
        self.with_failover(|gateway| {
            let request = self.http.get(format!("{gateway}{path}"));
            async move {
                let sent = request.send().await;
                let staleness = sent.as_ref().ok().and_then(|response| {
                    let value = response.headers().get(STALENESS_HEADER)?;
                    Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
                });
                match classify(sent, false).await {
                    Attempt::Done(value) => Attempt::Done(Served {
                        value,
                        gateway,
                        staleness,
                    }),
                    Attempt::Final(e) => Attempt::Final(e),
                    Attempt::RetryNotApplied(m) => Attempt::RetryNotApplied(m),
                    Attempt::RetryUnknown(m) => Attempt::RetryUnknown(m),
                }
            }
        })
        .await
    }

    /// A product at least as fresh as everything committed when the call started.
    pub async fn product_linearizable(&self, id: &str) -> Result<ProductView, ShopError> {
        self.read(&format!(
            "/v1/products/{}?consistency=linearizable",
            segment(id)
        ))
        .await
    }

    /// An order with its lines, status and hold, shown its token (the purchase answer's
    /// `order.token`). Without the right token the gateway answers `unknown_order`, as for an
    /// order that does not exist.
    pub async fn order(&self, id: u64, token: &str) -> Result<OrderView, ShopError> {
        self.read(&format!("/v1/orders/{id}?token={}", segment(token)))
            .await
    }

    /// Buy `quantity` items with a fresh idempotency key.
    pub async fn purchase(
        &self,
        product: &str,
        quantity: u32,
    ) -> Result<PurchaseResponse, ShopError> {
        self.purchase_with_key(&new_key(), product, quantity).await
    }

    /// Buy with a given key: calling this again with the same key returns the same order.
    pub async fn purchase_with_key(
        &self,
        key: &str,
        product: &str,
        quantity: u32,
    ) -> Result<PurchaseResponse, ShopError> {
        let path = format!("/v1/products/{}/purchase", segment(product));
        self.write(
            &path,
            key,
            &PurchaseRequest {
                quantity,
                customer: None,
            },
            false,
        )
        .await
    }

    pub async fn create_product(
        &self,
        request: &CreateProductRequest,
    ) -> Result<ProductChanged, ShopError> {
        self.create_product_with_key(&new_key(), request).await
    }

    /// Create with a given key: after an unknown outcome, call again with the same key.
    pub async fn create_product_with_key(
        &self,
        key: &str,
        request: &CreateProductRequest,
    ) -> Result<ProductChanged, ShopError> {
        self.write("/v1/admin/products", key, request, true).await
    }

    pub async fn restock(&self, product: &str, quantity: u64) -> Result<ProductChanged, ShopError> {
        self.restock_with_key(&new_key(), product, quantity).await
    }

    /// Restock with a given key: a retry with the same key never adds the stock twice.
    pub async fn restock_with_key(
        &self,
        key: &str,
        product: &str,
        quantity: u64,
    ) -> Result<ProductChanged, ShopError> {
        let path = format!("/v1/admin/products/{}/restock", segment(product));
        self.write(&path, key, &RestockRequest { quantity }, true)
            .await
    }

    /// Creates and restocks of many products as one write (`POST /v1/admin/products/bulk`),
    /// with a key of the caller's: after an unknown outcome, call again with the same key and
    /// the same items, and no item is applied twice.
    pub async fn bulk_with_key(
        &self,
        key: &str,
        request: &BulkRequest,
    ) -> Result<BulkResponse, ShopError> {
        self.write("/v1/admin/products/bulk", key, request, true)
            .await
    }

    // ---- checkout (cluster version 2) ----

    /// Buy as `customer` (required for a product with a limit per customer), with a given key.
    pub async fn purchase_as_with_key(
        &self,
        key: &str,
        product: &str,
        quantity: u32,
        customer: Option<&str>,
    ) -> Result<PurchaseResponse, ShopError> {
        let path = format!("/v1/products/{}/purchase", segment(product));
        let body = PurchaseRequest {
            quantity,
            customer: customer.map(str::to_owned),
        };
        self.write(&path, key, &body, false).await
    }

    /// Hold the stock of `lines` for the buyer while it pays, with a fresh key: the answer's
    /// `token` reads, confirms and releases the hold.
    pub async fn hold(
        &self,
        lines: Vec<Line>,
        customer: Option<&str>,
    ) -> Result<HoldResponse, ShopError> {
        self.hold_with_key(&new_key(), lines, customer).await
    }

    /// Hold with a given key: a retry with the same key and lines returns the same hold and
    /// token.
    pub async fn hold_with_key(
        &self,
        key: &str,
        lines: Vec<Line>,
        customer: Option<&str>,
    ) -> Result<HoldResponse, ShopError> {
        let body = cart(lines, customer);
        self.write("/v1/holds", key, &body, false).await
    }

    /// A hold, shown its token. Without the right token the gateway answers `unknown_hold`, as
    /// for a hold that does not exist.
    pub async fn hold_status(&self, id: u64, token: &str) -> Result<HoldView, ShopError> {
        self.read(&format!("/v1/holds/{id}?token={}", segment(token)))
            .await
    }

    /// Confirm a hold (the payment succeeded): the order it becomes. In a real shop, the
    /// shop's backend calls this after it checked the payment, not the buyer's browser.
    pub async fn confirm_hold(&self, id: u64, token: &str) -> Result<OrderChanged, ShopError> {
        self.confirm_hold_with_key(&new_key(), id, token).await
    }

    pub async fn confirm_hold_with_key(
        &self,
        key: &str,
        id: u64,
        token: &str,
    ) -> Result<OrderChanged, ShopError> {
        let path = format!("/v1/holds/{id}/confirm");
        self.send_write(reqwest::Method::POST, &path, key, None, false, Some(token))
            .await
    }

    /// Release a hold (the payment failed): its stock is available again.
    pub async fn release_hold(&self, id: u64, token: &str) -> Result<HoldReleased, ShopError> {
        self.release_hold_with_key(&new_key(), id, token).await
    }

    pub async fn release_hold_with_key(
        &self,
        key: &str,
        id: u64,
        token: &str,
    ) -> Result<HoldReleased, ShopError> {
        let path = format!("/v1/holds/{id}/release");
        self.send_write(reqwest::Method::POST, &path, key, None, false, Some(token))
            .await
    }

    /// Buy every line of a cart, or none, with a fresh key: one order.
    pub async fn checkout(
        &self,
        lines: Vec<Line>,
        customer: Option<&str>,
    ) -> Result<OrderChanged, ShopError> {
        self.checkout_with_key(&new_key(), lines, customer).await
    }

    pub async fn checkout_with_key(
        &self,
        key: &str,
        lines: Vec<Line>,
        customer: Option<&str>,
    ) -> Result<OrderChanged, ShopError> {
        let body = cart(lines, customer);
        self.write("/v1/checkout", key, &body, false).await
    }

    /// Cancel an order as its owner (within the cluster's `checkout.cancel_window_ms`).
    pub async fn cancel_order(&self, id: u64, token: &str) -> Result<OrderChanged, ShopError> {
        self.cancel_order_with_key(&new_key(), id, token).await
    }

    pub async fn cancel_order_with_key(
        &self,
        key: &str,
        id: u64,
        token: &str,
    ) -> Result<OrderChanged, ShopError> {
        let path = format!("/v1/orders/{id}/cancel");
        self.send_write(reqwest::Method::POST, &path, key, None, false, Some(token))
            .await
    }

    /// Admin: set (`Some`) or remove (`None`) a product's limit per customer.
    pub async fn set_limit(
        &self,
        product: &str,
        limit_per_customer: Option<u32>,
    ) -> Result<ProductChanged, ShopError> {
        self.set_limit_with_key(&new_key(), product, limit_per_customer)
            .await
    }

    pub async fn set_limit_with_key(
        &self,
        key: &str,
        product: &str,
        limit_per_customer: Option<u32>,
    ) -> Result<ProductChanged, ShopError> {
        let path = format!("/v1/admin/products/{}/limit", segment(product));
        let body = serde_json::to_vec(&SetLimitRequest { limit_per_customer })
            .expect("request bodies serialize");
        self.send_write(reqwest::Method::PUT, &path, key, Some(body), true, None)
            .await
    }

    /// Admin: cancel any order, without its token or a window.
    pub async fn admin_cancel_order(&self, id: u64) -> Result<OrderChanged, ShopError> {
        self.admin_cancel_order_with_key(&new_key(), id).await
    }

    pub async fn admin_cancel_order_with_key(
        &self,
        key: &str,
        id: u64,
    ) -> Result<OrderChanged, ShopError> {
        let path = format!("/v1/admin/orders/{id}/cancel");
        self.send_write(reqwest::Method::POST, &path, key, None, true, None)
            .await
    }

    /// Admin: confirm any hold, without its token.
    pub async fn admin_confirm_hold_with_key(
        &self,
        key: &str,
        id: u64,
    ) -> Result<OrderChanged, ShopError> {
        let path = format!("/v1/admin/holds/{id}/confirm");
        self.send_write(reqwest::Method::POST, &path, key, None, true, None)
            .await
    }

    /// Admin: release any hold, without its token.
    pub async fn admin_release_hold_with_key(
        &self,
        key: &str,
        id: u64,
    ) -> Result<HoldReleased, ShopError> {
        let path = format!("/v1/admin/holds/{id}/release");
        self.send_write(reqwest::Method::POST, &path, key, None, true, None)
            .await
    }

    async fn read<T: DeserializeOwned>(&self, path: &str) -> Result<T, ShopError> {
        self.with_failover(|gateway| {
            let request = self.http.get(format!("{gateway}{path}"));
            async move { classify(request.send().await, false).await }
        })
        .await
    }

    async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        body: &B,
        admin: bool,
    ) -> Result<T, ShopError> {
        let body = serde_json::to_vec(body).expect("request bodies serialize");
        self.send_write(reqwest::Method::POST, path, key, Some(body), admin, None)
            .await
    }

    /// A write with `key`, retried with the same key: a JSON `body` if any, the admin token
    /// when `admin`, and a record's `token` in [`ORDER_TOKEN_HEADER`] (not in the URL, which
    /// access logs keep).
    async fn send_write<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Vec<u8>>,
        admin: bool,
        token: Option<&str>,
    ) -> Result<T, ShopError> {
        self.with_failover(|gateway| {
            let mut request = self
                .http
                .request(method.clone(), format!("{gateway}{path}"))
                .header(IDEMPOTENCY_KEY_HEADER, key);
            if let Some(body) = &body {
                request = request
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            if let Some(token) = token {
                request = request.header(ORDER_TOKEN_HEADER, token);
            }
            if admin {
                if let Some(token) = &self.admin_token {
                    request = request.bearer_auth(token);
                }
            }
            async move { classify(request.send().await, true).await }
        })
        .await
    }

    /// Run attempts over the gateways, starting at the preferred one, until a definite answer or
    /// the retry budget is spent.
    async fn with_failover<T, F, Fut>(&self, attempt: F) -> Result<T, ShopError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Attempt<T>>,
    {
        let mut backoff = self.retry.backoff;
        let mut maybe_applied = false;
        let mut last = String::new();
        let first = self.preferred.load(Ordering::Relaxed);
        for n in 0..self.retry.attempts.max(1) {
            let index = (first + n) % self.gateways.len();
            match attempt(self.gateways[index].clone()).await {
                Attempt::Done(value) => {
                    self.preferred.store(index, Ordering::Relaxed);
                    return Ok(value);
                }
                // A refusal of this try (429 `rate_limited`, say) says nothing of an earlier try
                // whose answer was lost; only a committed rejection is the key's own outcome.
                Attempt::Final(error)
                    if maybe_applied && !error.code().is_committed_rejection() =>
                {
                    return Err(ShopError::OutcomeUnknown {
                        message: format!("{last}; then {error}"),
                    });
                }
                Attempt::Final(error) => return Err(error),
                Attempt::RetryNotApplied(message) => last = message,
                Attempt::RetryUnknown(message) => {
                    maybe_applied = true;
                    last = message;
                }
            }
            // After a pass over every gateway, wait before the next.
            if (n + 1) % self.gateways.len() == 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.retry.backoff_max);
            }
        }
        Err(if maybe_applied {
            ShopError::OutcomeUnknown { message: last }
        } else {
            ShopError::Unavailable { message: last }
        })
    }
}

fn cart(lines: Vec<Line>, customer: Option<&str>) -> CartRequest {
    CartRequest {
        lines,
        customer: customer.map(str::to_owned),
    }
}

/// Classify one HTTP exchange. `write`: whether a lost answer may mean an applied write.
async fn classify<T: DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
    write: bool,
) -> Attempt<T> {
    let lost = |message: String| {
        if write {
            Attempt::RetryUnknown(message)
        } else {
            Attempt::RetryNotApplied(message)
        }
    };
    let response = match sent {
        Ok(response) => response,
        // Never connected: the request was not sent.
        Err(e) if e.is_connect() => return Attempt::RetryNotApplied(describe(&e)),
        Err(e) => return lost(describe(&e)),
    };
    let status = response.status();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return lost(describe(&e)),
    };
    if status.is_success() {
        return match serde_json::from_slice(&bytes) {
            Ok(value) => Attempt::Done(value),
            // The server succeeded at something: for a write, it may well be applied.
            Err(e) if write => Attempt::RetryUnknown(format!("undecodable answer: {e}")),
            Err(e) => Attempt::Final(ShopError::Rejected {
                status: status.as_u16(),
                code: ErrorCode::InvalidResponse,
                message: e.to_string(),
            }),
        };
    }
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
        code: ErrorCode::parse(status.as_str()),
        message: String::from_utf8_lossy(&bytes).into_owned(),
    });
    let message = format!("{}: {}", body.code, body.message);
    if status.as_u16() == 504 || body.code == ErrorCode::OutcomeUnknown {
        return Attempt::RetryUnknown(message);
    }
    match status.as_u16() {
        // Overloaded, no leader, not ready: nothing applied, try again or elsewhere.
        503 | 502 => Attempt::RetryNotApplied(message),
        500 => lost(message),
        _ => Attempt::Final(ShopError::Rejected {
            status: status.as_u16(),
            code: body.code,
            message: body.message,
        }),
    }
}

/// The HTTP client of every call this crate makes: persistent connections without Nagle's
/// delay, a whole-exchange `timeout`, optionally a fixed source address, and the TLS config
/// that `https://` URLs use (without one, only plaintext URLs can be reached).
pub(crate) fn http_client(
    timeout: Duration,
    local: Option<std::net::IpAddr>,
    tls: Option<&crate::TlsConfig>,
) -> reqwest::Client {
    http_builder(Duration::from_secs(2).min(timeout), local, tls)
        .timeout(timeout)
        .build()
        .expect("a client of a rustls config always builds")
}

/// The connection settings every HTTP client of the project shares (this crate's, the nodes'
/// Raft network, the test clusters'): persistent connections without Nagle's delay, dropped
/// after [`crate::POOL_IDLE_TIMEOUT`] idle, `connect_timeout`, optionally a fixed source
/// address, and `tls` for `https://` URLs (without it, only plaintext URLs can be reached).
/// Every request says which internal wire version it speaks ([`WIRE_VERSION_HEADER`]): the
/// base version, which every release takes ([`flashstock_api::WIRE_VERSION_BASE`]).
pub fn http_builder(
    connect_timeout: Duration,
    local: Option<std::net::IpAddr>,
    tls: Option<&crate::TlsConfig>,
) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        WIRE_VERSION_HEADER,
        flashstock_api::WIRE_VERSION_BASE.into(),
    );
    let builder = reqwest::Client::builder()
        .default_headers(headers)
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .pool_idle_timeout(crate::POOL_IDLE_TIMEOUT)
        .local_address(local);
    match tls {
        Some(tls) => builder.use_preconfigured_tls(tls.as_ref().clone()),
        None => builder,
    }
}

/// `request`, an internal call, for Raft group `group`: group 0 is a call without a group, which
/// every release takes; another names it ([`flashstock_api::GROUP_HEADER`]) and says the wire
/// version that has groups, so that a release without them refuses it instead of taking it for
/// group 0. The one place an HTTP call names its group.
pub fn for_group(request: reqwest::RequestBuilder, group: u16) -> reqwest::RequestBuilder {
    match group {
        0 => request,
        _ => request
            .header(flashstock_api::GROUP_HEADER, group)
            .header(WIRE_VERSION_HEADER, flashstock_api::WIRE_VERSION_GROUPS),
    }
}

/// Percent-encode one path segment (or query value): every byte but ASCII letters, digits and
/// `-_.~`, so an id can never change the route it goes to.
pub fn segment(raw: &str) -> String {
    let mut encoded = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// An error with its chain of causes: reqwest's own message rarely says what went wrong.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(segment("tee-shirt_1"), "tee-shirt_1");
        assert_eq!(segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    /// Group 0's calls are the calls of a release without groups, default wire version
    /// included; another group's name the group and the version that has groups.
    #[test]
    fn a_call_names_its_group_and_the_version_that_has_groups() {
        let http = http_builder(Duration::from_secs(1), None, None)
            .build()
            .unwrap();
        let headers = |group| {
            let request = for_group(http.post("http://node/raft/vote"), group);
            request.build().unwrap().headers().clone()
        };
        let group0 = headers(0);
        assert_eq!(group0.get(flashstock_api::GROUP_HEADER), None);
        let group5 = headers(5);
        assert_eq!(group5[flashstock_api::GROUP_HEADER], "5");
        assert_eq!(
            group5[WIRE_VERSION_HEADER],
            flashstock_api::WIRE_VERSION_GROUPS.to_string().as_str()
        );
    }

    /// After a try whose outcome was lost, a retry refused for itself (429) leaves the outcome
    /// unknown; a committed rejection is the key's outcome.
    #[tokio::test]
    async fn a_refused_retry_after_a_lost_answer_is_still_unknown() {
        let client = ShopClient::new(vec!["http://gateway".into()]).with_retry(RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(1),
            backoff_max: Duration::from_millis(1),
        });
        let refused = |code: ErrorCode| ShopError::Rejected {
            status: 429,
            code,
            message: "refused".into(),
        };
        for (code, definite) in [
            (ErrorCode::RateLimited, false),
            (ErrorCode::InsufficientStock, true),
        ] {
            let tries = std::sync::atomic::AtomicUsize::new(0);
            let answer: Result<(), ShopError> = client
                .with_failover(|_| {
                    let n = tries.fetch_add(1, Ordering::Relaxed);
                    let code = code.clone();
                    async move {
                        match n {
                            0 => Attempt::RetryUnknown("timed out".into()),
                            _ => Attempt::Final(refused(code)),
                        }
                    }
                })
                .await;
            assert_eq!(answer.unwrap_err().is_definite(), definite, "{code}");
        }
    }

    #[test]
    fn keys_are_unique() {
        assert_ne!(new_key(), new_key());
    }

    /// A key retried past the idempotency window could buy twice: by default a call gives its
    /// key up well within the cluster's default retry horizon, which the window outlasts.
    #[test]
    fn default_retries_end_within_the_cluster_retry_horizon() {
        let horizon = RetryPolicy::default().horizon(EXCHANGE_TIMEOUT_DEFAULT);
        let cluster = cluster_config::defaults::DEFAULT_CLIENT_RETRY_HORIZON_MS;
        assert!(horizon.as_millis() < u128::from(cluster), "{horizon:?}");
    }
}
