//! Behaviour of the public API: parsing, defaults, every validation rule, the
//! round trip through TOML, and the sample configs under `deploy/`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use cluster_config::defaults::*;
use cluster_config::{Config, ConfigError, Peer, Role};

/// A valid voter config with only the required tables.
const MINIMAL_VOTER: &str = r#"
[node]
id = 1
role = "voter"
listen = "127.0.0.1:7101"
data_dir = "/var/lib/flashstock/voter-1"

[cluster]
voter_secrets = ["voter-secret-0123456789"]
gateway_secrets = ["gateway-secret-0123456"]
operator_secrets = ["operator-secret-012345"]
"#;

/// A valid gateway config with only the required keys.
const MINIMAL_GATEWAY: &str = r#"
[node]
id = 4
role = "gateway"
listen = "127.0.0.1:7201"
data_dir = "/var/lib/flashstock/gateway-1"

[cluster]
voter_secrets = ["sha256:58295b68919cf5c82b0550c6958d2e40adbf7cebddef1c1928491f5f0a691bdf"]
gateway_secrets = ["gateway-secret-0123456"]
operator_secrets = ["sha256:2b123ec658349841ed8e58685d0c9c3ab12f2c8d7c484176c3c75f56b2b40e50"]

[gateway]
public_listen = "127.0.0.1:8081"
"#;

/// Parses `toml`, expecting a validation error; returns its key and its Display.
fn invalid(toml: &str) -> (String, String) {
    match Config::from_toml_str(toml) {
        Err(err @ ConfigError::Invalid { .. }) => {
            let text = err.to_string();
            let ConfigError::Invalid { key, message } = err else {
                unreachable!()
            };
            assert!(text.contains(&key), "{text}");
            assert!(!message.is_empty(), "{text}");
            (key, text)
        }
        other => panic!("expected ConfigError::Invalid, got {other:?}\n--- input ---\n{toml}"),
    }
}

/// Checks that `toml` fails validation on `key`.
fn assert_invalid(toml: &str, key: &str) {
    let (got, text) = invalid(toml);
    assert_eq!(got, key, "{text}");
}

/// Parses `toml`, expecting a parse error; returns its message.
fn parse_error(toml: &str) -> String {
    match Config::from_toml_str(toml) {
        Err(ConfigError::Parse(message)) => message,
        other => panic!("expected ConfigError::Parse, got {other:?}"),
    }
}

/// The minimal voter with `extra` appended (a whole table).
fn voter_with(extra: &str) -> String {
    format!("{MINIMAL_VOTER}\n{extra}\n")
}

/// The minimal gateway with `extra` appended to its `[gateway]` table, then
/// `tables` appended.
fn gateway_with(gateway_keys: &str, tables: &str) -> String {
    format!("{MINIMAL_GATEWAY}{gateway_keys}\n{tables}\n")
}

/// A voter whose `[node]` and `[cluster]` tables are given in full.
fn voter_tables(node: &str, cluster: &str) -> String {
    format!("[node]\n{node}\n\n[cluster]\n{cluster}\n")
}

const NODE_KEYS: &str = r#"id = 1
role = "voter"
listen = "127.0.0.1:7101"
data_dir = "/d""#;
const CLUSTER_KEYS: &str = r#"voter_secrets = ["voter-secret-0123456789"]
gateway_secrets = ["gateway-secret-0123456"]
operator_secrets = ["operator-secret-012345"]"#;

// ---- parsing and defaults ----

#[test]
fn minimal_voter_gets_documented_defaults() {
    let config = Config::from_toml_str(MINIMAL_VOTER).unwrap();

    assert_eq!(config.node.id, 1);
    assert_eq!(config.node.role, Role::Voter);
    assert_eq!(config.node.listen, "127.0.0.1:7101".parse().unwrap());
    assert_eq!(config.node.advertise, None);
    assert_eq!(
        config.node.data_dir,
        PathBuf::from("/var/lib/flashstock/voter-1")
    );
    assert_eq!(config.cluster.voter_secrets, ["voter-secret-0123456789"]);
    assert!(config.cluster.voters.is_empty());
    assert_eq!(config.cluster.admin_token, None);

    // Every optional key not set takes the default `defaults.rs` documents for it.
    let mut applied = toml::Value::try_from(&config).expect("a config serializes");
    // `[checkout]` is left out of a written file while it holds the defaults (a rolling upgrade
    // runs the release before on these files): read its values from the section itself.
    assert!(
        applied.get("checkout").is_none(),
        "default [checkout] is not written"
    );
    if let Some(table) = applied.as_table_mut() {
        let checkout = toml::Value::try_from(&config.checkout).expect("a section serializes");
        table.insert("checkout".into(), checkout);
    }
    // Keys the release before does not know are left out at their default, even in a section
    // that is written: read their values from the config itself.
    let unwritten = [
        (
            "checkout",
            "cart_decision_ms",
            config.checkout.cart_decision_ms,
        ),
        (
            "raft",
            "snapshot_chunk_timeout_ms",
            config.raft.snapshot_chunk_timeout_ms,
        ),
        (
            "raft",
            "learner_append_interval_ms",
            config.raft.learner_append_interval_ms,
        ),
    ];
    for (section, key, value) in unwritten {
        let table = applied
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
            .expect("the section is there");
        assert!(
            table.get(key).is_none(),
            "the default {section}.{key} is not written"
        );
        table.insert(key.into(), toml::Value::Integer(value as i64));
    }
    let documented = documented_defaults();
    assert!(documented.len() >= 20, "{documented:?}");
    for (key, value) in &documented {
        let (section, name) = key.split_once('.').expect("section.key");
        let applied = applied.get(section).and_then(|table| table.get(name));
        assert_eq!(
            applied.and_then(toml::Value::as_integer),
            Some(*value),
            "{key}: applied {applied:?}, documented {value} in defaults.rs"
        );
    }
}

