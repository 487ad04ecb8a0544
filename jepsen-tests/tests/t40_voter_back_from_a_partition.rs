//! A voter cut off from the others by a partition, and back: it must depose no healthy leader.
//!
//! openraft 0.9.25 has no PreVote: a voter that heard no leader past the lease and an election
//! timeout stood again and again, each time at a higher term nobody granted, and back in touch,
//! its first answer to the leader carried that term and the leader stepped down (the fault
//! harness counted 101 such depositions in twenty minutes). A voter now asks the others before it
//! stands (`POST /raft/pre-vote`), and they still hear the leader. Three voters on loopback; one
//! follower's internal port cut from the others' for 3.5 s (the lease and the longest election
//! timeout are 2.4 s), then healed; every voter's term is watched for three seconds after.
//!
//! The partition needs root and iptables: without them (decided when the test is built,
//! `build.rs`) the test is reported ignored with the reason.

use std::net::SocketAddr;
use std::time::Duration;

use flashstock_deploy::local::{Layout, LocalCluster};
use jepsen_tests::partition::Partitioner;

const ELECTION_WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jepsen_iptables),
    ignore = "a partition needs root and iptables, which this machine lacked when this test was \
              built"
)]
async fn a_voter_back_from_a_partition_deposes_no_leader() {
    let binary = flashstock_deploy::local::node_binary().expect("the flashstock-node binary");
    let layout = Layout {
        voters: 3,
        gateways: 0,
    };
    let mut cluster = LocalCluster::temporary(&binary, layout, |_| {}).expect("lay out");
    cluster.start_all().await.expect("start the voters");
    cluster.init().await.expect("initialize");
    let leader = cluster
        .wait_for_leader(ELECTION_WAIT)
        .await
        .expect("a leader");
    let client = cluster.voter_client();
    let term = client.status(&cluster.addr(leader)).await.unwrap().term;
    let follower = cluster
        .voter_ids()
        .into_iter()
        .find(|id| *id != leader)
        .expect("a follower");
    let addr = |id: u64| -> SocketAddr { cluster.addr(id).parse().expect("a node's address") };
    let others: Vec<SocketAddr> = cluster
        .voter_ids()
        .into_iter()
        .filter(|id| *id != follower)
        .map(addr)
        .collect();

    let mut partitioner = Partitioner::probe().expect("iptables, as root");
    partitioner
        .isolate(addr(follower), &others)
        .expect("cut the follower off");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    partitioner.heal().expect("heal");

    let rounds = cluster
        .expect_leader_stays(leader, term, Duration::from_secs(3))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{e}, after the heal: node {follower} stood while cut off; its log:\n{}",
                cluster.log_tail(follower)
            )
        });
    assert!(rounds > 10, "the voters answered {rounds} rounds of status");

    // Cut off past the lease, it asked, and was refused, at least once.
    let metrics = reqwest::get(format!("http://{}/metrics", cluster.addr(follower)))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let refused: u64 = metrics
        .lines()
        .find(|line| line.starts_with("flashstock_raft_pre_votes_refused_total"))
        .and_then(|line| line.split_whitespace().last()?.parse().ok())
        .expect("the pre-vote counter");
    assert!(
        refused >= 1,
        "node {follower} was cut off for 3.5 s without asking for a pre-vote"
    );
    println!("node {follower}: {refused} pre-votes refused while cut off");
}
