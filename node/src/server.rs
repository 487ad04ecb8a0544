//! Serving HTTP/1.1 on a bound listener, with bounds on every connection: each listener of a node
//! (the internal one, and a gateway's public one) is served by [`serve`].
//!
//! A connection is always in one of three phases, and each phase has its own bound:
//!
//! | phase | bound | then |
//! |---|---|---|
//! | idle: accepted, or its last answer sent, no byte of a request yet | `limits.idle_timeout_ms` (`limits.idle_timeout_under_pressure_ms` under pressure) | closed |
//! | reading a head: a first byte arrived, the head is not complete | `limits.header_read_timeout_ms` from that byte | closed |
//! | busy: a request from its complete head to the last byte of its answer | `limits.request_timeout_ms` (an event stream: `limits.stream_lifetime_ms`) | answered 504/503, then closed |
//!
//! A watchdog in each connection's task keeps the deadline of the current phase; the connection
//! itself (`Activity`) tells it when a phase changes. hyper's own header-read timeout is set
//! too, to idle plus header time, as a second line.
//!
//! **Under pressure.** When a listener holds at least [`PRESSURE_PERCENT`] of its connection cap,
//! idle connections get the short idle timeout (every idle connection older than it is closed at
//! once), until the count falls below [`RELIEF_PERCENT`]. Idle connections cost the server a
//! descriptor and the client nothing, so they are what a flood is made of; closing them first
//! keeps room for connections that are working (a buyer between two requests reconnects in one
//! round trip). Busy connections are never closed for pressure. At the cap itself, further
//! connections wait in the kernel's listen backlog until one closes.
//!
//! **Streams** (`text/event-stream` answers) are busy connections that end on their own at
//! `limits.stream_lifetime_ms`; the watchdog only closes one that could not even end (a client
//! that stopped reading) [`WRITE_GRACE`] later. Their count is capped by the gateway
//! (`limits.streams_max`), below the connection cap.
//!
//! **Handshake.** The accepted TCP stream goes through a [`Handshake`] before hyper sees it:
//! [`Plaintext`], or [`Tls`] (rustls), bounded by the idle plus the header-read timeout. A
//! connection whose handshake fails or takes longer is closed and counted with reason
//! `handshake`.
//!
//! Every request carries the peer's address as [`ConnectInfo<SocketAddr>`], as
//! `into_make_service_with_connect_info` would put it. Shutdown: once `stopping` turns true the
//! listener stops accepting, idle connections close, and so do those still in their handshake
//! or before their first bytes; busy ones finish their request (within its bound) and close;
//! [`serve`] returns when the last one has.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, Response, StatusCode};
use axum::Router;
use bytes::BytesMut;
use cluster_config::LimitsSection;
use flashstock_api::ErrorCode;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::metrics::Metrics;

/// Share of the connection cap at which a listener is under pressure, in percent.
pub const PRESSURE_PERCENT: usize = 90;
/// Share of the connection cap below which the pressure ends, in percent; lower than
/// [`PRESSURE_PERCENT`] so that one connection more or less does not flip it back and forth
/// (each flip wakes every connection's watchdog).
pub const RELIEF_PERCENT: usize = 80;
const _: () = assert!(RELIEF_PERCENT < PRESSURE_PERCENT && PRESSURE_PERCENT <= 100);
/// How long an answer may take to be written after its bound (the client reads too slowly)
/// before the connection is closed under it.
pub const WRITE_GRACE: Duration = Duration::from_secs(5);
/// Pause after an accept error (e.g. out of file descriptors) before trying again.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Which listener, as the `listener` label of the connection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
}

impl Listener {
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Public => "public",
            Listener::Internal => "internal",
        }
    }
}

/// Why the server closed a connection, as the `reason` label of
/// `flashstock_http_connections_closed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// No request began within the idle timeout.
    Idle,
    /// No request began within the short idle timeout, while the listener was under pressure.
    IdleUnderPressure,
    /// A request head began and did not complete in time.
    HeaderTimeout,
    /// A request (or a stream) was not answered to its end in time.
    RequestTimeout,
    /// The handshake (TLS, later) did not complete or failed.
    Handshake,
}

