//! Carts across Raft groups (cluster version 3): the names of their commands.
//!
//! A cart whose products lie in several groups is bought as one or not at all, with a hold in
//! each group ([`crate::Op::HoldPart`]) and one decision, recorded in the cart's primary group
//! (the lowest group of its products): the primary part confirmed means bought, the primary
//! part released or expired means not. Every part is then settled the same way
//! ([`crate::Op::SettlePart`]). The commands take their idempotency keys from the request's,
//! so that a retry of the whole request, the gateway that placed the cart and the leader that
//! finishes a cart its gateway left all name the same commands and apply each once.

use crate::KEY_LEN_MAX;

/// The cluster version that brings carts across groups.
pub const CART_CLUSTER_VERSION: u32 = 3;

/// Longest Idempotency-Key of a checkout, in bytes: room is left for the suffixes of its
/// commands (`#g63#c`).
pub const CART_KEY_LEN_MAX: usize = KEY_LEN_MAX - 6;

/// The key of a cart's part in `group`, from the checkout's key.
pub fn part_key(cart_key: &str, group: u16) -> String {
    format!("{cart_key}#g{group}")
}

/// The key that settles the part placed under `part_key`: `#c` commits, `#a` aborts. An order
/// of a cart across groups carries its committing key.
pub fn settle_key(part_key: &str, commit: bool) -> String {
    format!("{part_key}#{}", if commit { "c" } else { "a" })
}

/// Whether `key` has the form of a part's key or of its settling key (`…#g<group>`, then `#c`
/// or `#a`): those name the commands of carts across groups, and no client request may take
/// one of them under its own key (a hold's confirmation or release is decided under the
/// request's key, in the parts' namespace).
pub fn is_part_or_settle_key(key: &str) -> bool {
    let part = key
        .strip_suffix("#c")
        .or_else(|| key.strip_suffix("#a"))
        .unwrap_or(key);
    part.rsplit_once("#g")
        .is_some_and(|(_, group)| !group.is_empty() && group.bytes().all(|b| b.is_ascii_digit()))
}

/// The checkout key and the group of an order placed by committing a cart's part: the inverse
/// of [`settle_key`] over [`part_key`]. `None` for any other key.
pub fn cart_of_order_key(key: &str) -> Option<(&str, u16)> {
    let part = key.strip_suffix("#c")?;
    let (cart, group) = part.rsplit_once("#g")?;
    let group: u16 = group.parse().ok()?;
    (!cart.is_empty() && group.to_string().len() == part.len() - cart.len() - 2)
        .then_some((cart, group))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_key_names_its_cart_and_group() {
        let part = part_key("cart-1#g2", 13);
        assert_eq!(part, "cart-1#g2#g13");
        let order = settle_key(&part, true);
        assert_eq!(cart_of_order_key(&order), Some(("cart-1#g2", 13)));
        assert_eq!(cart_of_order_key(&settle_key(&part, false)), None);
        assert_eq!(cart_of_order_key("plain-key"), None);
        assert_eq!(cart_of_order_key("k#g01#c"), None);
        assert!(is_part_or_settle_key(&part));
        assert!(is_part_or_settle_key(&order));
        assert!(is_part_or_settle_key(&settle_key(&part, false)));
        assert!(!is_part_or_settle_key("pay-1"));
        assert!(!is_part_or_settle_key("k#g"));
        assert!(!is_part_or_settle_key("k#gx#c"));
        let longest = "k".repeat(CART_KEY_LEN_MAX);
        assert!(settle_key(&part_key(&longest, 63), true).len() <= KEY_LEN_MAX);
    }
}
