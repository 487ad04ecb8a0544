//! What the launcher prints once the cluster runs: where everything is, the nodes' state, and
//! commands to paste.
//!
//! The status table is the launcher's own, not `stockctl cluster status`'s: it is printed inside
//! the summary, in the summary's indentation, and `stockctl` is a binary whose table code no
//! library exports.

use flashstock_api::NodeStatus;

use super::role_name;
use crate::local::LocalCluster;

fn opt(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Where everything is, the nodes' state, and commands to paste.
pub async fn print(cluster: &LocalCluster, admin_token: Option<&str>, archive: Option<&str>) {
    println!();
    print_addresses(cluster);
    println!();
    print_credentials(cluster, admin_token, archive);
    println!();
    print_status_table(cluster).await;
    println!();
    print_commands(cluster, admin_token);
    println!();
}

/// The shop's pages, the public API and the internal addresses.
fn print_addresses(cluster: &LocalCluster) {
    let gateways = cluster.gateway_ids();
    println!("The shop, in a browser (any gateway):");
    if let Some(id) = gateways.first() {
        let url = cluster.public_url(*id);
        println!("  catalog     {url}/");
        println!("  operations  {url}/ops");
    }
    println!();
    println!("Public API (any gateway; JSON over HTTP):");
    for id in &gateways {
        println!("  gateway {id}  {}/v1/products", cluster.public_url(*id));
    }
    println!();
    println!("Internal addresses (Raft, admin API; calls need a role's credential):");
    for (id, node) in &cluster.nodes {
        println!(
            "  {:<7} {id:<3}  {:<21}  log {}",
            role_name(node.role),
            node.addr.to_string(),
            node.log_path.display()
        );
    }
}

/// The operator credential, the admin token and the archive's database. The voters' and the
/// gateways' credentials stay in their files: only nodes send them.
fn print_credentials(cluster: &LocalCluster, admin_token: Option<&str>, archive: Option<&str>) {
    let dir = cluster.dir.display();
    println!(
        "Operator secret: {}   (in {dir}/operator-secret; nodes' own in {dir}/voter-secret, {dir}/gateway-secret)",
        cluster.operator_secret
    );
    match admin_token {
        Some(token) => println!(
            "Admin token:     {token}   (in {dir}/admin-token; cluster.admin_token in {dir}/node-*.toml)"
        ),
        None => println!("Admin token:     none configured: admin calls are disabled"),
    }
    match archive {
        Some(url) => println!(
            "Order archive:   on, PostgreSQL at {}   (stockctl archive status)",
            without_password(url)
        ),
        None => println!(
            "Order archive:   off (rerun with --with-archive, or --archive-url URL, to turn it on)"
        ),
    }
}

/// Commands to paste: curl against the public API, stockctl against the cluster.
fn print_commands(cluster: &LocalCluster, admin_token: Option<&str>) {
    let gateways = cluster.gateway_ids();
    let gateway = cluster.public_url(gateways[0]);
    let endpoints = cluster
        .voter_ids()
        .iter()
        .map(|id| cluster.addr(*id))
        .collect::<Vec<_>>()
        .join(",");
    let gateway_urls = cluster.gateway_urls().join(",");
    let dir = cluster.dir.display();
    println!("Try it:");
    println!("  curl -s {gateway}/v1/products");
    println!("  curl -s {gateway}/v1/products/sneaker-drop");
    println!(
        "  curl -s -X POST -H 'Idempotency-Key: demo-1' -H 'content-type: application/json' \
         -d '{{\"quantity\":1}}' {gateway}/v1/products/sneaker-drop/purchase"
    );
    println!(
        "  curl -N {}/v1/stream",
        cluster.public_url(gateways[gateways.len() - 1])
    );
    // The stockctl that run-local built beside the nodes' binary: `cargo run -p` would first
    // build it again for that one package's features (a minute and a half on two cores).
    let built = cluster.binary().with_file_name("stockctl");
    let stockctl = if built.is_file() {
        built.display().to_string()
    } else {
        "cargo run --release -q --bin stockctl --".to_owned()
    };
    let secret = format!("--secret \"$(cat {dir}/operator-secret)\"");
    println!("  {stockctl} --endpoints {endpoints} {secret} cluster status");
    let token = match admin_token {
        Some(_) => format!(" --admin-token \"$(cat {dir}/admin-token)\""),
        None => String::new(),
    };
    println!("  {stockctl} --gateways {gateway_urls}{token} product list");
    println!("  {stockctl} --gateways {gateway_urls} buy tee-black-m 2 --key demo-cli-1");
}

async fn print_status_table(cluster: &LocalCluster) {
    let client = cluster.voter_client();
    println!(
        "  {:>4}  {:<8} {:<10} {:>5} {:>7} {:>9} {:>8}",
        "id", "role", "state", "term", "leader", "last log", "applied"
    );
    for (id, node) in &cluster.nodes {
        match client.status(&node.addr.to_string()).await {
            Ok(NodeStatus {
                role,
                state,
                term,
                leader,
                last_log_index,
                applied_index,
                ..
            }) => println!(
                "  {id:>4}  {role:<8} {state:<10} {term:>5} {:>7} {:>9} {:>8}",
                opt(leader),
                opt(last_log_index),
                opt(applied_index)
            ),
            Err(e) => println!("  {id:>4}  {:<8} unreachable: {e}", role_name(node.role)),
        }
    }
}

/// A database URL with any password replaced by `***`, for printing.
fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn printed_urls_hide_the_password() {
        assert_eq!(
            without_password("postgres://shop:s3cret@10.0.0.5:5432/orders"),
            "postgres://shop:***@10.0.0.5:5432/orders"
        );
        assert_eq!(
            without_password("postgres://shop@127.0.0.1/orders"),
            "postgres://shop@127.0.0.1/orders"
        );
        assert_eq!(without_password("host=db user=shop"), "host=db user=shop");
    }
}
