//! The internal wire: one persistent, multiplexed binary connection from a node to each peer,
//! for the calls on every write's path (Raft's appends and votes, a gateway's forwarded batches
//! and read-index calls), instead of one HTTP/1.1 exchange per call.
//!
//! **Why this shape.** Frames are length-delimited (`tokio-util`'s codec, already in the build)
//! and carry the same bincode bodies as the HTTP routes; the server hands each call to the same
//! router as an HTTP request would reach, so authentication, the roles of each route, body
//! limits, timeouts and metrics are one code path for both transports. gRPC (`tonic`) would add
//! HTTP/2, protobuf code generation and a second schema of every Raft message; `tarpc` its own
//! request scheduling and serde transport around openraft's types. What HTTP/1.1 costs here is
//! the per-call work (a pooled connection checked out, a request head written and parsed, one
//! call per connection at a time), and a multiplexed frame stream removes exactly that.
//!
//! **The protocol** (internal wire version [`flashstock_api::WIRE_VERSION`]), on the internal
//! listener's port, after TLS when it is on:
//!
//! | who | bytes |
//! |---|---|
//! | client | [`MAGIC`], then a frame: bincode [`Hello`] (the versions it speaks, its credential) |
//! | server | [`MAGIC`], then a frame: bincode [`Welcome`] (the version chosen, or a refusal) |
//! | client, any number in flight | call frames: id (u64), [`Route`] (u8), from version 2 the Raft group (u16), body |
//! | server, in any order | reply frames: id (u64), HTTP status (u16), body |
//!
//! A frame is a big-endian u32 length and that many bytes. A node of a release without the
//! wire reads the magic as a malformed HTTP request and answers an HTTP error; the client sees
//! no magic in the answer and falls back to HTTP for that peer ([`CallError::NotSpoken`]), so a
//! rolling upgrade needs no flag day.
//!
//! **What a failure means**, kept apart as everywhere else: [`CallError::NotSent`] (no
//! connection, or the frame never left: definitely not handled), [`CallError::Lost`] (the
//! connection died after the call was written: the outcome is unknown) and
//! [`CallError::TimedOut`] (no reply within the call's bound: unknown too).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flashstock_api::{ErrorCode, WIRE_VERSION, WIRE_VERSION_GROUPS, WIRE_VERSION_MIN};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// The first bytes each side sends. Not the start of any HTTP request (no method has a NUL
/// byte), so one port serves both.
pub const MAGIC: [u8; 8] = *b"FSWIRE\0\x01";
/// Largest frame a client reads: replies are small (a write's outcomes, an append's answer).
pub const REPLY_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Calls one connection carries at once; a caller past it waits for a free place
/// (backpressure), within its call's bound.
pub const IN_FLIGHT_MAX: usize = 256;
/// How long a client remembers that a peer does not speak the wire before it asks again.
const NOT_SPOKEN_MEMORY: Duration = Duration::from_secs(60);
/// How long a client answers [`CallError::NotSent`] at once after a failed connect, instead of
/// every waiting caller trying again one after another.
const CONNECT_FAILURE_MEMORY: Duration = Duration::from_millis(50);

/// The client's opening: the wire versions it speaks and its credential, which the server
/// presents on every call of the connection as the `x-flashstock-secret` header would.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub wire_min: u32,
    pub wire_max: u32,
    pub secret: String,
}

/// The server's answer to a [`Hello`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Welcome {
    /// The version both sides speak: the highest one in common.
    Accepted { wire: u32 },
    /// No version in common; the connection closes.
    Refused { code: ErrorCode, message: String },
}

/// The version a server speaking `ours_min..=ours_max` chooses for a client's [`Hello`]: the
/// highest both speak, or `None`.
pub fn choose_version(hello: &Hello, ours_min: u32, ours_max: u32) -> Option<u32> {
    let wire = hello.wire_max.min(ours_max);
    (wire >= hello.wire_min.max(ours_min)).then_some(wire)
}

/// The calls the wire carries: each is the HTTP route of the same name, with the same body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Route {
    /// `POST /raft/append`, bincode.
    Append = 1,
    /// `POST /raft/vote`, bincode.
    Vote = 2,
    /// `POST /internal/write`, bincode.
    Write = 3,
    /// `POST /internal/read-index`, JSON.
    ReadIndex = 4,
}

