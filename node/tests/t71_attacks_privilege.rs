//! Attacks on privilege, against real processes: a client that aims at the archive's
//! idempotency keys, a gateway's credential used for what only voters or operators may do,
//! secrets after a rotation, and strangers enumerating orders.

mod common;

use std::time::Duration;

use cluster_config::{secret_digest, Config, Role};
use common::{create, purchase, six_nodes, wait_archive, ELECTION_WAIT};
use flashstock_api::{
    Command, ErrorCode, NodeStatus, Op, OrderId, Outcome, PurchaseResponse, IDEMPOTENCY_KEY_HEADER,
    SECRET_HEADER,
};
use flashstock_client::{Error as VoterError, ShopClient, VoterClient};
use flashstock_deploy::local::LocalCluster;
use flashstock_deploy::postgres::{Postgres, PostgresOptions};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use raft_store::{Entry, TypeConfig};

/// A purchase through a gateway's public API, as any client on the internet sends it.
async fn public_purchase(
    http: &reqwest::Client,
    gateway: &str,
    key: &str,
    product: &str,
) -> (reqwest::StatusCode, String) {
    let response = http
        .post(format!("{gateway}/v1/products/{product}/purchase"))
        .header(IDEMPOTENCY_KEY_HEADER, key)
        .json(&serde_json::json!({ "quantity": 1 }))
        .send()
        .await
        .expect("the gateway answers");
    let status = response.status();
    (status, response.text().await.unwrap_or_default())
}

/// The archiver proposes its cursor under the key `archive-<last order id>`, and the cursor and
/// order ids are public. A client that sends that key first (a purchase that is rejected still
/// records its key) used to make the archiver's command a reused key, forever: nothing archived,
/// nothing ever dropped. Internal commands now keep their keys apart: the client's purchase is
/// an ordinary one, and the archive drains past the order it aimed at.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_cannot_stall_the_archive_with_its_next_key() {
    let mut postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let url = postgres.url();
    let cluster = six_nodes(|config| common::archive_often(config, &url)).await;
    cluster
        .voter_client()
        .write(vec![create("create-tee", "tee", 1000)])
        .await
        .expect("create a product");
    let gateway = cluster.public_url(cluster.gateway_ids()[0]);
    let http = reqwest::Client::new();

    // The archive is down while honest buyers buy: their orders wait in the backlog, and the
    // archiver's next command will be keyed by the last one's id.
    postgres.stop_fast().expect("stop PostgreSQL");
    let mut last = OrderId(0);
    for n in 0..5 {
        let (status, body) = public_purchase(&http, &gateway, &format!("honest-{n}"), "tee").await;
        assert_eq!(status, 200, "an honest purchase: {body}");
        let bought: PurchaseResponse = serde_json::from_str(&body).expect("a purchase answer");
        last = last.max(bought.order.id);
    }

    // The attack: the archiver's next key, on a purchase that is rejected (a rejection records
    // its key all the same), before the archive's next batch, which ends at `last`.
    let aimed = format!("archive-{last}");
    let (status, body) = public_purchase(&http, &gateway, &aimed, "no-such-product").await;
    assert_eq!(
        status, 404,
        "the attacker's own rejection, nothing more: {body}"
    );

    // The archive comes back and drains: the cursor reaches the aimed-at order and the backlog
    // empties. Before internal keys had a namespace of their own, the cursor stayed below
    // `last` for good and the archiver retried the same refused command forever.
    postgres.start_again().expect("start PostgreSQL again");
    let drained = wait_archive(&cluster, "the archive drains", ELECTION_WAIT, |archive| {
        archive.cursor >= Some(last) && archive.backlog == 0
    })
    .await;
    assert_eq!(drained.cursor, Some(last), "{drained:?}");

    // An ordinary purchase under the next such key is just a purchase, and is archived too.
    let (status, body) = public_purchase(
        &http,
        &gateway,
        &format!("archive-{}", last.0 + 65_536),
        "tee",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bought: PurchaseResponse = serde_json::from_str(&body).expect("a purchase answer");
    wait_archive(
        &cluster,
        "the next order is archived",
        ELECTION_WAIT,
        |archive| archive.cursor >= Some(bought.order.id) && archive.backlog == 0,
    )
    .await;

    // The attacker's rejected purchase keeps its own answer on a retry: a client key and the
    // archiver's key with the same text are two keys.
    let (status, _) = public_purchase(&http, &gateway, &aimed, "no-such-product").await;
    assert_eq!(status, 404);
}

