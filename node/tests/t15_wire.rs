//! The internal wire against real nodes: calls take the roles of their HTTP routes, nodes that
//! send over the wire and nodes that send over HTTP form one cluster, the opening refuses what
//! it does not speak, the public listener does not speak it, and a connection the server closed
//! for idleness is made again.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use cluster_config::Transport;
use common::{create, three_voters, ELECTION_WAIT};
use flashstock_api::{ErrorBody, ErrorCode, WriteRequest, WriteResponse, WIRE_VERSION};
use flashstock_client::wire::{
    codec, encode_call, CallError, Connector, Hello, Route, Welcome, WireClient, MAGIC,
};
use flashstock_deploy::local::LocalCluster;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::Framed;

const CALL_WAIT: Duration = Duration::from_secs(10);

fn connector(secret: &str) -> Connector {
    Connector {
        secret: Arc::from(secret),
        connect_timeout: Duration::from_secs(2),
        local: None,
        tls: None,
        idle: Duration::from_secs(10),
    }
}

fn write_body(key: &str, product: &str) -> Vec<u8> {
    bincode::serialize(&WriteRequest {
        commands: vec![create(key, product, 5)],
    })
    .expect("a request serializes")
}

fn error_code(body: &[u8]) -> ErrorCode {
    serde_json::from_slice::<ErrorBody>(body)
        .expect("an error body")
        .code
}

/// Node 3 sends over HTTP, nodes 1 and 2 over the wire: every node serves both, so the
/// cluster replicates to all three. A call over the wire is handled as its HTTP route is: a
/// write with the operator's credential is applied, nobody's credential is refused at the
/// opening (`unauthorized`), and a gateway's credential may not send Raft's appends (403).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wire_calls_take_the_roles_of_their_routes_in_a_mixed_cluster() {
    let cluster = three_voters(|config| {
        if config.node.id == 3 {
            config.raft.transport = Transport::Http;
        }
    })
    .await;
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader");
    let addr = cluster.addr(leader);

    let operator = WireClient::new(addr.clone(), connector(&cluster.operator_secret));
    let reply = operator
        .call(Route::Write, &write_body("wire-1", "wire-tee"), CALL_WAIT)
        .await
        .expect("a reply");
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let answer: WriteResponse = bincode::deserialize(&reply.body).expect("a write answer");
    let WriteResponse::Applied { log_index, .. } = answer else {
        panic!("the leader applies the write: {answer:?}");
    };
    for id in cluster.voter_ids() {
        cluster
            .wait_applied(id, log_index, CALL_WAIT)
            .await
            .unwrap_or_else(|e| panic!("node {id} applies the write: {e}"));
        let page = cluster
            .voter_client()
            .product(&cluster.addr(id), "wire-tee")
            .await
            .unwrap_or_else(|e| panic!("node {id} answers: {e}"));
        assert_eq!(page.items.len(), 1, "node {id} holds the product");
    }

    // Nobody's credential is refused at the opening, before any call is read.
    let stranger = WireClient::new(addr.clone(), connector("nobody's secret"));
    let error = stranger
        .call(Route::Write, &write_body("wire-2", "wire-cap"), CALL_WAIT)
        .await
        .expect_err("a stranger is refused");
    assert!(
        matches!(&error, CallError::NotSent(message) if message.contains("unauthorized")),
        "{error}"
    );

    let gateway = WireClient::new(addr, connector(&cluster.gateway_secret));
    let reply = gateway
        .call(Route::Append, b"not an append", CALL_WAIT)
        .await
        .expect("a reply");
    assert_eq!(reply.status, 403);
    assert_eq!(error_code(&reply.body), ErrorCode::Forbidden);
    let page = cluster
        .voter_client()
        .product(&cluster.addr(leader), "wire-cap")
        .await;
    assert!(
        !matches!(&page, Ok(page) if !page.items.is_empty()),
        "the refused write changed nothing: {page:?}"
    );
}

