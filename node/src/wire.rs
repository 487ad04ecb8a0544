//! The server side of the internal wire ([`flashstock_client::wire`] has the protocol and the
//! client): a connection on the internal listener that opens with the wire's magic bytes is
//! served here instead of by hyper.
//!
//! Each call becomes the HTTP request of its route, with the credential of the connection's
//! hello as its `x-flashstock-secret` header, the version chosen as its wire version and the
//! call's Raft group, when not 0, as its `x-flashstock-group` header, and goes through the same router as an HTTP request would: the same roles, body limits, metrics
//! and handlers. Its answer goes back as a reply frame with its status and body.
//!
//! Bounds, beside the connection cap that the connection counts against like any other:
//!
//! | what | bound |
//! |---|---|
//! | the hello | [`HELLO_BYTES_MAX`], within `limits.header_read_timeout_ms` after the magic |
//! | who | the hello's credential must be a voter's, a gateway's or an operator's; anyone else's is refused (`unauthorized`) before any call is read |
//! | a frame | a voter's: the body limit of a Raft RPC ([`crate::internal::raft_body_bytes_max`]); a gateway's or an operator's: `limits.body_bytes_max`, the limit of the routes they may call |
//! | calls in flight | [`IN_FLIGHT_MAX`]: the next frame is read only when one finishes |
//! | a call | `limits.request_timeout_ms`, then answered as an HTTP request cut there is |
//! | no frame and no call in flight | `limits.idle_timeout_ms`, then closed |
//! | a peer that stops reading | [`WRITE_GRACE`] for one flush, then closed |
//!
//! Shutdown: once `stopping` turns true no further call is read; calls in flight finish within
//! their bound and are answered, then the connection closes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::Router;
use flashstock_api::{
    ErrorBody, ErrorCode, GROUP_HEADER, SECRET_HEADER, WIRE_VERSION, WIRE_VERSION_HEADER,
    WIRE_VERSION_MIN,
};
use flashstock_client::wire::{
    self, choose_version, decode_call, encode_reply, Hello, Route, Welcome, IN_FLIGHT_MAX, MAGIC,
};
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};
use tower::ServiceExt;

use crate::auth::{Caller, Credentials};
use crate::server::{request_timed_out, CloseReason, Limits, WRITE_GRACE};

/// Largest hello: the versions and a credential. Read before the caller is known, so small.
pub const HELLO_BYTES_MAX: usize = 4096;
/// The most a call frame adds to its body: the id, the route and the group.
const CALL_HEADER_BYTES: usize = 11;

/// Who may open the wire on a listener, and how large each one's frames may be.
#[derive(Clone)]
pub struct Admission {
    credentials: Arc<Credentials>,
    /// A voter's frames carry Raft's appends.
    voter_frame_bytes_max: usize,
    /// A gateway's or an operator's carry writes and read-index calls.
    frame_bytes_max: usize,
}

impl Admission {
    /// `body_bytes_max`: `limits.body_bytes_max`.
    pub fn new(credentials: Arc<Credentials>, body_bytes_max: usize) -> Admission {
        Admission {
            credentials,
            voter_frame_bytes_max: crate::internal::raft_body_bytes_max(body_bytes_max)
                + CALL_HEADER_BYTES,
            frame_bytes_max: body_bytes_max + CALL_HEADER_BYTES,
        }
    }

    fn frame_bytes_max(&self, caller: Caller) -> usize {
        match caller {
            Caller::Voter => self.voter_frame_bytes_max,
            Caller::Gateway | Caller::Operator => self.frame_bytes_max,
        }
    }
}