/// A Raft RPC sent with `secret`, as a gateway that turned hostile could send it: its status.
async fn raft_rpc(addr: &str, path: &str, secret: &str, body: Vec<u8>) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .header(SECRET_HEADER, secret)
        .body(body)
        .send()
        .await
        .expect("the node answers")
        .status()
}

/// A vote request of a candidate with a term far ahead: granted, it would depose the leader.
fn disruptive_vote(term: u64) -> Vec<u8> {
    bincode::serialize(&VoteRequest::<u64>::new(Vote::new(term, 2), None)).unwrap()
}

/// An append of a leader of a term far ahead, with a blank entry at index 1.
fn forged_append(term: u64) -> Vec<u8> {
    let leader = CommittedLeaderId::new(term, 2);
    let request: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(term, 2),
        prev_log_id: None,
        entries: vec![Entry {
            log_id: LogId::new(leader, 1),
            payload: EntryPayload::Blank,
        }],
        leader_commit: Some(LogId::new(leader, 1)),
    };
    bincode::serialize(&request).unwrap()
}

fn assert_refused(result: Result<impl std::fmt::Debug, VoterError>, code: ErrorCode, what: &str) {
    match result {
        Err(e) => {
            assert_eq!(e.code(), code, "{what}: {e}");
            assert!(e.is_definite(), "{what}: a refusal is definite: {e}");
        }
        Ok(answer) => panic!("{what}: accepted: {answer:?}"),
    }
}

/// What a hostile caller must not change: the leader, its term, the voters, the log, the
/// archive cursor.
fn fingerprint(status: &NodeStatus) -> impl PartialEq + std::fmt::Debug {
    (
        status.leader,
        status.term,
        status.voters.clone(),
        status.members.clone(),
        status.last_log_index,
        status.archive.as_ref().map(|archive| archive.cursor),
    )
}

