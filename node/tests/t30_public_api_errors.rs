//! Bad input through the public API: every case gets its documented status and stable error
//! code, and changes nothing. Also: every route in the OpenAPI document is served.

mod common;

use common::*;
use flashstock_api::{CreateProductRequest, ErrorBody, ErrorCode, ProductView};
use flashstock_deploy::local::LocalCluster;
use reqwest::{Client, Method, StatusCode};

/// A status and the error code of the body, if it is an error.
type Answer = (StatusCode, Option<String>);

struct Probe {
    http: Client,
    base: String,
    admin_token: String,
}

impl Probe {
    fn new(cluster: &LocalCluster) -> Probe {
        Probe {
            http: Client::new(),
            base: cluster.public_url(cluster.gateway_ids()[0]),
            admin_token: cluster.admin_token.clone(),
        }
    }

    /// Send a request and return its status and error code (if the body is an error).
    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let code = response
            .json::<ErrorBody>()
            .await
            .ok()
            .map(|body| body.code.to_string());
        (status, code)
    }

    /// A purchase whose head announces `length` body bytes, of which only `sent` follow; then
    /// the answer, read until the gateway closes the connection.
    async fn raw_purchase(&self, key: &str, length: usize, sent: &[u8]) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST /v1/products/tee/purchase HTTP/1.1\r\nhost: {addr}\r\n\
             idempotency-key: {key}\r\ncontent-type: application/json\r\n\
             content-length: {length}\r\nconnection: close\r\n\r\n"
        );
        stream
            .write_all(head.as_bytes())
            .await
            .expect("send the head");
        stream.write_all(sent).await.expect("send part of the body");
        let mut answer = Vec::new();
        stream
            .read_to_end(&mut answer)
            .await
            .expect("read the answer");
        let answer = String::from_utf8_lossy(&answer);
        let status: u16 = answer
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
        let code = serde_json::from_str::<ErrorBody>(body)
            .ok()
            .map(|b| b.code.to_string());
        (StatusCode::from_u16(status).unwrap(), code)
    }

    async fn purchase(&self, product: &str, key: Option<&str>, body: &str) -> Answer {
        let headers: Vec<(&str, &str)> = key.map(|k| ("idempotency-key", k)).into_iter().collect();
        self.send(
            Method::POST,
            &format!("/v1/products/{product}/purchase"),
            &headers,
            Some(body.as_bytes().to_vec()),
        )
        .await
    }
}

