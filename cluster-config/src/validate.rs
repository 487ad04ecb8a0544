//! The rules a parsed configuration must satisfy. Each check returns the first
//! broken rule as [`ConfigError::Invalid`], naming the key in dotted form.

use std::collections::HashSet;

use crate::defaults::*;
use crate::DIGEST_PREFIX;
use crate::{
    ArchiveSection, CheckoutSection, ClusterSection, Config, ConfigError, GatewaySection,
    LimitsSection, NodeSection, RaftSection, Role, TlsSection,
};

impl Config {
    /// Checks every rule; returns the first broken one.
    ///
    /// `[gateway]` is checked only when `node.role = "gateway"`, since no
    /// other role reads it; but the timeout chain
    /// (`raft.commit_timeout_ms <= gateway.forward_attempt_timeout_ms <
    /// gateway.forward_timeout_ms < limits.client_retry_horizon_ms <
    /// raft.idempotency_window_ms`) is checked in every file: the voters'
    /// idempotency window must outlast the gateways' forwards and the clients'
    /// retries, and every node of a cluster is meant to hold the same values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_node(&self.node)?;
        validate_cluster(&self.cluster, self.node.role)?;
        validate_raft(&self.raft)?;
        validate_limits(&self.limits)?;
        validate_archive(&self.archive)?;
        validate_tls(&self.tls, self.node.role)?;
        validate_checkout(&self.checkout)?;
        validate_groups(self)?;
        if self.node.role == Role::Gateway {
            validate_gateway(&self.gateway, &self.node, &self.limits)?;
            validate_readiness(&self.gateway, &self.raft)?;
            validate_storefront(&self.gateway)?;
        }
        validate_timeouts(self)?;
        validate_request_timeout(self)
    }
}

/// `limits.request_timeout_ms` is a backstop, never the bound that answers first: it must be
/// above every wait a handler does by design, or it would cut a purchase the forwarder is still
/// trying to confirm (and turn a definite answer into an unknown one).
fn validate_request_timeout(config: &Config) -> Result<(), ConfigError> {
    let limits = &config.limits;
    let key = "limits.request_timeout_ms";
    at_least(key, limits.request_timeout_ms, ADMIN_CALL_WAIT_MS_MAX)?;
    let (longest_key, longest) = [
        (
            "gateway.forward_timeout_ms",
            config.gateway.forward_timeout_ms,
        ),
        (
            "gateway.linearizable_read_timeout_ms",
            config.gateway.linearizable_read_timeout_ms,
        ),
    ]
    .into_iter()
    .max_by_key(|(_, value)| *value)
    .expect("two candidates");
    let handler_wait = limits.body_read_timeout_ms.saturating_add(longest);
    if limits.request_timeout_ms <= handler_wait {
        return Err(ConfigError::invalid(
            key,
            format!(
                "must be greater than limits.body_read_timeout_ms + {longest_key} \
                 (got {} <= {} + {longest})",
                limits.request_timeout_ms, limits.body_read_timeout_ms
            ),
        ));
    }
    // Each a single wait a handler does: the archive's, and a member's answer to a snapshot's
    // last chunk (sent after the whole install), which its server must not cut before the
    // leader stops waiting for it.
    for (other_key, other) in [
        (
            "raft.snapshot_chunk_timeout_ms",
            config.raft.snapshot_chunk_timeout_ms,
        ),
        ("archive.timeout_ms", config.archive.timeout_ms),
    ] {
        if limits.request_timeout_ms <= other {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "must be greater than {other_key} (got {} <= {other})",
                    limits.request_timeout_ms
                ),
            ));
        }
    }
    Ok(())
}

/// One meaning per timeout, and the order they must come in:
/// `raft.commit_timeout_ms <= gateway.forward_attempt_timeout_ms <
/// gateway.forward_timeout_ms < limits.client_retry_horizon_ms <
/// raft.idempotency_window_ms`. A voter answers within one attempt; attempts
/// fit in the forward budget; clients retry a key for longer than one forward;
/// and the key is remembered for longer than any client retries it, or a
/// retry after the record is forgotten would buy a second time.
fn validate_timeouts(config: &Config) -> Result<(), ConfigError> {
    let chain = [
        ("raft.commit_timeout_ms", config.raft.commit_timeout_ms),
        (
            "gateway.forward_attempt_timeout_ms",
            config.gateway.forward_attempt_timeout_ms,
        ),
        (
            "gateway.forward_timeout_ms",
            config.gateway.forward_timeout_ms,
        ),
        (
            "limits.client_retry_horizon_ms",
            config.limits.client_retry_horizon_ms,
        ),
        (
            "raft.idempotency_window_ms",
            config.raft.idempotency_window_ms,
        ),
    ];
    for (i, pair) in chain.windows(2).enumerate() {
        let ((lower_key, lower), (key, value)) = (pair[0], pair[1]);
        // Only the first link may be equal: a voter answering just as the attempt ends is fine.
        let ordered = if i == 0 {
            lower <= value
        } else {
            lower < value
        };
        if !ordered {
            let relation = if i == 0 { "at least" } else { "greater than" };
            return Err(ConfigError::invalid(
                key,
                format!("must be {relation} {lower_key} (got {value}, {lower_key} = {lower})"),
            ));
        }
    }
    Ok(())
}

