//! A client of the voters' internal API.

use std::collections::VecDeque;
use std::time::Duration;

use flashstock_api::{
    AddLearnerRequest, ChangeMembershipRequest, Command, ErrorBody, ErrorCode, Hold, InitRequest,
    NodeAddr, NodeStatus, Order, OrderId, OrderWithTerms, Outcome, Page, Product, ProductWithTerms,
    ReadIndexResponse, RemoveLearnerRequest, WriteRequest, WriteResponse, SECRET_HEADER,
};
use serde::de::DeserializeOwned;

use crate::shop::{describe, http_client};
use crate::wire::{CallError, Connector, Route, WirePool};
use serde::Serialize;

/// Most "not leader" redirections one write follows before giving up.
const REDIRECTS_MAX: usize = 8;

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Definitely not applied: refused before anything was proposed, or no node could be reached
    /// ([`ErrorCode::Unreachable`] when none accepted a connection, [`ErrorCode::Unavailable`]
    /// when none was the leader).
    #[error("refused ({code}): {message}")]
    Refused { code: ErrorCode, message: String },
    /// The write may or may not have been applied. Retry with the same idempotency keys.
    #[error("outcome unknown: {message}")]
    OutcomeUnknown { message: String },
    /// A read or admin call failed: the server's code, or [`ErrorCode::Unreachable`] when the
    /// connection could not be made (nothing was sent), [`ErrorCode::Unavailable`] when the
    /// answer did not come.
    #[error("{code}: {message}")]
    Api { code: ErrorCode, message: String },
}

impl Error {
    /// True when the commands were definitely not applied.
    pub fn is_definite(&self) -> bool {
        !matches!(self, Error::OutcomeUnknown { .. })
    }

    /// The stable code of a definite failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Refused { code, .. } | Error::Api { code, .. } => code.clone(),
            Error::OutcomeUnknown { .. } => ErrorCode::OutcomeUnknown,
        }
    }
}

/// The outcome of a committed write.
#[derive(Debug, Clone)]
pub struct Applied {
    pub log_index: u64,
    /// The node that answered (the leader at the time).
    pub leader: String,
    pub outcomes: Vec<Outcome>,
}

/// Talks to a set of voters; remembers which one led last.
#[derive(Clone)]
pub struct VoterClient {
    http: reqwest::Client,
    timeout: Duration,
    local: Option<std::net::IpAddr>,
    tls: Option<crate::TlsConfig>,
    secret: String,
    endpoints: Vec<String>,
    leader: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Writes and read-index calls go over the internal wire when set (the default); a voter
    /// that does not speak it is reached over HTTP.
    wire: Option<WirePool>,
    /// The Raft group every call names ([`VoterClient::for_group`]).
    group: u16,
}

impl VoterClient {
    /// `endpoints` are `host:port` addresses of voters' internal listeners.
    pub fn new(endpoints: Vec<String>, secret: &str, timeout: Duration) -> VoterClient {
        VoterClient {
            http: http_client(timeout, None, None),
            timeout,
            local: None,
            tls: None,
            secret: secret.to_owned(),
            endpoints,
            leader: Default::default(),
            wire: None,
            group: 0,
        }
        .with_wire(true)
    }

    /// The same client for Raft group `group`: its calls name the group, and it remembers that
    /// group's leader apart from the others'. Connections are shared.
    pub fn for_group(&self, group: u16) -> VoterClient {
        VoterClient {
            group,
            leader: Default::default(),
            ..self.clone()
        }
    }

    /// The Raft group this client's calls name.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Send writes and read-index calls over the internal wire ([`crate::wire`]) when `on`,
    /// else one HTTP exchange each.
    pub fn with_wire(mut self, on: bool) -> VoterClient {
        self.wire = on.then(|| {
            WirePool::new(Connector {
                secret: std::sync::Arc::from(self.secret.as_str()),
                connect_timeout: Duration::from_secs(2).min(self.timeout),
                local: self.local,
                tls: self.tls.clone(),
                idle: crate::POOL_IDLE_TIMEOUT,
            })
        });
        self
    }