impl CloseReason {
    pub const ALL: [CloseReason; 5] = [
        CloseReason::Idle,
        CloseReason::IdleUnderPressure,
        CloseReason::HeaderTimeout,
        CloseReason::RequestTimeout,
        CloseReason::Handshake,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Idle => "idle",
            CloseReason::IdleUnderPressure => "idle_under_pressure",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::RequestTimeout => "request_timeout",
            CloseReason::Handshake => "handshake",
        }
    }
}

/// The bounds of one listener, from `[limits]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections_max: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub idle_timeout_under_pressure: Duration,
    pub request_timeout: Duration,
    pub stream_lifetime: Duration,
}

/// One listener: its label, its bounds, and, on the internal listener, who may open the
/// internal wire ([`crate::wire`]) on it; `wire: None` serves HTTP only.
#[derive(Clone)]
pub struct Listening {
    pub which: Listener,
    pub limits: Limits,
    pub wire: Option<crate::wire::Admission>,
}

impl Limits {
    /// The bounds of `listener`: they differ only in the connection cap.
    pub fn of(limits: &LimitsSection, listener: Listener) -> Limits {
        let ms = Duration::from_millis;
        Limits {
            connections_max: match listener {
                Listener::Public => limits.connections_max,
                Listener::Internal => limits.internal_connections_max,
            },
            header_read_timeout: ms(limits.header_read_timeout_ms),
            idle_timeout: ms(limits.idle_timeout_ms),
            idle_timeout_under_pressure: ms(limits.idle_timeout_under_pressure_ms),
            request_timeout: ms(limits.request_timeout_ms),
            stream_lifetime: ms(limits.stream_lifetime_ms),
        }
    }
}

/// What happens to an accepted TCP stream before hyper reads HTTP from it. A TLS acceptor
/// implements it (its `Io` the TLS stream); it runs in the connection's own task, bounded by
/// the idle plus the header-read timeout.
pub trait Handshake: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// No handshake: HTTP straight over TCP.
#[derive(Debug, Clone, Copy)]
pub struct Plaintext;

