//! The throwaway PostgreSQL server keeps committed rows across a fast stop and across a crash,
//! and across the promotion of its synchronous standby.

use flashstock_deploy::postgres::{Postgres, PostgresOptions};

async fn connect(postgres: &Postgres) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&postgres.url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

async fn count(postgres: &Postgres) -> i64 {
    let client = connect(postgres).await;
    let row = client.query_one("SELECT count(*) FROM t", &[]).await;
    row.expect("count rows").get(0)
}

#[tokio::test]
async fn committed_rows_survive_a_fast_stop_and_a_crash() {
    let mut postgres = Postgres::start(PostgresOptions::default()).expect("start PostgreSQL");
    let client = connect(&postgres).await;
    client
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);")
        .await
        .expect("create and insert");

    postgres.stop_fast().expect("stop");
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "a stopped server does not answer"
    );
    postgres.start_again().expect("start again");
    assert_eq!(count(&postgres).await, 2);

    connect(&postgres)
        .await
        .execute("INSERT INTO t VALUES (3)", &[])
        .await
        .expect("insert");
    postgres.kill().expect("crash");
    assert!(!postgres.is_running());
    postgres.start_again().expect("recover after the crash");
    assert_eq!(
        count(&postgres).await,
        3,
        "a committed row survives a crash"
    );
}

/// What the fault harness's `postgres-failover` does: a synchronous standby holds every row the
/// primary committed, takes writes once promoted (found through the multi-host URL), and the dead
/// primary comes back as its synchronous standby.
#[tokio::test]
async fn a_promoted_synchronous_standby_holds_every_committed_row() {
    let mut primary = Postgres::start(PostgresOptions::default()).expect("start the primary");
    let mut standby = Postgres::start_standby_of(&primary).expect("start the standby");
    primary
        .set_synchronous_standby_names("*")
        .expect("make it synchronous");
    let url = flashstock_deploy::postgres::multi_host_url(&[&primary, &standby]);
    let write = |sql: &'static str| {
        let url = url.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect to the primary through the multi-host URL");
            tokio::spawn(connection);
            client.batch_execute(sql).await.expect(sql);
        }
    };
    write("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1), (2);").await;
    assert_eq!(
        primary
            .sql("SELECT sync_state FROM pg_stat_replication")
            .unwrap(),
        "sync"
    );

    primary.kill().expect("crash the primary");
    standby.promote().expect("promote the standby");
    standby
        .set_synchronous_standby_names("")
        .expect("commit alone");
    assert_eq!(
        count(&standby).await,
        2,
        "every committed row is on the standby"
    );
    write("INSERT INTO t VALUES (3)").await;

    primary
        .rebuild_as_standby_of(&standby)
        .expect("rebuild the old primary as the standby");
    standby.set_synchronous_standby_names("*").unwrap();
    write("INSERT INTO t VALUES (4)").await;
    // Flushed there before the commit returned (synchronous), replayed soon after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while primary.sql("SELECT count(*) FROM t").unwrap() != "4" {
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuilt standby never showed every row"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