fn validate_node(node: &NodeSection) -> Result<(), ConfigError> {
    at_least("node.id", node.id, 1)?;
    if node.data_dir.as_os_str().is_empty() {
        return Err(ConfigError::invalid("node.data_dir", "must not be empty"));
    }
    if node.data_dir.to_str().is_none() {
        return Err(ConfigError::invalid(
            "node.data_dir",
            format!("must be valid UTF-8 (got {:?})", node.data_dir),
        ));
    }
    match &node.advertise {
        Some(addr) => host_port("node.advertise", addr),
        None if node.listen.port() == 0 => Err(ConfigError::invalid(
            "node.advertise",
            format!(
                "is required when node.listen has port 0 (got node.listen = {})",
                node.listen
            ),
        )),
        None if node.listen.ip().is_unspecified() => Err(ConfigError::invalid(
            "node.advertise",
            format!(
                "is required when node.listen is an unspecified address (got node.listen = {})",
                node.listen
            ),
        )),
        None => Ok(()),
    }
}

fn validate_cluster(cluster: &ClusterSection, role: Role) -> Result<(), ConfigError> {
    let lists = [
        (
            "cluster.voter_secrets",
            &cluster.voter_secrets,
            role == Role::Voter,
        ),
        (
            "cluster.gateway_secrets",
            &cluster.gateway_secrets,
            role == Role::Gateway,
        ),
        ("cluster.operator_secrets", &cluster.operator_secrets, false),
    ];
    // Each accepted credential belongs to one role: a secret listed for two would give whoever
    // holds it both roles' rights.
    let mut owners: Vec<(String, &str)> = Vec::new();
    for (key, list, sent) in lists {
        if list.is_empty() || list.len() > CREDENTIALS_PER_ROLE_MAX {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "must list 1 to {CREDENTIALS_PER_ROLE_MAX} credentials (got {})",
                    list.len()
                ),
            ));
        }
        for (i, entry) in list.iter().enumerate() {
            let entry_key = format!("{key}[{i}]");
            let digest = match crate::parse_digest(entry) {
                Some(_) => entry.clone(),
                None if entry.starts_with(DIGEST_PREFIX) => {
                    return Err(ConfigError::invalid(
                        entry_key,
                        format!("a digest is \"{DIGEST_PREFIX}\" and 64 lowercase hex digits"),
                    ))
                }
                None => {
                    secret(&entry_key, entry)?;
                    crate::secret_digest(entry)
                }
            };
            let is_digest = digest == *entry;
            if i == 0 && sent && is_digest {
                return Err(ConfigError::invalid(
                    entry_key,
                    "is the credential this node sends: give the secret, not its digest",
                ));
            }
            if role == Role::Gateway && !sent && key != "cluster.gateway_secrets" && !is_digest {
                return Err(ConfigError::invalid(
                    entry_key,
                    format!(
                        "a gateway faces the internet and must not hold this secret: \
                         give its digest, \"{DIGEST_PREFIX}\" and the output of \
                         `printf %s SECRET | sha256sum`"
                    ),
                ));
            }
            if let Some((_, other)) = owners.iter().find(|(seen, _)| *seen == digest) {
                return Err(ConfigError::invalid(
                    entry_key,
                    format!("is also listed in {other}: every role needs a credential of its own"),
                ));
            }
            owners.push((digest, key));
        }
    }
    if let Some(token) = &cluster.admin_token {
        secret("cluster.admin_token", token)?;
    }
    if cluster.voters.len() > VOTERS_MAX {
        return Err(ConfigError::invalid(
            "cluster.voters",
            format!(
                "lists {} voters; a cluster has at most {VOTERS_MAX} (the archive's connection \
                 limit assumes at most that many)",
                cluster.voters.len()
            ),
        ));
    }
    let mut ids = HashSet::new();
    for (i, peer) in cluster.voters.iter().enumerate() {
        let id_key = format!("cluster.voters[{i}].id");
        at_least(&id_key, peer.id, 1)?;
        if !ids.insert(peer.id) {
            return Err(ConfigError::invalid(
                id_key,
                format!("voter id {} is listed more than once", peer.id),
            ));
        }
        host_port(&format!("cluster.voters[{i}].addr"), &peer.addr)?;
    }
    Ok(())
}