    /// Send from `ip` (e.g. the calling node's own address), so peers can tell callers apart.
    pub fn with_local_address(mut self, ip: Option<std::net::IpAddr>) -> VoterClient {
        self.local = ip;
        self.http = http_client(self.timeout, self.local, self.tls.as_ref());
        let wire = self.wire.is_some();
        self.with_wire(wire)
    }

    /// Speak mutual TLS to the voters (`https://`): `tls` presents this side's certificate and
    /// checks theirs (e.g. [`flashstock_tls::Identity::client_config`]). `None`: plaintext.
    pub fn with_tls(mut self, tls: Option<crate::TlsConfig>) -> VoterClient {
        self.tls = tls;
        self.http = http_client(self.timeout, self.local, self.tls.as_ref());
        let wire = self.wire.is_some();
        self.with_wire(wire)
    }

    fn url(&self, endpoint: &str, path: &str) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{endpoint}{path}")
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Try `addr` first on the next write, e.g. the leader a learner knows of.
    pub fn set_leader_hint(&self, addr: String) {
        *self.leader.lock().unwrap() = Some(addr);
    }

    /// Ask the leader, wherever it is, for the index a linearizable read must wait for.
    pub async fn read_index(&self) -> Result<u64, Error> {
        let mut search = self.leader_search();
        while let Some(endpoint) = search.next() {
            let answer = match self
                .send(
                    &endpoint,
                    Route::ReadIndex,
                    bytes::Bytes::from_static(b"null"),
                )
                .await
            {
                Exchange::Answer(status, bytes) => {
                    json_answer::<ReadIndexResponse>(&endpoint, status, &bytes)
                }
                Exchange::NotSent(message) => Err(Error::Api {
                    code: ErrorCode::Unreachable,
                    message,
                }),
                Exchange::Unknown(message) => Err(Error::Api {
                    code: ErrorCode::Unavailable,
                    message,
                }),
            };
            match answer {
                Ok(ReadIndexResponse::Index(index)) => {
                    self.set_leader_hint(endpoint);
                    return Ok(index);
                }
                Ok(ReadIndexResponse::NotLeader { leader }) => search.not_leader(&endpoint, leader),
                Ok(ReadIndexResponse::Unavailable { message }) => {
                    search.failed(ErrorCode::Unavailable, message)
                }
                Err(e) => search.failed(e.code(), e.to_string()),
            }
        }
        Err(search.gave_up("no leader confirmed a read"))
    }

    /// The nodes a call tries, in order: the last known leader first, then every endpoint.
    fn leader_search(&self) -> LeaderSearch {
        let mut candidates: VecDeque<String> =
            self.leader.lock().unwrap().iter().cloned().collect();
        candidates.extend(self.endpoints.iter().cloned());
        LeaderSearch {
            candidates,
            tries_left: self.endpoints.len() + REDIRECTS_MAX,
            redirects_left: REDIRECTS_MAX,
            last_code: ErrorCode::Unavailable,
            last_error: String::from("no endpoint"),
        }
    }

    /// Propose `commands` as one entry at the leader, wherever it is.
    pub async fn write(&self, commands: Vec<Command>) -> Result<Applied, Error> {
        // Encoded once; each attempt sends the same bytes without copying them.
        let body = bytes::Bytes::from(
            bincode::serialize(&WriteRequest { commands }).expect("commands serialize"),
        );
        let mut search = self.leader_search();
        while let Some(endpoint) = search.next() {
            let (status, bytes) = match self.send(&endpoint, Route::Write, body.clone()).await {
                Exchange::Answer(status, bytes) => (status, bytes),
                // Nothing was sent: try the next node.
                Exchange::NotSent(message) => {
                    search.failed(ErrorCode::Unreachable, message);
                    continue;
                }
                Exchange::Unknown(message) => return Err(Error::OutcomeUnknown { message }),
            };
            match write_answer(&endpoint, status, &bytes)? {
                WriteResponse::Applied {
                    log_index,
                    outcomes,
                } => {
                    self.set_leader_hint(endpoint.clone());
                    return Ok(Applied {
                        log_index,
                        leader: endpoint,
                        outcomes,
                    });
                }
                WriteResponse::NotLeader { leader } => search.not_leader(&endpoint, leader),
                WriteResponse::Refused { code, message } => {
                    return Err(Error::Refused { code, message })
                }
                WriteResponse::Unknown { message } => {
                    return Err(Error::OutcomeUnknown { message })
                }
            }
        }
        Err(search.gave_up("no leader reachable"))
    }