/// Serve one wire connection whose magic bytes have been read; returns why the server closed
/// it, if it did.
pub(crate) async fn session<Io>(
    io: Io,
    addr: SocketAddr,
    router: Router,
    limits: Limits,
    admission: &Admission,
    mut stopping: watch::Receiver<bool>,
) -> Option<CloseReason>
where
    Io: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (read, write) = tokio::io::split(io);
    let mut calls = FramedRead::new(read, wire::codec(HELLO_BYTES_MAX));
    let mut sink = FramedWrite::new(write, wire::codec(u32::MAX as usize));
    // A connection that has not said hello holds no call: at shutdown it closes at once.
    let hello = tokio::select! {
        hello = tokio::time::timeout(limits.header_read_timeout, calls.next()) => hello,
        _ = stopping.wait_for(|stopping| *stopping) => return None,
    };
    let hello = match hello {
        Ok(Some(Ok(frame))) => bincode::deserialize::<Hello>(&frame).ok()?,
        Ok(_) => return None,
        Err(_) => return Some(CloseReason::HeaderTimeout),
    };
    // Nobody's credential is refused before any call is read (as the router would refuse
    // each one with 401), and before the version: a stranger learns nothing of this node.
    let caller = admission.credentials.identify(hello.secret.as_bytes());
    let chosen = choose_version(&hello, WIRE_VERSION_MIN, WIRE_VERSION);
    let welcome = match (caller, chosen) {
        (None, _) => Welcome::Refused {
            code: ErrorCode::Unauthorized,
            message: "the connection's credential is not one this node accepts".into(),
        },
        (Some(_), Some(wire)) => Welcome::Accepted { wire },
        (Some(_), None) => Welcome::Refused {
            code: ErrorCode::UnsupportedVersion,
            message: format!(
                "the connection speaks internal wire versions {} to {}; this node (flashstock \
                 {}) speaks versions {WIRE_VERSION_MIN} to {WIRE_VERSION}: upgrade the older side",
                hello.wire_min,
                hello.wire_max,
                env!("CARGO_PKG_VERSION")
            ),
        },
    };
    let opening = async {
        sink.get_mut().write_all(&MAGIC).await?;
        let welcome = bincode::serialize(&welcome).expect("a welcome serializes");
        sink.send(axum::body::Bytes::from(welcome)).await
    };
    if tokio::time::timeout(WRITE_GRACE, opening).await.is_err() {
        return None;
    }
    let (caller, wire) = (caller?, chosen?);
    calls
        .decoder_mut()
        .set_max_frame_length(admission.frame_bytes_max(caller));
    // A credential that is no header value is nobody's: the router refuses every call with 401.
    let secret = HeaderValue::from_str(&hello.secret).unwrap_or(HeaderValue::from_static(""));
    let version = HeaderValue::from(wire);

    let (replies, outgoing) = mpsc::channel(IN_FLIGHT_MAX);
    let writer = tokio::spawn(async move {
        let _ = wire::pump(outgoing, &mut sink, WRITE_GRACE).await;
        let _ = sink.into_inner().shutdown().await;
    });
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let reason = loop {
        // A place first: past the bound, the next call stays unread in the socket.
        let permit = tokio::select! {
            permit = in_flight.clone().acquire_owned() => permit.expect("never closed"),
            _ = replies.closed() => break None,
            _ = stopping.wait_for(|stopping| *stopping) => break None,
        };
        idle.as_mut()
            .reset(tokio::time::Instant::now() + limits.idle_timeout);
        let frame = loop {
            tokio::select! {
                frame = calls.next() => break frame,
                _ = &mut idle => {
                    // Idle only with nothing in flight (this loop holds one place itself).
                    if in_flight.available_permits() + 1 == IN_FLIGHT_MAX {
                        break None;
                    }
                    idle.as_mut().reset(tokio::time::Instant::now() + limits.idle_timeout);
                }
                _ = replies.closed() => break None,
                _ = stopping.wait_for(|stopping| *stopping) => break None,
            }
        };
        let Some(Ok(frame)) = frame else {
            break idle.is_elapsed().then_some(CloseReason::Idle);
        };
        let Some(wire::Call {
            id,
            tag,
            group,
            body,
        }) = decode_call(wire, frame.freeze())
        else {
            break None;
        };
        let replies = replies.clone();
        let Some(route) = Route::from_tag(tag) else {
            let body = serde_json::to_vec(&ErrorBody {
                code: ErrorCode::InvalidRequest,
                message: format!("unknown call {tag} on the internal wire"),
            })
            .expect("an error body serializes");
            let _ = replies
                .send(encode_reply(id, StatusCode::BAD_REQUEST.as_u16(), &body))
                .await;
            continue;
        };
        let mut request = Request::post(route.path())
            .header(SECRET_HEADER, secret.clone())
            .header(WIRE_VERSION_HEADER, version.clone());
        if group != 0 {
            request = request.header(GROUP_HEADER, HeaderValue::from(group));
        }
        let mut request = request
            .body(Body::from(body))
            .expect("a request of a known path and valid headers builds");
        request.extensions_mut().insert(ConnectInfo(addr));
        let router = router.clone();
        tokio::spawn(async move {
            let (status, body) = answer(router, request, &limits).await;
            let _ = replies.send(encode_reply(id, status, &body)).await;
            drop(permit);
        });
    };
    // Calls in flight finish and are answered, within their bound; then the writer flushes.
    drop(replies);
    let _ = tokio::time::timeout(limits.request_timeout + WRITE_GRACE, writer).await;
    reason
}

/// The router's answer to one call, its body read in full, within the call's bound.
async fn answer(
    router: Router,
    request: Request<Body>,
    limits: &Limits,
) -> (u16, axum::body::Bytes) {
    let answered = async {
        let response = router
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, body))
    };
    match tokio::time::timeout(limits.request_timeout, answered).await {
        Ok(Some(answer)) => answer,
        // Every call of the wire may write (a proposal, an append): its outcome is unknown.
        _ => {
            let response = request_timed_out(limits, true);
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .unwrap_or_default();
            (status, body)
        }
    }
}
