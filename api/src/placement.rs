//! Which Raft group holds a product, and how an order id names the group that placed it.
//!
//! A cluster of G groups splits its catalog by the product id alone: every node, gateway or
//! client computes a product's group from its id and G, with nothing to replicate, read or keep
//! fresh. The mapping is part of the data format: it must give the same group for the same id on
//! every machine and in every release, so it is defined here in full (no hasher of the standard
//! library, whose output may change between releases) and pinned by tests.
//!
//! - [`product_hash`]: 64 bits from the id's bytes, FNV-1a followed by a finalizer that spreads
//!   every input bit over the output (FNV-1a alone leaves short, similar ids close together).
//! - [`jump_bucket`]: jump consistent hashing (Lamping and Veach, 2014) of that hash into G
//!   buckets. Balanced, needs no table, and growing G to G + 1 moves only the ids that land in
//!   the new bucket, about 1/(G + 1) of them, each from its old group to the new one.
//!
//! Order ids (`incarnation << 56 | log_index << 16 | slot`, [`crate::OrderId`]) carry their
//! group in the slot field's top [`GROUP_BITS`] bits. A group's entries hold at most
//! [`GROUP_SLOTS`] commands when the cluster has several groups, so the slot fits the field's
//! low bits; group 0's ids are the ids a one-group cluster gives.