    /// Send `body` to `route` on `endpoint`: over the wire when on and the node speaks it,
    /// else over HTTP.
    async fn send(&self, endpoint: &str, route: Route, body: bytes::Bytes) -> Exchange {
        if let Some(wire) = &self.wire {
            let client = wire.client(endpoint);
            match client
                .call_group(route, self.group, &body, self.timeout)
                .await
            {
                Ok(reply) => return Exchange::Answer(reply.status, reply.body),
                Err(CallError::NotSpoken(_)) => {}
                Err(e @ CallError::NotSent(_)) => {
                    return Exchange::NotSent(format!("{endpoint}: {e}"))
                }
                Err(e) => return Exchange::Unknown(format!("{endpoint}: {e}")),
            }
        }
        let request = self
            .http
            .post(self.url(endpoint, route.path()))
            .header(SECRET_HEADER, &self.secret);
        let sent = crate::for_group(request, self.group)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(bytes) => Exchange::Answer(status, bytes),
                    Err(e) => Exchange::Unknown(format!("{endpoint}: {}", describe(&e))),
                }
            }
            // Never connected: nothing was sent.
            Err(e) if e.is_connect() => Exchange::NotSent(format!("{endpoint}: {}", describe(&e))),
            Err(e) => Exchange::Unknown(format!("{endpoint}: {}", describe(&e))),
        }
    }

    async fn get<T: DeserializeOwned>(&self, endpoint: &str, path: &str) -> Result<T, Error> {
        let request = self
            .http
            .get(self.url(endpoint, path))
            .header(SECRET_HEADER, &self.secret);
        let request = crate::for_group(request, self.group);
        decode_json(request.send().await, endpoint).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &str,
        path: &str,
        body: &B,
    ) -> Result<T, Error> {
        let request = self
            .http
            .post(self.url(endpoint, path))
            .header(SECRET_HEADER, &self.secret)
            .json(body);
        let request = crate::for_group(request, self.group);
        decode_json(request.send().await, endpoint).await
    }

    pub async fn status(&self, endpoint: &str) -> Result<NodeStatus, Error> {
        self.get(endpoint, "/admin/status").await
    }

    pub async fn init(
        &self,
        endpoint: &str,
        voters: Vec<NodeAddr>,
    ) -> Result<Vec<NodeAddr>, Error> {
        self.post(endpoint, "/admin/init", &InitRequest { voters })
            .await
    }

    /// Add a learner; the leader answers once it has caught up, or after a bounded wait with
    /// `caught_up: false`.
    pub async fn add_learner(
        &self,
        endpoint: &str,
        id: u64,
        addr: &str,
    ) -> Result<serde_json::Value, Error> {
        self.post_add_learner(endpoint, id, addr, false).await
    }

    /// Add a learner; answers once the change is committed, without waiting for the learner to
    /// catch up: follow its lag in the leader's status. A large state takes longer to send than
    /// one call should wait.
    pub async fn add_learner_no_wait(
        &self,
        endpoint: &str,
        id: u64,
        addr: &str,
    ) -> Result<serde_json::Value, Error> {
        self.post_add_learner(endpoint, id, addr, true).await
    }

    async fn post_add_learner(
        &self,
        endpoint: &str,
        id: u64,
        addr: &str,
        no_wait: bool,
    ) -> Result<serde_json::Value, Error> {
        let request = AddLearnerRequest {
            id,
            addr: addr.to_owned(),
            no_wait,
        };
        self.post(endpoint, "/admin/add-learner", &request).await
    }

    pub async fn change_membership(
        &self,
        endpoint: &str,
        voters: Vec<u64>,
        retain: bool,
    ) -> Result<serde_json::Value, Error> {
        let request = ChangeMembershipRequest { voters, retain };
        self.post(endpoint, "/admin/change-membership", &request)
            .await
    }

    pub async fn remove_learner(
        &self,
        endpoint: &str,
        id: u64,
    ) -> Result<serde_json::Value, Error> {
        self.post(
            endpoint,
            "/admin/remove-learner",
            &RemoveLearnerRequest { id },
        )
        .await
    }

    /// Hand leadership from the leader at `endpoint` to voter `to` (default: the one furthest
    /// along), before a planned stop of the leader.
    pub async fn hand_off(
        &self,
        endpoint: &str,
        to: Option<u64>,
    ) -> Result<flashstock_api::HandedOff, Error> {
        let request = flashstock_api::HandOffRequest { to };
        self.post(endpoint, "/admin/hand-off", &request).await
    }

    pub async fn snapshot(&self, endpoint: &str) -> Result<serde_json::Value, Error> {
        self.post(endpoint, "/admin/snapshot", &()).await
    }

    /// Units sold and revenue per product for orders committed in `from_ms..to_ms`, read by the
    /// voter at `endpoint` from the archive database.
    pub async fn archive_report(
        &self,
        endpoint: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<flashstock_api::ArchiveReport, Error> {
        self.get(
            endpoint,
            &format!("/admin/archive/report?from_ms={from_ms}&to_ms={to_ms}"),
        )
        .await
    }

    pub async fn product(&self, endpoint: &str, id: &str) -> Result<Page<Product>, Error> {
        self.get(endpoint, &format!("/internal/products/{id}"))
            .await
    }

    pub async fn products(
        &self,
        endpoint: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<Product>, Error> {
        self.get(endpoint, &page_path("/internal/products", after, limit))
            .await
    }

    /// [`VoterClient::products`] with their terms (held, limit, cancelled); a node of the
    /// release before answers without them, read as empty.
    pub async fn products_with_terms(
        &self,
        endpoint: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<ProductWithTerms>, Error> {
        self.get(endpoint, &page_path("/internal/products", after, limit))
            .await
    }

    pub async fn order(&self, endpoint: &str, id: OrderId) -> Result<Page<Order>, Error> {
        self.get(endpoint, &format!("/internal/orders/{id}")).await
    }

    pub async fn orders(
        &self,
        endpoint: &str,
        after: Option<OrderId>,
        limit: usize,
    ) -> Result<Page<Order>, Error> {
        self.get(endpoint, &page_path("/internal/orders", after, limit))
            .await
    }

    /// Every order a replica holds, in log order.
    pub async fn all_orders(&self, endpoint: &str) -> Result<Vec<Order>, Error> {
        self.all_pages(endpoint, "/internal/orders", |order: &Order| order.id)
            .await
    }

    /// Every order a replica holds with its terms (lines, hold, cancellation), in log order.
    pub async fn all_orders_with_terms(
        &self,
        endpoint: &str,
    ) -> Result<Vec<OrderWithTerms>, Error> {
        self.all_pages(endpoint, "/internal/orders", |o: &OrderWithTerms| {
            o.order.id
        })
        .await
    }

    /// Every hold a replica holds, held or finished, in log order (cluster version 2; a node of
    /// the release before answers 404).
    pub async fn all_holds(&self, endpoint: &str) -> Result<Vec<Hold>, Error> {
        self.all_pages(endpoint, "/internal/holds", |hold: &Hold| hold.id)
            .await
    }

    /// Every item of a paged internal read, page after page until an empty one; `key` is what
    /// the next page starts after.
    async fn all_pages<T: DeserializeOwned, K: std::fmt::Display>(
        &self,
        endpoint: &str,
        route: &str,
        key: impl Fn(&T) -> K,
    ) -> Result<Vec<T>, Error> {
        let mut all: Vec<T> = Vec::new();
        loop {
            let path = page_path(route, all.last().map(&key), READ_PAGE);
            let page: Page<T> = self.get(endpoint, &path).await?;
            if page.items.is_empty() {
                return Ok(all);
            }
            all.extend(page.items);
        }
    }
}

/// Most entries a member may trail the leader by, in its log and in what it has applied, and
/// still count as caught up.
pub const CAUGHT_UP_LAG_MAX: u64 = 64;

/// How far a member is from caught up with the leader ([`VoterClient::catch_up`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatchUp {
    /// The leader has not matched the member's log yet.
    NotReplicated,
    /// The member's log trails the leader's by this many entries.
    LogBehind(u64),
    /// Its log is caught up; it has yet to apply this many entries of the leader's commits.
    ApplyBehind(u64),
    /// Its log is caught up; its own status did not answer.
    NoStatus(String),
    /// Within [`CAUGHT_UP_LAG_MAX`] in both.
    CaughtUp,
}

impl std::fmt::Display for CatchUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatchUp::NotReplicated => write!(f, "not replicated to yet"),
            CatchUp::LogBehind(lag) => write!(f, "its log {lag} entries behind the leader's"),
            CatchUp::ApplyBehind(lag) => {
                write!(f, "log caught up, {lag} committed entries still to apply")
            }
            CatchUp::NoStatus(error) => write!(f, "log caught up, its status unread: {error}"),
            CatchUp::CaughtUp => write!(f, "caught up"),
        }
    }
}