/// A gateway's credential, taken from a compromised gateway, can forward public commands and
/// nothing else: no internal command (the archive cursor), no admin call, no replica read, no
/// vote, no append. Each is refused before it reaches Raft, and the cluster is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_credential_is_refused_everything_but_public_commands() {
    let cluster = six_nodes(|_| {}).await;
    let operator = cluster.voter_client();
    operator
        .write(vec![create("create-tee", "tee", 100)])
        .await
        .expect("create a product");
    let gateway = cluster.voter_client_with(&cluster.gateway_secret);
    // What a gateway is for: forwarding a purchase.
    let bought = gateway
        .write(vec![purchase("gw-buy", "tee", 1)])
        .await
        .expect("a gateway forwards a purchase");
    let Outcome::Purchased(order) = &bought.outcomes[0] else {
        panic!("not a purchase: {:?}", bought.outcomes);
    };
    let leader = cluster.wait_for_leader(ELECTION_WAIT).await.unwrap();
    let leader_addr = cluster.addr(leader);
    let before = operator.status(&leader_addr).await.expect("status");

    // The archive cursor, alone and hidden in a batch with a purchase: nothing proposed.
    let mark = Command {
        key: format!("archive-{}", order.id),
        op: Op::MarkArchived { up_to: order.id },
    };
    assert_refused(
        gateway.write(vec![mark.clone()]).await,
        ErrorCode::Forbidden,
        "MarkArchived with a gateway credential",
    );
    assert_refused(
        gateway
            .write(vec![purchase("hidden-buy", "tee", 1), mark.clone()])
            .await,
        ErrorCode::Forbidden,
        "a batch carrying MarkArchived",
    );
    assert_refused(
        operator.write(vec![mark]).await,
        ErrorCode::Forbidden,
        "MarkArchived with an operator credential",
    );

    // One bulk command is as much work as its items: more than an entry may hold is refused
    // before anything is proposed, however few commands carry them.
    let too_many = cluster_config::defaults::DEFAULT_COMMANDS_PER_ENTRY_MAX + 1;
    let bulk = Command {
        key: "gw-bulk".into(),
        op: Op::Bulk {
            ops: (0..too_many)
                .map(|_| Op::Restock {
                    product: "tee".into(),
                    quantity: 1,
                })
                .collect(),
        },
    };
    assert_refused(
        gateway.write(vec![bulk]).await,
        ErrorCode::InvalidRequest,
        "a bulk command over the entry's bound",
    );

    // Admin calls and replica reads.
    let voters = cluster.voter_ids();
    let what = "an admin call with a gateway credential";
    assert_refused(
        gateway
            .change_membership(&leader_addr, vec![leader], false)
            .await,
        ErrorCode::Forbidden,
        what,
    );
    assert_refused(
        gateway.remove_learner(&leader_addr, 101).await,
        ErrorCode::Forbidden,
        what,
    );
    assert_refused(
        gateway
            .add_learner_no_wait(&leader_addr, 200, "127.0.0.1:1")
            .await,
        ErrorCode::Forbidden,
        what,
    );
    assert_refused(
        gateway.snapshot(&leader_addr).await,
        ErrorCode::Forbidden,
        what,
    );
    assert_refused(
        gateway.init(&cluster.addr(voters[1]), Vec::new()).await,
        ErrorCode::Forbidden,
        what,
    );
    assert_refused(
        gateway.archive_report(&leader_addr, 0, 1).await,
        ErrorCode::Forbidden,
        what,
    );
    assert_refused(
        gateway.hand_off(&leader_addr, None).await,
        ErrorCode::Forbidden,
        "a leader hand-off with a gateway credential",
    );
    assert_refused(
        gateway.orders(&leader_addr, None, 10).await,
        ErrorCode::Forbidden,
        "a replica read with a gateway credential",
    );

    // Raft RPCs, on the leader, a follower and another gateway (a learner, which receives them
    // from the leader): a vote that would depose the leader, an append that would rewrite the
    // log. 403 with the gateway's credential, 401 with none.
    let far_term = before.term + 1000;
    for id in [
        leader,
        voters[(voters.iter().position(|v| *v == leader).unwrap() + 1) % 3],
        102,
    ] {
        let addr = cluster.addr(id);
        for (path, body) in [
            ("/raft/vote", disruptive_vote(far_term)),
            ("/raft/append", forged_append(far_term)),
            // A follower asked to stand for election would depose the leader.
            (
                "/raft/elect",
                serde_json::to_vec(&flashstock_api::ElectRequest {
                    from: leader,
                    last_log_index: 0,
                })
                .unwrap(),
            ),
        ] {
            let status = raft_rpc(&addr, path, &cluster.gateway_secret, body.clone()).await;
            assert_eq!(status, 403, "{path} on node {id} with a gateway credential");
            let status = raft_rpc(&addr, path, "", body).await;
            assert_eq!(status, 401, "{path} on node {id} without a credential");
        }
    }
    // The voters' credential is what a learner accepts: a stale vote, harmless, is answered.
    let stale = bincode::serialize(&VoteRequest::<u64>::new(Vote::new(0, 2), None)).unwrap();
    let status = raft_rpc(
        &cluster.addr(101),
        "/raft/vote",
        &cluster.voter_secret,
        stale,
    )
    .await;
    assert_eq!(
        status, 200,
        "a gateway accepts the voters' credential on Raft RPCs"
    );

    // Nothing changed: same leader, term, members and log, no order archived, and the hidden
    // purchase was never applied (buying under its key now is a first purchase, not a replay).
    let after = operator.status(&leader_addr).await.expect("status");
    assert_eq!(fingerprint(&after), fingerprint(&before));
    let first = operator
        .write(vec![purchase("hidden-buy", "tee", 1)])
        .await
        .expect("buy");
    assert!(
        matches!(first.outcomes[0], Outcome::Purchased(_)),
        "the refused batch applied its purchase: {:?}",
        first.outcomes
    );

    // Even the operator cannot make a gateway a voter: a gateway's log is not synced, so its
    // acknowledgements must never count toward a quorum. Refused, definitely, before anything
    // is proposed: the voters stay the same.
    let mut with_gateway = voters.clone();
    with_gateway.push(101);
    let refused = operator
        .change_membership(&leader_addr, with_gateway, false)
        .await;
    if let Err(e) = &refused {
        assert!(
            e.to_string()
                .contains("node 101 is configured as a gateway"),
            "the refusal names the gateway: {e}"
        );
    }
    assert_refused(refused, ErrorCode::NotAVoter, "a gateway made a voter");
    assert_refused(
        operator.init(&cluster.addr(101), Vec::new()).await,
        ErrorCode::NotAVoter,
        "a cluster initialized on a gateway",
    );
    let after = operator.status(&leader_addr).await.expect("status");
    assert_eq!(after.voters, before.voters, "the voters changed");
}

