//! A node whose Raft core stops on its own does not keep running as if healthy: `/ready` says
//! why, and the process exits non-zero so that its supervisor restarts or reports it.
//!
//! The fault is the one a 20-minute fault run met: an empty node handed committed entries that
//! start after a purge (index 5 here) with no previous log id. Applying them reads the log from
//! index 0, and openraft's defensive check stops the core ("try to get log at index 0 but got
//! Some(5)").
//!
//! And the other way round: a node whose log cannot be written is not stopped by it.

mod common;

use std::time::Duration;

use flashstock_api::SECRET_HEADER;
use flashstock_deploy::local::{Layout, LocalCluster};
use openraft::raft::AppendEntriesRequest;
use openraft::{CommittedLeaderId, EntryPayload, LogId, Vote};
use raft_store::{Entry, TypeConfig};

/// How long the node may take to exit: its grace to say why, then a drain.
const EXIT_WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn a_stopped_raft_core_is_reported_and_the_node_exits_non_zero() {
    let layout = Layout {
        voters: 1,
        gateways: 0,
    };
    let mut cluster =
        LocalCluster::temporary(common::node_binary(), layout, |_| {}).expect("lay out");
    cluster.start(1).await.expect("start an empty voter");
    let addr = cluster.addr(1);
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("http://{addr}/ready"))
        .send()
        .await
        .expect("ready answers");
    assert_eq!(ready.status(), 503, "not initialized: not ready");

    // A leader of term 1 (node 9) sends entries from index 5 with no previous log id.
    let leader = CommittedLeaderId::new(1, 9);
    let entries: Vec<Entry> = (5..8)
        .map(|index| Entry {
            log_id: LogId::new(leader, index),
            payload: EntryPayload::Blank,
        })
        .collect();
    // Committed up to 7: applying them reads the log from index 0, where there is nothing.
    let request: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
        vote: Vote::new_committed(1, 9),
        prev_log_id: None,
        entries,
        leader_commit: Some(LogId::new(leader, 7)),
    };
    let sent = http
        .post(format!("http://{addr}/raft/append"))
        .header(SECRET_HEADER, &cluster.voter_secret)
        .body(bincode::serialize(&request).unwrap())
        .send()
        .await;
    // The core may stop before it answers: either way, what follows is what matters.
    drop(sent);

    // Within the grace period, the unauthenticated /ready gives the stable reason only, and the
    // authenticated /admin/status the error itself.
    let voters = cluster.voter_client();
    let mut said = None;
    let mut fatal = None;
    for _ in 0..50 {
        let Ok(answer) = http.get(format!("http://{addr}/ready")).send().await else {
            break;
        };
        let body = answer.text().await.unwrap_or_default();
        if body.contains("raft_stopped") {
            fatal = voters
                .status(&addr)
                .await
                .ok()
                .and_then(|status| status.fatal);
            said = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let said = said.unwrap_or_else(|| {
        panic!(
            "/ready never said the Raft core stopped; log:\n{}",
            cluster.log_tail(1)
        )
    });
    assert!(
        !said.contains("index"),
        "/ready leaks the error text: {said}"
    );
    let fatal = fatal.expect("/admin/status names the error while the node exits");
    assert!(fatal.contains("index"), "{fatal}");

    let status = cluster
        .wait_exit(1, EXIT_WAIT)
        .await
        .expect("the node exits");
    assert!(!status.success(), "exited with {status}");
    let log = std::fs::read_to_string(&cluster.nodes[&1].log_path).unwrap();
    assert!(log.contains("the Raft core stopped"), "{log}");
}

/// A node whose store was written in a newer state format than it reads (a downgrade, or a
/// binary older than its data) refuses to start, names both formats, and touches nothing.
#[tokio::test]
async fn a_node_refuses_a_store_in_a_newer_format() {
    let layout = Layout {
        voters: 1,
        gateways: 0,
    };
    let mut cluster =
        LocalCluster::temporary(common::node_binary(), layout, |_| {}).expect("lay out");
    cluster
        .start(1)
        .await
        .expect("start a voter: it creates its store");
    assert!(cluster.terminate(1).expect("stop it"), "a clean stop");

    let store = cluster.nodes[&1].data_dir.join("db");
    let newer = raft_store::STATE_FORMAT + 1;
    {
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            &store,
            raft_store::keys::COLUMN_FAMILIES,
        )
        .expect("open the stopped node's store");
        let cf = raft_store::keys::cf(&db, raft_store::keys::CF_STATE);
        db.put_cf(cf, b"m/format", newer.to_le_bytes())
            .expect("mark it as a newer release would");
    }

    cluster.spawn(1).expect("start the node again");
    let status = cluster.wait_exit(1, EXIT_WAIT).await.expect("it exits");
    assert!(!status.success(), "{status}");
    let log = cluster.log_tail(1);
    assert!(
        log.contains(&format!("state format {newer}"))
            && log.contains(&format!(
                "reads state formats {} to {} only",
                raft_store::STATE_FORMAT_BASE,
                raft_store::STATE_FORMAT
            )),
        "{log}"
    );
}

/// A voter whose standard error is on a full disk (`/dev/full` here; a 20-minute fault run met
/// it when its disk filled) keeps serving: each log line it cannot write is dropped and counted
/// in `flashstock_log_lines_lost_total`. Before, the log's fallback print of the failure failed
/// too and panicked the task that logged, openraft's core among them.
#[tokio::test]
async fn a_voter_whose_log_cannot_be_written_goes_on_and_counts_the_lost_lines() {
    let layout = Layout {
        voters: 3,
        gateways: 0,
    };
    let mut cluster =
        LocalCluster::temporary(common::node_binary(), layout, |_| {}).expect("lay out");
    cluster.nodes.get_mut(&1).expect("voter 1").log_path = "/dev/full".into();
    cluster.start_all().await.expect("start the voters");
    cluster.init().await.expect("initialize");
    let leader = cluster
        .wait_for_leader(common::ELECTION_WAIT)
        .await
        .expect("a leader is elected");

    // Voter 1 leads or follows through an election, the writes, and a restart of another voter,
    // each of which it logs.
    let client = cluster.voter_client();
    client
        .write(vec![common::create("create-pen", "pen", 100)])
        .await
        .expect("create a product");
    let other = if leader == 2 { 3 } else { 2 };
    assert!(cluster.terminate(other).expect("terminate"), "clean exit");
    for i in 0..20 {
        let key = format!("buy-{i}");
        match common::buy(&client, &key, "pen", 1, 100).await {
            common::Bought::Confirmed(_) => {}
            bought => panic!("{key}: {bought:?}"),
        }
    }
    cluster.start(other).await.expect("restart");
    let applied = client
        .status(&cluster.addr(leader))
        .await
        .expect("the leader's status")
        .applied_index
        .expect("the leader has applied");
    cluster
        .wait_applied(1, applied, common::ELECTION_WAIT)
        .await
        .expect("voter 1 applies every write");
    let status = client
        .status(&cluster.addr(1))
        .await
        .expect("voter 1 answers");
    assert_eq!(status.fatal, None, "voter 1's Raft core runs");

    let metrics = common::metrics_text(&cluster, 1).await;
    let lost = metrics
        .lines()
        .find(|line| line.starts_with("flashstock_log_lines_lost_total"))
        .and_then(|line| line.split_whitespace().last()?.parse::<u64>().ok())
        .expect("the lost-lines counter");
    assert!(lost > 0, "voter 1's lines were counted as lost: {lost}");
}