/// Most Raft groups a cluster may have: the group fills [`GROUP_BITS`] bits of an order id.
pub const GROUPS_MAX: u16 = 1 << GROUP_BITS;
/// Bits of an order id's slot field that name the group.
pub const GROUP_BITS: u32 = 6;
/// Bits of an order id's slot field left for the slot when the cluster has several groups.
pub const GROUP_SLOT_BITS: u32 = 16 - GROUP_BITS;
/// Most commands in one entry of a cluster of several groups: every slot fits
/// [`GROUP_SLOT_BITS`] bits. Equal to the default `limits.commands_per_entry_max`.
pub const GROUP_SLOTS: usize = 1 << GROUP_SLOT_BITS;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// A stable 64-bit hash of a product id: FNV-1a over its bytes, then the 64-bit finalizer of
/// SplitMix64 so that ids differing in one character differ in about half the bits.
pub fn product_hash(product: &str) -> u64 {
    let mut hash = FNV_OFFSET;
    for byte in product.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Jump consistent hashing: the bucket in `0..buckets` of `key`. `buckets` is at least 1.
///
/// The key drives a linear congruential generator; each step jumps to the next bucket that
/// the key would move to as the number of buckets grows, and the last jump below `buckets` is
/// the answer. The float arithmetic is IEEE 754 (one multiply and one divide, each rounded the
/// same way on every platform Rust supports), so the result is the same everywhere.
pub fn jump_bucket(mut key: u64, buckets: u32) -> u32 {
    debug_assert!(buckets >= 1);
    let buckets = i64::from(buckets.max(1));
    let (mut bucket, mut next) = (-1i64, 0i64);
    while next < buckets {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as u32
}

/// The group in `0..groups` that holds `product`. With one group, always 0.
pub fn group_of(product: &str, groups: u16) -> u16 {
    if groups <= 1 {
        return 0;
    }
    jump_bucket(product_hash(product), u32::from(groups)) as u16
}

/// Where a command must be proposed in a cluster of `groups` groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// In this group: the one holding its products, or the one that placed its hold or order.
    In(u16),
    /// Its products lie in (at least) these two groups: no one group can apply it whole.
    Spans(u16, u16),
    /// In whichever group its sender means: the archive's cursor and the cluster version are
    /// each group's own.
    Anywhere,
}

/// The group that must apply `op`. A hold or order id that names a group the cluster does not
/// have belongs to no command that was ever applied: it goes to group 0, which answers it as
/// unknown.
pub fn group_of_op(op: &crate::Op, groups: u16) -> Placed {
    use crate::Op;
    if groups <= 1 {
        return match op {
            Op::MarkArchived { .. } | Op::SetClusterVersion { .. } => Placed::Anywhere,
            _ => Placed::In(0),
        };
    }
    let placed_by = |position: crate::OrderId| {
        let group = position.group();
        Placed::In(if group < groups { group } else { 0 })
    };
    let of_products = |products: &mut dyn Iterator<Item = &str>| {
        let mut placed = None;
        for product in products {
            let group = group_of(product, groups);
            match placed {
                None => placed = Some(group),
                Some(first) if first != group => return Placed::Spans(first, group),
                Some(_) => {}
            }
        }
        Placed::In(placed.unwrap_or(0))
    };
    match op {
        Op::CreateProduct { product, .. }
        | Op::Restock { product, .. }
        | Op::Purchase { product, .. }
        | Op::SetLimit { product, .. }
        | Op::CreateLimitedProduct { product, .. } => Placed::In(group_of(product, groups)),
        Op::Hold { lines, .. } | Op::Checkout { lines, .. } | Op::HoldPart { lines, .. } => {
            of_products(&mut lines.iter().map(|line| line.product.as_str()))
        }
        Op::Bulk { ops } => {
            let mut spans = None;
            let mut placed = None;
            for op in ops {
                match group_of_op(op, groups) {
                    Placed::In(group) => match placed {
                        None => placed = Some(group),
                        Some(first) if first != group => {
                            spans.get_or_insert(Placed::Spans(first, group));
                        }
                        Some(_) => {}
                    },
                    other => {
                        spans.get_or_insert(other);
                    }
                }
            }
            spans.unwrap_or(Placed::In(placed.unwrap_or(0)))
        }
        Op::ConfirmHold { hold, .. }
        | Op::ReleaseHold { hold, .. }
        | Op::SettlePart { hold, .. } => placed_by(crate::OrderId(hold.0)),
        Op::CancelOrder { order, .. } => placed_by(*order),
        Op::MarkArchived { .. } | Op::SetClusterVersion { .. } | Op::BulkDigest { .. } => {
            Placed::Anywhere
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mapping is data: these values may never change, or a cluster's products would be
    /// looked for in the wrong group after an upgrade. They were computed by a separate
    /// implementation of the definitions above, in Python.
    #[test]
    fn the_mapping_is_pinned() {
        assert_eq!(product_hash(""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(product_hash("sku-1"), 0xf6ba_4edd_272e_0924);
        assert_eq!(product_hash("p000042"), 0x961e_28c2_2613_1c68);
        let pinned: [(&str, u16, u16); 6] = [
            ("sku-1", 3, 2),
            ("sku-2", 3, 2),
            ("sku-3", 3, 0),
            ("widget", 6, 0),
            ("p000042", 64, 31),
            ("anything", 1, 0),
        ];
        for (product, groups, group) in pinned {
            assert_eq!(
                group_of(product, groups),
                group,
                "{product} in {groups} groups"
            );
        }
    }

    fn ids(count: usize) -> impl Iterator<Item = String> {
        (0..count).map(|n| format!("p{n:06}"))
    }

    #[test]
    fn products_spread_evenly_over_the_groups() {
        const PRODUCTS: usize = 60_000;
        for groups in [2u16, 3, 6, 7, 64] {
            let mut counts = vec![0usize; usize::from(groups)];
            for id in ids(PRODUCTS) {
                counts[usize::from(group_of(&id, groups))] += 1;
            }
            let fair = PRODUCTS / usize::from(groups);
            for (group, count) in counts.iter().enumerate() {
                // Binomial spread at these sizes is under 2 % of `fair` for 6 groups, and
                // under 10 % for 64 (937 each): 15 % is far outside chance.
                assert!(
                    count.abs_diff(fair) * 100 < fair * 15,
                    "group {group} of {groups} holds {count} of {PRODUCTS}, fair is {fair}"
                );
            }
        }
    }

    #[test]
    fn one_more_group_moves_only_its_share_and_only_into_the_new_group() {
        const PRODUCTS: usize = 30_000;
        for groups in [1u16, 2, 3, 5, 6, 63] {
            let mut moved = 0usize;
            for id in ids(PRODUCTS) {
                let (before, after) = (group_of(&id, groups), group_of(&id, groups + 1));
                if before != after {
                    assert_eq!(after, groups, "{id} moved between old groups");
                    moved += 1;
                }
            }
            let share = PRODUCTS / usize::from(groups + 1);
            assert!(
                moved.abs_diff(share) * 100 < share * 15,
                "{moved} of {PRODUCTS} moved going from {groups} to {} groups, expected about \
                 {share}",
                groups + 1
            );
        }
    }

    #[test]
    fn a_command_goes_to_the_group_of_its_products_hold_or_order() {
        use crate::{HoldId, Line, Op, OrderId};
        let buy = |product: &str| Op::Purchase {
            product: product.into(),
            quantity: 1,
            customer: None,
            token: None,
        };
        let cart = |products: &[&str]| Op::Checkout {
            lines: products
                .iter()
                .map(|product| Line {
                    product: (*product).into(),
                    quantity: 1,
                })
                .collect(),
            customer: None,
            token: None,
        };
        // Pinned above: sku-1 and sku-2 in group 2 of 3, sku-3 in group 0.
        assert_eq!(group_of_op(&buy("sku-1"), 3), Placed::In(2));
        assert_eq!(group_of_op(&buy("sku-3"), 3), Placed::In(0));
        assert_eq!(group_of_op(&cart(&["sku-1", "sku-2"]), 3), Placed::In(2));
        assert_eq!(
            group_of_op(&cart(&["sku-1", "sku-3"]), 3),
            Placed::Spans(2, 0)
        );
        assert_eq!(group_of_op(&cart(&["sku-1", "sku-3"]), 1), Placed::In(0));
        let bulk = |ops: Vec<Op>| Op::Bulk { ops };
        assert_eq!(
            group_of_op(&bulk(vec![buy("sku-1"), buy("sku-2")]), 3),
            Placed::In(2)
        );
        assert_eq!(
            group_of_op(&bulk(vec![buy("sku-1"), buy("sku-3")]), 3),
            Placed::Spans(2, 0)
        );
        // A hold or an order goes back to the group that placed it; a group the cluster does
        // not have, to group 0, which answers it as unknown.
        let placed = OrderId::placed_in(2, 0, 77, 5);
        let confirm = Op::ConfirmHold {
            hold: HoldId(placed.0),
            token: None,
        };
        assert_eq!(group_of_op(&confirm, 3), Placed::In(2));
        let cancel = |order| Op::CancelOrder {
            order,
            token: None,
            within_ms: None,
        };
        assert_eq!(group_of_op(&cancel(placed), 3), Placed::In(2));
        assert_eq!(
            group_of_op(&cancel(OrderId::placed_in(5, 0, 77, 5)), 3),
            Placed::In(0)
        );
        assert_eq!(
            group_of_op(&Op::SetClusterVersion { version: 2 }, 3),
            Placed::Anywhere
        );
    }

    #[test]
    fn the_bucket_is_always_in_range() {
        for key in [0, 1, u64::MAX, u64::MAX / 3, 0x8000_0000_0000_0000] {
            for buckets in [1, 2, 3, 64, 1000, u32::from(u16::MAX)] {
                assert!(jump_bucket(key, buckets) < buckets);
            }
        }
    }

    #[test]
    fn the_slot_field_holds_the_group_and_every_slot_of_a_group_entry() {
        assert_eq!(GROUPS_MAX, 64);
        assert_eq!(GROUP_SLOTS, 1024);
        assert_eq!(GROUP_SLOTS << GROUP_BITS, 1 << 16);
    }
}