/// Rewrite node `id`'s config with `change`, then restart it (SIGTERM, start, wait until a
/// leader is agreed and the node has applied what the leader had).
async fn restart_with(cluster: &mut LocalCluster, id: u64, change: impl Fn(&mut Config)) {
    let path = cluster.nodes[&id].config_path.clone();
    let mut config = Config::load(&path).expect("load the node's config");
    change(&mut config);
    config.validate().expect("the new config is valid");
    std::fs::write(&path, config.to_toml_string()).expect("write the node's config");
    assert!(
        cluster.terminate(id).expect("stop"),
        "node {id} exits cleanly"
    );
    cluster.start(id).await.expect("start again");
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("leader");
    let status = cluster
        .voter_client()
        .status(&cluster.addr(leader))
        .await
        .expect("leader status");
    let index = status.applied_index.unwrap_or(0);
    cluster
        .wait_applied(id, index, ELECTION_WAIT)
        .await
        .expect("the restarted node catches up");
}

/// The voters' and the operators' secrets are rotated with rolling restarts, the cluster
/// serving throughout: while both are listed, old and new are accepted; once the old one is
/// dropped, it is refused everywhere, and replication to voters and learners runs on the new.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_roll_over_without_a_full_stop() {
    let mut cluster = six_nodes(|_| {}).await;
    let old_voter = cluster.voter_secret.clone();
    let new_voter = "rotated-voter-secret-0001".to_string();
    let old_operator = cluster.operator_secret.clone();
    let new_operator = "rotated-operator-secret-0001".to_string();
    let ids: Vec<u64> = cluster.nodes.keys().copied().collect();
    let voters = cluster.voter_ids();
    let shop = cluster.shop_client();
    shop.create_product(&flashstock_api::CreateProductRequest {
        id: "tee".into(),
        name: "Tee".into(),
        price_cents: 100,
        stock: 1000,
        limit_per_customer: None,
    })
    .await
    .expect("create a product");

    // The voters' list on a node: in clear on voters, as digests on gateways.
    let listed = |role: Role, secrets: &[&String]| -> Vec<String> {
        secrets
            .iter()
            .map(|secret| match role {
                Role::Voter => secret.to_string(),
                Role::Gateway => secret_digest(secret),
            })
            .collect()
    };

    // 1. Every node accepts both, voters still send the old one.
    for &id in &ids {
        let (v, o) = (
            listed(cluster.nodes[&id].role, &[&old_voter, &new_voter]),
            [secret_digest(&old_operator), secret_digest(&new_operator)],
        );
        restart_with(&mut cluster, id, |config| {
            config.cluster.voter_secrets = v.clone();
            config.cluster.operator_secrets = o.to_vec();
        })
        .await;
    }
    cluster.operator_secret = new_operator.clone();
    shop.purchase("tee", 1)
        .await
        .expect("a purchase during the rollover");
    let stale = || bincode::serialize(&VoteRequest::<u64>::new(Vote::new(0, 2), None)).unwrap();
    for &id in &ids {
        let addr = cluster.addr(id);
        for secret in [&old_voter, &new_voter] {
            let status = raft_rpc(&addr, "/raft/vote", secret, stale()).await;
            assert_eq!(
                status, 200,
                "node {id} accepts both voter secrets in the rollover"
            );
        }
        for secret in [&old_operator, &new_operator] {
            let status = VoterClient::new(vec![], secret, Duration::from_secs(10))
                .status(&addr)
                .await;
            assert!(
                status.is_ok(),
                "node {id} accepts both operator secrets: {status:?}"
            );
        }
    }

    // 2. Voters send the new one.
    for &id in &voters {
        restart_with(&mut cluster, id, |config| {
            config.cluster.voter_secrets = vec![new_voter.clone(), old_voter.clone()];
        })
        .await;
    }
    shop.purchase("tee", 1)
        .await
        .expect("a purchase during the rollover");

    // 3. The old ones are dropped everywhere.
    for &id in &ids {
        let v = listed(cluster.nodes[&id].role, &[&new_voter]);
        let o = secret_digest(&new_operator);
        restart_with(&mut cluster, id, |config| {
            config.cluster.voter_secrets = v.clone();
            config.cluster.operator_secrets = vec![o.clone()];
        })
        .await;
    }
    for &id in &ids {
        let addr = cluster.addr(id);
        let status = raft_rpc(&addr, "/raft/vote", &old_voter, stale()).await;
        assert_eq!(status, 401, "node {id} refuses the old voter secret");
        let status = raft_rpc(&addr, "/raft/vote", &new_voter, stale()).await;
        assert_eq!(status, 200, "node {id} accepts the new voter secret");
        let old = VoterClient::new(vec![], &old_operator, Duration::from_secs(10))
            .status(&addr)
            .await;
        assert_refused(old, ErrorCode::Unauthorized, "the old operator secret");
    }
    // Replication runs on the new secret: a purchase reaches every gateway's replica.
    let bought = shop
        .purchase("tee", 1)
        .await
        .expect("a purchase after the rollover");
    let index = bought.order.id.log_index();
    for id in cluster.gateway_ids() {
        cluster
            .wait_applied(id, index, ELECTION_WAIT)
            .await
            .expect("the gateway's replica follows");
    }
}

