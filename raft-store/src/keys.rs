//! Every key this crate writes, defined once. Integers are big-endian so that RocksDB's byte order
//! is numeric order: the log iterates by index, orders by id (log order), idempotency records by age.

use flashstock_api::{HoldId, OrderId};

/// Column family of the Raft log: [`log_key`] → bincode `Entry`.
pub const CF_LOG: &str = "log";
/// Column family of Raft's own records: [`RaftKey`] → bincode value.
pub const CF_RAFT: &str = "raft";
/// Column family of the state machine: [`StateKey`] → bincode value. A snapshot is exactly the
/// content of this column family.
pub const CF_STATE: &str = "state";
pub const COLUMN_FAMILIES: [&str; 3] = [CF_LOG, CF_RAFT, CF_STATE];

/// A column family's handle. All of them are created, and checked, when the store opens.
pub fn cf<'a>(db: &'a rocksdb::DB, name: &str) -> &'a rocksdb::ColumnFamily {
    db.cf_handle(name)
        .unwrap_or_else(|| panic!("column family {name} is checked at open"))
}

/// One Raft group's part of a node's store, and what the cluster's number of groups asks of
/// the group's entries.
///
/// Each group has its own three column families (log, Raft records, state) in the node's one
/// RocksDB, so their writes share one write-ahead log, and its own snapshot directory. Group 0
/// has the names a store of one group always had ([`COLUMN_FAMILIES`], [`crate::snapshot::DIR`]):
/// a store written before groups existed is group 0 of a one-group cluster, unchanged. Group
/// `g` > 0 has `log-g<g>`, `raft-g<g>`, `state-g<g>` and `snapshots-g<g>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    number: u16,
    groups: u16,
    log: String,
    raft: String,
    state: String,
}

impl Group {
    /// The only group of a one-group cluster: today's store.
    pub fn only() -> Group {
        Group::new(0, 1)
    }

    /// Group `number` of a cluster of `groups` (`number < groups <= GROUPS_MAX`).
    pub fn new(number: u16, groups: u16) -> Group {
        assert!(
            number < groups && groups <= flashstock_api::placement::GROUPS_MAX,
            "group {number} of {groups}"
        );
        let name = |family: &str| match number {
            0 => family.to_string(),
            n => format!("{family}-g{n}"),
        };
        Group {
            number,
            groups,
            log: name(CF_LOG),
            raft: name(CF_RAFT),
            state: name(CF_STATE),
        }
    }

    pub fn number(&self) -> u16 {
        self.number
    }

    /// How many groups the cluster has.
    pub fn groups(&self) -> u16 {
        self.groups
    }

    /// The names of the group's column families: log, Raft records, state.
    pub fn families(&self) -> [&str; 3] {
        [&self.log, &self.raft, &self.state]
    }

    pub fn state_family(&self) -> &str {
        &self.state
    }

    pub fn log<'a>(&self, db: &'a rocksdb::DB) -> &'a rocksdb::ColumnFamily {
        cf(db, &self.log)
    }

    pub fn raft<'a>(&self, db: &'a rocksdb::DB) -> &'a rocksdb::ColumnFamily {
        cf(db, &self.raft)
    }

    pub fn state<'a>(&self, db: &'a rocksdb::DB) -> &'a rocksdb::ColumnFamily {
        cf(db, &self.state)
    }

    /// The group's snapshot directory in the store's directory.
    pub fn snapshot_dir(&self, store: &std::path::Path) -> std::path::PathBuf {
        match self.number {
            0 => store.join(crate::snapshot::DIR),
            n => store.join(format!("{}-g{n}", crate::snapshot::DIR)),
        }
    }

    /// Most commands one of the group's entries may hold: with several groups, as many as an
    /// order id's slot has room for beside the group
    /// ([`flashstock_api::placement::GROUP_SLOTS`]).
    pub fn commands_per_entry_limit(&self) -> usize {
        match self.groups {
            1 => flashstock_api::COMMANDS_PER_ENTRY_LIMIT,
            _ => flashstock_api::placement::GROUP_SLOTS,
        }
    }

    /// The id of the order placed by command `slot` of the entry at `log_index` of
    /// `incarnation`: with several groups, it names the group
    /// ([`OrderId::placed_in`]).
    pub fn order_id(&self, incarnation: u8, log_index: u64, slot: u16) -> OrderId {
        match self.groups {
            1 => OrderId::placed(incarnation, log_index, slot),
            _ => OrderId::placed_in(self.number, incarnation, log_index, slot),
        }
    }
}

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

