//! The throwaway PostgreSQL server keeps committed rows across a fast stop and across a crash.

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