/// Order ids are sequential (`log index << 16 | slot`), so a stranger can try them all. Every
/// one, with no token or a wrong one, answers exactly what an order that does not exist answers,
/// and nothing of the buyer (customer, idempotency key) leaks; the owner, with the token the
/// purchase answer returned, reads the order, and its page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stranger_enumerating_order_ids_learns_nothing() {
    let cluster = six_nodes(|_| {}).await;
    let shop = cluster.shop_client();
    shop.create_product(&flashstock_api::CreateProductRequest {
        id: "tee".into(),
        name: "Tee".into(),
        price_cents: 100,
        stock: 100,
        limit_per_customer: None,
    })
    .await
    .expect("create a product");
    let gateway = cluster.public_url(cluster.gateway_ids()[0]);
    let http = reqwest::Client::new();
    // Alice buys, naming herself, with a key of her own.
    let mut orders = Vec::new();
    for n in 0..3 {
        let key = format!("secret-key-of-alice-{n}");
        let buy = || {
            http.post(format!("{gateway}/v1/products/tee/purchase"))
                .header(IDEMPOTENCY_KEY_HEADER, &key)
                .json(&serde_json::json!({ "quantity": 1, "customer": "alice@example.com" }))
                .send()
        };
        let response = buy().await.expect("purchase");
        assert_eq!(response.status(), 200);
        let bought: PurchaseResponse = response.json().await.expect("a purchase answer");
        let token = bought
            .order
            .token
            .clone()
            .expect("the answer carries the token");
        assert_eq!(token.len(), flashstock_api::ORDER_TOKEN_LEN);
        // A retry under the same key (with a fresh token drawn by the gateway) returns the same
        // order and the first token.
        let again: PurchaseResponse = buy().await.expect("retry").json().await.expect("answer");
        assert!(again.replayed);
        assert_eq!(again.order, bought.order);
        orders.push(bought.order);
    }
    let last = orders.last().unwrap().id;
    for id in cluster.gateway_ids() {
        cluster
            .wait_applied(id, last.log_index(), ELECTION_WAIT)
            .await
            .expect("every gateway applies the orders");
    }

    let body_of = |response: reqwest::Response| async move {
        (response.status(), response.text().await.unwrap_or_default())
    };
    // What a nonexistent order answers, with the id in the message swapped for a mark.
    let nonexistent = |id: u64| {
        let http = http.clone();
        let gateway = gateway.clone();
        async move {
            let response = http
                .get(format!("{gateway}/v1/orders/{id}"))
                .send()
                .await
                .unwrap();
            body_of(response).await
        }
    };
    let (status, reference) = nonexistent(OrderId::new(last.log_index() + 1000, 0).0).await;
    assert_eq!(status, 404);
    let shape = |body: &str, id: u64| body.replace(&id.to_string(), "ID");
    let reference = shape(&reference, OrderId::new(last.log_index() + 1000, 0).0);
    let wrong = "0".repeat(flashstock_api::ORDER_TOKEN_LEN);
    let mut tried = 0;
    for index in 1..=last.log_index() {
        for slot in 0..3 {
            let id = OrderId::new(index, slot).0;
            for gateway in cluster.gateway_urls() {
                for suffix in ["", "?token=", &format!("?token={wrong}")] {
                    let response = http
                        .get(format!("{gateway}/v1/orders/{id}{suffix}"))
                        .send()
                        .await
                        .unwrap();
                    let (status, body) = body_of(response).await;
                    assert_eq!(status, 404, "{id}{suffix}: {body}");
                    assert_eq!(shape(&body, id), reference, "{id}{suffix}");
                    assert!(!body.contains("alice") && !body.contains("secret-key"));
                    let page = http
                        .get(format!("{gateway}/orders/{id}{suffix}"))
                        .send()
                        .await
                        .unwrap();
                    let (status, html) = body_of(page).await;
                    assert_eq!(status, 404, "page {id}{suffix}");
                    assert!(!html.contains("alice") && !html.contains("secret-key"));
                    tried += 1;
                }
            }
        }
    }
    // Another order's token opens only that order.
    let (first, second) = (&orders[0], &orders[1]);
    let crossed = http
        .get(format!(
            "{gateway}/v1/orders/{}?token={}",
            second.id,
            first.token.as_deref().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(crossed.status(), 404);
    println!("{tried} stranger reads of order ids, every one 404 with the nonexistent body");

    // The owner reads each order, by query or header, on any gateway: never the key.
    for order in &orders {
        let token = order.token.as_deref().unwrap();
        for gateway in cluster.gateway_urls() {
            let view = ShopClient::new(vec![gateway.clone()])
                .order(order.id.0, token)
                .await
                .expect("the owner reads the order");
            assert_eq!(view.order, order.clone().into());
            let (status, body) = body_of(
                http.get(format!("{gateway}/v1/orders/{}", order.id))
                    .header(flashstock_api::ORDER_TOKEN_HEADER, token)
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 200);
            assert!(body.contains("alice@example.com"), "{body}");
            assert!(
                !body.contains("secret-key") && !body.contains(token),
                "{body}"
            );
            let (status, html) = body_of(
                http.get(format!("{gateway}/orders/{}?token={token}", order.id))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(status, 200, "{html}");
            assert!(html.contains(&format!("#{}", order.id)));
            assert!(!html.contains("secret-key"));
        }
    }
}