/// The opening, byte by byte: a hello of versions this node does not speak is answered with
/// the magic and a refusal naming `unsupported_version`, then the connection closes; after an
/// accepted hello, a call of an unknown route, or of a Raft group this node does not run, is
/// answered 400 `invalid_request`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_opening_refuses_unknown_versions_and_calls() {
    let cluster = three_voters(|_| {}).await;
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader");

    let refused = opening(&cluster, leader, (90, 99), &cluster.voter_secret).await;
    let Err((code, message, mut framed)) = refused else {
        panic!("versions 90 to 99 are refused");
    };
    assert_eq!(code, ErrorCode::UnsupportedVersion, "{message}");
    assert!(message.contains("90 to 99"), "{message}");
    let closed = tokio::time::timeout(CALL_WAIT, framed.next()).await;
    assert!(
        matches!(closed, Ok(None) | Ok(Some(Err(_)))),
        "the connection closes after a refusal"
    );

    let Ok(mut framed) = opening(&cluster, leader, (1, 99), &cluster.voter_secret).await else {
        panic!("versions 1 to 99 share this release's version");
    };
    let mut call = BytesMut::from(&encode_call(WIRE_VERSION, 5, Route::Vote, 0, b"")[..]);
    call[8] = 99;
    framed.send(call.freeze()).await.expect("send a call");
    let reply = tokio::time::timeout(CALL_WAIT, framed.next())
        .await
        .expect("a reply in time")
        .expect("a reply")
        .expect("a frame");
    assert_eq!(
        &reply[..8],
        &5u64.to_be_bytes(),
        "the reply carries the call's id"
    );
    assert_eq!(&reply[8..10], &400u16.to_be_bytes());
    assert_eq!(error_code(&reply[10..]), ErrorCode::InvalidRequest);

    // A vote for group 7, which a one-group node does not run: refused before Raft sees it.
    framed
        .send(encode_call(WIRE_VERSION, 6, Route::Vote, 7, b"not a vote"))
        .await
        .expect("send a call");
    let reply = tokio::time::timeout(CALL_WAIT, framed.next())
        .await
        .expect("a reply in time")
        .expect("a reply")
        .expect("a frame");
    assert_eq!(&reply[8..10], &400u16.to_be_bytes());
    let body: ErrorBody = serde_json::from_slice(&reply[10..]).unwrap();
    assert_eq!(body.code, ErrorCode::InvalidRequest);
    assert!(body.message.contains("not group 7"), "{}", body.message);
}

/// Over HTTP, a call names its group with a header: another group than 0 needs a request of a
/// wire version that has groups (a release without them would take it for group 0), and a
/// group the node runs. Both refusals come before the body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_http_call_for_a_group_the_node_does_not_run_is_refused() {
    use flashstock_api::{GROUP_HEADER, SECRET_HEADER, WIRE_VERSION_GROUPS, WIRE_VERSION_HEADER};
    let cluster = three_voters(|_| {}).await;
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader");
    let http = reqwest::Client::new();
    let url = format!("http://{}{}", cluster.addr(leader), Route::Vote.path());
    for (version, group, refusal) in [
        (1, "1", "names no group"),
        (WIRE_VERSION_GROUPS, "1", "not group 1"),
        (WIRE_VERSION_GROUPS, "one", "must be a group number"),
    ] {
        let response = http
            .post(&url)
            .header(SECRET_HEADER, &cluster.voter_secret)
            .header(WIRE_VERSION_HEADER, version)
            .header(GROUP_HEADER, group)
            .body("not a vote")
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), 400, "version {version}, group {group}");
        let body: ErrorBody = response.json().await.expect("an error body");
        assert_eq!(body.code, ErrorCode::InvalidRequest);
        assert!(body.message.contains(refusal), "{}", body.message);
    }
    // Group 0 named outright is the group a call without the header reaches.
    let response = http
        .post(&url)
        .header(SECRET_HEADER, &cluster.voter_secret)
        .header(GROUP_HEADER, "0")
        .body("not a vote")
        .send()
        .await
        .expect("an answer");
    let body: ErrorBody = response.json().await.expect("an error body");
    assert!(body.message.contains("undecodable"), "{}", body.message);
}

/// How large a frame may be depends on who opened the connection: a voter's may carry a Raft
/// append, far above `limits.body_bytes_max`; a gateway's only what its routes take. A frame
/// past the caller's bound closes the connection unanswered, and a hello of nobody's
/// credential is refused before any frame is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frames_are_bounded_by_who_opened_the_connection() {
    const BODY_BYTES_MAX: usize = 4096;
    let cluster = three_voters(|config| config.limits.body_bytes_max = BODY_BYTES_MAX).await;
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader");
    let Err((code, _, _)) = opening(&cluster, leader, (1, 1), "nobody's secret").await else {
        panic!("nobody's credential is refused");
    };
    assert_eq!(code, ErrorCode::Unauthorized);

    let large = vec![0u8; 4 * BODY_BYTES_MAX];
    for (who, secret, answered) in [
        ("a voter", cluster.voter_secret.clone(), true),
        ("a gateway", cluster.gateway_secret.clone(), false),
    ] {
        let Ok(mut framed) = opening(&cluster, leader, (1, 1), &secret).await else {
            panic!("{who} is accepted");
        };
        framed
            .send(encode_call(1, 1, Route::Append, 0, &large))
            .await
            .expect("send a call");
        let next = tokio::time::timeout(CALL_WAIT, framed.next())
            .await
            .expect("an answer or a close in time");
        match next {
            // Not an append: answered 400 (a voter), or 403 before the body (a gateway).
            Some(Ok(reply)) => assert!(answered, "{who}'s frame was read: {:?}", &reply[8..10]),
            None | Some(Err(_)) => assert!(!answered, "{who}'s frame closed the connection"),
        }
    }
}

