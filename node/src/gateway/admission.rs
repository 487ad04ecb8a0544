//! Per-client rate limits at the gateway's edge, before any work is done for a request.
//!
//! Policy:
//! - **Who a client is.** The TCP peer's address, as the listener accepted it
//!   (`ConnectInfo<SocketAddr>`); an IPv6 client counts by its /64, which one subscriber holds
//!   whole. `X-Forwarded-For` is never read: there is no HTTP proxy in front of the gateways (an
//!   L4 balancer keeps the source address), and a header any client writes would let each
//!   request choose who it is.
//! - **Purchases and views are counted apart**, each in a GCRA bucket per client (a buyer's
//!   checkout writes, holds, their confirmations and releases, carts and cancellations, count
//!   as purchases)
//!   (`limits.client_purchase_rate_per_s` and `_burst_max`, `limits.client_view_rate_per_s` and
//!   `_burst_max`), so a scraper's views never cost it its purchases, nor the reverse. Over
//!   the limit: 429 `rate_limited` with `Retry-After`, before the body is read. `/v1/health`,
//!   `/v1/ready`, `/v1/openapi.json` and the admin routes (behind their token) are not counted.
//! - **Trusted sources** (`limits.trusted_sources`: a shop's backend, a NAT, the load
//!   generator) speak for many people from one address, so no per-address limit fits them: they
//!   are exempt. A purchase of theirs that names a `customer` is limited per customer instead, at
//!   the purchase rate, since their backend vouches for who the customer is. From an untrusted
//!   address the customer is only what the client typed: limiting by it would let anyone who
//!   knows `alice@example.com` lock Alice out, and would not slow a sender who changes it each
//!   time, whom the address limit already holds.
//! - **Bounded memory.** Each table holds at most `limits.rate_clients_max` clients, in shards
//!   chosen by a hash keyed at random at start (nobody can aim at one shard). A new client is
//!   always admitted and tracked; when its shard is full, room is made by forgetting every
//!   client whose allowance has refilled (it carries nothing), else the one with the most
//!   allowance left. Forgetting a client only hands it a full allowance, so filling the tables
//!   with sprayed addresses locks nobody out; and a flooder, having no allowance left, is the
//!   last one forgotten.
//!
//! The queue behind the edge is shared fairly too: see [`super::forwarder`].

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{Method, StatusCode};
use cluster_config::{LimitsSection, SourceRange};
use flashstock_api::ErrorCode;
use tokio::time::Instant;

use super::forwarder::{Client, ClientId};
use super::Gateway;
use crate::api_error::ApiError;

/// Shards of each rate table: enough that two cores rarely wait on the same lock.
const SHARDS: usize = 64;

/// The client of a request, as the edge identified it; put in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    pub ip: IpAddr,
    /// In `limits.trusted_sources`.
    pub trusted: bool,
}

/// What a request is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Purchase,
    View,
}

/// The edge's rate tables and trusted sources.
pub struct Admission {
    purchases: RateTable,
    views: RateTable,
    /// Purchases of trusted sources, per customer.
    customers: RateTable,
    trusted: Vec<SourceRange>,
    /// Hashes customer references into table keys; keyed at random, so no chosen reference
    /// collides with another on purpose.
    customer_hasher: RandomState,
}

impl Admission {
    pub fn new(limits: &LimitsSection) -> Admission {
        let purchase = || {
            RateTable::new(
                limits.client_purchase_rate_per_s,
                limits.client_purchase_burst_max,
                limits.rate_clients_max,
            )
        };
        Admission {
            purchases: purchase(),
            views: RateTable::new(
                limits.client_view_rate_per_s,
                limits.client_view_burst_max,
                limits.rate_clients_max,
            ),
            customers: purchase(),
            trusted: limits.trusted_sources.clone(),
            customer_hasher: RandomState::new(),
        }
    }

    /// Who `peer` is; one scan of the trusted ranges.
    pub fn source(&self, peer: IpAddr) -> Source {
        let ip = canonical(peer);
        Source {
            ip,
            trusted: self.trusted.iter().any(|range| range.contains(ip)),
        }
    }

    /// Count a request of `class` from `source`; refused when over its limit.
    fn admit(&self, source: Source, class: Class, now: Instant) -> Result<(), ApiError> {
        if source.trusted {
            return Ok(());
        }
        let (table, what) = match class {
            Class::Purchase => (&self.purchases, "purchases"),
            Class::View => (&self.views, "views"),
        };
        table
            .check(address_key(source.ip), now)
            .map_err(|wait| rate_limited(wait, format!("too many {what} from {}", source.ip)))
    }