/// How many entries member `id`'s log trails the log of `leader` (a leader's status) by, once
/// the leader has matched it at all (`None` before).
pub fn log_lag(leader: &NodeStatus, id: u64) -> Option<u64> {
    leader
        .replication
        .iter()
        .find(|peer| peer.id == id && peer.matched_index.is_some())
        .map(|peer| peer.lag)
}

impl VoterClient {
    /// How far member `id` (answering at `addr`) is from caught up with `leader` (a leader's
    /// status): first its log, from the leader's replication; then what it has applied, from
    /// its own status. A member with the log but not the state must not be promoted: elected,
    /// it would answer no write until it had applied its backlog.
    pub async fn catch_up(&self, leader: &NodeStatus, id: u64, addr: &str) -> CatchUp {
        match log_lag(leader, id) {
            None => return CatchUp::NotReplicated,
            Some(lag) if lag > CAUGHT_UP_LAG_MAX => return CatchUp::LogBehind(lag),
            Some(_) => {}
        }
        let own = match self.status(addr).await {
            Ok(own) => own,
            Err(e) => return CatchUp::NoStatus(e.to_string()),
        };
        let committed = leader.committed_index.unwrap_or(0);
        let applied = own.applied_index.unwrap_or(0);
        match committed.saturating_sub(applied) {
            lag if lag > CAUGHT_UP_LAG_MAX => CatchUp::ApplyBehind(lag),
            _ => CatchUp::CaughtUp,
        }
    }
}