fn validate_raft(raft: &RaftSection) -> Result<(), ConfigError> {
    at_least("raft.heartbeat_interval_ms", raft.heartbeat_interval_ms, 1)?;
    at_least(
        "raft.election_timeout_min_ms",
        raft.election_timeout_min_ms,
        1,
    )?;
    let election_min_lowest = raft
        .heartbeat_interval_ms
        .saturating_mul(ELECTION_TO_HEARTBEAT_RATIO_MIN);
    if raft.election_timeout_min_ms < election_min_lowest {
        return Err(ConfigError::invalid(
            "raft.election_timeout_min_ms",
            format!(
                "must be at least {ELECTION_TO_HEARTBEAT_RATIO_MIN} x raft.heartbeat_interval_ms \
                 (got {} < {ELECTION_TO_HEARTBEAT_RATIO_MIN} x {})",
                raft.election_timeout_min_ms, raft.heartbeat_interval_ms
            ),
        ));
    }
    at_least(
        "raft.election_timeout_max_ms",
        raft.election_timeout_max_ms,
        1,
    )?;
    if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
        return Err(ConfigError::invalid(
            "raft.election_timeout_max_ms",
            format!(
                "must be greater than raft.election_timeout_min_ms (got {} <= {})",
                raft.election_timeout_max_ms, raft.election_timeout_min_ms
            ),
        ));
    }
    at_least("raft.snapshot_every_logs", raft.snapshot_every_logs, 1)?;
    at_least(
        "raft.logs_to_keep_after_snapshot",
        raft.logs_to_keep_after_snapshot,
        0,
    )?;
    at_least("raft.rpc_timeout_ms", raft.rpc_timeout_ms, 1)?;
    at_least(
        "raft.snapshot_chunk_timeout_ms",
        raft.snapshot_chunk_timeout_ms,
        raft.rpc_timeout_ms,
    )?;
    at_least("raft.commit_timeout_ms", raft.commit_timeout_ms, 1)?;
    let interval_highest = raft.heartbeat_interval_ms / LEARNER_APPEND_INTERVAL_HEARTBEAT_DIVISOR;
    if raft.learner_append_interval_ms > interval_highest {
        return Err(ConfigError::invalid(
            "raft.learner_append_interval_ms",
            format!(
                "must be at most raft.heartbeat_interval_ms / \
                 {LEARNER_APPEND_INTERVAL_HEARTBEAT_DIVISOR} (got {} > {interval_highest}): an \
                 append to a learner must be answered within the heartbeat interval, the wait \
                 included",
                raft.learner_append_interval_ms
            ),
        ));
    }
    at_least(
        "raft.idempotency_window_ms",
        raft.idempotency_window_ms,
        IDEMPOTENCY_WINDOW_MS_MIN,
    )
}

/// `cluster.groups`, and what several groups ask of the other sections.
fn validate_groups(config: &Config) -> Result<(), ConfigError> {
    let groups = config.cluster.groups;
    in_range(
        "cluster.groups",
        u64::from(groups),
        1,
        u64::from(GROUPS_MAX),
    )?;
    let per_entry = config.limits.commands_per_entry_max;
    if groups > 1 && per_entry > GROUP_COMMANDS_PER_ENTRY_MAX {
        return Err(ConfigError::invalid(
            "limits.commands_per_entry_max",
            format!(
                "must be at most {GROUP_COMMANDS_PER_ENTRY_MAX} with several Raft groups (got \
                 {per_entry}, cluster.groups = {groups}): an order id names its place in the \
                 entry in 10 bits when it names its group"
            ),
        ));
    }
    Ok(())
}

fn validate_limits(limits: &LimitsSection) -> Result<(), ConfigError> {
    in_range(
        "limits.body_bytes_max",
        limits.body_bytes_max as u64,
        BODY_BYTES_MAX_LOWEST as u64,
        BODY_BYTES_MAX_HIGHEST as u64,
    )?;
    in_range(
        "limits.commands_per_entry_max",
        limits.commands_per_entry_max as u64,
        1,
        COMMANDS_PER_ENTRY_MAX_HIGHEST as u64,
    )?;
    at_least(
        "limits.purchase_quantity_max",
        u64::from(limits.purchase_quantity_max),
        1,
    )?;
    at_least("limits.connections_max", limits.connections_max as u64, 1)?;
    at_least(
        "limits.internal_connections_max",
        limits.internal_connections_max as u64,
        1,
    )?;
    if limits.streams_max >= limits.connections_max {
        return Err(ConfigError::invalid(
            "limits.streams_max",
            format!(
                "must be below limits.connections_max, so that event streams never take every \
                 connection from buyers (got {} >= {})",
                limits.streams_max, limits.connections_max
            ),
        ));
    }
    at_least(
        "limits.stream_lifetime_ms",
        limits.stream_lifetime_ms,
        STREAM_LIFETIME_MS_LOWEST,
    )?;
    at_least(
        "limits.header_read_timeout_ms",
        limits.header_read_timeout_ms,
        1,
    )?;
    at_least("limits.idle_timeout_ms", limits.idle_timeout_ms, 1)?;
    in_range(
        "limits.idle_timeout_under_pressure_ms",
        limits.idle_timeout_under_pressure_ms,
        1,
        limits.idle_timeout_ms,
    )?;
    at_least(
        "limits.body_read_timeout_ms",
        limits.body_read_timeout_ms,
        1,
    )?;
    at_least(
        "limits.client_retry_horizon_ms",
        limits.client_retry_horizon_ms,
        1,
    )?;
    if limits.trusted_sources.len() > TRUSTED_SOURCES_MAX {
        return Err(ConfigError::invalid(
            "limits.trusted_sources",
            format!(
                "must have at most {TRUSTED_SOURCES_MAX} entries (got {}); merge them into CIDR \
                 ranges",
                limits.trusted_sources.len()
            ),
        ));
    }
    for (key, rate) in [
        (
            "limits.client_purchase_rate_per_s",
            limits.client_purchase_rate_per_s,
        ),
        (
            "limits.client_view_rate_per_s",
            limits.client_view_rate_per_s,
        ),
    ] {
        in_range(
            key,
            u64::from(rate),
            1,
            u64::from(CLIENT_RATE_PER_S_HIGHEST),
        )?;
    }
    for (key, burst) in [
        (
            "limits.client_purchase_burst_max",
            limits.client_purchase_burst_max,
        ),
        ("limits.client_view_burst_max", limits.client_view_burst_max),
    ] {
        in_range(
            key,
            u64::from(burst),
            1,
            u64::from(CLIENT_BURST_MAX_HIGHEST),
        )?;
    }
    in_range(
        "limits.rate_clients_max",
        limits.rate_clients_max as u64,
        RATE_CLIENTS_MAX_LOWEST as u64,
        RATE_CLIENTS_MAX_HIGHEST as u64,
    )
}