impl Handshake for Plaintext {
    type Io = TcpStream;
    async fn handshake(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// TLS (see [`crate::tls`]): the certificate the acceptor presents, and whether it requires one
/// back, come from its config and may change between two handshakes.
#[derive(Clone)]
pub struct Tls(pub flashstock_tls::tokio_rustls::TlsAcceptor);

impl Handshake for Tls {
    type Io = flashstock_tls::tokio_rustls::server::TlsStream<TcpStream>;
    async fn handshake(&self, tcp: TcpStream) -> io::Result<Self::Io> {
        self.0.accept(tcp).await
    }
}

/// What the connections of one listener share.
struct Shared {
    listener: Listener,
    limits: Limits,
    /// Who may open the internal wire here; `None`: HTTP only.
    wire: Option<crate::wire::Admission>,
    metrics: Arc<Metrics>,
    /// Connections open now.
    open: AtomicUsize,
    /// True while under pressure (see the module doc).
    pressure: watch::Sender<bool>,
    /// The origin of the millisecond clock of [`Activity`].
    epoch: Instant,
}

impl Shared {
    /// Milliseconds since the epoch, rounded down: for checking a deadline.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Milliseconds since the epoch, rounded up: for stamping the start of a phase, so that a
    /// deadline counted from it is never reached before the whole bound has passed.
    fn stamp_ms(&self) -> u64 {
        self.now_ms() + 1
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn opened(&self) {
        let open = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.metrics
            .connections_open
            .with_label_values(&[self.listener.as_str()])
            .inc();
        if open * 100 >= self.limits.connections_max * PRESSURE_PERCENT {
            self.pressure
                .send_if_modified(|on| !std::mem::replace(on, true));
        }
    }

    fn closed(&self, reason: Option<CloseReason>) {
        let open = self.open.fetch_sub(1, Ordering::Relaxed) - 1;
        self.metrics
            .connections_open
            .with_label_values(&[self.listener.as_str()])
            .dec();
        if let Some(reason) = reason {
            self.metrics
                .connections_closed
                .with_label_values(&[self.listener.as_str(), reason.as_str()])
                .inc();
        }
        if open * 100 < self.limits.connections_max * RELIEF_PERCENT {
            self.pressure
                .send_if_modified(|on| std::mem::replace(on, false));
        }
    }
}

/// "No first byte yet" in [`Activity::first_byte_ms`].
const NONE: u64 = u64::MAX;

/// The phase of one connection, written by the connection (its reads, its service) and read by
/// its watchdog. Times are milliseconds on [`Shared::epoch`]'s clock.
struct Activity {
    /// A request is in flight: from its complete head to the end of its answer. HTTP/1 serves
    /// one request of a connection at a time.
    busy: AtomicBool,
    /// The answer in flight is an event stream.
    stream: AtomicBool,
    /// When the current phase began: idle since, or busy since.
    since_ms: AtomicU64,
    /// While idle: when the first byte of the next request head arrived, or [`NONE`].
    first_byte_ms: AtomicU64,
    /// Wakes the watchdog when the phase changes.
    changed: Notify,
}

impl Activity {
    fn new(now_ms: u64) -> Activity {
        Activity {
            busy: AtomicBool::new(false),
            stream: AtomicBool::new(false),
            since_ms: AtomicU64::new(now_ms),
            first_byte_ms: AtomicU64::new(NONE),
            changed: Notify::new(),
        }
    }

    fn begin(&self, now_ms: u64) {
        self.since_ms.store(now_ms, Ordering::Relaxed);
        self.first_byte_ms.store(NONE, Ordering::Relaxed);
        self.stream.store(false, Ordering::Relaxed);
        self.busy.store(true, Ordering::Release);
        self.changed.notify_one();
    }

    fn end(&self, now_ms: u64) {
        self.since_ms.store(now_ms, Ordering::Relaxed);
        self.first_byte_ms.store(NONE, Ordering::Relaxed);
        self.busy.store(false, Ordering::Release);
        self.changed.notify_one();
    }

    /// Bytes arrived: while idle, the first one starts the header-read bound.
    fn read(&self, shared: &Shared) {
        if !self.busy.load(Ordering::Acquire)
            && self.first_byte_ms.load(Ordering::Relaxed) == NONE
            && self
                .first_byte_ms
                .compare_exchange(
                    NONE,
                    shared.stamp_ms(),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// The end of the current phase, and why the connection closes if it is reached.
    fn deadline(&self, limits: &Limits, pressure: bool) -> (u64, CloseReason) {
        let since = self.since_ms.load(Ordering::Relaxed);
        let ms = |d: Duration| d.as_millis() as u64;
        if self.busy.load(Ordering::Acquire) {
            let bound = if self.stream.load(Ordering::Relaxed) {
                limits.stream_lifetime
            } else {
                limits.request_timeout
            };
            return (
                since.saturating_add(ms(bound + WRITE_GRACE)),
                CloseReason::RequestTimeout,
            );
        }
        match self.first_byte_ms.load(Ordering::Relaxed) {
            NONE if pressure => (
                since.saturating_add(ms(limits.idle_timeout_under_pressure)),
                CloseReason::IdleUnderPressure,
            ),
            NONE => (
                since.saturating_add(ms(limits.idle_timeout)),
                CloseReason::Idle,
            ),
            first => (
                first.saturating_add(ms(limits.header_read_timeout)),
                CloseReason::HeaderTimeout,
            ),
        }
    }
}

/// Serve `router` on `listener` until `stopping` turns true and every connection has closed.
pub async fn serve<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    router: Router,
    listening: Listening,
    metrics: Arc<Metrics>,
    mut stopping: watch::Receiver<bool>,
) -> io::Result<()> {
    let Listening {
        which,
        limits,
        wire,
    } = listening;
    let permits = Arc::new(Semaphore::new(limits.connections_max));
    let shared = Arc::new(Shared {
        listener: which,
        limits,
        wire,
        metrics,
        open: AtomicUsize::new(0),
        pressure: watch::Sender::new(false),
        epoch: Instant::now(),
    });
    loop {
        // A permit first: at the cap, new connections wait in the kernel's backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = stopped(&mut stopping) => break,
        };
        let (tcp, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(listener = which.as_str(), %error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            _ = stopped(&mut stopping) => break,
        };
        let _ = tcp.set_nodelay(true);
        shared.opened();
        let connection = connection(
            shared.clone(),
            handshake.clone(),
            router.clone(),
            tcp,
            addr,
            stopping.clone(),
        );
        tokio::spawn(async move {
            connection.await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it closes: all of them back means all closed.
    let _ = permits.acquire_many(limits.connections_max as u32).await;
    Ok(())
}

/// Completes once `stopping` is true (or its sender is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    // The `Ref` that `wait_for` returns is not `Send`: drop it here, not in a caller's select.
    let _ = stopping.wait_for(|stopping| *stopping).await.is_ok();
}

/// One connection, from its handshake to its close.
async fn connection<H: Handshake>(
    shared: Arc<Shared>,
    handshake: H,
    router: Router,
    tcp: TcpStream,
    addr: SocketAddr,
    mut stopping: watch::Receiver<bool>,
) {
    let limits = shared.limits;
    let first_head = limits.idle_timeout + limits.header_read_timeout;
    // Until its handshake and its first bytes are in, a connection holds no request of anyone's:
    // at shutdown it closes at once, as an idle one does, rather than holding the drain (and
    // with it the node's Raft groups, led or not) for up to `first_head`: a peer that opened a
    // connection and sent nothing, or whose packets a partition lost, held a voter's stop for
    // 18 s in a fault run, its group refusing writes meanwhile.
    let handshaken = tokio::select! {
        handshaken = tokio::time::timeout(first_head, handshake.handshake(tcp)) => handshaken,
        _ = stopped(&mut stopping) => return shared.closed(None),
    };
    let io = match handshaken {
        Ok(Ok(io)) => io,
        Ok(Err(error)) => {
            tracing::debug!(%addr, %error, "handshake failed");
            return shared.closed(Some(CloseReason::Handshake));
        }
        Err(_) => return shared.closed(Some(CloseReason::Handshake)),
    };
    let (io, prefix) = match &shared.wire {
        None => (io, Bytes::new()),
        Some(admission) => match tokio::select! {
            opened = tokio::time::timeout(first_head, opening(io)) => opened,
            _ = stopped(&mut stopping) => return shared.closed(None),
        } {
            Ok(Ok(Opening::Wire(io))) => {
                let reason =
                    crate::wire::session(io, addr, router, limits, admission, stopping).await;
                return shared.closed(reason);
            }
            Ok(Ok(Opening::Http(io, prefix))) => (io, prefix),
            Ok(Err(_)) => return shared.closed(None),
            Err(_) => return shared.closed(Some(CloseReason::HeaderTimeout)),
        },
    };
    let activity = Arc::new(Activity::new(shared.stamp_ms()));
    let io = Watched {
        io,
        prefix,
        activity: activity.clone(),
        shared: shared.clone(),
    };
    let service = {
        let (shared, activity) = (shared.clone(), activity.clone());
        hyper::service::service_fn(move |request| {
            handle(
                shared.clone(),
                activity.clone(),
                router.clone(),
                addr,
                request,
            )
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // The watchdog's bounds come first; hyper's is a second line.
        .header_read_timeout(first_head + WRITE_GRACE)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    // Boxed, so that dropping it below closes the socket before the close is counted.
    let mut conn = Box::pin(conn);
    let mut pressure = shared.pressure.subscribe();
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut shutting_down = false;
    let reason = loop {
        let (deadline, reason) = activity.deadline(&limits, *pressure.borrow_and_update());
        sleep.as_mut().reset(shared.at(deadline));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%addr, %error, "connection ended with an error");
                }
                break None;
            }
            _ = activity.changed.notified() => {}
            Ok(()) = pressure.changed() => {}
            _ = stopped(&mut stopping), if !shutting_down => {
                // Idle connections close at once, busy ones after their answer.
                shutting_down = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = &mut sleep => {
                // The phase may have changed just now: close only if its deadline passed.
                let (deadline, _) = activity.deadline(&limits, *pressure.borrow());
                if shared.now_ms() >= deadline {
                    break Some(reason);
                }
            }
        }
    };
    if let Some(reason) = reason {
        tracing::debug!(%addr, reason = reason.as_str(), "connection closed by the server");
    }
    // Dropping the connection closes the socket and drops a handler still running.
    drop(conn);
    shared.closed(reason);
}

/// One request: its peer's address as [`ConnectInfo`], its bound, and the connection's phase.
async fn handle(
    shared: Arc<Shared>,
    activity: Arc<Activity>,
    router: Router,
    addr: SocketAddr,
    mut request: Request<Incoming>,
) -> Result<Response<Body>, std::convert::Infallible> {
    activity.begin(shared.stamp_ms());
    // Ends the busy phase when the answer has been written in full, or dropped.
    let guard = Busy {
        activity,
        shared: shared.clone(),
    };
    request.extensions_mut().insert(ConnectInfo(addr));
    let writes = request.method() != Method::GET && request.method() != Method::HEAD;
    let answer = tokio::time::timeout(
        shared.limits.request_timeout,
        router.oneshot(request.map(Body::new)),
    )
    .await;
    let response = match answer {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => request_timed_out(&shared.limits, writes),
    };
    let stream = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    if stream {
        guard.activity.stream.store(true, Ordering::Relaxed);
        guard.activity.changed.notify_one();
    }
    Ok(response.map(|body| {
        Body::new(body.map_frame(move |frame| {
            let _busy = &guard;
            frame
        }))
    }))
}

/// The answer of a request cut at `limits.request_timeout_ms`. A write may have been forwarded
/// and applied: its outcome is unknown. A read changed nothing.
pub(crate) fn request_timed_out(limits: &Limits, writes: bool) -> Response<Body> {
    let ms = limits.request_timeout.as_millis();
    if writes {
        crate::api_error::error(
            StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::OutcomeUnknown,
            format!(
                "the request was not answered within limits.request_timeout_ms ({ms} ms); its \
                 outcome is unknown: retry with the same Idempotency-Key to learn it"
            ),
        )
    } else {
        crate::api_error::error(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!("the request was not answered within limits.request_timeout_ms ({ms} ms)"),
        )
    }
}

/// What a connection of the internal listener opens with.
enum Opening<Io> {
    /// The internal wire's magic bytes, read.
    Wire(Io),
    /// Anything else: HTTP, and the bytes read so far, to be read again first.
    Http(Io, Bytes),
}

/// Read the first bytes of `io` until they are the wire's magic or cannot become it. An HTTP
/// request's first bytes (a method) differ from the magic's first, so HTTP waits for nothing
/// more than the first read.
async fn opening<Io: AsyncRead + Unpin>(mut io: Io) -> io::Result<Opening<Io>> {
    use flashstock_client::wire::MAGIC;
    use tokio::io::AsyncReadExt;
    let mut read = BytesMut::with_capacity(MAGIC.len());
    while read.len() < MAGIC.len() && MAGIC.starts_with(&read) {
        let mut byte = [0u8; MAGIC.len()];
        let wanted = MAGIC.len() - read.len();
        let n = io.read(&mut byte[..wanted]).await?;
        if n == 0 {
            break;
        }
        read.extend_from_slice(&byte[..n]);
    }
    Ok(if read[..] == MAGIC[..] {
        Opening::Wire(io)
    } else {
        Opening::Http(io, read.freeze())
    })
}

/// Held by a request's answer: the connection is busy until it is dropped.
struct Busy {
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.end(self.shared.stamp_ms());
    }
}

/// The connection's stream, telling [`Activity`] when bytes arrive; `prefix` holds bytes
/// already read from it ([`opening`]), which are read first.
struct Watched<Io> {
    io: Io,
    prefix: Bytes,
    activity: Arc<Activity>,
    shared: Arc<Shared>,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Watched<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head = self.prefix.split_to(n);
            buf.put_slice(&head);
            self.activity.read(&self.shared);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read(&self.shared);
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Watched<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;

    use super::*;

    /// Every request carries its peer's address, and the loop ends once stopped and drained.
    #[tokio::test]
    async fn requests_carry_the_peer_address_and_shutdown_drains() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (stop, stopping) = watch::channel(false);
        let served = tokio::spawn(serve(
            listener,
            Plaintext,
            router,
            Listening {
                which: Listener::Public,
                limits: limits(),
                wire: None,
            },
            Arc::new(Metrics::new(1)),
            stopping,
        ));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.ends_with(&local.to_string()), "{answer}");
        // An idle connection does not hold the shutdown up.
        let _idle = TcpStream::connect(addr).await.unwrap();
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the loop ends")
            .unwrap()
            .unwrap();
    }

    /// A TLS handshake whose client never sends its hello: it never completes.
    #[derive(Clone)]
    struct Stalled;

    impl Handshake for Stalled {
        type Io = TcpStream;
        async fn handshake(&self, _tcp: TcpStream) -> io::Result<TcpStream> {
            std::future::pending().await
        }
    }

    /// A connection whose handshake never completes closes at shutdown, rather than holding
    /// the drain until its bound (here a minute).
    #[tokio::test]
    async fn a_connection_stuck_in_its_handshake_does_not_hold_the_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new(1));
        let (stop, stopping) = watch::channel(false);
        let served = tokio::spawn(serve(
            listener,
            Stalled,
            Router::new(),
            Listening {
                which: Listener::Public,
                limits: Limits {
                    idle_timeout: Duration::from_secs(60),
                    ..limits()
                },
                wire: None,
            },
            metrics.clone(),
            stopping,
        ));
        let _silent = TcpStream::connect(addr).await.unwrap();
        let open = metrics.connections_open.with_label_values(&["public"]);
        let accepted_by = Instant::now() + Duration::from_secs(5);
        while open.get() == 0 {
            assert!(
                Instant::now() < accepted_by,
                "the connection was never accepted"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), served)
            .await
            .expect("the drain does not wait for the handshake's bound")
            .unwrap()
            .unwrap();
        assert_eq!(open.get(), 0);
    }

    fn limits() -> Limits {
        Limits {
            connections_max: 10,
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(2000),
            idle_timeout_under_pressure: Duration::from_millis(100),
            request_timeout: Duration::from_millis(60_000),
            stream_lifetime: Duration::from_millis(600_000),
        }
    }

    /// Each phase has its own bound, counted from its own start.
    #[test]
    fn the_deadline_follows_the_phase() {
        let limits = limits();
        let activity = Activity::new(1000);
        assert_eq!(activity.deadline(&limits, false), (3000, CloseReason::Idle));
        assert_eq!(
            activity.deadline(&limits, true),
            (1100, CloseReason::IdleUnderPressure)
        );
        // A first byte starts the header bound, pressure or not.
        activity.first_byte_ms.store(1500, Ordering::Relaxed);
        assert_eq!(
            activity.deadline(&limits, true),
            (1800, CloseReason::HeaderTimeout)
        );
        activity.begin(1600);
        let grace = WRITE_GRACE.as_millis() as u64;
        assert_eq!(
            activity.deadline(&limits, true),
            (1600 + 60_000 + grace, CloseReason::RequestTimeout)
        );
        activity.stream.store(true, Ordering::Relaxed);
        assert_eq!(activity.deadline(&limits, false).0, 1600 + 600_000 + grace);
        // The answer written: idle again, from then, with no head begun.
        activity.end(1700);
        assert_eq!(activity.deadline(&limits, false), (3700, CloseReason::Idle));
    }
}
