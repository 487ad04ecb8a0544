//! The shipped archive database settings keep C = 300 and survive a promotion without a
//! configuration change: `systemd/postgresql-archive.conf` (both PostgreSQL servers) and the
//! voters' `six-servers/server-{1,2,3}.toml`. `tests/six_hosts.rs` runs them: a synchronous
//! standby on server 5, promoted after server 4's PostgreSQL stops.

use std::collections::BTreeMap;
use std::path::Path;

use cluster_config::defaults::{
    ARCHIVE_CLUSTER_CONNECTIONS_MAX, ARCHIVE_POOL_SIZE_HIGHEST, VOTERS_MAX,
};
use cluster_config::{Config, Role};
use tokio_postgres::config::{Host, TargetSessionAttrs};

fn deploy_file(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// `key = value` lines of a postgresql.conf, comments and quotes removed.
fn postgresql_settings() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(deploy_file("systemd/postgresql-archive.conf"))
        .expect("read postgresql-archive.conf");
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next()?.trim();
            let (key, value) = line.split_once('=')?;
            Some((
                key.trim().to_owned(),
                value.trim().trim_matches('\'').to_owned(),
            ))
        })
        .collect()
}

fn number(settings: &BTreeMap<String, String>, key: &str) -> usize {
    settings
        .get(key)
        .unwrap_or_else(|| panic!("postgresql-archive.conf sets {key}"))
        .parse()
        .unwrap_or_else(|e| panic!("{key}: {e}"))
}

#[test]
fn the_archive_database_stays_within_c_with_room_for_every_voter() {
    let settings = postgresql_settings();
    let max_connections = number(&settings, "max_connections");
    let reserved = number(&settings, "superuser_reserved_connections");
    let wal_senders = number(&settings, "max_wal_senders");
    // Walsenders are counted apart from max_connections (PostgreSQL 12 and later).
    assert!(
        max_connections + wal_senders <= ARCHIVE_CLUSTER_CONNECTIONS_MAX,
        "{max_connections} + {wal_senders} > C = {ARCHIVE_CLUSTER_CONNECTIONS_MAX}"
    );
    // Every voter the configuration allows, each holding the largest pool it allows, fits in
    // the slots left to ordinary roles.
    let voters_worst = VOTERS_MAX * ARCHIVE_POOL_SIZE_HIGHEST;
    assert!(
        max_connections - reserved >= voters_worst,
        "{max_connections} - {reserved} < {VOTERS_MAX} x {ARCHIVE_POOL_SIZE_HIGHEST}"
    );
    // One stream for the standby, two for rebuilding it with pg_basebackup -X stream.
    assert!(wal_senders >= 3, "max_wal_senders = {wal_senders}");
    assert_eq!(settings["synchronous_commit"], "on");
    assert_eq!(settings["synchronous_standby_names"], "*");
    assert_eq!(settings["wal_level"], "replica");
}

#[test]
fn voters_name_both_servers_and_write_only_to_the_primary() {
    for n in 1..=3 {
        let config = Config::load(&deploy_file(&format!("six-servers/server-{n}.toml")))
            .expect("a valid config");
        assert_eq!(config.node.role, Role::Voter);
        let url = config.archive.postgres_url.as_deref().expect("an archive");
        let parsed: tokio_postgres::Config = url.parse().expect("a PostgreSQL URL");
        let hosts: Vec<String> = parsed
            .get_hosts()
            .iter()
            .map(|host| match host {
                Host::Tcp(host) => host.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        assert_eq!(hosts, ["198.18.0.4", "198.18.0.5"], "server {n}: {url}");
        assert_eq!(
            parsed.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite,
            "server {n}: {url}"
        );
    }
}