async fn stock_and_sold(cluster: &LocalCluster) -> (u64, u64) {
    let view: ProductView = cluster
        .shop_client()
        .product_linearizable("tee")
        .await
        .expect("read");
    (view.product.stock, view.product.sold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_its_error_and_changes_nothing() {
    let cluster = six_nodes(|_| {}).await;
    let shop = cluster.shop_client();
    shop.create_product(&CreateProductRequest {
        id: "tee".into(),
        name: "Tee".into(),
        price_cents: 1500,
        stock: 10,
        limit_per_customer: None,
    })
    .await
    .unwrap();
    shop.purchase_with_key("first", "tee", 1).await.unwrap();
    let before = stock_and_sold(&cluster).await;
    let probe = Probe::new(&cluster);
    let bad = |code: &str| (StatusCode::BAD_REQUEST, Some(code.to_string()));
    let restock = serde_json::json!({"op": "restock", "id": "tee", "quantity": 1});
    let too_many_restocks = serde_json::to_vec(&serde_json::json!({
        "items": vec![restock; cluster_config::defaults::DEFAULT_COMMANDS_PER_ENTRY_MAX + 1]
    }))
    .unwrap();

    let cases: Vec<(&str, Answer, Answer)> = vec![
        (
            "malformed JSON",
            probe.purchase("tee", Some("k1"), r#"{"quantity":"#).await,
            bad("invalid_request"),
        ),
        (
            "wrong type",
            probe
                .purchase("tee", Some("k2"), r#"{"quantity":"two"}"#)
                .await,
            bad("invalid_request"),
        ),
        (
            "negative quantity",
            probe
                .purchase("tee", Some("k3"), r#"{"quantity":-1}"#)
                .await,
            bad("invalid_request"),
        ),
        (
            "zero quantity",
            probe.purchase("tee", Some("k4"), r#"{"quantity":0}"#).await,
            bad("invalid_request"),
        ),
        (
            "quantity above the limit",
            probe
                .purchase("tee", Some("k5"), r#"{"quantity":1001}"#)
                .await,
            bad("invalid_request"),
        ),
        (
            "quantity beyond u32",
            probe
                .purchase("tee", Some("k6"), r#"{"quantity":99999999999}"#)
                .await,
            bad("invalid_request"),
        ),
        (
            "unknown field",
            probe
                .purchase("tee", Some("k7"), r#"{"quantity":1,"price":0}"#)
                .await,
            bad("invalid_request"),
        ),
        (
            "not an object",
            probe.purchase("tee", Some("k8"), "[1]").await,
            bad("invalid_request"),
        ),
        (
            "missing key",
            probe.purchase("tee", None, r#"{"quantity":1}"#).await,
            bad("invalid_request"),
        ),
        (
            "key too long",
            probe
                .purchase("tee", Some(&"k".repeat(200)), r#"{"quantity":1}"#)
                .await,
            bad("invalid_request"),
        ),
        (
            "bad product id",
            probe
                .purchase("no%20such", Some("k9"), r#"{"quantity":1}"#)
                .await,
            bad("invalid_request"),
        ),
        (
            "unknown product",
            probe
                .purchase("nope", Some("k10"), r#"{"quantity":1}"#)
                .await,
            (StatusCode::NOT_FOUND, Some("unknown_product".into())),
        ),
        (
            "key reused with another body",
            probe
                .purchase("tee", Some("first"), r#"{"quantity":2}"#)
                .await,
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Some("idempotency_key_reused".into()),
            ),
        ),
        (
            "sold out",
            probe
                .purchase("tee", Some("k11"), r#"{"quantity":100}"#)
                .await,
            (StatusCode::CONFLICT, Some("insufficient_stock".into())),
        ),
        (
            "oversized body",
            // Refused from the announced length alone, before any of the body is read.
            probe.raw_purchase("k12", 2 * 1024 * 1024, b"").await,
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("payload_too_large".into()),
            ),
        ),
        (
            "admin without a token",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products/tee/restock",
                    &[("idempotency-key", "k13")],
                    Some(br#"{"quantity":5}"#.to_vec()),
                )
                .await,
            (StatusCode::UNAUTHORIZED, Some("unauthorized".into())),
        ),
        (
            "admin with a wrong token",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products",
                    &[
                        ("idempotency-key", "k14"),
                        ("authorization", "Bearer not-the-token"),
                    ],
                    Some(br#"{"id":"x","name":"X","price_cents":1,"stock":1}"#.to_vec()),
                )
                .await,
            (StatusCode::UNAUTHORIZED, Some("unauthorized".into())),
        ),
        (
            "restock by zero",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products/tee/restock",
                    &[
                        ("idempotency-key", "k15"),
                        ("authorization", &format!("Bearer {}", probe.admin_token)),
                    ],
                    Some(br#"{"quantity":0}"#.to_vec()),
                )
                .await,
            bad("invalid_request"),
        ),
        (
            "create an existing product",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products",
                    &[
                        ("idempotency-key", "k16"),
                        ("authorization", &format!("Bearer {}", probe.admin_token)),
                    ],
                    Some(br#"{"id":"tee","name":"Again","price_cents":1,"stock":1}"#.to_vec()),
                )
                .await,
            (StatusCode::CONFLICT, Some("product_exists".into())),
        ),
        (
            "bulk: one bad item refuses the whole request",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products/bulk",
                    &[
                        ("idempotency-key", "k17"),
                        ("authorization", &format!("Bearer {}", probe.admin_token)),
                    ],
                    Some(
                        br#"{"items":[{"op":"restock","id":"tee","quantity":5},
                                      {"op":"restock","id":"bad id","quantity":5}]}"#
                            .to_vec(),
                    ),
                )
                .await,
            bad("invalid_request"),
        ),
        (
            "bulk: more items than an entry holds",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products/bulk",
                    &[
                        ("idempotency-key", "k18"),
                        ("authorization", &format!("Bearer {}", probe.admin_token)),
                    ],
                    Some(too_many_restocks.clone()),
                )
                .await,
            bad("invalid_request"),
        ),
        (
            "bulk: no items",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products/bulk",
                    &[
                        ("idempotency-key", "k19"),
                        ("authorization", &format!("Bearer {}", probe.admin_token)),
                    ],
                    Some(br#"{"items":[]}"#.to_vec()),
                )
                .await,
            bad("invalid_request"),
        ),
        (
            "bulk: a key with no room for the items' suffix",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products/bulk",
                    &[
                        ("idempotency-key", &"k".repeat(flashstock_api::KEY_LEN_MAX)),
                        ("authorization", &format!("Bearer {}", probe.admin_token)),
                    ],
                    Some(br#"{"items":[{"op":"restock","id":"tee","quantity":5}]}"#.to_vec()),
                )
                .await,
            bad("invalid_request"),
        ),
        (
            "bulk without a token",
            probe
                .send(
                    Method::POST,
                    "/v1/admin/products/bulk",
                    &[("idempotency-key", "k20")],
                    Some(br#"{"items":[{"op":"restock","id":"tee","quantity":5}]}"#.to_vec()),
                )
                .await,
            (StatusCode::UNAUTHORIZED, Some("unauthorized".into())),
        ),
        (
            "bad order id",
            probe.send(Method::GET, "/v1/orders/abc", &[], None).await,
            bad("invalid_request"),
        ),
        (
            "bad page size",
            probe
                .send(Method::GET, "/v1/products?limit=100000", &[], None)
                .await,
            bad("invalid_request"),
        ),
        (
            "bad consistency",
            probe
                .send(
                    Method::GET,
                    "/v1/products/tee?consistency=eventual",
                    &[],
                    None,
                )
                .await,
            bad("invalid_request"),
        ),
        (
            "unknown route",
            probe.send(Method::GET, "/v1/nothing", &[], None).await,
            (StatusCode::NOT_FOUND, Some("not_found".into())),
        ),
        (
            "wrong method",
            probe
                .send(Method::DELETE, "/v1/products/tee", &[], None)
                .await,
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Some("method_not_allowed".into()),
            ),
        ),
    ];
    let mut failures = Vec::new();
    for (name, got, want) in &cases {
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(
        stock_and_sold(&cluster).await,
        before,
        "bad input changed nothing"
    );
    let orders = cluster
        .voter_client()
        .all_orders(&cluster.addr(cluster.voter_ids()[0]))
        .await
        .unwrap();
    assert_eq!(orders.len(), 1, "only the first purchase placed an order");
}

/// Every operation of the OpenAPI document is served (no `not_found`, no 405).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_documented_route_is_served() {
    let cluster = six_nodes(|_| {}).await;
    let probe = Probe::new(&cluster);
    let doc: serde_json::Value = probe
        .http
        .get(format!("{}/v1/openapi.json", probe.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10);
    for (path, operations) in paths {
        for method in operations.as_object().unwrap().keys() {
            if path == "/v1/stream" {
                continue; // an endless stream; checked in t20
            }
            let concrete = path.replace("{id}", "1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, code) = probe
                .send(method.clone(), &concrete, &[], Some(b"{}".to_vec()))
                .await;
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert_ne!(code.as_deref(), Some("not_found"), "{method} {path}");
        }
    }
}

/// A gateway whose queue is full sheds load with 503 `overloaded` and `Retry-After`, and what
/// it shed was not applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_sheds_load_and_applies_nothing_it_shed() {
    let cluster = six_nodes(|config| {
        config.gateway.queue_max = 1;
        config.gateway.batch_items_max = 1;
        config.gateway.forward_connections_max = 1;
    })
    .await;
    cluster
        .shop_client()
        .create_product(&CreateProductRequest {
            id: "tee".into(),
            name: "Tee".into(),
            price_cents: 1500,
            stock: 1_000_000,
            limit_per_customer: None,
        })
        .await
        .unwrap();
    let probe = std::sync::Arc::new(Probe::new(&cluster));
    let mut buyers = tokio::task::JoinSet::new();
    for i in 0..300 {
        let probe = probe.clone();
        buyers.spawn(async move {
            let key = format!("shed-{i}");
            let response = probe
                .http
                .post(format!("{}/v1/products/tee/purchase", probe.base))
                .header("idempotency-key", &key)
                .header("content-type", "application/json")
                .body(r#"{"quantity":1}"#)
                .send()
                .await
                .unwrap();
            let retry_after = response.headers().get("retry-after").cloned();
            let status = response.status();
            let code = response
                .json::<ErrorBody>()
                .await
                .ok()
                .map(|b| b.code.to_string());
            (key, status, code, retry_after)
        });
    }
    let mut shed = Vec::new();
    let mut confirmed = 0;
    while let Some(result) = buyers.join_next().await {
        let (key, status, code, retry_after) = result.unwrap();
        match status {
            StatusCode::OK => confirmed += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(code.as_deref(), Some("overloaded"));
                assert!(retry_after.is_some(), "503 overloaded carries Retry-After");
                shed.push(key);
            }
            other => panic!("{key}: unexpected {other} {code:?}"),
        }
    }
    assert!(
        !shed.is_empty(),
        "a queue of one sheds some of 300 concurrent buyers"
    );
    assert!(confirmed > 0);
    let orders = cluster
        .voter_client()
        .all_orders(&cluster.addr(cluster.voter_ids()[0]))
        .await
        .unwrap();
    assert_eq!(
        orders.len(),
        confirmed,
        "exactly the confirmed purchases were applied"
    );
    assert!(orders.iter().all(|o| !shed.contains(&o.key)));
}

/// Internal and admin endpoints refuse calls without a known credential, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn internal_endpoints_require_the_cluster_secret() {
    let cluster = six_nodes(|_| {}).await;
    let http = Client::new();
    let voter = cluster.addr(cluster.voter_ids()[0]);
    let write = bincode::serialize(&flashstock_api::WriteRequest {
        commands: vec![create("k", "sneaky", 5)],
    })
    .unwrap();
    for (path, body) in [
        ("/internal/write", write),
        ("/raft/append", b"x".to_vec()),
        ("/raft/vote", b"x".to_vec()),
        ("/admin/init", Vec::new()),
        ("/admin/snapshot", Vec::new()),
    ] {
        for secret in [None, Some("not-the-cluster-secret")] {
            let mut request = http
                .post(format!("http://{voter}{path}"))
                .body(body.clone());
            if let Some(secret) = secret {
                request = request.header(flashstock_api::SECRET_HEADER, secret);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{path} {secret:?}"
            );
        }
    }
    let status = http
        .get(format!("http://{voter}/admin/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), StatusCode::UNAUTHORIZED);
    let missing = cluster.shop_client().product("sneaky").await.unwrap_err();
    assert_eq!(
        missing.code(),
        ErrorCode::UnknownProduct,
        "the refused write changed nothing"
    );
}

/// A request of an internal wire version the node does not speak is refused with
/// `unsupported_version`, naming both versions, and does nothing; the node answers the version
/// it speaks, and a request without the header is taken as version 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_wire_version_is_refused_and_changes_nothing() {
    use flashstock_api::{WIRE_VERSION, WIRE_VERSION_HEADER};
    let cluster = six_nodes(|_| {}).await;
    let leader = cluster
        .wait_for_leader(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let http = Client::new();
    let write = bincode::serialize(&flashstock_api::WriteRequest {
        commands: vec![create("k-wire", "from-the-future", 5)],
    })
    .unwrap();
    let newer = (WIRE_VERSION + 1).to_string();
    for version in [newer.as_str(), "0", "one"] {
        let response = http
            .post(format!("http://{}/internal/write", cluster.addr(leader)))
            .header(flashstock_api::SECRET_HEADER, &cluster.operator_secret)
            .header(WIRE_VERSION_HEADER, version)
            .body(write.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{version}");
        let body: ErrorBody = response.json().await.unwrap();
        assert_eq!(body.code, ErrorCode::UnsupportedVersion, "{version}");
        assert!(
            body.message.contains(&format!("{version:?}"))
                && body
                    .message
                    .contains(&format!("versions 1 to {WIRE_VERSION}")),
            "{}",
            body.message
        );
    }
    let missing = cluster
        .shop_client()
        .product("from-the-future")
        .await
        .unwrap_err();
    assert_eq!(
        missing.code(),
        ErrorCode::UnknownProduct,
        "refused, not applied"
    );
    // Without the header (a release before it) and with ours: served, and told our version.
    for version in [None, Some(WIRE_VERSION.to_string())] {
        let mut request = http
            .get(format!("http://{}/admin/status", cluster.addr(leader)))
            .header(flashstock_api::SECRET_HEADER, &cluster.operator_secret);
        if let Some(version) = &version {
            request = request.header(WIRE_VERSION_HEADER, version);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{version:?}");
        assert_eq!(
            response.headers()[WIRE_VERSION_HEADER],
            WIRE_VERSION.to_string().as_str()
        );
    }
}

/// A body that never arrives in full gets 408 `request_timeout` once `limits.body_read_timeout_ms`
/// passes, instead of holding the connection and its task forever; nothing is applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_never_arrives_times_out() {
    let cluster = six_nodes(|config| config.limits.body_read_timeout_ms = 300).await;
    let probe = Probe::new(&cluster);
    let answer = probe.raw_purchase("slow", 100, br#"{"quan"#).await;
    assert_eq!(
        answer,
        (StatusCode::REQUEST_TIMEOUT, Some("request_timeout".into()))
    );
}