/// Every `DEFAULT_*` constant of `src/defaults.rs` with the key its doc line names: the doc
/// line starts with the key in backticks (`` /// `raft.heartbeat_interval_ms`: ... ``), the
/// constant's value is an integer literal.
fn documented_defaults() -> Vec<(String, i64)> {
    let source = include_str!("../src/defaults.rs");
    let mut key = None;
    let mut in_doc = false;
    let mut defaults = Vec::new();
    for line in source.lines().map(str::trim) {
        if let Some(doc) = line.strip_prefix("///") {
            if !in_doc {
                key = doc
                    .trim()
                    .strip_prefix('`')
                    .and_then(|doc| doc.split_once("`:"))
                    .map(|(key, _)| key.to_owned());
            }
            in_doc = true;
            continue;
        }
        in_doc = false;
        if let Some(rest) = line.strip_prefix("pub const DEFAULT_") {
            let key = key
                .take()
                .unwrap_or_else(|| panic!("no `section.key` doc line above DEFAULT_{rest}"));
            let value = rest
                .split_once('=')
                .map(|(_, value)| value.trim().trim_end_matches(';').replace('_', ""))
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("DEFAULT_{rest}: not an integer literal"));
            defaults.push((key, value));
        }
        key = None;
    }
    defaults
}

#[test]
fn partial_section_keeps_defaults_for_missing_keys() {
    let config = Config::from_toml_str(&voter_with("[raft]\nheartbeat_interval_ms = 50")).unwrap();
    assert_eq!(config.raft.heartbeat_interval_ms, 50);
    assert_eq!(
        config.raft.election_timeout_min_ms,
        DEFAULT_ELECTION_TIMEOUT_MIN_MS
    );
    assert_eq!(config.raft.rpc_timeout_ms, DEFAULT_RPC_TIMEOUT_MS);
}

#[test]
fn full_config_parses_every_key() {
    let config = Config::from_toml_str(
        r#"
[node]
id = 7
role = "gateway"
listen = "0.0.0.0:0"
advertise = "gw-7.internal:7207"
data_dir = "data/gw-7"

[cluster]
voter_secrets = ["sha256:f1ee31d59b99e3bdea507677b703c4f061fcd08d1d25ec050473fa587970f1ba"]
gateway_secrets = ["a-much-longer-gateway-secret", "sha256:d64aa729a30a4c3333993c7283e7e87cac111fd24183477f6b380ec929bc2bb6"]
operator_secrets = ["sha256:1a9d6c199f32c7a546e8ae0048c361c3752d8fc6a2c1f9f9da718756129cf84b"]
admin_token = "an-admin-token-of-some-length"

[[cluster.voters]]
id = 1
addr = "voter-1.internal:7101"

[[cluster.voters]]
id = 2
addr = "[::1]:7102"

[raft]
heartbeat_interval_ms = 50
election_timeout_min_ms = 150
election_timeout_max_ms = 151
snapshot_every_logs = 1
logs_to_keep_after_snapshot = 0
rpc_timeout_ms = 1
idempotency_window_ms = 1000
commit_timeout_ms = 1

[limits]
body_bytes_max = 1024
commands_per_entry_max = 65535
purchase_quantity_max = 1
connections_max = 1
internal_connections_max = 1
streams_max = 0
stream_lifetime_ms = 1000
header_read_timeout_ms = 1
idle_timeout_ms = 1
idle_timeout_under_pressure_ms = 1
request_timeout_ms = 50000
body_read_timeout_ms = 1
client_retry_horizon_ms = 3
trusted_sources = ["10.0.0.0/8", "2001:db8::/48", "203.0.113.7"]
client_purchase_rate_per_s = 1
client_purchase_burst_max = 1
client_view_rate_per_s = 1
client_view_burst_max = 1
rate_clients_max = 1024

[gateway]
public_listen = "0.0.0.0:0"
batch_wait_us = 0
batch_items_max = 65535
queue_max = 65535
queue_per_client_max = 1
forward_timeout_ms = 2
forward_attempt_timeout_ms = 1
linearizable_read_timeout_ms = 1
ready_leader_silence_ms = 152
ready_lag_entries_max = 1
forward_connections_max = 1
public_origins = ["https://gw-7.shop.example", "http://[::1]:8081"]
page_request_timeout_ms = 3

[tls]
internal_ca_path = "/etc/flashstock/tls/ca.pem"
internal_cert_path = "/etc/flashstock/tls/gw-7.pem"
internal_key_path = "/etc/flashstock/tls/gw-7.key"
public_cert_path = "/etc/flashstock/tls/shop.pem"
public_key_path = "/etc/flashstock/tls/shop.key"
reload_check_ms = 100
"#,
    )
    .unwrap();
    assert_eq!(config.advertise_addr(), "gw-7.internal:7207");
    assert_eq!(config.tls.internal_scheme(), "https");
    assert!(config.tls.public());
    assert_eq!(
        config.cluster.voters,
        vec![
            Peer {
                id: 1,
                addr: "voter-1.internal:7101".into()
            },
            Peer {
                id: 2,
                addr: "[::1]:7102".into()
            },
        ]
    );
    assert_eq!(config.limits.commands_per_entry_max, 65_535);
    assert_eq!(config.gateway.batch_wait_us, 0);
    let trusted: Vec<String> = config
        .limits
        .trusted_sources
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(trusted, ["10.0.0.0/8", "2001:db8::/48", "203.0.113.7/32"]);
}