fn validate_gateway(
    gateway: &GatewaySection,
    node: &NodeSection,
    limits: &LimitsSection,
) -> Result<(), ConfigError> {
    let Some(public_listen) = gateway.public_listen else {
        return Err(ConfigError::invalid(
            "gateway.public_listen",
            "is required when node.role = \"gateway\"",
        ));
    };
    if public_listen == node.listen && public_listen.port() != 0 {
        return Err(ConfigError::invalid(
            "gateway.public_listen",
            format!("must differ from node.listen (both are {public_listen})"),
        ));
    }
    at_least("gateway.batch_wait_us", gateway.batch_wait_us, 0)?;
    if gateway.batch_items_max < 1 || gateway.batch_items_max > limits.commands_per_entry_max {
        return Err(ConfigError::invalid(
            "gateway.batch_items_max",
            format!(
                "must be in 1..=limits.commands_per_entry_max (got {}, limit {})",
                gateway.batch_items_max, limits.commands_per_entry_max
            ),
        ));
    }
    if gateway.queue_max < gateway.batch_items_max {
        return Err(ConfigError::invalid(
            "gateway.queue_max",
            format!(
                "must be at least gateway.batch_items_max (got {} < {})",
                gateway.queue_max, gateway.batch_items_max
            ),
        ));
    }
    at_least("gateway.queue_max", gateway.queue_max as u64, 1)?;
    at_least(
        "gateway.queue_per_client_max",
        gateway.queue_per_client_max as u64,
        1,
    )?;
    at_least("gateway.forward_timeout_ms", gateway.forward_timeout_ms, 1)?;
    at_least(
        "gateway.forward_attempt_timeout_ms",
        gateway.forward_attempt_timeout_ms,
        1,
    )?;
    at_least(
        "gateway.linearizable_read_timeout_ms",
        gateway.linearizable_read_timeout_ms,
        1,
    )?;
    at_least(
        "gateway.forward_connections_max",
        gateway.forward_connections_max as u64,
        1,
    )
}

/// A gateway's readiness bounds: the silence bound must outlast an ordinary election (no leader
/// sends heartbeats while one runs), or every gateway would turn unready at each failover.
fn validate_readiness(gateway: &GatewaySection, raft: &RaftSection) -> Result<(), ConfigError> {
    if gateway.ready_leader_silence_ms <= raft.election_timeout_max_ms {
        return Err(ConfigError::invalid(
            "gateway.ready_leader_silence_ms",
            format!(
                "must be greater than raft.election_timeout_max_ms (got {} <= {})",
                gateway.ready_leader_silence_ms, raft.election_timeout_max_ms
            ),
        ));
    }
    at_least(
        "gateway.ready_leader_silence_ms",
        gateway.ready_leader_silence_ms,
        1,
    )?;
    at_least(
        "gateway.ready_lag_entries_max",
        gateway.ready_lag_entries_max,
        1,
    )
}