/// Items per page when a client reads every item of an internal read.
const READ_PAGE: usize = 1000;

/// `route?limit=N[&after=K]`.
fn page_path(route: &str, after: Option<impl std::fmt::Display>, limit: usize) -> String {
    match after {
        Some(after) => format!("{route}?limit={limit}&after={after}"),
        None => format!("{route}?limit={limit}"),
    }
}

/// Where a call looks for the leader: a bounded queue of nodes to try, which "not leader"
/// answers naming the leader jump.
struct LeaderSearch {
    candidates: VecDeque<String>,
    tries_left: usize,
    redirects_left: usize,
    /// Why the last node tried did not take the call: [`ErrorCode::Unreachable`] when it
    /// accepted no connection, [`ErrorCode::Unavailable`] otherwise.
    last_code: ErrorCode,
    last_error: String,
}

impl LeaderSearch {
    fn next(&mut self) -> Option<String> {
        self.tries_left = self.tries_left.checked_sub(1)?;
        self.candidates.pop_front()
    }

    fn failed(&mut self, code: ErrorCode, error: String) {
        self.last_code = code;
        self.last_error = error;
    }

    /// No node took the call: definitely not applied, for the last node's reason.
    fn gave_up(self, what: &str) -> Error {
        Error::Refused {
            code: self.last_code,
            message: format!("{what}: {}", self.last_error),
        }
    }

