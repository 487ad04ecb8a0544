//! What a run asks for: the catalog it creates and the operations its clients draw.
//!
//! Every run creates its own products under a fresh prefix, so that the final check can compare
//! each product's `sold` with the purchases this run saw confirmed, whatever ran before.
//!
//! Workloads:
//! - **standard**: 80% views (`GET /v1/products/{id}`), 20% purchases of one item, uniform over
//!   many products with stock that never runs out;
//! - **flash sale**: every client buys one product with limited stock until it is sold out;
//!   `409 insufficient_stock` after the sell-out is the expected answer, not an error;
//! - **spread**: purchases only, uniform over 10 000 products;
//! - **hold sale**: the flash sale bought through holds, as a checkout with a payment step
//!   does: hold one item, then confirm it (80%: the payment went through) or release it (20%);
//! - **cart**: carts of [`CART_LINES`] distinct products bought at once, uniform over the spread
//!   workload's products.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Stock of products that must never sell out during a run.
pub const UNLIMITED_STOCK: u64 = 1_000_000_000;
/// Products of the spread workload.
pub const SPREAD_PRODUCTS: usize = 10_000;
/// Lines of a cart in the cart workload.
pub const CART_LINES: usize = 3;
/// Share of holds confirmed in the hold sale, percent; the rest are released.
pub const HOLD_PAY_PERCENT: u64 = 80;
/// Products of the standard mix unless told otherwise.
pub const STANDARD_PRODUCTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    Standard,
    FlashSale,
    Spread,
    HoldSale,
    Cart,
}

/// The products a run created: `{prefix}-{index:07}`, each with the same initial stock.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub prefix: String,
    pub products: usize,
    pub stock: u64,
}

impl Catalog {
    /// A catalog under a fresh prefix (time-based, so reruns never collide).
    pub fn fresh(label: &str, products: usize, stock: u64) -> Catalog {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Catalog {
            prefix: format!("lg{:x}-{label}", nanos % (1 << 48)),
            products,
            stock,
        }
    }

    pub fn id(&self, index: usize) -> String {
        format!("{}-{index:07}", self.prefix)
    }

    /// The index of a product id of this catalog.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        id.strip_prefix(&self.prefix)?
            .strip_prefix('-')?
            .parse()
            .ok()
    }
}

/// A workload: the catalog and how operations are drawn from it.
#[derive(Debug, Clone, Serialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub catalog: Catalog,
    /// Share of views among operations, percent; the rest are purchases of one item.
    pub view_percent: u32,
    /// With several Raft groups, a cart workload's product indexes by the group that holds
    /// them ([`Workload::in_groups`]): a cart's lines come from one group, since a cart across
    /// groups is refused.
    #[serde(skip)]
    pub cart_groups: Option<std::sync::Arc<Vec<Vec<usize>>>>,
}

impl Workload {
    /// The standard mix over `products` products, `view_percent` views.
    pub fn standard(products: usize, view_percent: u32) -> Workload {
        Workload {
            kind: WorkloadKind::Standard,
            catalog: Catalog::fresh("std", products, UNLIMITED_STOCK),
            view_percent: view_percent.min(100),
            cart_groups: None,
        }
    }

    /// A flash sale of one product with `stock` items.
    pub fn flash_sale(stock: u64) -> Workload {
        Workload {
            kind: WorkloadKind::FlashSale,
            catalog: Catalog::fresh("flash", 1, stock),
            view_percent: 0,
            cart_groups: None,
        }
    }

    /// Purchases over `products` products (10 000 in the standard scenario).
    pub fn spread(products: usize) -> Workload {
        Workload {
            kind: WorkloadKind::Spread,
            catalog: Catalog::fresh("spread", products, UNLIMITED_STOCK),
            view_percent: 0,
            cart_groups: None,
        }
    }

    /// The flash sale of one product with `stock` items, bought through holds.
    pub fn hold_sale(stock: u64) -> Workload {
        Workload {
            kind: WorkloadKind::HoldSale,
            catalog: Catalog::fresh("hold", 1, stock),
            view_percent: 0,
            cart_groups: None,
        }
    }

    /// Carts of [`CART_LINES`] lines over `products` products.
    pub fn cart(products: usize) -> Workload {
        Workload {
            kind: WorkloadKind::Cart,
            catalog: Catalog::fresh("cart", products.max(CART_LINES), UNLIMITED_STOCK),
            view_percent: 0,
            cart_groups: None,
        }
    }