impl Route {
    pub const ALL: [Route; 4] = [Route::Append, Route::Vote, Route::Write, Route::ReadIndex];

    /// The HTTP route of the same call: the one definition of these paths.
    pub const fn path(self) -> &'static str {
        match self {
            Route::Append => "/raft/append",
            Route::Vote => "/raft/vote",
            Route::Write => "/internal/write",
            Route::ReadIndex => "/internal/read-index",
        }
    }

    pub fn from_tag(tag: u8) -> Option<Route> {
        Route::ALL.into_iter().find(|route| *route as u8 == tag)
    }
}

/// The codec of every frame, bounded by `bytes_max`.
pub fn codec(bytes_max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_type::<u32>()
        .max_frame_length(bytes_max)
        .new_codec()
}

/// Bytes a call frame of wire version `wire` has before its body: the id, the route and, from
/// [`WIRE_VERSION_GROUPS`] on, the group.
pub fn call_header_bytes(wire: u32) -> usize {
    if wire >= WIRE_VERSION_GROUPS {
        11
    } else {
        9
    }
}

/// A call frame of wire version `wire`: `id`, `route`, `group` (from [`WIRE_VERSION_GROUPS`]
/// on; before it, only group 0 can be called), `body`.
pub fn encode_call(wire: u32, id: u64, route: Route, group: u16, body: &[u8]) -> Bytes {
    debug_assert!(group == 0 || wire >= WIRE_VERSION_GROUPS);
    let mut frame = BytesMut::with_capacity(call_header_bytes(wire) + body.len());
    frame.put_u64(id);
    frame.put_u8(route as u8);
    if wire >= WIRE_VERSION_GROUPS {
        frame.put_u16(group);
    }
    frame.put_slice(body);
    frame.freeze()
}

/// One call, as a server reads it from a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: u64,
    /// The [`Route`]'s tag, which may be one this release does not know.
    pub tag: u8,
    pub group: u16,
    pub body: Bytes,
}

/// A call frame of wire version `wire`; `None` when it is too short to hold its header.
pub fn decode_call(wire: u32, mut frame: Bytes) -> Option<Call> {
    if frame.len() < call_header_bytes(wire) {
        return None;
    }
    let id = frame.get_u64();
    let tag = frame.get_u8();
    let group = if wire >= WIRE_VERSION_GROUPS {
        frame.get_u16()
    } else {
        0
    };
    Some(Call {
        id,
        tag,
        group,
        body: frame,
    })
}

/// A reply frame: `id`, `status`, `body`.
pub fn encode_reply(id: u64, status: u16, body: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(10 + body.len());
    frame.put_u64(id);
    frame.put_u16(status);
    frame.put_slice(body);
    frame.freeze()
}

fn decode_reply(mut frame: Bytes) -> Option<(u64, Reply)> {
    if frame.len() < 10 {
        return None;
    }
    let id = frame.get_u64();
    let status = frame.get_u16();
    Some((
        id,
        Reply {
            status,
            body: frame,
        },
    ))
}

/// Writes what arrives on `frames` to `sink` until the channel closes or a write fails,
/// flushing once per run of frames already queued (one system call for many calls under load).
/// A flush that takes longer than `stall` (the peer stopped reading) ends it.
pub async fn pump<W: AsyncWrite + Unpin>(
    mut frames: mpsc::Receiver<Bytes>,
    sink: &mut FramedWrite<W, LengthDelimitedCodec>,
    stall: Duration,
) -> std::io::Result<()> {
    while let Some(frame) = frames.recv().await {
        let batch = async {
            SinkExt::<Bytes>::feed(sink, frame).await?;
            while let Ok(frame) = frames.try_recv() {
                SinkExt::<Bytes>::feed(sink, frame).await?;
            }
            SinkExt::<Bytes>::flush(sink).await
        };
        tokio::time::timeout(stall, batch).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the peer stopped reading")
        })??;
    }
    Ok(())
}

/// A server's answer to one call.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The HTTP status the route answered with.
    pub status: u16,
    pub body: Bytes,
}

/// Why a call has no [`Reply`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The peer does not speak the wire (an older release): use HTTP. Nothing was sent.
    #[error("{0} does not speak the internal wire")]
    NotSpoken(String),
    /// No connection could be made, or the call never left: definitely not handled.
    #[error("not sent: {0}")]
    NotSent(String),
    /// The connection failed after the call was written: it may have been handled.
    #[error("connection lost with the call in flight: {0}")]
    Lost(String),
    /// No reply within the call's bound: it may have been handled.
    #[error("no reply within {0:?}")]
    TimedOut(Duration),
}

