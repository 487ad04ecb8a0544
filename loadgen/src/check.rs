//! The final check of a run: read every product the run created, from every server of the
//! target, and compare with what the clients saw.
//!
//! For each product, on each server:
//! - conservation: `stock + held + sold == initial_stock + restocked`;
//! - no oversell: `sold <= initial_stock + restocked` (stock is unsigned on the wire, so a
//!   negative stock cannot even be written);
//! - `sold` equals the quantity the run saw confirmed, or, when some purchases' outcomes stayed
//!   unknown after every retry, lies between that and confirmed + unknown;
//! - the `remaining` stock reported by the run's confirmed orders are all different and below
//!   the initial stock (two orders leaving the same stock behind would mean an item sold twice).
//!
//! A server is first asked for one product with `?consistency=linearizable`, which makes a
//! gateway catch up with everything committed (in that product's Raft group); the catalog is
//! then read in pages, the first one linearizable too (every group's).

use std::collections::BTreeMap;
use std::time::Duration;

use flashstock_api::{ProductDetails, ProductList};
use serde::Serialize;

use crate::http::Target;
use crate::record::Ledger;
use crate::workload::Catalog;

/// Products per page when reading the catalog back.
const PAGE: usize = 1000;
/// Problems listed in full; beyond, only counted.
const PROBLEMS_LISTED_MAX: usize = 20;

/// The result of a check.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Servers read.
    pub servers: usize,
    /// Products checked on each server.
    pub products: usize,
    /// Items sold over the run's products, as the first server reports them.
    pub sold: u64,
    /// Items the run saw confirmed.
    pub confirmed: u64,
    /// Items whose purchase outcome stayed unknown.
    pub unknown: u64,
    pub problems: Vec<String>,
    pub problem_count: usize,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problem_count == 0
    }

    fn problem(&mut self, text: String) {
        self.problem_count += 1;
        if self.problems.len() < PROBLEMS_LISTED_MAX {
            self.problems.push(text);
        }
    }
}

/// Check every product of `catalog` on every server of `target` against `ledger`.
pub async fn check(
    target: &Target,
    catalog: &Catalog,
    ledger: &BTreeMap<usize, Ledger>,
) -> CheckReport {
    let mut report = CheckReport {
        servers: target.urls.len(),
        confirmed: ledger.values().map(|l| l.confirmed).sum(),
        unknown: ledger.values().map(|l| l.unknown).sum(),
        ..CheckReport::default()
    };
    for (index, entry) in ledger {
        let mut remaining = entry.remaining.clone();
        remaining.sort_unstable();
        if let Some(pair) = remaining.windows(2).find(|w| w[0] == w[1]) {
            report.problem(format!(
                "{}: two confirmed orders both left {} in stock",
                catalog.id(*index),
                pair[0]
            ));
        }
        if remaining.last().is_some_and(|r| *r >= catalog.stock) {
            report.problem(format!(
                "{}: an order left {} of an initial {}",
                catalog.id(*index),
                remaining[remaining.len() - 1],
                catalog.stock
            ));
        }
    }
    for (server, url) in target.urls.iter().enumerate() {
        let products = match read_catalog(target, url, catalog).await {
            Ok(products) => products,
            Err(e) => {
                report.problem(format!("{url}: cannot read the catalog back: {e}"));
                continue;
            }
        };
        if server == 0 {
            report.products = products.len();
            report.sold = products.values().map(|p| p.sold).sum();
        }
        if products.len() != catalog.products {
            report.problem(format!(
                "{url}: {} of the run's {} products found",
                products.len(),
                catalog.products
            ));
        }
        for (index, product) in &products {
            let seen = ledger.get(index).cloned().unwrap_or_default();
            let supply = product.initial_stock + product.restocked;
            if !product.is_conserved() {
                report.problem(format!(
                    "{url} {}: not conserved: stock {} + sold {} != initial {} + restocked {}",
                    product.id,
                    product.stock,
                    product.sold,
                    product.initial_stock,
                    product.restocked
                ));
            }
            if product.sold > supply {
                report.problem(format!(
                    "{url} {}: oversold: sold {} of {supply}",
                    product.id, product.sold
                ));
            }
            if product.sold < seen.confirmed || product.sold > seen.confirmed + seen.unknown {
                report.problem(format!(
                    "{url} {}: sold {} but the run saw {} confirmed and {} unknown",
                    product.id, product.sold, seen.confirmed, seen.unknown
                ));
            }
        }
    }
    report
}

/// Every product of `catalog` that `url` holds, by index.
async fn read_catalog(
    target: &Target,
    url: &str,
    catalog: &Catalog,
) -> Result<BTreeMap<usize, ProductDetails>, String> {
    let mut connection = target.connection(url, Duration::from_secs(60))?;
    // Catch up with everything committed (a gateway waits for the leader's commit index).
    let first = catalog.id(0);
    let answer = connection
        .get(&format!("/v1/products/{first}?consistency=linearizable"))
        .await
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!(
            "linearizable read of {first}: {} {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    let mut products = BTreeMap::new();
    // Ids sort like indexes; start just before the first. The first page is linearizable too:
    // on a cluster of several Raft groups it catches up with every group's leader, where the
    // read above caught up with one group's.
    let mut after = format!("{}-", catalog.prefix);
    let mut consistency = "&consistency=linearizable";
    loop {
        let answer = connection
            .get(&format!(
                "/v1/products?limit={PAGE}&after={after}{consistency}"
            ))
            .await
            .map_err(|e| e.to_string())?;
        if answer.status != 200 {
            return Err(format!(
                "listing products: {} {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            ));
        }
        let page: ProductList =
            serde_json::from_slice(&answer.body).map_err(|e| format!("product list: {e}"))?;
        let mut left_catalog = page.products.is_empty();
        for product in page.products {
            match catalog.index_of(&product.id) {
                Some(index) => {
                    products.insert(index, product);
                }
                None => left_catalog = true,
            }
        }
        consistency = "";
        match page.next_after {
            Some(next) if !left_catalog => after = next,
            _ => return Ok(products),
        }
    }
}