    /// For a cluster of `groups` Raft groups: a cart's lines then come from one group's
    /// products. Other workloads, and one group, are unchanged.
    pub fn in_groups(mut self, groups: u16) -> Workload {
        if self.kind != WorkloadKind::Cart || groups <= 1 {
            return self;
        }
        let mut by_group = vec![Vec::new(); usize::from(groups)];
        for index in 0..self.catalog.products {
            let group = flashstock_api::placement::group_of(&self.catalog.id(index), groups);
            by_group[usize::from(group)].push(index);
        }
        by_group.retain(|indexes| indexes.len() >= CART_LINES);
        self.cart_groups = Some(std::sync::Arc::new(by_group));
        self
    }

    /// Whether `409 insufficient_stock` is an expected answer (only once a sale sells out).
    pub fn sells_out(&self) -> bool {
        matches!(self.kind, WorkloadKind::FlashSale | WorkloadKind::HoldSale)
    }

    /// Draw the next operation.
    pub fn next_op(&self, rng: &mut Rng) -> Op {
        let count = self.catalog.products as u64;
        let product = rng.below(count) as usize;
        match self.kind {
            WorkloadKind::HoldSale => {
                let pay = rng.below(100) < HOLD_PAY_PERCENT;
                return Op::HoldThenPay { product, pay };
            }
            WorkloadKind::Cart => {
                // Distinct products: the next ones after a random first, wrapping around; with
                // several groups, among one group's products.
                if let Some(groups) = self.cart_groups.as_deref().filter(|g| !g.is_empty()) {
                    let group = &groups[rng.below(groups.len() as u64) as usize];
                    let first = rng.below(group.len() as u64) as usize;
                    let step = 1 + rng.below((group.len() / CART_LINES) as u64) as usize;
                    let products =
                        std::array::from_fn(|line| group[(first + line * step) % group.len()]);
                    return Op::Cart { products };
                }
                let step = 1 + rng.below(count / CART_LINES as u64) as usize;
                let products =
                    std::array::from_fn(|line| (product + line * step) % self.catalog.products);
                return Op::Cart { products };
            }
            _ => {}
        }
        if rng.below(100) < u64::from(self.view_percent) {
            Op::View { product }
        } else {
            Op::Purchase {
                product,
                quantity: 1,
            }
        }
    }
}

/// One operation of a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    View {
        product: usize,
    },
    Purchase {
        product: usize,
        quantity: u32,
    },
    /// Hold one item, then confirm it (`pay`) or release it.
    HoldThenPay {
        product: usize,
        pay: bool,
    },
    /// Buy one of each product at once.
    Cart {
        products: [usize; CART_LINES],
    },
}

/// A small deterministic PRNG (splitmix64): each client draws its own sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the modulo bias is negligible for our ranges).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_like_indexes() {
        let catalog = Catalog::fresh("t", 20, 5);
        assert_eq!(catalog.index_of(&catalog.id(7)), Some(7));
        assert!(catalog.id(9) < catalog.id(10));
        assert_eq!(catalog.index_of("other-0000001"), None);
    }

    #[test]
    fn carts_hold_distinct_products_of_the_catalog() {
        for products in [3, 4, 10, 10_000] {
            let workload = Workload::cart(products);
            let mut rng = Rng::new(7);
            for _ in 0..1000 {
                let Op::Cart { products: lines } = workload.next_op(&mut rng) else {
                    panic!("a cart workload draws carts");
                };
                assert!(lines.iter().all(|p| *p < products), "{lines:?}");
                let mut sorted = lines;
                sorted.sort_unstable();
                assert!(sorted.windows(2).all(|w| w[0] != w[1]), "{lines:?}");
            }
        }
    }

    #[test]
    fn carts_of_several_groups_keep_to_one_group() {
        use flashstock_api::placement::group_of;
        let workload = Workload::cart(1000).in_groups(3);
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let Op::Cart { products: lines } = workload.next_op(&mut rng) else {
                panic!("a cart workload draws carts");
            };
            let groups: Vec<u16> = lines
                .iter()
                .map(|line| group_of(&workload.catalog.id(*line), 3))
                .collect();
            assert!(
                groups.windows(2).all(|w| w[0] == w[1]),
                "{lines:?}: {groups:?}"
            );
            let mut sorted = lines;
            sorted.sort_unstable();
            assert!(sorted.windows(2).all(|w| w[0] != w[1]), "{lines:?}");
        }
    }

    #[test]
    fn the_standard_mix_is_about_four_views_per_purchase() {
        let workload = Workload::standard(100, 80);
        let mut rng = Rng::new(1);
        let views = (0..10_000)
            .filter(|_| matches!(workload.next_op(&mut rng), Op::View { .. }))
            .count();
        assert!((7700..8300).contains(&views), "{views}");
    }
}
