//! TLS on every link: HTTPS on the gateways' public listeners, mutual TLS between nodes, TLS to
//! the archive database. Real node processes and a real PostgreSQL, certificates made by the
//! project's own authority (`flashstock_tls::authority`), as `stockctl certs` makes them.
//!
//! What an attacker tries here: plaintext to a TLS port, a client with no certificate on the
//! internal listener, and a node whose certificate comes from another CA trying to join.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{node_binary, product, wait_archive, ELECTION_WAIT};
use flashstock_deploy::local::{Layout, LocalCluster};
use flashstock_deploy::postgres::{Postgres, PostgresOptions};
use flashstock_tls::authority::Authority;
use flashstock_tls::rustls::pki_types::{CertificateDer, ServerName};
use flashstock_tls::tokio_rustls::TlsConnector;

/// Send a plaintext HTTP request to `addr` and return what came back before the server closed
/// the connection (at most a few seconds).
fn plaintext_exchange(addr: SocketAddr) -> Vec<u8> {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// The certificate a TLS server at `addr` presents, checked against `ca`.
async fn presented_certificate(addr: SocketAddr, ca: &Path) -> CertificateDer<'static> {
    let config = flashstock_tls::trusting(ca).expect("CA");
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let (_, session) = stream.get_ref();
    session.peer_certificates().expect("a certificate")[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_over_tls_sells_and_refuses_plaintext_strangers_and_other_cas() {
    let layout = Layout {
        voters: 3,
        gateways: 2,
    };
    // Quick reloads, so the renewal below shows within a second.
    let mut cluster = LocalCluster::temporary(node_binary(), layout, |config| {
        config.tls.reload_check_ms = 200;
    })
    .expect("lay out");
    cluster.enable_tls().expect("certificates");
    let tls = cluster.tls().expect("TLS is on");
    let ca = tls.ca_path.clone();

    // The second gateway gets a certificate (and trust) from a CA of its own: a machine that
    // is not one of the cluster's.
    let stranger = 102;
    let stranger_dir = cluster.dir.join("stranger");
    let other_ca = Authority::new("another CA").unwrap();
    other_ca.save(&stranger_dir).unwrap();
    let stranger_ip = cluster.nodes[&stranger].addr.ip().to_string();
    let (cert, key) = other_ca
        .issue("stranger", &[stranger_ip, "localhost".into()])
        .unwrap()
        .save(&stranger_dir, "stranger")
        .unwrap();
    let config_path = cluster.nodes[&stranger].config_path.clone();
    let mut config = cluster_config::Config::load(&config_path).unwrap();
    config.tls.internal_ca_path = Some(stranger_dir.join("ca.pem"));
    config.tls.internal_cert_path = Some(cert.clone());
    config.tls.internal_key_path = Some(key.clone());
    config.tls.public_cert_path = Some(cert);
    config.tls.public_key_path = Some(key);
    std::fs::write(&config_path, config.to_toml_string()).unwrap();

    for id in cluster.voter_ids() {
        cluster.start(id).await.expect("start a voter");
    }
    cluster.init().await.expect("init");
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("leader");
    cluster.start(101).await.expect("start the gateway");
    let voters = cluster.voter_client();
    voters
        .add_learner(&cluster.addr(leader), 101, &cluster.addr(101))
        .await
        .expect("the gateway joins over mutual TLS");

    // Buyers over HTTPS, the gateway forwarding over mutual TLS.
    let shop = flashstock_client::ShopClient::new(vec![cluster.public_url(101)])
        .with_admin_token(&cluster.admin_token)
        .with_tls(cluster.shop_tls());
    assert!(cluster.public_url(101).starts_with("https://"));
    shop.create_product(&product("tee", 10))
        .await
        .expect("create");
    let bought = shop.purchase("tee", 3).await.expect("buy over HTTPS");
    // The gateway's replica may apply the order a moment after the leader confirmed it.
    let deadline = Instant::now() + Duration::from_secs(5);
    let token = bought.order.token.as_deref().expect("a token");
    let view = loop {
        match shop.order(bought.order.id.0, token).await {
            Ok(view) => break view,
            Err(error) => assert!(Instant::now() < deadline, "read the order: {error:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(view.order.quantity, 3);
    let log = std::fs::read_to_string(&cluster.nodes[&101].log_path).unwrap();
    assert!(log.contains("public API ready (HTTPS)"), "{log}");
    assert!(
        log.contains("internal listener ready (mutual TLS)"),
        "{log}"
    );

    // Plaintext to a TLS port: no HTTP answer, on either listener.
    let public_addr = cluster.nodes[&101].public_addr.unwrap();
    for addr in [public_addr, cluster.nodes[&leader].addr] {
        let answer = plaintext_exchange(addr);
        assert!(
            !answer.starts_with(b"HTTP/"),
            "{addr} answered plaintext: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    let plain = reqwest::Client::new()
        .get(format!("http://{public_addr}/v1/products/tee"))
        .send()
        .await;
    assert!(plain.is_err(), "plaintext HTTP got {plain:?}");

    // A client that trusts the cluster but has no certificate of it: refused at the handshake,
    // however good its credential.
    let no_certificate = reqwest::Client::builder()
        .use_preconfigured_tls(flashstock_tls::trusting(&ca).unwrap())
        .build()
        .unwrap();
    let status = no_certificate
        .get(format!("https://{}/status", cluster.addr(leader)))
        .header(flashstock_api::SECRET_HEADER, &cluster.operator_secret)
        .send()
        .await;
    assert!(status.is_err(), "no client certificate, yet: {status:?}");
    // With the operator's certificate, the same call works.
    voters
        .status(&cluster.addr(leader))
        .await
        .expect("the operator's certificate is accepted");

    // A node with another CA's certificate cannot join: it runs, the leader cannot replicate
    // to it (each side refuses the other's certificate), and it never receives the log.
    cluster.spawn(stranger).expect("start the stranger");
    let stranger_identity = flashstock_tls::Identity::load(flashstock_tls::Files {
        cert: stranger_dir.join("stranger.pem"),
        key: stranger_dir.join("stranger.key"),
        ca: Some(stranger_dir.join("ca.pem")),
    })
    .unwrap();
    let stranger_view = flashstock_client::VoterClient::new(
        vec![],
        &cluster.operator_secret,
        Duration::from_secs(5),
    )
    .with_tls(Some(Arc::new(stranger_identity.client_config().unwrap())));
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(error) = stranger_view.status(&cluster.addr(stranger)).await {
        assert!(
            Instant::now() < deadline,
            "the stranger never answered its own CA: {error}\n{}",
            cluster.log_tail(stranger)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let joined = tokio::time::timeout(
        Duration::from_secs(10),
        voters.add_learner(&cluster.addr(leader), stranger, &cluster.addr(stranger)),
    )
    .await;
    assert!(
        !matches!(joined, Ok(Ok(_))),
        "a node of another CA joined: {joined:?}"
    );
    let status = stranger_view
        .status(&cluster.addr(stranger))
        .await
        .expect("the stranger's own status");
    assert_eq!(
        status.applied_index.unwrap_or(0),
        0,
        "the stranger received the log: {status:?}"
    );
    // The leader did try: the stranger counts the handshakes that failed.
    let metrics = reqwest::Client::builder()
        .use_preconfigured_tls(stranger_identity.client_config().unwrap())
        .build()
        .unwrap()
        .get(format!("https://{}/metrics", cluster.addr(stranger)))
        .send()
        .await
        .expect("the stranger's metrics")
        .text()
        .await
        .unwrap();
    let refused: f64 = metrics
        .lines()
        .find(|line| {
            line.starts_with("flashstock_http_connections_closed_total")
                && line.contains("listener=\"internal\"")
                && line.contains("reason=\"handshake\"")
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        refused >= 1.0,
        "no failed handshake on the stranger:\n{metrics}"
    );

    // A renewed certificate on disk is served from the next connection on, no restart.
    let before = presented_certificate(public_addr, &ca).await;
    let cluster_ca = Authority::open(&cluster.dir.join("tls")).unwrap();
    let node_cert = cluster.nodes[&101].config_path.clone();
    let config = cluster_config::Config::load(&node_cert).unwrap();
    let renewed = cluster_ca
        .issue(
            "node-101-renewed",
            &["localhost".into(), public_addr.ip().to_string()],
        )
        .unwrap();
    let public_cert = config.tls.public_cert_path.clone().unwrap();
    let (cert_dir, name) = (
        public_cert.parent().unwrap().to_owned(),
        public_cert
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
    );
    renewed.save(&cert_dir, &name).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = presented_certificate(public_addr, &ca).await;
        if now != before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shop.purchase("tee", 1)
        .await
        .expect("buy after the renewal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_archive_writes_to_postgresql_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new("archive CA").unwrap();
    authority.save(dir.path()).unwrap();
    let (cert, key) = authority
        .issue("postgres", &["127.0.0.1".into(), "localhost".into()])
        .unwrap()
        .save(dir.path(), "postgres")
        .unwrap();
    let postgres = Postgres::start(PostgresOptions {
        tls: Some((cert, key)),
        ..PostgresOptions::default()
    })
    .expect("start PostgreSQL with TLS");
    let url = format!("{}?sslmode=require", postgres.url());
    let ca = dir.path().join("ca.pem");
    let cluster = common::formed(3, 1, |config| {
        common::archive_often(config, &url);
        config.archive.postgres_ca_path = Some(ca.clone());
    })
    .await;
    let shop = cluster.shop_client();
    shop.create_product(&product("mug", 10))
        .await
        .expect("create");
    shop.purchase("mug", 2).await.expect("buy");
    wait_archive(
        &cluster,
        "the order is archived",
        Duration::from_secs(30),
        |status| status.orders_placed >= 1 && status.backlog == 0,
    )
    .await;
    // The server saw the archiver's connections encrypted.
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND application_name = 'flashstock-archiver'",
            &[],
        )
        .await
        .expect("query pg_stat_ssl");
    let encrypted: i64 = row.get(0);
    assert!(encrypted >= 1, "no archiver connection uses TLS");
    let orders: i64 = client
        .query_one("SELECT count(*) FROM flashstock_orders", &[])
        .await
        .expect("count orders")
        .get(0);
    assert_eq!(orders, 1);
}