#[test]
fn a_malformed_trusted_source_is_a_parse_error_naming_it() {
    let message = parse_error(&gateway_with(
        "",
        "[limits]\ntrusted_sources = [\"10.0.0.5/8\"]\n",
    ));
    assert!(message.contains("trusted_sources"), "{message}");
    assert!(message.contains("bits set below"), "{message}");
}

#[test]
fn advertise_addr_falls_back_to_listen() {
    let config = Config::from_toml_str(MINIMAL_VOTER).unwrap();
    assert_eq!(config.advertise_addr(), "127.0.0.1:7101");
}

#[test]
fn gateway_section_is_not_checked_for_voters() {
    // No role but gateway reads [gateway], so a voter may shrink entries below
    // the default batch size without touching [gateway].
    let toml = voter_with("[limits]\ncommands_per_entry_max = 8");
    assert!(Config::from_toml_str(&toml).is_ok());
}

#[test]
fn unknown_top_level_key_is_named() {
    let message = parse_error(&voter_with("colour = \"blue\""));
    assert!(message.contains("colour"), "{message}");
}

#[test]
fn unknown_table_is_named() {
    let message = parse_error(&voter_with("[rafts]\nheartbeat_interval_ms = 5"));
    assert!(message.contains("rafts"), "{message}");
}

#[test]
fn unknown_nested_keys_are_named_in_every_table() {
    let cases = [
        ("[raft]\nheartbeat_ms = 5", "heartbeat_ms"),
        ("[limits]\nbody_max = 5", "body_max"),
        ("[gateway]\nlisten = \"127.0.0.1:1\"", "listen"),
    ];
    for (extra, key) in cases {
        let message = parse_error(&voter_with(extra));
        assert!(message.contains(key), "{key}: {message}");
        assert!(message.contains("line"), "{key}: {message}");
    }
    let node = parse_error(&voter_tables(
        &format!("{NODE_KEYS}\nport = 1"),
        CLUSTER_KEYS,
    ));
    assert!(node.contains("port"), "{node}");
    let cluster = parse_error(&voter_tables(
        NODE_KEYS,
        &format!("{CLUSTER_KEYS}\ntoken = \"x\""),
    ));
    assert!(cluster.contains("token"), "{cluster}");
    let peer = parse_error(&voter_with(
        "[[cluster.voters]]\nid = 1\naddr = \"h:1\"\nweight = 2",
    ));
    assert!(peer.contains("weight"), "{peer}");
}

#[test]
fn missing_required_key_and_bad_values_are_parse_errors() {
    let missing = parse_error(&voter_tables(
        "id = 1\nrole = \"voter\"\ndata_dir = \"/d\"",
        CLUSTER_KEYS,
    ));
    assert!(missing.contains("listen"), "{missing}");
    let role = parse_error(&voter_tables(
        "id = 1\nrole = \"leader\"\nlisten = \"127.0.0.1:1\"\ndata_dir = \"/d\"",
        CLUSTER_KEYS,
    ));
    assert!(role.contains("leader"), "{role}");
    let addr = parse_error(&voter_tables(
        "id = 1\nrole = \"voter\"\nlisten = \"localhost\"\ndata_dir = \"/d\"",
        CLUSTER_KEYS,
    ));
    assert!(addr.contains("listen"), "{addr}");
    let negative = parse_error(&voter_with("[raft]\nrpc_timeout_ms = -1"));
    assert!(negative.contains("rpc_timeout_ms"), "{negative}");
    let syntax = parse_error("[node\nid = 1");
    assert!(!syntax.is_empty());
}