/// What the shop page is told: the origins it fails over across (also its CORS grants and its
/// Content-Security-Policy, so each must be exactly an origin and nothing that could end a
/// header directive), and how long it waits for a gateway.
fn validate_storefront(gateway: &GatewaySection) -> Result<(), ConfigError> {
    let key = "gateway.public_origins";
    if gateway.public_origins.len() > PUBLIC_ORIGINS_MAX {
        return Err(ConfigError::invalid(
            key,
            format!(
                "holds at most {PUBLIC_ORIGINS_MAX} origins (got {})",
                gateway.public_origins.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for origin in &gateway.public_origins {
        public_origin(key, origin)?;
        if !seen.insert(origin.as_str()) {
            return Err(ConfigError::invalid(key, format!("lists {origin:?} twice")));
        }
    }
    let timeout_key = "gateway.page_request_timeout_ms";
    if gateway.page_request_timeout_ms <= gateway.forward_timeout_ms {
        return Err(ConfigError::invalid(
            timeout_key,
            format!(
                "must be greater than gateway.forward_timeout_ms, so that a live gateway \
                 answers before the page gives up on it (got {} <= {})",
                gateway.page_request_timeout_ms, gateway.forward_timeout_ms
            ),
        ));
    }
    in_range(
        timeout_key,
        gateway.page_request_timeout_ms,
        1,
        PAGE_REQUEST_TIMEOUT_MS_HIGHEST,
    )
}

/// A web origin as a browser sends it in `Origin`: `http` or `https`, `://`, a lower-case host
/// name or IPv4 address (or a bracketed IPv6 address), an optional port from 1 to 65535; no
/// path, query, user or trailing slash. Compared byte for byte with the `Origin` header.
fn public_origin(key: &str, origin: &str) -> Result<(), ConfigError> {
    let invalid = |why: &str| {
        Err(ConfigError::invalid(
            key,
            format!("{origin:?} is not an origin like \"https://shop.example:8443\": {why}"),
        ))
    };
    let Some((scheme, rest)) = origin.split_once("://") else {
        return invalid("no scheme");
    };
    if scheme != "http" && scheme != "https" {
        return invalid("the scheme must be http or https");
    }
    let (host_ok, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((address, after)) = v6.split_once(']') else {
            return invalid("an IPv6 address needs its closing bracket");
        };
        if address.parse::<std::net::Ipv6Addr>().is_err() {
            return invalid("not an IPv6 address in the brackets");
        }
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return invalid("only a port may follow the address"),
        };
        (true, port)
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        (host_ok, port)
    };
    if !host_ok {
        return invalid("the host must be lower-case letters, digits, dots and dashes");
    }
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(p) if p != 0) || port.starts_with('0') {
            return invalid("the port must be a number from 1 to 65535, with no path after it");
        }
    }
    Ok(())
}

fn validate_archive(archive: &ArchiveSection) -> Result<(), ConfigError> {
    if let Some(url) = &archive.postgres_url {
        if url.trim().is_empty() {
            return Err(ConfigError::invalid(
                "archive.postgres_url",
                "must not be empty (leave the key out to turn the archive off)",
            ));
        }
    }
    if archive.pool_size < 1 || archive.pool_size > ARCHIVE_POOL_SIZE_HIGHEST {
        return Err(ConfigError::invalid(
            "archive.pool_size",
            format!(
                "must be from 1 to {ARCHIVE_POOL_SIZE_HIGHEST} (got {}): each of up to \
                 {VOTERS_MAX} voters may hold its pool at once, and the cluster must never open \
                 more than {ARCHIVE_CLUSTER_CONNECTIONS_MAX} connections to the archive database \
                 ({} x {VOTERS_MAX} = {})",
                archive.pool_size,
                archive.pool_size,
                archive.pool_size.saturating_mul(VOTERS_MAX)
            ),
        ));
    }
    in_range(
        "archive.batch_max",
        archive.batch_max as u64,
        1,
        ARCHIVE_BATCH_MAX_HIGHEST as u64,
    )?;
    if matches!(&archive.postgres_ca_path, Some(path) if path.as_os_str().is_empty()) {
        return Err(ConfigError::invalid(
            "archive.postgres_ca_path",
            "must not be empty (leave the key out for no TLS to PostgreSQL)",
        ));
    }
    at_least("archive.interval_ms", archive.interval_ms, 0)?;
    at_least("archive.retention_ms", archive.retention_ms, 0)?;
    at_least("archive.timeout_ms", archive.timeout_ms, 1)?;
    at_least("archive.retry_min_ms", archive.retry_min_ms, 1)?;
    at_least(
        "archive.retry_max_ms",
        archive.retry_max_ms,
        archive.retry_min_ms,
    )
}

fn validate_checkout(checkout: &CheckoutSection) -> Result<(), ConfigError> {
    in_range(
        "checkout.hold_ttl_ms",
        checkout.hold_ttl_ms,
        HOLD_TTL_MS_LOWEST,
        HOLD_TTL_MS_HIGHEST,
    )?;
    in_range(
        "checkout.cart_lines_max",
        checkout.cart_lines_max as u64,
        1,
        CART_LINES_MAX_HIGHEST as u64,
    )?;
    in_range(
        "checkout.cart_decision_ms",
        checkout.cart_decision_ms,
        HOLD_TTL_MS_LOWEST,
        HOLD_TTL_MS_HIGHEST,
    )?;
    at_least("checkout.cancel_window_ms", checkout.cancel_window_ms, 1)
}

fn validate_tls(tls: &TlsSection, role: Role) -> Result<(), ConfigError> {
    let internal = [
        ("tls.internal_ca_path", &tls.internal_ca_path),
        ("tls.internal_cert_path", &tls.internal_cert_path),
        ("tls.internal_key_path", &tls.internal_key_path),
    ];
    let public = [
        ("tls.public_cert_path", &tls.public_cert_path),
        ("tls.public_key_path", &tls.public_key_path),
    ];
    for group in [&internal[..], &public[..]] {
        let set = group.iter().filter(|(_, path)| path.is_some()).count();
        if set != 0 && set != group.len() {
            let (missing, _) = group.iter().find(|(_, path)| path.is_none()).unwrap();
            let names: Vec<&str> = group.iter().map(|(name, _)| *name).collect();
            return Err(ConfigError::invalid(
                *missing,
                format!(
                    "must be set too: set {} together, or none",
                    names.join(", ")
                ),
            ));
        }
        for (name, path) in group {
            if matches!(path, Some(path) if path.as_os_str().is_empty()) {
                return Err(ConfigError::invalid(*name, "must not be empty"));
            }
        }
    }
    if tls.public() && role != Role::Gateway {
        return Err(ConfigError::invalid(
            "tls.public_cert_path",
            "only a gateway has a public listener",
        ));
    }
    in_range(
        "tls.reload_check_ms",
        tls.reload_check_ms,
        TLS_RELOAD_CHECK_MS_LOWEST,
        TLS_RELOAD_CHECK_MS_HIGHEST,
    )
}

/// `value >= min`, and small enough to be written back as a TOML integer.
fn at_least(key: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    in_range(key, value, min, TOML_INTEGER_MAX)
}

/// `min <= value <= max`; the message leaves out a bound `value` is within.
fn in_range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min {
        Err(ConfigError::invalid(
            key,
            format!("must be >= {min} (got {value})"),
        ))
    } else if value > max {
        Err(ConfigError::invalid(
            key,
            format!("must be <= {max} (got {value})"),
        ))
    } else {
        Ok(())
    }
}