/// How a [`WireClient`] connects.
#[derive(Clone)]
pub struct Connector {
    pub secret: Arc<str>,
    pub connect_timeout: Duration,
    /// The address connections leave from (the node's own), so peers can tell nodes apart.
    pub local: Option<IpAddr>,
    /// Mutual TLS, as on the HTTP path; `None` speaks plaintext.
    pub tls: Option<crate::TlsConfig>,
    /// Drop a connection idle this long rather than send on it: below the servers' idle
    /// timeout, like the HTTP pool's ([`crate::POOL_IDLE_TIMEOUT`]).
    pub idle: Duration,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Reply>>>>;

/// One open connection: calls go out through `frames`, replies come back to `pending`.
struct Session {
    /// The wire version the server chose.
    wire: u32,
    frames: mpsc::Sender<Bytes>,
    pending: Pending,
    next_id: AtomicU64,
    alive: Arc<AtomicBool>,
    last_used: Mutex<Instant>,
    /// When the last reply arrived, in microseconds since `opened_at`.
    last_reply_us: Arc<AtomicU64>,
    opened_at: Instant,
    reader: tokio::task::JoinHandle<()>,
}

impl Session {
    fn since_open_us(&self, at: Instant) -> u64 {
        at.duration_since(self.opened_at).as_micros() as u64
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The writer ends when `frames` is dropped; the reader waits on the socket.
        self.reader.abort();
    }
}

enum Slot {
    Empty,
    Open(Arc<Session>),
    NotSpoken { until: Instant },
    Failed { until: Instant, why: String },
}

/// Calls to one peer over the wire, on one connection made on first use and made again after
/// it fails or idles.
pub struct WireClient {
    endpoint: String,
    connector: Connector,
    slot: tokio::sync::Mutex<Slot>,
    /// Connections opened so far.
    opened: AtomicU64,
}

impl WireClient {
    /// `endpoint`: `host:port` of the peer's internal listener.
    pub fn new(endpoint: String, connector: Connector) -> WireClient {
        WireClient {
            endpoint,
            connector,
            slot: tokio::sync::Mutex::new(Slot::Empty),
            opened: AtomicU64::new(0),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether a connection is open now (its server has not closed it).
    pub async fn connected(&self) -> bool {
        matches!(&*self.slot.lock().await, Slot::Open(session) if session.alive.load(Ordering::Acquire))
    }

    /// How many connections this client has opened (accepted openings), e.g. to see that one
    /// carries many calls.
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Send `body` to `route` of group 0 and wait for its reply, at most `timeout` (connecting
    /// included).
    pub async fn call(
        &self,
        route: Route,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        self.call_group(route, 0, body, timeout).await
    }

    /// Send `body` to `route` of Raft group `group` and wait for its reply, at most `timeout`
    /// (connecting included). A peer whose wire names no group (version 1) takes calls for
    /// group 0 only: another group's is not sent.
    pub async fn call_group(
        &self,
        route: Route,
        group: u16,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Reply, CallError> {
        let deadline = Instant::now() + timeout;
        let session = tokio::time::timeout_at(deadline, self.session())
            .await
            .map_err(|_| CallError::NotSent(format!("{}: connect timed out", self.endpoint)))??;
        if group != 0 && session.wire < WIRE_VERSION_GROUPS {
            return Err(CallError::NotSent(format!(
                "{}: speaks internal wire version {}, which names no Raft group; group {group} \
                 is not its to serve",
                self.endpoint, session.wire
            )));
        }
        let id = session.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        session.pending.lock().unwrap().insert(id, reply);
        let frame = encode_call(session.wire, id, route, group, body);
        let sent = tokio::time::timeout_at(deadline, session.frames.send(frame)).await;
        if !matches!(sent, Ok(Ok(()))) {
            session.pending.lock().unwrap().remove(&id);
            self.forget(&session).await;
            // Still in the queue, or the writer gone: the frame never reached the socket.
            return Err(CallError::NotSent(format!(
                "{}: the connection could not take the call",
                self.endpoint
            )));
        }
        let sent_at = Instant::now();
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => {
                self.forget(&session).await;
                Err(CallError::Lost(format!(
                    "{}: connection closed",
                    self.endpoint
                )))
            }
            Err(_) => {
                session.pending.lock().unwrap().remove(&id);
                // No reply at all since this call was sent: the connection itself is stuck (a
                // partition, a paused peer), and TCP may take minutes to notice. The next call
                // connects again; a slow call on a connection that still answers others keeps it.
                if session.last_reply_us.load(Ordering::Acquire) < session.since_open_us(sent_at) {
                    self.forget(&session).await;
                }
                Err(CallError::TimedOut(timeout))
            }
        }
    }

    /// The open connection, or a new one.
    async fn session(&self) -> Result<Arc<Session>, CallError> {
        let mut slot = self.slot.lock().await;
        let now = Instant::now();
        match &*slot {
            Slot::Open(session)
                if session.alive.load(Ordering::Acquire)
                    && now.duration_since(*session.last_used.lock().unwrap())
                        < self.connector.idle =>
            {
                *session.last_used.lock().unwrap() = now;
                return Ok(session.clone());
            }
            Slot::NotSpoken { until } if now < *until => {
                return Err(CallError::NotSpoken(self.endpoint.clone()))
            }
            Slot::Failed { until, why } if now < *until => {
                return Err(CallError::NotSent(why.clone()))
            }
            _ => {}
        }
        *slot = Slot::Empty;
        match self.connect().await {
            Ok(session) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                let session = Arc::new(session);
                *slot = Slot::Open(session.clone());
                Ok(session)
            }
            Err(CallError::NotSpoken(who)) => {
                *slot = Slot::NotSpoken {
                    until: now + NOT_SPOKEN_MEMORY,
                };
                Err(CallError::NotSpoken(who))
            }
            Err(error) => {
                *slot = Slot::Failed {
                    until: Instant::now() + CONNECT_FAILURE_MEMORY,
                    why: error.to_string(),
                };
                Err(error)
            }
        }
    }

    /// Drop `session` if it is still the open one, so the next call connects again.
    async fn forget(&self, session: &Arc<Session>) {
        let mut slot = self.slot.lock().await;
        if matches!(&*slot, Slot::Open(open) if Arc::ptr_eq(open, session)) {
            *slot = Slot::Empty;
        }
    }

    async fn connect(&self) -> Result<Session, CallError> {
        let not_sent = |what: &str, e: &dyn std::fmt::Display| {
            CallError::NotSent(format!("{}: {what}: {e}", self.endpoint))
        };
        let connect = async {
            let tcp = connect_tcp(&self.endpoint, self.connector.local)
                .await
                .map_err(|e| not_sent("connect", &e))?;
            let _ = tcp.set_nodelay(true);
            match &self.connector.tls {
                None => self.open(tcp).await,
                Some(tls) => {
                    let host = self
                        .endpoint
                        .rsplit_once(':')
                        .map_or(self.endpoint.as_str(), |(host, _)| host)
                        .trim_start_matches('[')
                        .trim_end_matches(']');
                    let name =
                        flashstock_tls::rustls::pki_types::ServerName::try_from(host.to_owned())
                            .map_err(|e| not_sent("server name", &e))?;
                    let stream = flashstock_tls::tokio_rustls::TlsConnector::from(tls.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| not_sent("TLS handshake", &e))?;
                    self.open(stream).await
                }
            }
        };
        tokio::time::timeout(self.connector.connect_timeout, connect)
            .await
            .map_err(|_| CallError::NotSent(format!("{}: connect timed out", self.endpoint)))?
    }

    /// The opening exchange on a connected stream, then the reader and writer tasks.
    async fn open<S>(&self, mut stream: S) -> Result<Session, CallError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let not_sent =
            |e: &dyn std::fmt::Display| CallError::NotSent(format!("{}: {e}", self.endpoint));
        let hello = Hello {
            wire_min: WIRE_VERSION_MIN,
            wire_max: WIRE_VERSION,
            secret: self.connector.secret.to_string(),
        };
        let hello = bincode::serialize(&hello).expect("a hello serializes");
        let mut opening = BytesMut::with_capacity(MAGIC.len() + 4 + hello.len());
        opening.put_slice(&MAGIC);
        opening.put_u32(hello.len() as u32);
        opening.put_slice(&hello);
        stream.write_all(&opening).await.map_err(|e| not_sent(&e))?;
        stream.flush().await.map_err(|e| not_sent(&e))?;
        let mut magic = [0u8; MAGIC.len()];
        if stream.read_exact(&mut magic).await.is_err() || magic != MAGIC {
            // An HTTP error, or a close: a node that speaks only HTTP.
            return Err(CallError::NotSpoken(self.endpoint.clone()));
        }
        let (read, write) = tokio::io::split(stream);
        let mut replies = FramedRead::new(read, codec(REPLY_BYTES_MAX));
        let welcome = match replies.next().await {
            Some(Ok(frame)) => bincode::deserialize::<Welcome>(&frame).map_err(|e| not_sent(&e))?,
            Some(Err(e)) => return Err(not_sent(&e)),
            None => return Err(not_sent(&"closed during the opening")),
        };
        let wire = match welcome {
            Welcome::Accepted { wire } => wire,
            Welcome::Refused { code, message } => {
                return Err(CallError::NotSent(format!(
                    "{}: refused ({code}): {message}",
                    self.endpoint
                )))
            }
        };
        let alive = Arc::new(AtomicBool::new(true));
        let pending: Pending = Default::default();
        let (frames, outgoing) = mpsc::channel(IN_FLIGHT_MAX);
        let writer_alive = alive.clone();
        let stall = self.connector.idle;
        tokio::spawn(async move {
            let mut sink = FramedWrite::new(write, codec(u32::MAX as usize));
            let _ = pump(outgoing, &mut sink, stall).await;
            writer_alive.store(false, Ordering::Release);
            let _ = sink.into_inner().shutdown().await;
        });
        let opened_at = Instant::now();
        let last_reply_us = Arc::new(AtomicU64::new(0));
        let reader = {
            let (alive, pending, last_reply_us) =
                (alive.clone(), pending.clone(), last_reply_us.clone());
            tokio::spawn(async move {
                while let Some(Ok(frame)) = replies.next().await {
                    let Some((id, reply)) = decode_reply(frame.freeze()) else {
                        break;
                    };
                    let now = Instant::now().duration_since(opened_at).as_micros() as u64;
                    last_reply_us.store(now, Ordering::Release);
                    if let Some(waiter) = pending.lock().unwrap().remove(&id) {
                        let _ = waiter.send(reply);
                    }
                }
                alive.store(false, Ordering::Release);
                // Every call still waiting learns that its reply will not come.
                pending.lock().unwrap().clear();
            })
        };
        Ok(Session {
            wire,
            frames,
            pending,
            next_id: AtomicU64::new(0),
            alive,
            last_used: Mutex::new(Instant::now()),
            last_reply_us,
            opened_at,
            reader,
        })
    }
}

/// A TCP connection to `endpoint` (`host:port`), from `local` when given.
async fn connect_tcp(
    endpoint: &str,
    local: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in tokio::net::lookup_host(endpoint).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(ip) = local {
            if ip.is_ipv4() == addr.is_ipv4() {
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
            }
        }
        match socket.connect(addr).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// One [`WireClient`] per peer, made on first use; shared by every caller of a node.
#[derive(Clone)]
pub struct WirePool {
    connector: Connector,
    clients: Arc<Mutex<HashMap<String, Arc<WireClient>>>>,
}

/// Peers a pool keeps clients for before it drops the unused ones: a cluster has a handful.
const POOL_PEERS_MAX: usize = 64;

impl WirePool {
    pub fn new(connector: Connector) -> WirePool {
        WirePool {
            connector,
            clients: Default::default(),
        }
    }

    /// The client of `endpoint`.
    pub fn client(&self, endpoint: &str) -> Arc<WireClient> {
        let mut clients = self.clients.lock().unwrap();
        if let Some(client) = clients.get(endpoint) {
            return client.clone();
        }
        if clients.len() >= POOL_PEERS_MAX {
            // Membership changed many times: keep only the clients someone holds.
            clients.retain(|_, client| Arc::strong_count(client) > 1);
        }
        let client = Arc::new(WireClient::new(endpoint.to_owned(), self.connector.clone()));
        clients.insert(endpoint.to_owned(), client.clone());
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_connector() -> Connector {
        Connector {
            secret: Arc::from("s"),
            connect_timeout: Duration::from_secs(2),
            local: None,
            tls: None,
            idle: Duration::from_secs(10),
        }
    }

    #[test]
    fn frames_round_trip_and_short_ones_are_refused() {
        // Version 1 has no group field: its calls are group 0's, byte for byte as before.
        let call = encode_call(1, 7, Route::Write, 0, b"body");
        assert_eq!(&call[..], b"\0\0\0\0\0\0\0\x07\x03body");
        let parts = |call: Call| (call.id, Route::from_tag(call.tag), call.group, call.body);
        assert_eq!(
            parts(decode_call(1, call).unwrap()),
            (7, Some(Route::Write), 0, Bytes::from_static(b"body"))
        );
        let call = encode_call(2, 8, Route::Append, 513, b"entries");
        assert_eq!(
            parts(decode_call(2, call).unwrap()),
            (8, Some(Route::Append), 513, Bytes::from_static(b"entries"))
        );
        let (id, reply) = decode_reply(encode_reply(9, 503, b"x")).unwrap();
        assert_eq!((id, reply.status, &reply.body[..]), (9, 503, &b"x"[..]));
        assert!(decode_call(1, Bytes::from_static(b"12345678")).is_none());
        assert!(decode_call(2, Bytes::from_static(b"1234567890")).is_none());
        assert!(decode_reply(Bytes::from_static(b"123456789")).is_none());
        assert_eq!(Route::from_tag(0), None);
        for route in Route::ALL {
            assert_eq!(Route::from_tag(route as u8), Some(route));
        }
    }

    #[test]
    fn the_highest_common_version_is_chosen() {
        let hello = |wire_min, wire_max| Hello {
            wire_min,
            wire_max,
            secret: String::new(),
        };
        assert_eq!(choose_version(&hello(1, 1), 1, 1), Some(1));
        assert_eq!(choose_version(&hello(1, 3), 1, 2), Some(2));
        assert_eq!(choose_version(&hello(2, 3), 1, 2), Some(2));
        assert_eq!(choose_version(&hello(3, 4), 1, 2), None);
        assert_eq!(choose_version(&hello(1, 1), 2, 3), None);
    }

    /// A peer that accepts the opening and then answers no call: after a call times out with no
    /// reply on the connection since, the next call opens a new connection instead of queueing
    /// behind a stuck one (a partition, a paused process).
    #[tokio::test]
    async fn a_connection_that_answers_nothing_is_replaced_after_a_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                let mut magic = [0u8; MAGIC.len()];
                tcp.read_exact(&mut magic).await.unwrap();
                let mut framed = tokio_util::codec::Framed::new(tcp, codec(1 << 20));
                let _hello = framed.next().await.unwrap().unwrap();
                framed.get_mut().write_all(&MAGIC).await.unwrap();
                let welcome = bincode::serialize(&Welcome::Accepted { wire: 1 }).unwrap();
                SinkExt::<Bytes>::send(&mut framed, Bytes::from(welcome))
                    .await
                    .unwrap();
                // Reads nothing more, answers nothing, closes nothing.
                held.push(framed);
            }
        });
        let connector = test_connector();
        let client = WireClient::new(addr, connector);
        let wait = Duration::from_millis(200);
        let error = client.call(Route::Vote, b"", wait).await.unwrap_err();
        assert!(matches!(error, CallError::TimedOut(_)), "{error}");
        assert_eq!(client.connections_opened(), 1);
        let error = client.call(Route::Vote, b"", wait).await.unwrap_err();
        assert!(matches!(error, CallError::TimedOut(_)), "{error}");
        assert_eq!(
            client.connections_opened(),
            2,
            "the stuck connection was replaced"
        );
    }

    /// A peer that answers the opening with HTTP (an older node) is `NotSpoken`; one that
    /// accepts no connection is `NotSent`.
    #[tokio::test]
    async fn an_http_only_peer_is_not_spoken_and_a_closed_port_is_not_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 16];
            let _ = tcp.read(&mut head).await;
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        });
        let connector = test_connector();
        let client = WireClient::new(addr.clone(), connector.clone());
        let error = client
            .call(Route::Vote, b"", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::NotSpoken(_)), "{error}");
        // Remembered: no second connection is tried.
        let again = client
            .call(Route::Vote, b"", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(again, CallError::NotSpoken(_)), "{again}");

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_addr = closed.local_addr().unwrap().to_string();
        drop(closed);
        let client = WireClient::new(closed_addr, connector);
        let error = client
            .call(Route::Write, b"", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(error, CallError::NotSent(_)), "{error}");
    }
}