#[test]
fn load_reads_a_file_and_names_a_missing_one() {
    let dir = std::env::temp_dir().join(format!("cluster-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.toml");
    std::fs::write(&path, MINIMAL_VOTER).unwrap();
    let loaded = Config::load(&path);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        loaded.unwrap(),
        Config::from_toml_str(MINIMAL_VOTER).unwrap()
    );

    let missing = dir.join("absent.toml");
    let err = Config::load(&missing).unwrap_err();
    assert!(matches!(err, ConfigError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.toml"), "{err}");
}

#[test]
fn debug_output_hides_secrets() {
    let mut config = Config::from_toml_str(MINIMAL_VOTER).unwrap();
    config.cluster.admin_token = Some("zzzz-admin-token-zzzz".into());
    let debug = format!("{config:?}");
    for secret in [
        "voter-secret-0123456789",
        "gateway-secret-0123456",
        "operator-secret-012345",
    ] {
        assert!(!debug.contains(secret), "{debug}");
    }
    assert!(!debug.contains("zzzz-admin-token-zzzz"), "{debug}");
}

// ---- round trip ----

#[test]
fn round_trip_minimal_configs() {
    for toml in [MINIMAL_VOTER, MINIMAL_GATEWAY] {
        let config = Config::from_toml_str(toml).unwrap();
        let written = config.to_toml_string();
        let reread = Config::from_toml_str(&written)
            .unwrap_or_else(|e| panic!("{e}\n--- written ---\n{written}"));
        assert_eq!(reread, config, "{written}");
    }
}

#[test]
fn round_trip_with_every_optional_key_set() {
    let mut config = Config::from_toml_str(MINIMAL_GATEWAY).unwrap();
    config.node.advertise = Some("gw.internal:7201".into());
    config.cluster.admin_token = Some("admin-token-0123456789".into());
    config.cluster.voters = vec![
        Peer {
            id: 1,
            addr: "127.0.0.1:7101".into(),
        },
        Peer {
            id: 2,
            addr: "127.0.0.1:7102".into(),
        },
    ];
    config.raft.idempotency_window_ms = 7_200_000;
    config.raft.commit_timeout_ms = 1500;
    config.limits.client_retry_horizon_ms = 600_000;
    config.limits.body_read_timeout_ms = 4000;
    config.gateway.forward_attempt_timeout_ms = 1500;
    config.gateway.linearizable_read_timeout_ms = 4000;
    config.limits.commands_per_entry_max = 512;
    config.gateway.batch_items_max = 512;
    config.limits.trusted_sources = vec!["127.0.0.1".parse().unwrap(), "fd00::/8".parse().unwrap()];
    config.validate().unwrap();

    let written = config.to_toml_string();
    let reread = Config::from_toml_str(&written)
        .unwrap_or_else(|e| panic!("{e}\n--- written ---\n{written}"));
    assert_eq!(reread, config, "{written}");
}

// ---- one failing case per validation rule ----

#[test]
fn node_rules() {
    assert_invalid(
        &voter_tables(&NODE_KEYS.replace("id = 1", "id = 0"), CLUSTER_KEYS),
        "node.id",
    );
    assert_invalid(
        &voter_tables(&NODE_KEYS.replace("\"/d\"", "\"\""), CLUSTER_KEYS),
        "node.data_dir",
    );
    assert_invalid(
        &voter_tables(&NODE_KEYS.replace(":7101", ":0"), CLUSTER_KEYS),
        "node.advertise",
    );
    assert_invalid(
        &voter_tables(&NODE_KEYS.replace("127.0.0.1", "0.0.0.0"), CLUSTER_KEYS),
        "node.advertise",
    );
    assert_invalid(
        &voter_tables(
            &format!("{NODE_KEYS}\nadvertise = \"no-port\""),
            CLUSTER_KEYS,
        ),
        "node.advertise",
    );
    // Port 0 is fine once advertise is given.
    let with_advertise = voter_tables(
        &format!(
            "{}\nadvertise = \"h:7101\"",
            NODE_KEYS.replace(":7101", ":0")
        ),
        CLUSTER_KEYS,
    );
    assert!(Config::from_toml_str(&with_advertise).is_ok());
}

#[test]
fn cluster_rules() {
    let short = CLUSTER_KEYS.replace("voter-secret-0123456789", "short");
    let (key, text) = invalid(&voter_tables(NODE_KEYS, &short));
    assert_eq!(key, "cluster.voter_secrets[0]");
    assert!(text.contains("16"), "{text}");
    assert!(!text.contains("short"), "the secret leaked: {text}");

    assert_invalid(
        &voter_tables(
            NODE_KEYS,
            &format!("{CLUSTER_KEYS}\nadmin_token = \"tiny\""),
        ),
        "cluster.admin_token",
    );

    let voters =
        |entries: &str| voter_tables(NODE_KEYS, &format!("{CLUSTER_KEYS}\nvoters = [{entries}]"));
    let (key, text) = invalid(&voters(
        r#"{ id = 1, addr = "a:1" }, { id = 1, addr = "b:1" }"#,
    ));
    assert_eq!(key, "cluster.voters[1].id", "{text}");
    assert!(text.contains("more than once"), "{text}");
    assert_invalid(
        &voters(r#"{ id = 0, addr = "a:1" }"#),
        "cluster.voters[0].id",
    );
    assert_invalid(
        &voters(r#"{ id = 1, addr = "a:1" }, { id = 2, addr = "" }"#),
        "cluster.voters[1].addr",
    );
    // The node itself need not be among the voters (it may join as a learner).
    assert!(Config::from_toml_str(&voters(r#"{ id = 2, addr = "a:1" }"#)).is_ok());
}

#[test]
fn groups_default_to_one_and_several_bound_the_entry() {
    let one = Config::from_toml_str(&voter_tables(NODE_KEYS, CLUSTER_KEYS)).unwrap();
    assert_eq!(one.cluster.groups, 1);
    // A file of the release before groups reads the same: one group is not written.
    let written = toml::to_string(&one).unwrap();
    assert!(!written.contains("groups"), "{written}");

    let groups = |n: u16, tables: &str| {
        voter_tables(
            NODE_KEYS,
            &format!("{CLUSTER_KEYS}\ngroups = {n}\n{tables}"),
        )
    };
    let three = Config::from_toml_str(&groups(3, "")).unwrap();
    assert_eq!(three.cluster.groups, 3);
    let written = toml::to_string(&three).unwrap();
    assert!(written.contains("groups = 3"), "{written}");
    assert!(Config::from_toml_str(&groups(GROUPS_MAX, "")).is_ok());
    assert_invalid(&groups(0, ""), "cluster.groups");
    assert_invalid(&groups(GROUPS_MAX + 1, ""), "cluster.groups");

    // An order id has 10 bits for its place in the entry once it names its group.
    let entry = |n: usize| format!("[limits]\ncommands_per_entry_max = {n}");
    let (key, text) = invalid(&groups(2, &entry(GROUP_COMMANDS_PER_ENTRY_MAX + 1)));
    assert_eq!(key, "limits.commands_per_entry_max", "{text}");
    assert!(text.contains("cluster.groups = 2"), "{text}");
    assert!(Config::from_toml_str(&groups(2, &entry(GROUP_COMMANDS_PER_ENTRY_MAX))).is_ok());
    assert!(Config::from_toml_str(&groups(1, &entry(GROUP_COMMANDS_PER_ENTRY_MAX + 1))).is_ok());
}

#[test]
fn raft_rules() {
    let raft = |keys: &str| voter_with(&format!("[raft]\n{keys}"));
    assert_invalid(
        &raft("heartbeat_interval_ms = 0"),
        "raft.heartbeat_interval_ms",
    );

    let (key, text) = invalid(&raft(
        "heartbeat_interval_ms = 100\nelection_timeout_min_ms = 100",
    ));
    assert_eq!(key, "raft.election_timeout_min_ms");
    assert!(text.contains("raft.heartbeat_interval_ms"), "{text}");
    assert!(text.contains("at least 3 x"), "{text}");
    assert_invalid(
        &raft("heartbeat_interval_ms = 100\nelection_timeout_min_ms = 299"),
        "raft.election_timeout_min_ms",
    );
    assert!(Config::from_toml_str(&raft(
        "heartbeat_interval_ms = 100\nelection_timeout_min_ms = 300\nelection_timeout_max_ms = 301"
    ))
    .is_ok());

    let (key, text) = invalid(&raft(
        "election_timeout_min_ms = 900\nelection_timeout_max_ms = 900",
    ));
    assert_eq!(key, "raft.election_timeout_max_ms");
    assert!(text.contains("raft.election_timeout_min_ms"), "{text}");

    assert_invalid(&raft("rpc_timeout_ms = 0"), "raft.rpc_timeout_ms");
    assert_invalid(&raft("snapshot_every_logs = 0"), "raft.snapshot_every_logs");
    assert_invalid(
        &raft("idempotency_window_ms = 999"),
        "raft.idempotency_window_ms",
    );
}

#[test]
fn limits_rules() {
    let limits = |keys: &str| voter_with(&format!("[limits]\n{keys}"));
    assert_invalid(&limits("body_bytes_max = 1023"), "limits.body_bytes_max");
    assert_invalid(
        &limits("body_bytes_max = 67108865"),
        "limits.body_bytes_max",
    );
    assert!(Config::from_toml_str(&limits("body_bytes_max = 67108864")).is_ok());
    assert_invalid(
        &limits("commands_per_entry_max = 0"),
        "limits.commands_per_entry_max",
    );
    assert_invalid(
        &limits("commands_per_entry_max = 65536"),
        "limits.commands_per_entry_max",
    );
    assert_invalid(
        &limits("purchase_quantity_max = 0"),
        "limits.purchase_quantity_max",
    );
    assert_invalid(&limits("connections_max = 0"), "limits.connections_max");
    assert_invalid(
        &limits("body_read_timeout_ms = 0"),
        "limits.body_read_timeout_ms",
    );
    assert_invalid(
        &limits("internal_connections_max = 0"),
        "limits.internal_connections_max",
    );
    // Streams may never take every connection from buyers.
    assert_invalid(
        &limits("connections_max = 100\nstreams_max = 100"),
        "limits.streams_max",
    );
    assert!(Config::from_toml_str(&limits("connections_max = 100\nstreams_max = 99")).is_ok());
    assert_invalid(
        &limits("stream_lifetime_ms = 999"),
        "limits.stream_lifetime_ms",
    );
    assert_invalid(
        &limits("header_read_timeout_ms = 0"),
        "limits.header_read_timeout_ms",
    );
    assert_invalid(&limits("idle_timeout_ms = 0"), "limits.idle_timeout_ms");
    assert_invalid(
        &limits("idle_timeout_ms = 500\nidle_timeout_under_pressure_ms = 501"),
        "limits.idle_timeout_under_pressure_ms",
    );
    assert_invalid(
        &limits("idle_timeout_under_pressure_ms = 0"),
        "limits.idle_timeout_under_pressure_ms",
    );
}

/// The request backstop stays above every wait a handler does by design.
#[test]
fn request_timeout_is_above_every_designed_wait() {
    let limits = |keys: &str| voter_with(&format!("[limits]\n{keys}"));
    assert_invalid(
        &limits("request_timeout_ms = 49999"),
        "limits.request_timeout_ms",
    );
    let (_, message) = invalid(&limits(
        "request_timeout_ms = 50000\nbody_read_timeout_ms = 47001",
    ));
    assert!(
        message.contains("gateway.linearizable_read_timeout_ms"),
        "{message}"
    );
    let (key, message) = invalid(&voter_with(
        "[limits]\nrequest_timeout_ms = 50000\n[archive]\ntimeout_ms = 50000",
    ));
    assert_eq!(key, "limits.request_timeout_ms");
    assert!(message.contains("archive.timeout_ms"), "{message}");
    // A member's server must not cut the answer to a snapshot's last chunk (sent after the
    // whole install) before the leader stops waiting for it.
    let (key, message) = invalid(&voter_with(
        "[limits]\nrequest_timeout_ms = 50000\n[raft]\nsnapshot_chunk_timeout_ms = 50000",
    ));
    assert_eq!(key, "limits.request_timeout_ms");
    assert!(
        message.contains("raft.snapshot_chunk_timeout_ms"),
        "{message}"
    );
}

/// A snapshot chunk waits at least as long as any other Raft call: its answer may include the
/// member's whole install.
#[test]
fn a_snapshot_chunk_waits_at_least_an_rpc_timeout() {
    assert_invalid(
        &voter_with("[raft]\nrpc_timeout_ms = 3000\nsnapshot_chunk_timeout_ms = 2999"),
        "raft.snapshot_chunk_timeout_ms",
    );
    assert!(Config::from_toml_str(&voter_with(
        "[raft]\nrpc_timeout_ms = 3000\nsnapshot_chunk_timeout_ms = 3000"
    ))
    .is_ok());
}

/// openraft 0.9 gives an append its heartbeat interval to be answered, and a learner's append
/// waits its interval inside that: the wait may take at most a quarter of it.
#[test]
fn a_learner_append_interval_leaves_most_of_the_heartbeat_for_the_answer() {
    assert_invalid(
        &voter_with("[raft]\nheartbeat_interval_ms = 100\nlearner_append_interval_ms = 26"),
        "raft.learner_append_interval_ms",
    );
    for ok in ["0", "25"] {
        let config = Config::from_toml_str(&voter_with(&format!(
            "[raft]\nheartbeat_interval_ms = 100\nlearner_append_interval_ms = {ok}"
        )))
        .expect("within a quarter of the heartbeat");
        assert_eq!(config.raft.learner_append_interval_ms.to_string(), ok);
    }
}

#[test]
fn timeouts_must_come_in_order() {
    // A one-second idempotency window below the three-second forward timeout: a retry after
    // the window could buy twice. Refused, in a voter's file too (voters apply the window).
    let (key, text) = invalid(&voter_with(
        "[raft]\nidempotency_window_ms = 1000\n[limits]\nclient_retry_horizon_ms = 2000",
    ));
    assert_eq!(key, "limits.client_retry_horizon_ms");
    assert!(text.contains("gateway.forward_timeout_ms = 3000"), "{text}");
    // Each link of commit <= attempt < forward < horizon < window, broken alone.
    let broken = [
        (
            "[raft]\nidempotency_window_ms = 3600000",
            "raft.idempotency_window_ms",
        ),
        ("[raft]\ncommit_timeout_ms = 0", "raft.commit_timeout_ms"),
        (
            "[raft]\ncommit_timeout_ms = 2001",
            "gateway.forward_attempt_timeout_ms",
        ),
        (
            "[gateway]\nforward_attempt_timeout_ms = 3000",
            "gateway.forward_timeout_ms",
        ),
    ];
    for (tables, key) in broken {
        assert_invalid(&voter_with(tables), key);
    }
    let within = gateway_with(
        "forward_attempt_timeout_ms = 1999",
        "[raft]\ncommit_timeout_ms = 1999",
    );
    assert!(Config::from_toml_str(&within).is_ok());
}

#[test]
fn gateway_rules() {
    let without_public_listen = MINIMAL_GATEWAY.replace("public_listen = \"127.0.0.1:8081\"", "");
    let (key, text) = invalid(&without_public_listen);
    assert_eq!(key, "gateway.public_listen");
    assert!(text.contains("gateway"), "{text}");

    assert_invalid(
        &MINIMAL_GATEWAY.replace(":8081", ":7201"),
        "gateway.public_listen",
    );

    assert_invalid(
        &gateway_with("batch_items_max = 0", ""),
        "gateway.batch_items_max",
    );
    let (key, text) = invalid(&gateway_with(
        "batch_items_max = 300",
        "[limits]\ncommands_per_entry_max = 299",
    ));
    assert_eq!(key, "gateway.batch_items_max");
    assert!(text.contains("limits.commands_per_entry_max"), "{text}");

    let (key, text) = invalid(&gateway_with("batch_items_max = 10\nqueue_max = 9", ""));
    assert_eq!(key, "gateway.queue_max");
    assert!(text.contains("gateway.batch_items_max"), "{text}");

    assert_invalid(
        &gateway_with("forward_connections_max = 0", ""),
        "gateway.forward_connections_max",
    );
    assert_invalid(
        &gateway_with("forward_timeout_ms = 0", ""),
        "gateway.forward_timeout_ms",
    );
    assert_invalid(
        &gateway_with("linearizable_read_timeout_ms = 0", ""),
        "gateway.linearizable_read_timeout_ms",
    );
    assert_invalid(
        &gateway_with("ready_lag_entries_max = 0", ""),
        "gateway.ready_lag_entries_max",
    );
    // The silence bound outlasts an election, or every failover takes the gateways out.
    let (key, text) = invalid(&gateway_with(
        "ready_leader_silence_ms = 1200",
        "[raft]\nelection_timeout_max_ms = 1200",
    ));
    assert_eq!(key, "gateway.ready_leader_silence_ms");
    assert!(text.contains("raft.election_timeout_max_ms"), "{text}");
    // Origins exactly as browsers send them, each once; the page outwaits a live gateway.
    for origins in [
        r#"["https://shop.example/"]"#,
        r#"["shop.example"]"#,
        r#"["https://a.example", "https://a.example"]"#,
        r#"["https://a.example; connect-src *"]"#,
    ] {
        assert_invalid(
            &gateway_with(&format!("public_origins = {origins}"), ""),
            "gateway.public_origins",
        );
    }
    let (key, text) = invalid(&gateway_with("page_request_timeout_ms = 3000", ""));
    assert_eq!(key, "gateway.page_request_timeout_ms");
    assert!(text.contains("gateway.forward_timeout_ms"), "{text}");
}

/// The sample gateways of `deploy/local` and `deploy/six-servers` each list every gateway's
/// public origin (its scheme, and its `public_listen`), so a shop page fails over across all.
#[test]
fn deploy_gateways_list_every_gateway_origin() {
    // The six servers' gateways listen on every address (the floating one included): their own
    // origin is their server's address; pages served through the floating address (deploy/
    // keepalived) are of its origin.
    for (dir, floating) in [
        ("local", None),
        ("six-servers", Some("https://198.18.0.10:8080")),
    ] {
        let mut files = Vec::new();
        toml_files_under(&deploy_dir().join(dir), &mut files);
        let gateways: Vec<Config> = files
            .iter()
            .map(|f| Config::load(f).unwrap())
            .filter(|c| c.node.role == Role::Gateway)
            .collect();
        assert_eq!(gateways.len(), 3, "{dir}");
        let mut expected: Vec<String> = gateways
            .iter()
            .map(|c| {
                let scheme = if c.tls.public() { "https" } else { "http" };
                let public = c.gateway.public_listen.unwrap();
                let host = match public.ip().is_unspecified() {
                    true => c.node.listen.ip(),
                    false => public.ip(),
                };
                format!(
                    "{scheme}://{}",
                    std::net::SocketAddr::new(host, public.port())
                )
            })
            .chain(floating.map(str::to_owned))
            .collect();
        expected.sort();
        for gateway in &gateways {
            let mut listed = gateway.gateway.public_origins.clone();
            listed.sort();
            assert_eq!(listed, expected, "{dir}: gateway {}", gateway.node.id);
        }
    }
}

#[test]
fn values_toml_cannot_hold_are_invalid() {
    let mut config = Config::from_toml_str(MINIMAL_VOTER).unwrap();
    config.raft.logs_to_keep_after_snapshot = u64::MAX;
    match config.validate() {
        Err(ConfigError::Invalid { key, .. }) => {
            assert_eq!(key, "raft.logs_to_keep_after_snapshot")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[cfg(unix)]
#[test]
fn non_utf8_data_dir_is_invalid() {
    use std::os::unix::ffi::OsStrExt;
    let mut config = Config::from_toml_str(MINIMAL_VOTER).unwrap();
    config.node.data_dir = PathBuf::from(std::ffi::OsStr::from_bytes(b"/data/\xff"));
    match config.validate() {
        Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, "node.data_dir"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---- sample configs under deploy/ ----

/// TOML files that configure tools, not nodes (`deploy/` is also a crate).
const NOT_NODE_CONFIGS: &[&str] = &[
    "Cargo.toml",
    "rustfmt.toml",
    ".rustfmt.toml",
    "clippy.toml",
    ".clippy.toml",
    "rust-toolchain.toml",
    "deny.toml",
];

/// Every node config under `dir`, recursively: each `*.toml` file except
/// tool configs, skipping hidden and `target` directories.
fn toml_files_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                toml_files_under(&path, found);
            }
        } else if name.ends_with(".toml") && !NOT_NODE_CONFIGS.contains(&name.as_ref()) {
            found.push(path);
        }
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn every_deploy_config_is_valid() {
    let mut files = Vec::new();
    toml_files_under(&deploy_dir(), &mut files);
    assert!(
        files.len() >= 6,
        "expected at least 6 configs, found {files:?}"
    );
    for file in &files {
        if let Err(e) = Config::load(file) {
            panic!("{}: {e}", file.display());
        }
    }
}

#[test]
fn local_configs_form_one_cluster() {
    let mut files = Vec::new();
    toml_files_under(&deploy_dir().join("local"), &mut files);
    files.sort();
    let configs: Vec<Config> = files.iter().map(|f| Config::load(f).unwrap()).collect();
    assert_eq!(configs.len(), 6, "{files:?}");

    // The same [cluster] everywhere, but for which credentials a node holds in clear: every node
    // accepts the same credentials.
    let accepted = |config: &Config| {
        let digests = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|entry| match cluster_config::parse_digest(entry) {
                    Some(_) => entry.clone(),
                    None => cluster_config::secret_digest(entry),
                })
                .collect()
        };
        let cluster = &config.cluster;
        (
            digests(&cluster.voter_secrets),
            digests(&cluster.gateway_secrets),
            digests(&cluster.operator_secrets),
            cluster.voters.clone(),
            cluster.admin_token.clone(),
        )
    };
    let first = accepted(&configs[0]);
    let mut ids = HashSet::new();
    let mut addrs = HashSet::new();
    for config in &configs {
        assert_eq!(
            accepted(config),
            first,
            "[cluster] differs between local configs"
        );
        assert!(
            ids.insert(config.node.id),
            "duplicate node id {}",
            config.node.id
        );
        assert!(
            addrs.insert(config.node.listen),
            "duplicate listen {}",
            config.node.listen
        );
        if let Some(public) = config.gateway.public_listen {
            assert!(addrs.insert(public), "duplicate listen {public}");
        }
    }
    let voters: Vec<_> = configs
        .iter()
        .filter(|c| c.node.role == Role::Voter)
        .collect();
    let gateways: Vec<_> = configs
        .iter()
        .filter(|c| c.node.role == Role::Gateway)
        .collect();
    assert_eq!((voters.len(), gateways.len()), (3, 3));
    // Each voter is listed in cluster.voters at the address it advertises.
    for voter in voters {
        let listed = Peer {
            id: voter.node.id,
            addr: voter.advertise_addr(),
        };
        assert!(
            configs[0].cluster.voters.contains(&listed),
            "{listed:?} not in cluster.voters"
        );
    }
}