    /// `endpoint` is not the leader; try the one it named next.
    fn not_leader(&mut self, endpoint: &str, leader: Option<NodeAddr>) {
        self.last_code = ErrorCode::Unavailable;
        self.last_error = format!("{endpoint} is not the leader");
        if let Some(leader) = leader {
            if self.redirects_left > 0 {
                self.redirects_left -= 1;
                self.candidates.push_front(leader.addr);
            }
        }
    }
}

/// What became of one call: its answer (status and body), or why there is none.
enum Exchange {
    Answer(u16, bytes::Bytes),
    /// Definitely not handled: no connection was made, or the call never left.
    NotSent(String),
    /// Sent, and no answer: it may have been handled.
    Unknown(String),
}

/// The write endpoint's answer; an error when it is not one of the endpoint's own answers.
fn write_answer(endpoint: &str, status: u16, bytes: &[u8]) -> Result<WriteResponse, Error> {
    if status >= 500 {
        // Not one of the endpoint's own answers: it may have failed after proposing.
        return Err(Error::OutcomeUnknown {
            message: format!("{endpoint} answered {status}"),
        });
    }
    if !(200..300).contains(&status) {
        // The endpoint refused the request before handling it (auth, body).
        let body: Option<ErrorBody> = serde_json::from_slice(bytes).ok();
        return Err(match body {
            Some(body) => Error::Refused {
                code: body.code,
                message: body.message,
            },
            None => Error::Refused {
                code: ErrorCode::parse(&status.to_string()),
                message: String::from_utf8_lossy(bytes).into_owned(),
            },
        });
    }
    bincode::deserialize(bytes).map_err(|e| Error::OutcomeUnknown {
        message: format!("{endpoint}: undecodable answer: {e}"),
    })
}

async fn decode_json<T: DeserializeOwned>(
    sent: Result<reqwest::Response, reqwest::Error>,
    endpoint: &str,
) -> Result<T, Error> {
    let response = sent.map_err(|e| Error::Api {
        code: if e.is_connect() {
            ErrorCode::Unreachable
        } else {
            ErrorCode::Unavailable
        },
        message: format!("{endpoint}: {}", describe(&e)),
    })?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|e| Error::Api {
        code: ErrorCode::Unavailable,
        message: format!("{endpoint}: {e}"),
    })?;
    json_answer(endpoint, status, &bytes)
}

/// A JSON endpoint's answer: its value, or the error it answered.
fn json_answer<T: DeserializeOwned>(endpoint: &str, status: u16, bytes: &[u8]) -> Result<T, Error> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(bytes).map_err(|e| Error::Api {
            code: ErrorCode::InvalidResponse,
            message: format!("{endpoint}: {e}"),
        });
    }
    Err(match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(body) => Error::Api {
            code: body.code,
            message: body.message,
        },
        Err(_) => Error::Api {
            code: ErrorCode::parse(&status.to_string()),
            message: String::from_utf8_lossy(bytes).into_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address nothing listens on: bound, then released.
    fn closed_endpoint() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("an address");
        drop(listener);
        addr.to_string()
    }

    /// A node that accepts no connection is `unreachable` to reads and writes alike, and the
    /// write is definitely not applied.
    #[tokio::test]
    async fn a_failed_connect_is_unreachable_on_reads_and_writes() {
        let endpoint = closed_endpoint();
        let client = VoterClient::new(vec![endpoint.clone()], "secret", Duration::from_secs(2));
        let read = client.status(&endpoint).await.unwrap_err();
        assert_eq!(read.code(), ErrorCode::Unreachable, "{read}");
        let write = client.write(Vec::new()).await.unwrap_err();
        assert_eq!(write.code(), ErrorCode::Unreachable, "{write}");
        assert!(write.is_definite());
    }
}