    /// The client a purchase from `source` counts against in the forwarder's queue, after
    /// counting it against its customer when a trusted source names one.
    pub fn purchaser(
        &self,
        source: Source,
        customer: Option<&str>,
        now: Instant,
    ) -> Result<Client, ApiError> {
        match (source.trusted, customer) {
            (true, Some(customer)) => {
                let key = self.customer_hasher.hash_one(customer);
                self.customers
                    .check(u128::from(key), now)
                    .map_err(|wait| rate_limited(wait, "too many purchases for this customer"))?;
                Ok(Client {
                    id: ClientId::Customer(key),
                    share_exempt: false,
                })
            }
            // One big sharer: it speaks for many, and the whole queue bounds it.
            (true, None) => Ok(Client {
                id: ClientId::Source(address_key(source.ip)),
                share_exempt: true,
            }),
            (false, _) => Ok(Client {
                id: ClientId::Source(address_key(source.ip)),
                share_exempt: false,
            }),
        }
    }
}

/// What every public route does first: identify the client (its [`Source`], put in the request's
/// extensions), count the request, and refuse it with 429 before anything else when it is over
/// its limit. `route` is the template the request matched.
pub fn admit(gateway: &Gateway, route: &str, request: &mut Request) -> Result<(), ApiError> {
    // The server puts every request's peer there (`crate::server`).
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            "the request's peer is unknown",
        ));
    };
    let source = gateway.admission.source(peer.ip());
    if let Some(class) = classify(request.method(), route) {
        gateway.admission.admit(source, class, Instant::now())?;
    }
    request.extensions_mut().insert(source);
    Ok(())
}

/// What a request to the route `path` counts as; `None` is not counted.
fn classify(method: &Method, path: &str) -> Option<Class> {
    match path {
        // Purchases, and the checkout writes a buyer sends: counted as purchases.
        "/v1/products/{id}/purchase"
        | "/v1/holds"
        | "/v1/holds/{id}/confirm"
        | "/v1/holds/{id}/release"
        | "/v1/checkout"
        | "/v1/orders/{id}/cancel"
            if method == Method::POST =>
        {
            Some(Class::Purchase)
        }
        "/v1/health" | "/v1/ready" | "/v1/openapi.json" => None,
        admin if admin.starts_with("/v1/admin/") => None,
        _ if method == Method::GET || method == Method::HEAD => Some(Class::View),
        _ => None,
    }
}

/// 429 `rate_limited`, with the whole seconds until the client's next request would pass.
fn rate_limited(wait: Duration, message: impl Into<String>) -> ApiError {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = u32::try_from(seconds.max(1)).unwrap_or(u32::MAX);
    ApiError {
        retry_after_seconds: Some(seconds),
        ..ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("{}; retry in {seconds} s", message.into()),
        )
    }
}

/// An IPv4-mapped IPv6 address as IPv4; others unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// The table key of a client address: IPv4 as its IPv4-mapped IPv6 form, IPv6 by its /64.
fn address_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !u128::from(u64::MAX),
    }
}

/// GCRA buckets, one per client, in a bounded, sharded table.
///
/// A client's state is one number: its theoretical arrival time (TAT), in nanoseconds since the
/// table's epoch. A request at `now` passes when `max(TAT, now) - now <= tolerance`, and moves
/// TAT one interval (`1 / rate`) on; `tolerance = interval x (burst - 1)` lets `burst` requests
/// through at once. `TAT <= now` means a full allowance: such an entry carries nothing.
struct RateTable {
    shards: Box<[Mutex<HashMap<u128, u64>>]>,
    /// Most clients in one shard.
    shard_clients_max: usize,
    interval_ns: u64,
    tolerance_ns: u64,
    hasher: RandomState,
    epoch: Instant,
}