type Frames = Framed<tokio::net::TcpStream, tokio_util::codec::LengthDelimitedCodec>;

/// Open a wire connection to `id` with a hello of `wire_min..=wire_max` and `secret`: the
/// framed connection once accepted, or the refusal.
async fn opening(
    cluster: &LocalCluster,
    id: u64,
    (wire_min, wire_max): (u32, u32),
    secret: &str,
) -> Result<Frames, (ErrorCode, String, Frames)> {
    let mut tcp = tokio::net::TcpStream::connect(cluster.addr(id))
        .await
        .expect("connect");
    let hello = bincode::serialize(&Hello {
        wire_min,
        wire_max,
        secret: secret.to_owned(),
    })
    .expect("a hello serializes");
    let mut first = BytesMut::new();
    first.put_slice(&MAGIC);
    first.put_u32(hello.len() as u32);
    first.put_slice(&hello);
    tcp.write_all(&first).await.expect("send the opening");
    let mut magic = [0u8; 8];
    tcp.read_exact(&mut magic).await.expect("the magic back");
    assert_eq!(magic, MAGIC);
    let mut framed = Framed::new(tcp, codec(1 << 20));
    let welcome = framed
        .next()
        .await
        .expect("a welcome")
        .expect("a welcome frame");
    match bincode::deserialize::<Welcome>(&welcome).expect("a welcome decodes") {
        Welcome::Accepted { wire } => {
            // The highest version both speak.
            assert_eq!(wire, WIRE_VERSION.min(wire_max));
            Ok(framed)
        }
        Welcome::Refused { code, message } => Err((code, message, framed)),
    }
}

/// The public listener serves HTTP only: a wire client that dials it learns that the other
/// side does not speak the wire, and nothing reaches the internal routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_public_listener_does_not_speak_the_wire() {
    let cluster = common::formed(3, 1, |_| {}).await;
    let gateway = cluster.gateway_ids()[0];
    let public = cluster.public_url(gateway);
    let public = public.trim_start_matches("http://");
    let client = WireClient::new(public.to_owned(), connector(&cluster.voter_secret));
    let error = client
        .call(
            Route::Write,
            &write_body("wire-public", "wire-public"),
            CALL_WAIT,
        )
        .await
        .expect_err("no wire on the public listener");
    assert!(matches!(error, CallError::NotSpoken(_)), "{error}");
}

/// A wire connection left idle past `limits.idle_timeout_ms` is closed by the server (counted
/// with reason `idle`); the client's next call connects again and is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_wire_connection_is_closed_and_made_again() {
    let cluster = three_voters(|config| {
        config.limits.idle_timeout_ms = 1000;
        config.limits.idle_timeout_under_pressure_ms = 500;
    })
    .await;
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader");
    let client = WireClient::new(cluster.addr(leader), connector(&cluster.operator_secret));
    let reply = client
        .call(Route::Write, &write_body("idle-1", "idle-tee"), CALL_WAIT)
        .await
        .expect("a reply");
    assert_eq!(reply.status, 200);
    let again = client
        .call(Route::Write, &write_body("idle-1b", "idle-hat"), CALL_WAIT)
        .await
        .expect("a reply");
    assert_eq!(again.status, 200);
    assert_eq!(
        client.connections_opened(),
        1,
        "one connection carries both calls"
    );
    let before = common::closed_by_server(&cluster, leader, "internal", "idle").await;
    let deadline = tokio::time::Instant::now() + CALL_WAIT;
    while client.connected().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server closes an idle connection within {CALL_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = common::closed_by_server(&cluster, leader, "internal", "idle").await;
    assert!(
        after > before,
        "the server closed it for idleness: {before} then {after}"
    );
    let reply = client
        .call(Route::Write, &write_body("idle-2", "idle-cap"), CALL_WAIT)
        .await
        .expect("the next call connects again");
    assert_eq!(reply.status, 200);
    assert_eq!(
        client.connections_opened(),
        2,
        "the closed connection was made again"
    );
}