/// A shared secret or token: at least [`SECRET_CHARS_MIN`] characters. The
/// message never shows the value.
fn secret(key: &str, value: &str) -> Result<(), ConfigError> {
    let chars = value.chars().count();
    if chars < SECRET_CHARS_MIN {
        return Err(ConfigError::invalid(
            key,
            format!("must be at least {SECRET_CHARS_MIN} characters (got {chars})"),
        ));
    }
    Ok(())
}

/// A `"host:port"` another node can dial: a non-empty host without
/// whitespace, then a port from 1 to 65535.
fn host_port(key: &str, addr: &str) -> Result<(), ConfigError> {
    let well_formed = match addr.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && matches!(port.parse::<u16>(), Ok(p) if p != 0)
        }
        None => false,
    };
    if well_formed {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            format!("must be \"host:port\" with a port from 1 to 65535 (got {addr:?})"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(result: Result<(), ConfigError>) -> String {
        match result {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }

    #[test]
    fn default_sections_pass_their_checks() {
        validate_raft(&RaftSection::default()).unwrap();
        validate_limits(&LimitsSection::default()).unwrap();
        validate_archive(&ArchiveSection::default()).unwrap();
        validate_checkout(&CheckoutSection::default()).unwrap();
    }

    #[test]
    fn checkout_keys_are_bounded_and_name_their_key() {
        let checkout = |hold_ttl_ms, cart_lines_max, cancel_window_ms| CheckoutSection {
            hold_ttl_ms,
            cart_decision_ms: DEFAULT_CART_DECISION_MS,
            cart_lines_max,
            cancel_window_ms,
        };
        assert!(validate_checkout(&checkout(HOLD_TTL_MS_LOWEST, 1, 1)).is_ok());
        assert!(
            validate_checkout(&checkout(HOLD_TTL_MS_HIGHEST, CART_LINES_MAX_HIGHEST, 1)).is_ok()
        );
        assert_eq!(
            key_of(validate_checkout(&checkout(HOLD_TTL_MS_LOWEST - 1, 1, 1))),
            "checkout.hold_ttl_ms"
        );
        assert_eq!(
            key_of(validate_checkout(&checkout(HOLD_TTL_MS_HIGHEST + 1, 1, 1))),
            "checkout.hold_ttl_ms"
        );
        let slow_carts = CheckoutSection {
            cart_decision_ms: HOLD_TTL_MS_HIGHEST + 1,
            ..CheckoutSection::default()
        };
        assert_eq!(
            key_of(validate_checkout(&slow_carts)),
            "checkout.cart_decision_ms"
        );
        assert_eq!(
            key_of(validate_checkout(&checkout(HOLD_TTL_MS_LOWEST, 0, 1))),
            "checkout.cart_lines_max"
        );
        assert_eq!(
            key_of(validate_checkout(&checkout(
                HOLD_TTL_MS_LOWEST,
                CART_LINES_MAX_HIGHEST + 1,
                1
            ))),
            "checkout.cart_lines_max"
        );
        assert_eq!(
            key_of(validate_checkout(&checkout(HOLD_TTL_MS_LOWEST, 1, 0))),
            "checkout.cancel_window_ms"
        );
    }

    #[test]
    fn archive_pool_is_capped_by_the_cluster_connection_limit() {
        let pool = |pool_size| ArchiveSection {
            postgres_url: Some("postgres://archiver@127.0.0.1/shop".into()),
            pool_size,
            ..ArchiveSection::default()
        };
        assert!(validate_archive(&pool(ARCHIVE_POOL_SIZE_HIGHEST)).is_ok());
        let err = validate_archive(&pool(ARCHIVE_POOL_SIZE_HIGHEST + 1)).unwrap_err();
        assert!(err.to_string().contains("300 connections"), "{err}");
        assert_eq!(key_of(validate_archive(&pool(0))), "archive.pool_size");
    }

    #[test]
    fn rate_limits_are_bounded_and_name_their_key() {
        let limits = |tweak: fn(&mut LimitsSection)| {
            let mut limits = LimitsSection::default();
            tweak(&mut limits);
            validate_limits(&limits)
        };
        assert_eq!(
            key_of(limits(|l| l.client_purchase_rate_per_s = 0)),
            "limits.client_purchase_rate_per_s"
        );
        assert_eq!(
            key_of(limits(|l| l.client_view_burst_max = 0)),
            "limits.client_view_burst_max"
        );
        assert_eq!(
            key_of(limits(|l| l.rate_clients_max = RATE_CLIENTS_MAX_HIGHEST + 1)),
            "limits.rate_clients_max"
        );
        let many = limits(|l| {
            l.trusted_sources = vec!["10.0.0.1".parse().unwrap(); TRUSTED_SOURCES_MAX + 1]
        });
        assert_eq!(key_of(many), "limits.trusted_sources");
    }

    #[test]
    fn public_origins_are_exact_origins_listed_once() {
        for good in [
            "http://127.0.0.101:8081",
            "https://shop.example",
            "https://gw-1.shop.example:8443",
            "http://[::1]:8081",
            "https://[2001:db8::7]",
        ] {
            assert!(public_origin("k", good).is_ok(), "{good}");
        }
        for bad in [
            "shop.example",
            "ftp://shop.example",
            "https://Shop.example",
            "https://shop.example/",
            "https://shop.example:8443/",
            "https://shop.example:0",
            "https://shop.example:99999",
            "https://shop.example:08443",
            "https://",
            "https://a b",
            "https://shop.example; script-src *",
            "http://[::1",
            "http://[nope]:80",
            "http://[::1]x",
            "https://user@shop.example",
        ] {
            assert!(public_origin("k", bad).is_err(), "{bad}");
        }
        let mut gateway = GatewaySection {
            public_origins: vec!["https://a.example".into(), "https://a.example".into()],
            ..GatewaySection::default()
        };
        assert_eq!(
            key_of(validate_storefront(&gateway)),
            "gateway.public_origins"
        );
        gateway.public_origins = (0..=PUBLIC_ORIGINS_MAX)
            .map(|i| format!("https://g{i}.example"))
            .collect();
        assert_eq!(
            key_of(validate_storefront(&gateway)),
            "gateway.public_origins"
        );
        gateway.public_origins.truncate(3);
        assert!(validate_storefront(&gateway).is_ok());
    }

    #[test]
    fn the_page_waits_longer_than_a_live_gateway_takes_to_answer() {
        let mut gateway = GatewaySection::default();
        gateway.page_request_timeout_ms = gateway.forward_timeout_ms;
        assert_eq!(
            key_of(validate_storefront(&gateway)),
            "gateway.page_request_timeout_ms"
        );
        gateway.page_request_timeout_ms = PAGE_REQUEST_TIMEOUT_MS_HIGHEST + 1;
        assert_eq!(
            key_of(validate_storefront(&gateway)),
            "gateway.page_request_timeout_ms"
        );
        gateway.page_request_timeout_ms = DEFAULT_PAGE_REQUEST_TIMEOUT_MS;
        assert!(validate_storefront(&gateway).is_ok());
    }

    #[test]
    fn in_range_names_the_broken_bound() {
        assert!(in_range("k", 5, 1, 10).is_ok());
        let low = in_range("k", 0, 1, 10).unwrap_err().to_string();
        assert_eq!(low, "invalid config: k: must be >= 1 (got 0)");
        let high = in_range("k", 11, 1, 10).unwrap_err().to_string();
        assert_eq!(high, "invalid config: k: must be <= 10 (got 11)");
    }

    #[test]
    fn at_least_rejects_values_toml_cannot_hold() {
        assert!(at_least("k", TOML_INTEGER_MAX, 0).is_ok());
        assert_eq!(key_of(at_least("k", TOML_INTEGER_MAX + 1, 0)), "k");
    }

    #[test]
    fn host_port_accepts_names_and_ip_literals() {
        for ok in ["127.0.0.1:7101", "voter-1.internal:7101", "[::1]:7101"] {
            assert!(host_port("k", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1",
            ":7101",
            "host:0",
            "host:70000",
            "host:",
            "a b:1",
        ] {
            assert_eq!(key_of(host_port("k", bad)), "k", "{bad:?}");
        }
    }

    #[test]
    fn tls_groups_are_set_whole_and_public_tls_is_for_gateways() {
        let path = |p: &str| Some(std::path::PathBuf::from(p));
        let internal = TlsSection {
            internal_ca_path: path("ca.pem"),
            internal_cert_path: path("node.pem"),
            internal_key_path: path("node.key"),
            ..TlsSection::default()
        };
        validate_tls(&internal, Role::Voter).unwrap();
        let half = TlsSection {
            internal_key_path: None,
            ..internal.clone()
        };
        assert_eq!(
            key_of(validate_tls(&half, Role::Voter)),
            "tls.internal_key_path"
        );
        let public = TlsSection {
            public_cert_path: path("shop.pem"),
            public_key_path: path("shop.key"),
            ..TlsSection::default()
        };
        validate_tls(&public, Role::Gateway).unwrap();
        assert_eq!(
            key_of(validate_tls(&public, Role::Voter)),
            "tls.public_cert_path"
        );
        let quick = TlsSection {
            reload_check_ms: 1,
            ..TlsSection::default()
        };
        assert_eq!(
            key_of(validate_tls(&quick, Role::Voter)),
            "tls.reload_check_ms"
        );
    }

    #[test]
    fn credentials_keep_roles_apart_and_gateways_hold_digests() {
        let cluster = |voter: &str, gateway: &str, operator: &str| ClusterSection {
            voter_secrets: vec![voter.into()],
            gateway_secrets: vec![gateway.into()],
            operator_secrets: vec![operator.into()],
            voters: Vec::new(),
            admin_token: None,
            groups: 1,
        };
        let (v, g, o) = (
            "voter-secret-0123456",
            "gateway-secret-01234",
            "operator-secret-0123",
        );
        let (vd, od) = (crate::secret_digest(v), crate::secret_digest(o));
        assert!(validate_cluster(&cluster(v, g, o), Role::Voter).is_ok());
        assert!(validate_cluster(&cluster(&vd, g, &od), Role::Gateway).is_ok());
        // A gateway holding the voters' or operators' secret in clear.
        let err = validate_cluster(&cluster(v, g, &od), Role::Gateway).unwrap_err();
        assert!(
            err.to_string().contains("cluster.voter_secrets[0]"),
            "{err}"
        );
        assert!(!err.to_string().contains(v), "the secret leaked: {err}");
        let err = validate_cluster(&cluster(&vd, g, o), Role::Gateway).unwrap_err();
        assert!(
            err.to_string().contains("cluster.operator_secrets[0]"),
            "{err}"
        );
        // The credential a node sends must be the secret.
        let err = validate_cluster(&cluster(&vd, g, o), Role::Voter).unwrap_err();
        assert!(
            err.to_string().contains("cluster.voter_secrets[0]"),
            "{err}"
        );
        // One secret for two roles, in clear or as a digest.
        let err = validate_cluster(&cluster(v, g, v), Role::Voter).unwrap_err();
        assert!(err.to_string().contains("cluster.voter_secrets"), "{err}");
        let err = validate_cluster(&cluster(&vd, g, &vd), Role::Gateway).unwrap_err();
        assert!(err.to_string().contains("also listed"), "{err}");
        // Malformed digests and list sizes.
        let bad = format!("{DIGEST_PREFIX}{}", "Z".repeat(64));
        let err = validate_cluster(&cluster(v, g, &bad), Role::Voter).unwrap_err();
        assert!(err.to_string().contains("64 lowercase hex"), "{err}");
        let mut empty = cluster(v, g, o);
        empty.operator_secrets.clear();
        assert!(validate_cluster(&empty, Role::Voter).is_err());
        let mut long = cluster(v, g, o);
        long.operator_secrets = (0..=CREDENTIALS_PER_ROLE_MAX)
            .map(|i| format!("operator-secret-{i:04}"))
            .collect();
        assert!(validate_cluster(&long, Role::Voter).is_err());
    }

    #[test]
    fn cluster_voters_are_capped_at_the_maximum() {
        let with_voters = |count: usize| ClusterSection {
            voter_secrets: vec!["voter-secret-0123456".into()],
            gateway_secrets: vec!["gateway-secret-01234".into()],
            operator_secrets: vec!["operator-secret-0123".into()],
            voters: (1..=count as u64)
                .map(|id| crate::Peer {
                    id,
                    addr: format!("127.0.0.{id}:7101"),
                })
                .collect(),
            admin_token: None,
            groups: 1,
        };
        assert!(validate_cluster(&with_voters(VOTERS_MAX), Role::Voter).is_ok());
        let err = validate_cluster(&with_voters(VOTERS_MAX + 1), Role::Voter).unwrap_err();
        assert!(
            err.to_string().contains("cluster.voters")
                && err.to_string().contains(&format!("at most {VOTERS_MAX}")),
            "{err}"
        );
    }

    #[test]
    fn a_digest_is_sha256_in_lowercase_hex() {
        let digest = crate::secret_digest("abc");
        assert_eq!(
            digest,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(crate::parse_digest(&digest).map(|b| b[0]), Some(0xba));
        assert_eq!(crate::parse_digest(&digest.to_uppercase()), None);
        assert_eq!(crate::parse_digest("sha256:ab"), None);
        assert_eq!(crate::parse_digest("abc"), None);
    }

    #[test]
    fn secret_counts_characters_and_hides_the_value() {
        assert!(secret("k", "ééééééééééééééé\u{e9}").is_ok());
        let err = secret("k", "hunter2").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("got 7"), "{err}");
    }
}