impl RateTable {
    fn new(rate_per_s: u32, burst_max: u32, clients_max: usize) -> RateTable {
        // Validated: rate from 1 to 10^6, burst from 1 to 10^6, so no overflow below.
        let interval_ns = 1_000_000_000 / u64::from(rate_per_s.max(1));
        let tolerance_ns = interval_ns * u64::from(burst_max.max(1) - 1);
        RateTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            shard_clients_max: (clients_max / SHARDS).max(1),
            interval_ns,
            tolerance_ns,
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Count one request of `key` at `now`; `Err` says how long until one would pass.
    fn check(&self, key: u128, now: Instant) -> Result<(), Duration> {
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let shard = (self.hasher.hash_one(key) % SHARDS as u64) as usize;
        // A panic while holding the lock leaves numbers, never a broken invariant.
        let mut clients = self.shards[shard]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(tat) = clients.get_mut(&key) {
            let start = (*tat).max(now_ns);
            let ahead = start - now_ns;
            if ahead > self.tolerance_ns {
                return Err(Duration::from_nanos(ahead - self.tolerance_ns));
            }
            *tat = start + self.interval_ns;
            return Ok(());
        }
        if clients.len() >= self.shard_clients_max {
            self.make_room(&mut clients, now_ns);
        }
        clients.insert(key, now_ns + self.interval_ns);
        debug_assert!(clients.len() <= self.shard_clients_max);
        Ok(())
    }

    /// Forget every client with a full allowance; if none has one, the one closest to it.
    fn make_room(&self, clients: &mut HashMap<u128, u64>, now_ns: u64) {
        clients.retain(|_, tat| *tat > now_ns);
        if clients.len() < self.shard_clients_max {
            return;
        }
        let most_allowance = clients
            .iter()
            .min_by_key(|(_, tat)| **tat)
            .map(|(key, _)| *key);
        if let Some(key) = most_allowance {
            clients.remove(&key);
        }
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(trusted: &[&str]) -> LimitsSection {
        LimitsSection {
            client_purchase_rate_per_s: 2,
            client_purchase_burst_max: 3,
            client_view_rate_per_s: 10,
            client_view_burst_max: 5,
            trusted_sources: trusted.iter().map(|t| t.parse().unwrap()).collect(),
            ..LimitsSection::default()
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_a_retry_after() {
        let table = RateTable::new(2, 3, 1024);
        let start = Instant::now();
        for _ in 0..3 {
            table.check(1, start).expect("within the burst");
        }
        let wait = table.check(1, start).expect_err("over the burst");
        assert_eq!(wait, Duration::from_millis(500), "one interval at 2/s");
        assert!(table.check(2, start).is_ok(), "another client is apart");
        table
            .check(1, start + Duration::from_millis(500))
            .expect("one more after one interval");
        assert!(table.check(1, start + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn purchases_and_views_are_counted_apart_and_trusted_sources_are_exempt() {
        let admission = Admission::new(&limits(&["10.0.0.0/8"]));
        let now = Instant::now();
        let flooder = admission.source(ip("203.0.113.9"));
        assert!(!flooder.trusted);
        for _ in 0..3 {
            admission.admit(flooder, Class::Purchase, now).unwrap();
        }
        let refused = admission.admit(flooder, Class::Purchase, now).unwrap_err();
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.code, ErrorCode::RateLimited);
        assert_eq!(refused.retry_after_seconds, Some(1));
        admission
            .admit(flooder, Class::View, now)
            .expect("views are counted apart");
        let backend = admission.source(ip("::ffff:10.1.2.3"));
        assert!(backend.trusted, "IPv4-mapped addresses match IPv4 ranges");
        for _ in 0..100 {
            admission.admit(backend, Class::Purchase, now).unwrap();
        }
    }

    #[test]
    fn trusted_customers_are_limited_per_customer_and_others_by_address() {
        let admission = Admission::new(&limits(&["10.0.0.1"]));
        let now = Instant::now();
        let backend = admission.source(ip("10.0.0.1"));
        for _ in 0..3 {
            admission
                .purchaser(backend, Some("alice"), now)
                .expect("burst");
        }
        assert!(admission.purchaser(backend, Some("alice"), now).is_err());
        let bob = admission.purchaser(backend, Some("bob"), now).unwrap();
        assert!(!bob.share_exempt);
        let anonymous = admission.purchaser(backend, None, now).unwrap();
        assert!(anonymous.share_exempt, "one big sharer");
        // From an untrusted address the customer is not a key: nobody locks Alice out by name.
        let stranger = admission.source(ip("198.51.100.1"));
        let a = admission.purchaser(stranger, Some("alice"), now).unwrap();
        let b = admission.purchaser(stranger, Some("bob"), now).unwrap();
        assert_eq!(a.id, b.id);
        assert!(!a.share_exempt);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
    }

    #[test]
    fn a_full_table_stays_bounded_and_forgets_the_flooder_last() {
        let clients_max = 1024;
        let table = RateTable::new(1, 10, clients_max);
        let start = Instant::now();
        // The flooder spends its whole allowance.
        let flooder = u128::MAX;
        while table.check(flooder, start).is_ok() {}
        // An attacker sprays ten times as many addresses as the table holds.
        for sprayed in 0..(10 * clients_max as u128) {
            table
                .check(sprayed, start)
                .expect("a new client is admitted");
        }
        assert!(
            table.clients() <= clients_max,
            "{} clients",
            table.clients()
        );
        assert!(
            table.check(flooder, start).is_err(),
            "the flooder is still remembered, its allowance still spent"
        );
    }

    #[test]
    fn routes_are_classified_by_their_pattern() {
        assert_eq!(
            classify(&Method::POST, "/v1/products/{id}/purchase"),
            Some(Class::Purchase)
        );
        assert_eq!(
            classify(&Method::GET, "/v1/products/{id}"),
            Some(Class::View)
        );
        assert_eq!(classify(&Method::GET, "/products/{id}"), Some(Class::View));
        assert_eq!(classify(&Method::GET, "/v1/health"), None);
        assert_eq!(classify(&Method::POST, "/v1/admin/products"), None);
    }
}