pub fn log_index(key: &[u8]) -> u64 {
    let bytes: [u8; 8] = key.try_into().expect("log keys are 8 bytes");
    u64::from_be_bytes(bytes)
}

/// Records of the Raft protocol, outside the log.
#[derive(Debug, Clone, Copy)]
pub enum RaftKey {
    Vote,
    Committed,
    /// The last purged log id: the log holds only entries after it.
    Purged,
    /// Releases before snapshot files kept the current snapshot here, meta and data in one
    /// value; moved into a file at open ([`crate::snapshot`]).
    Snapshot,
    /// The current snapshot: its meta and the name of its file.
    SnapshotFile,
}

impl RaftKey {
    pub fn encode(self) -> &'static [u8] {
        match self {
            RaftKey::Vote => b"vote",
            RaftKey::Committed => b"committed",
            RaftKey::Purged => b"purged",
            RaftKey::Snapshot => b"snapshot",
            RaftKey::SnapshotFile => b"snapshot_file",
        }
    }
}

/// Keys of the state machine's column family.
#[derive(Debug, Clone, Copy)]
pub enum StateKey<'a> {
    /// `p/<id>` → `Product`.
    Product(&'a str),
    /// `o/<id as u64 BE>` → `Order`, in log order, until archived.
    Order(OrderId),
    /// `k/<key>` → `KeyRecord`.
    KeyRecord(&'a str),
    /// `x/<recorded_at_ms BE><key>` → empty: idempotency records by age, to forget the oldest.
    KeyExpiry(u64, &'a str),
    /// `m/applied` → `Option<LogId>`: the last applied log id, written with the data it produced.
    Applied,
    /// `m/membership` → `StoredMembership`.
    Membership,
    /// `m/inventory` → `InventoryMeta`.
    InventoryMeta,
    /// `m/incarnations` → `Incarnations`; absent until the first restore from a backup.
    Incarnations,
    /// `m/format` → the state format ([`crate::STATE_FORMAT`]) as 4 little-endian bytes (not
    /// bincode, so that any release can read it). In the state column family, so every snapshot
    /// carries the format of its data.
    Format,
    /// `h/<id as u64 BE>` → `Hold`: every hold, held or finished, until forgotten.
    Hold(HoldId),
    /// `hx/<expires_at_ms BE><id BE>` → empty: held holds by deadline, to expire the oldest.
    HoldExpiry(u64, HoldId),
    /// `hf/<changed_at_ms BE><id BE>` → empty: finished holds by when they finished, to forget
    /// them once the idempotency horizon passes that time.
    HoldFinished(u64, HoldId),
    /// `c/<product>/<customer>` → u64: what a customer holds and bought of a product with a
    /// limit per customer (product ids hold no `/`).
    CustomerTaken(&'a str, &'a str),
    /// `e/<position as u64 BE>` → `Cancellation`: order cancellations in log order (positions
    /// are in the order ids' space), for the archive.
    Cancellation(OrderId),
    /// `cp/<id as u64 BE>` → the primary part's `HoldId` (bincode): a part of a cart across
    /// groups (cluster version 3) not settled yet, the primary's own included.
    CartPart(HoldId),
    /// `m/cluster_version` → the cluster version ([`flashstock_api::CLUSTER_VERSION`]) as 4
    /// little-endian bytes; absent means [`flashstock_api::CLUSTER_VERSION_BASE`].
    ClusterVersion,
}

pub const PRODUCT_PREFIX: &[u8] = b"p/";
pub const ORDER_PREFIX: &[u8] = b"o/";
pub const KEY_EXPIRY_PREFIX: &[u8] = b"x/";
pub const HOLD_EXPIRY_PREFIX: &[u8] = b"hx/";
pub const HOLD_FINISHED_PREFIX: &[u8] = b"hf/";
pub const CANCELLATION_PREFIX: &[u8] = b"e/";
pub const CART_PART_PREFIX: &[u8] = b"cp/";
/// Greater than every key of the state column family.
pub const STATE_KEY_END: &[u8] = &[0xff; 8];

impl StateKey<'_> {
    pub fn encode(self) -> Vec<u8> {
        fn prefixed(prefix: &[u8], rest: &[&[u8]]) -> Vec<u8> {
            let mut key = prefix.to_vec();
            for part in rest {
                key.extend_from_slice(part);
            }
            key
        }
        match self {
            StateKey::Product(id) => prefixed(PRODUCT_PREFIX, &[id.as_bytes()]),
            StateKey::Order(id) => prefixed(ORDER_PREFIX, &[&id.0.to_be_bytes()]),
            StateKey::KeyRecord(key) => prefixed(b"k/", &[key.as_bytes()]),
            StateKey::KeyExpiry(at_ms, key) => {
                prefixed(KEY_EXPIRY_PREFIX, &[&at_ms.to_be_bytes(), key.as_bytes()])
            }
            StateKey::Hold(id) => prefixed(b"h/", &[&id.0.to_be_bytes()]),
            StateKey::HoldExpiry(at_ms, id) => prefixed(
                HOLD_EXPIRY_PREFIX,
                &[&at_ms.to_be_bytes(), &id.0.to_be_bytes()],
            ),
            StateKey::HoldFinished(at_ms, id) => prefixed(
                HOLD_FINISHED_PREFIX,
                &[&at_ms.to_be_bytes(), &id.0.to_be_bytes()],
            ),
            StateKey::CustomerTaken(product, customer) => {
                prefixed(b"c/", &[product.as_bytes(), b"/", customer.as_bytes()])
            }
            StateKey::Cancellation(position) => {
                prefixed(CANCELLATION_PREFIX, &[&position.0.to_be_bytes()])
            }
            StateKey::CartPart(id) => prefixed(CART_PART_PREFIX, &[&id.0.to_be_bytes()]),
            StateKey::Applied => b"m/applied".to_vec(),
            StateKey::Membership => b"m/membership".to_vec(),
            StateKey::InventoryMeta => b"m/inventory".to_vec(),
            StateKey::Incarnations => b"m/incarnations".to_vec(),
            StateKey::Format => b"m/format".to_vec(),
            StateKey::ClusterVersion => b"m/cluster_version".to_vec(),
        }
    }
}

/// The order key just past `id`, or past every order for the last id.
pub fn order_key_after(id: Option<OrderId>) -> Vec<u8> {
    match id {
        None => ORDER_PREFIX.to_vec(),
        Some(OrderId(u64::MAX)) => b"o0".to_vec(), // '0' follows '/'
        Some(OrderId(n)) => StateKey::Order(OrderId(n + 1)).encode(),
    }
}

/// Split an expiry key into `(recorded_at_ms, key)`.
pub fn decode_key_expiry(raw: &[u8]) -> Option<(u64, String)> {
    let rest = raw.strip_prefix(KEY_EXPIRY_PREFIX)?;
    let (at, key) = rest.split_at_checked(8)?;
    let at_ms = u64::from_be_bytes(at.try_into().ok()?);
    Some((at_ms, String::from_utf8(key.to_vec()).ok()?))
}

/// Split a hold index key (`hx/` or `hf/`) into `(at_ms, hold)`.
pub fn decode_hold_index(prefix: &[u8], raw: &[u8]) -> Option<(u64, HoldId)> {
    let rest = raw.strip_prefix(prefix)?;
    let (at, id) = rest.split_at_checked(8)?;
    let at_ms = u64::from_be_bytes(at.try_into().ok()?);
    Some((at_ms, HoldId(u64::from_be_bytes(id.try_into().ok()?))))
}

/// The cancellation key just past `position`, or past every cancellation for the last one.
pub fn cancellation_key_after(position: Option<OrderId>) -> Vec<u8> {
    match position {
        None => CANCELLATION_PREFIX.to_vec(),
        Some(OrderId(u64::MAX)) => b"e0".to_vec(),
        Some(OrderId(n)) => StateKey::Cancellation(OrderId(n + 1)).encode(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically() {
        assert!(log_key(255) < log_key(256));
        let order = |n| StateKey::Order(OrderId(n)).encode();
        assert!(order(255) < order(256));
        assert!(order(u64::MAX) < order_key_after(Some(OrderId(u64::MAX))));
        let expiry = StateKey::KeyExpiry(1_000, "abc").encode();
        assert_eq!(decode_key_expiry(&expiry), Some((1_000, "abc".to_string())));
        assert!(StateKey::KeyExpiry(255, "z").encode() < StateKey::KeyExpiry(256, "a").encode());
        let due = StateKey::HoldExpiry(1_000, HoldId(7)).encode();
        assert_eq!(
            decode_hold_index(HOLD_EXPIRY_PREFIX, &due),
            Some((1_000, HoldId(7)))
        );
        assert!(due < StateKey::HoldExpiry(1_001, HoldId(0)).encode());
        assert!(!StateKey::Hold(HoldId(7))
            .encode()
            .starts_with(HOLD_EXPIRY_PREFIX));
    }
}
