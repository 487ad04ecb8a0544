//! The inventory state machine's logic, apart from any storage.
//!
//! [`apply_proposal`] takes the state (through [`InventoryState`]) and one Raft entry's
//! [`Proposal`] and performs the entry's writes on the state, returning one [`Outcome`] per
//! command. It is deterministic: no clock, no randomness, no IO but the state's own reads and
//! writes. Time and the idempotency horizon come from the proposer, inside the proposal; order ids
//! come from the log position. Every replica that applies the same log therefore holds the same
//! state, byte for byte.
//!
//! The RocksDB adapter (`state_machine.rs`) implements [`InventoryState`] as an overlay over the
//! database that becomes one `WriteBatch` per entry; [`MemState`] implements it in memory for the
//! scenario tests.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use flashstock_api::{
    bulk_item_key, split_bulk_item_key, validate_command, Command, Hold, HoldId, HoldState,
    ItemOutcome, Op, Order, OrderId, OrderLine, OrderTerms, Outcome, Product, ProductTerms,
    Proposal, Rejection, CLUSTER_VERSION, CLUSTER_VERSION_BASE,
};
use serde::{Deserialize, Serialize};

use crate::checkout;
use crate::keys::Group;
pub use crate::records::{OrderRecord, ProductRecord};

/// Most expired idempotency records forgotten while applying one entry, beyond one per command.
/// Bounds the work of one apply; a backlog is worked off over the following entries.
pub const KEYS_FORGOTTEN_PER_ENTRY_MIN: usize = 64;
/// Most archived orders dropped while applying one entry, beyond one per command: enough to keep
/// up with the orders the entries place.
pub const ORDERS_DROPPED_PER_ENTRY_MIN: usize = 64;
/// Most orders one [`Op::MarkArchived`] may move the cursor over. The archiver writes far smaller
/// batches; the bound keeps the work of one apply small whatever an entry says.
pub const ORDERS_ARCHIVED_PER_COMMAND_MAX: usize = 100_000;

/// Prefix of the idempotency records of internal commands ([`Op::is_internal`]: the archive
/// cursor), in front of their key. Public keys are printable ASCII, checked before any record is
/// read or written ([`validate_command`]), so a public key never starts with NUL: whatever key
/// a client sends (`archive-<next order id>` included), it cannot reach, block or replay an
/// internal command's record.
pub const INTERNAL_KEY_PREFIX: &str = "\0internal/";

/// Prefix of the idempotency records of a cart's parts across groups ([`Op::HoldPart`],
/// [`Op::SettlePart`]), in front of their key (`K#g<group>`, `K#g<group>#c`). Those keys are
/// made from the checkout's, and a group's leader settles a part under the key its gateway
/// used: were they in the clients' namespace, any request sent under such a key (a purchase
/// keyed `K#g1#c`, say) would take the record first, and the part could never be settled, its
/// stock held for good. Behind NUL, which no public key holds, no client can reach them.
pub const CART_KEY_PREFIX: &str = "\0cart/";

/// The key a command's idempotency record is stored under: its own key for the public kinds,
/// [`INTERNAL_KEY_PREFIX`] and its key for internal commands, [`CART_KEY_PREFIX`] and its key
/// for a cart's parts.
pub fn record_key(command: &Command) -> Cow<'_, str> {
    match &command.op {
        op if op.is_internal() => Cow::Owned(format!("{INTERNAL_KEY_PREFIX}{}", command.key)),
        Op::HoldPart { .. } | Op::SettlePart { .. } => {
            Cow::Owned(format!("{CART_KEY_PREFIX}{}", command.key))
        }
        _ => Cow::Borrowed(&command.key),
    }
}

/// What the state machine remembers of a command, under its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The command's operation, to tell a retry from a reuse of the key for another request.
    pub op: Op,
    /// The first outcome, returned again to every retry.
    pub outcome: Outcome,
    /// The proposer's time of the entry that first applied the command.
    pub recorded_at_ms: u64,
}

/// State that is not per product, per order or per key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryMeta {
    /// Idempotency records older than this were, or may be, forgotten. Never decreases.
    pub forget_keys_before_ms: u64,
    /// The archive cursor: every order up to and including this id is in the archive.
    pub archived_up_to: Option<OrderId>,
    /// The greatest `proposed_at_ms` applied so far: the state's own monotonic clock.
    pub clock_ms: u64,
    /// Archived orders placed before this time may be dropped. Never decreases.
    pub drop_archived_before_ms: u64,
    /// Every order up to and including this id was dropped; never beyond `archived_up_to`.
    pub dropped_up_to: Option<OrderId>,
    /// Orders placed since the beginning.
    pub orders_placed: u64,
    /// Orders the archive cursor has passed.
    pub orders_archived: u64,
    /// Orders dropped from the state after their retention.
    pub orders_dropped: u64,
}

impl InventoryMeta {
    /// Confirmed orders not in the archive yet.
    pub fn archive_backlog(&self) -> u64 {
        self.orders_placed - self.orders_archived
    }

    /// Orders the state still holds: the backlog and the archived ones within the retention.
    pub fn orders_held(&self) -> u64 {
        self.orders_placed - self.orders_dropped
    }
}

/// An order's cancellation, kept at the position of the command that cancelled it (`e/`), so
/// that the archive meets placements and cancellations in log order under one cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    pub order: OrderId,
    pub cancelled_at_ms: u64,
}

/// A fault of the storage under the state machine. It is never a client's fault: the node must
/// stop applying rather than answer anything.
#[derive(Debug, thiserror::Error)]
#[error("storage fault: {0}")]
pub struct Fault(pub String);

/// The incarnations of a state, oldest first: each restore from a backup starts one, so that
/// the orders it places take ids no order placed before the restore had (see
/// [`OrderId::placed`]). Empty until the first restore: everything is incarnation 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incarnations(pub Vec<Incarnation>);

/// One restore: entries after `after_index` belong to incarnation `number`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incarnation {
    pub number: u8,
    /// The last index kept by the restore: every entry up to it was committed before the
    /// backup, and placed the same orders in every incarnation that holds it.
    pub after_index: u64,
}

impl Incarnations {
    /// The incarnation of the entry at `log_index`.
    pub fn at(&self, log_index: u64) -> u8 {
        self.0
            .iter()
            .rev()
            .find(|incarnation| log_index > incarnation.after_index)
            .map_or(0, |incarnation| incarnation.number)
    }

    /// The latest incarnation: new entries belong to it.
    pub fn current(&self) -> u8 {
        self.0.last().map_or(0, |incarnation| incarnation.number)
    }
}

/// The state the inventory logic reads and writes. Reads see the writes made before them.
pub trait InventoryState {
    fn product(&self, id: &str) -> Result<Option<ProductRecord>, Fault>;
    fn order(&self, id: OrderId) -> Result<Option<OrderRecord>, Fault>;
    fn hold(&self, id: HoldId) -> Result<Option<Hold>, Fault>;
    /// Up to `limit` holds still held whose deadline is before `before_ms`, earliest first, as
    /// `(expires_at_ms, hold)`. Called before any write of the entry.
    fn holds_due(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, HoldId)>, Fault>;
    /// Up to `limit` finished holds that finished before `before_ms`, oldest first, as
    /// `(changed_at_ms, hold)`. Called before any write of the entry.
    fn holds_finished_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, HoldId)>, Fault>;
    /// What `customer` holds and bought of `product` in its current limit epoch.
    fn customer_taken(&self, product: &str, customer: &str) -> Result<u64, Fault>;
    fn key_record(&self, key: &str) -> Result<Option<KeyRecord>, Fault>;
    /// Up to `limit` keys recorded before `before_ms`, oldest first, as `(recorded_at_ms, key)`.
    fn keys_recorded_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, Fault>;
    fn meta(&self) -> Result<InventoryMeta, Fault>;
    /// The incarnations this state went through (restores from a backup).
    fn incarnations(&self) -> Result<Incarnations, Fault>;
    /// Up to `limit` orders placed by earlier entries with ids after `after` and up to `up_to`
    /// (both `None`: no bound), in log order.
    fn orders_between(
        &self,
        after: Option<OrderId>,
        up_to: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, Fault>;

    fn put_product(&mut self, record: &ProductRecord);
    fn put_order(&mut self, record: &OrderRecord);
    /// Write a hold and its index: by deadline while held, by finish time once finished.
    fn put_hold(&mut self, hold: &Hold);
    /// Forget a finished hold and its index.
    fn forget_hold(&mut self, hold: &Hold);
    /// The primary part of the cart that hold `id` is a part of, while that part is not
    /// settled (a primary's is its own id); `None` for any other hold.
    fn part_of(&self, id: HoldId) -> Result<Option<HoldId>, Fault>;
    /// Write a held part of a cart across groups and its link to the cart's `primary`. Only
    /// the primary part (`primary == hold.id`) is indexed by deadline: a secondary part never
    /// expires on its own.
    fn put_part(&mut self, hold: &Hold, primary: HoldId);
    /// Part `id` is settled or expired: forget its link (the hold itself stays, finished).
    fn delete_part(&mut self, id: HoldId);
    /// Set what a customer took of a product (0 removes the record).
    fn put_customer_taken(&mut self, product: &str, customer: &str, taken: u64);
    /// Forget every customer's count of a product (its limit was removed).
    fn forget_customers_taken(&mut self, product: &str);
    /// Record a cancellation at `position` (in log order, for the archive).
    fn put_cancellation(&mut self, position: OrderId, cancellation: &Cancellation);
    fn put_key_record(&mut self, key: &str, record: &KeyRecord);
    fn delete_key_record(&mut self, key: &str, recorded_at_ms: u64);
    /// Remove every order, and every cancellation, with an id or position in `after..=up_to`
    /// (`after` excluded; `None`: from the start).
    fn delete_orders(&mut self, after: Option<OrderId>, up_to: OrderId);
    fn put_meta(&mut self, meta: &InventoryMeta);
    /// The cluster version ([`CLUSTER_VERSION`]): [`CLUSTER_VERSION_BASE`] until raised.
    fn cluster_version(&self) -> Result<u32, Fault>;
    /// Raise the cluster version, and with it the state format ([`crate::state_format_for`]).
    fn put_cluster_version(&mut self, version: u32);
}

/// Apply one entry's proposal at `log_index` of `group`. Returns one outcome per command, in
/// order.
pub fn apply_proposal(
    state: &mut impl InventoryState,
    group: &Group,
    log_index: u64,
    proposal: &Proposal,
) -> Result<Vec<Outcome>, Fault> {
    let limit = group.commands_per_entry_limit();
    if proposal.commands.len() > limit {
        // Never proposed by a correct node. Answer every command, change nothing.
        let reason = format!("an entry holds at most {limit} commands");
        let outcomes = proposal
            .commands
            .iter()
            .map(|_| {
                Outcome::Rejected(Rejection::Invalid {
                    reason: reason.clone(),
                })
            })
            .collect();
        return Ok(outcomes);
    }

    let mut meta = state.meta()?;
    // The state's clock never goes backwards, whatever the proposers' clocks do: records and
    // orders are stamped with it, so a leader whose clock lags cannot make fresh idempotency
    // records look old.
    meta.clock_ms = meta.clock_ms.max(proposal.proposed_at_ms);
    forget_expired_keys(state, &mut meta, proposal)?;
    drop_archived_orders(state, &mut meta, proposal)?;
    checkout::expire_holds(state, &meta, proposal.commands.len())?;

    let incarnation = state.incarnations()?.at(log_index);
    let mut outcomes = Vec::with_capacity(proposal.commands.len());
    for (slot, command) in proposal.commands.iter().enumerate() {
        let order_id = group.order_id(incarnation, log_index, slot as u16);
        outcomes.push(apply_command(state, &mut meta, order_id, command)?);
    }
    state.put_meta(&meta);
    Ok(outcomes)
}

/// Move the idempotency horizon forward and forget a bounded number of records behind it.
fn forget_expired_keys(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    proposal: &Proposal,
) -> Result<(), Fault> {
    // Never behind where it was, never ahead of the state's clock: a record stamped at the
    // clock survives at least until a later entry moves the clock on.
    meta.forget_keys_before_ms = meta
        .forget_keys_before_ms
        .max(proposal.forget_keys_before_ms.min(meta.clock_ms));
    let limit = KEYS_FORGOTTEN_PER_ENTRY_MIN + proposal.commands.len();
    for (recorded_at_ms, key) in state.keys_recorded_before(meta.forget_keys_before_ms, limit)? {
        state.delete_key_record(&key, recorded_at_ms);
    }
    Ok(())
}

/// Move the retention horizon forward and drop a bounded number of archived orders behind it,
/// oldest first. An order the archive cursor has not passed is never dropped.
fn drop_archived_orders(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    proposal: &Proposal,
) -> Result<(), Fault> {
    meta.drop_archived_before_ms = meta
        .drop_archived_before_ms
        .max(proposal.drop_archived_before_ms.min(meta.clock_ms));
    let Some(cursor) = meta.archived_up_to else {
        return Ok(());
    };
    if meta.dropped_up_to >= Some(cursor) {
        return Ok(());
    }
    let limit = ORDERS_DROPPED_PER_ENTRY_MIN + proposal.commands.len();
    let mut last = None;
    let mut dropped = 0;
    // Orders are stamped with the state's monotonic clock in log order, so the first one inside
    // the retention ends the run.
    for order in state.orders_between(meta.dropped_up_to, Some(cursor), limit)? {
        if order.placed_at_ms >= meta.drop_archived_before_ms {
            break;
        }
        last = Some(order.id);
        dropped += 1;
    }
    if let Some(last) = last {
        state.delete_orders(meta.dropped_up_to, last);
        meta.dropped_up_to = Some(last);
        meta.orders_dropped += dropped;
    }
    Ok(())
}

fn apply_command(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    order_id: OrderId,
    command: &Command,
) -> Result<Outcome, Fault> {
    if let Err(reason) = validate_command(command) {
        // Not recorded under the key: the key itself may be what is invalid, and a retry of the
        // same command gets the same answer anyway.
        return Ok(Outcome::Rejected(Rejection::Invalid { reason }));
    }
    let since = command.op.since_cluster_version();
    if since > CLUSTER_VERSION_BASE && !matches!(command.op, Op::SetClusterVersion { .. }) {
        let running = state.cluster_version()?;
        if since > running {
            // Never proposed by a correct node: an older replica could not read it.
            return Ok(Outcome::Rejected(Rejection::Invalid {
                reason: format!(
                    "{} needs cluster version {since}; the cluster runs {running}",
                    command.op.kind()
                ),
            }));
        }
    }
    let record_key = record_key(command);
    if let Some(record) = state.key_record(&record_key)? {
        if recorded_same_request(&record.op, &command.op) {
            return Ok(Outcome::Duplicate(Box::new(record.outcome)));
        }
        return Ok(Outcome::Rejected(Rejection::KeyReused {
            key: command.key.clone(),
        }));
    }
    if let Some(answer) = answered_by_bulk_record(state, command)? {
        return Ok(answer);
    }

    let outcome = match &command.op {
        Op::CreateProduct { .. } | Op::Restock { .. } => catalog_op(state, &command.op)?,
        Op::Purchase {
            product,
            quantity,
            customer,
            token,
        } => purchase(
            state,
            meta,
            order_id,
            &command.key,
            product,
            *quantity,
            customer.as_deref(),
            token.as_deref(),
        )?,
        Op::MarkArchived { up_to } => mark_archived(state, meta, order_id, *up_to)?,
        Op::SetClusterVersion { version } => set_cluster_version(state, *version)?,
        Op::Bulk { ops } => bulk(state, &command.key, ops)?,
        Op::Hold {
            lines,
            customer,
            ttl_ms,
            token,
        }
        | Op::HoldPart {
            lines,
            customer,
            ttl_ms,
            token,
            ..
        } => {
            let placing = match &command.op {
                Op::HoldPart { primary, .. } => checkout::Placing::Part { primary: *primary },
                _ => checkout::Placing::Hold,
            };
            checkout::hold(
                state,
                meta,
                order_id.into(),
                &command.key,
                lines,
                customer.as_deref(),
                *ttl_ms,
                token.as_deref(),
                placing,
            )?
        }
        Op::ConfirmHold { hold, token } => {
            checkout::confirm(state, meta, order_id, &command.key, *hold, token.as_deref())?
        }
        Op::ReleaseHold { hold, token } => checkout::release(state, meta, *hold, token.as_deref())?,
        Op::Checkout {
            lines,
            customer,
            token,
        } => checkout::checkout(
            state,
            meta,
            order_id,
            &command.key,
            lines,
            customer.as_deref(),
            token.as_deref(),
        )?,
        Op::CancelOrder {
            order,
            token,
            within_ms,
        } => checkout::cancel(state, meta, order_id, *order, token.as_deref(), *within_ms)?,
        Op::SetLimit {
            product,
            limit_per_customer,
        } => checkout::set_limit(state, product, *limit_per_customer)?,
        Op::CreateLimitedProduct {
            product,
            name,
            price_cents,
            stock,
            limit_per_customer,
        } => create_product(
            state,
            product,
            name,
            *price_cents,
            *stock,
            Some(*limit_per_customer),
        )?,
        Op::SettlePart { hold, commit } => {
            checkout::settle_part(state, meta, order_id, &command.key, *hold, *commit)?
        }
        // Refused by `validate_command` above; never recorded as a command of its own.
        Op::BulkDigest { .. } => {
            return Ok(Outcome::Rejected(Rejection::Invalid {
                reason: "a bulk digest is not a command".to_owned(),
            }))
        }
    };
    let op = match &command.op {
        Op::Bulk { ops } if state.cluster_version()? >= 5 => bulk_digest(ops),
        op => op.clone(),
    };
    let record = KeyRecord {
        op,
        outcome: outcome.clone(),
        recorded_at_ms: meta.clock_ms,
    };
    state.put_key_record(&record_key, &record);
    Ok(outcome)
}

/// Whether `recorded`, the op of an idempotency record, asks for the same as `incoming`
/// ([`Op::same_request`]); a bulk request's record from cluster version 5 keeps only its digest
/// ([`bulk_digest`]), which a retry's must equal.
fn recorded_same_request(recorded: &Op, incoming: &Op) -> bool {
    match (recorded, incoming) {
        (Op::BulkDigest { .. }, Op::Bulk { ops }) => *recorded == bulk_digest(ops),
        _ => recorded.same_request(incoming),
    }
}

/// What the idempotency record of a bulk request keeps of it from cluster version 5
/// ([`Op::BulkDigest`]): its number of items and a SHA-256 of them, each item written field by
/// field with its length, so the digest depends on what the request asks and on nothing of how
/// a release encodes it. A bulk request holds creates and restocks only ([`validate_command`]);
/// any other item is written as its kind, which no retry can match by accident.
pub fn bulk_digest(ops: &[Op]) -> Op {
    use sha2::{Digest, Sha256};
    fn field(hash: &mut Sha256, bytes: &[u8]) {
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    }
    let mut hash = Sha256::new();
    for op in ops {
        match op {
            Op::CreateProduct {
                product,
                name,
                price_cents,
                stock,
            } => {
                field(&mut hash, b"create");
                field(&mut hash, product.as_bytes());
                field(&mut hash, name.as_bytes());
                field(&mut hash, &price_cents.to_le_bytes());
                field(&mut hash, &stock.to_le_bytes());
            }
            Op::Restock { product, quantity } => {
                field(&mut hash, b"restock");
                field(&mut hash, product.as_bytes());
                field(&mut hash, &quantity.to_le_bytes());
            }
            other => field(&mut hash, other.kind().as_bytes()),
        }
    }
    let mut sha256 = [0u8; 32];
    sha256.copy_from_slice(&hash.finalize());
    Op::BulkDigest {
        items: u32::try_from(ops.len()).unwrap_or(u32::MAX),
        sha256,
    }
}

/// An item of a bulk request sent as its own command (before cluster version 2, key
/// `K#i`) whose request was applied as one [`Op::Bulk`] under `K`: the bulk command's item
/// answers it, so a retry across the switch applies nothing twice. Looked up only from cluster
/// version 2 on, so entries before it apply exactly as the release before did. A record of
/// cluster version 5 or later keeps only the request's digest and answers no item: by then every
/// member runs a release that sends a bulk request as one command, so no gateway sends its
/// items one by one.
fn answered_by_bulk_record(
    state: &impl InventoryState,
    command: &Command,
) -> Result<Option<Outcome>, Fault> {
    if !matches!(command.op, Op::CreateProduct { .. } | Op::Restock { .. }) {
        return Ok(None);
    }
    let Some((request_key, index)) = split_bulk_item_key(&command.key) else {
        return Ok(None);
    };
    if state.cluster_version()? < 2 {
        return Ok(None);
    }
    let Some(KeyRecord {
        op: Op::Bulk { ops },
        outcome,
        ..
    }) = state.key_record(request_key)?
    else {
        return Ok(None);
    };
    let (Some(op), Outcome::Bulk(_) | Outcome::BulkDone(_)) = (ops.get(index), &outcome) else {
        return Ok(None);
    };
    if !op.same_request(&command.op) {
        return Ok(Some(Outcome::Rejected(Rejection::KeyReused {
            key: command.key.clone(),
        })));
    }
    let first = match outcome {
        Outcome::Bulk(outcomes) => outcomes.into_iter().nth(index),
        Outcome::BulkDone(items) => items
            .into_iter()
            .nth(index)
            .map(|item| item_answer(state, op, item))
            .transpose()?,
        _ => unreachable!("a bulk command's record, matched above"),
    };
    Ok(first.map(|first| Outcome::Duplicate(Box::new(first))))
}

/// The answer to an item of a bulk command whose record says only what it did
/// ([`Outcome::BulkDone`]): a create's or a restock's outcome shows the product as it stands
/// now, which is what the state holds of it (a product is never removed).
fn item_answer(state: &impl InventoryState, op: &Op, item: ItemOutcome) -> Result<Outcome, Fault> {
    let product = match op {
        Op::CreateProduct { product, .. } | Op::Restock { product, .. } => product,
        _ => {
            return Ok(Outcome::Rejected(Rejection::Invalid {
                reason: "a bulk item is a create or a restock".to_owned(),
            }))
        }
    };
    let created = match item {
        ItemOutcome::Created => true,
        ItemOutcome::Restocked => false,
        ItemOutcome::Rejected(rejection) => return Ok(Outcome::Rejected(rejection)),
        ItemOutcome::Duplicate(first) => {
            return Ok(Outcome::Duplicate(Box::new(item_answer(
                state, op, *first,
            )?)))
        }
    };
    Ok(match state.product(product)? {
        Some(record) => product_changed(record, created),
        None => unknown_product(product),
    })
}

/// The items of a bulk command, each applied on its own; from cluster version 4 the outcome
/// says only what each did ([`Outcome::BulkDone`]). If the same request was applied before
/// cluster version 2, as one command per item (keys `K#i`, all in one entry, so all or
/// none recorded), those records answer it instead.
fn bulk(state: &mut impl InventoryState, key: &str, ops: &[Op]) -> Result<Outcome, Fault> {
    let applied_per_item = state.key_record(&bulk_item_key(key, 0))?.is_some();
    let mut outcomes = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        if applied_per_item {
            let item_key = bulk_item_key(key, index);
            match state.key_record(&item_key)? {
                Some(record) if record.op.same_request(op) => {
                    outcomes.push(Outcome::Duplicate(Box::new(record.outcome)));
                    continue;
                }
                Some(_) => {
                    outcomes.push(Outcome::Rejected(Rejection::KeyReused { key: item_key }));
                    continue;
                }
                None => {}
            }
        }
        outcomes.push(catalog_op(state, op)?);
    }
    if state.cluster_version()? >= 4 {
        return Ok(Outcome::BulkDone(
            outcomes.into_iter().map(ItemOutcome::of).collect(),
        ));
    }
    Ok(Outcome::Bulk(outcomes))
}

/// A create or a restock, on its own or as an item of a bulk command. Any other kind is
/// refused (a bulk command holding one is refused by `validate_command` before).
fn catalog_op(state: &mut impl InventoryState, op: &Op) -> Result<Outcome, Fault> {
    match op {
        Op::CreateProduct {
            product,
            name,
            price_cents,
            stock,
        } => create_product(state, product, name, *price_cents, *stock, None),
        Op::Restock { product, quantity } => restock(state, product, *quantity),
        other => Ok(Outcome::Rejected(Rejection::Invalid {
            reason: format!("a bulk command does not hold {}", other.kind()),
        })),
    }
}

/// Create a product; with `limit` ([`Op::CreateLimitedProduct`]), limited per customer from
/// the start (its first limit epoch).
fn create_product(
    state: &mut impl InventoryState,
    id: &str,
    name: &str,
    price_cents: u64,
    stock: u64,
    limit: Option<u32>,
) -> Result<Outcome, Fault> {
    if state.product(id)?.is_some() {
        return Ok(Outcome::Rejected(Rejection::ProductExists {
            product: id.to_owned(),
        }));
    }
    let terms = ProductTerms {
        limit_per_customer: limit,
        limit_epoch: u32::from(limit.is_some()),
        ..ProductTerms::default()
    };
    let record = ProductRecord {
        product: Product {
            id: id.to_owned(),
            name: name.to_owned(),
            price_cents,
            stock,
            initial_stock: stock,
            restocked: 0,
            sold: 0,
        },
        terms,
    };
    put_checked_product(state, &record);
    Ok(product_changed(record, true))
}

/// The outcome of creating (`created`) or restocking a product: as in the release before when
/// it has no terms; with its terms (held stock, a limit) otherwise, which exist only from
/// cluster version 2, when every replica decodes them.
fn product_changed(record: ProductRecord, created: bool) -> Outcome {
    match (record.terms.is_empty(), created) {
        (true, true) => Outcome::ProductCreated(record.product),
        (true, false) => Outcome::Restocked(record.product),
        (false, created) => Outcome::ProductWithTerms {
            created,
            product: record.product,
            terms: record.terms,
        },
    }
}

fn restock(state: &mut impl InventoryState, id: &str, quantity: u64) -> Result<Outcome, Fault> {
    let Some(mut record) = state.product(id)? else {
        return Ok(unknown_product(id));
    };
    let product = &mut record.product;
    // Bounded so that no counter can overflow, however many restocks come.
    let (Some(stock), Some(restocked)) = (
        product.stock.checked_add(quantity),
        product.restocked.checked_add(quantity),
    ) else {
        return Ok(too_much_stock());
    };
    if stock > flashstock_api::STOCK_MAX || restocked > u64::MAX / 4 {
        return Ok(too_much_stock());
    }
    product.stock = stock;
    product.restocked = restocked;
    put_checked_product(state, &record);
    Ok(product_changed(record, false))
}

#[allow(clippy::too_many_arguments)]
fn purchase(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    order_id: OrderId,
    key: &str,
    id: &str,
    quantity: u32,
    customer: Option<&str>,
    token: Option<&str>,
) -> Result<Outcome, Fault> {
    let Some(mut record) = state.product(id)? else {
        return Ok(unknown_product(id));
    };
    // A product with a limit per customer counts what each customer takes (cluster version 2).
    let limit_epoch = match checkout::take_within_limit(state, &record, customer, quantity)? {
        Ok(epoch) => epoch,
        Err(rejection) => return Ok(Outcome::Rejected(rejection)),
    };
    let product = &mut record.product;
    // The one place stock goes down. Checked before the write: this is what makes overselling
    // impossible, since entries are applied one at a time, in log order, on every replica.
    let Some(remaining) = product.stock.checked_sub(u64::from(quantity)) else {
        return Ok(Outcome::Rejected(Rejection::InsufficientStock {
            product: id.to_owned(),
            requested: quantity,
            available: product.stock,
        }));
    };
    product.stock = remaining;
    product.sold += u64::from(quantity);
    put_checked_product(state, &record);
    if let Some(customer) = customer.filter(|_| limit_epoch != 0) {
        checkout::count_taken(state, id, customer, quantity)?;
    }
    let order = Order {
        id: order_id,
        key: key.to_owned(),
        product: id.to_owned(),
        quantity,
        customer: customer.map(str::to_owned),
        price_cents: record.product.price_cents,
        remaining,
        placed_at_ms: meta.clock_ms,
        token: token.map(str::to_owned),
    };
    // An order that counts against a limit keeps its epoch, to give it back if cancelled.
    let mut terms = OrderTerms::default();
    if limit_epoch != 0 {
        terms.lines.push(OrderLine {
            product: id.to_owned(),
            quantity,
            price_cents: order.price_cents,
            remaining,
            limit_epoch,
        });
    }
    state.put_order(&OrderRecord {
        order: order.clone(),
        terms,
    });
    meta.orders_placed += 1;
    Ok(Outcome::Purchased(order))
}

fn mark_archived(
    state: &mut impl InventoryState,
    meta: &mut InventoryMeta,
    this_position: OrderId,
    up_to: OrderId,
) -> Result<Outcome, Fault> {
    // Only orders placed by earlier entries may be archived: a cursor ahead of the log would
    // hide orders placed later below it, where no archive step would ever look.
    if up_to.log_index() >= this_position.log_index() {
        return Ok(Outcome::Rejected(Rejection::Invalid {
            reason: format!("cannot archive up to order {up_to}, which is not placed yet"),
        }));
    }
    let after = meta.archived_up_to;
    if after.is_none_or(|after| up_to > after) {
        let passed =
            state.orders_between(after, Some(up_to), ORDERS_ARCHIVED_PER_COMMAND_MAX + 1)?;
        if passed.len() > ORDERS_ARCHIVED_PER_COMMAND_MAX {
            return Ok(Outcome::Rejected(Rejection::Invalid {
                reason: format!(
                    "one command archives at most {ORDERS_ARCHIVED_PER_COMMAND_MAX} orders"
                ),
            }));
        }
        meta.archived_up_to = Some(up_to);
        meta.orders_archived += passed.len() as u64;
    }
    Ok(Outcome::Archived {
        up_to: meta.archived_up_to.unwrap_or(up_to),
    })
}

/// Raise the cluster version; never lower it. A version newer than this release runs stops the
/// node: applying entries it may not understand would be worse than not applying at all.
fn set_cluster_version(state: &mut impl InventoryState, version: u32) -> Result<Outcome, Fault> {
    if version > CLUSTER_VERSION {
        return Err(Fault(format!(
            "the log raises the cluster version to {version}; this release (flashstock {}) runs \
             cluster versions up to {CLUSTER_VERSION}: run a release that supports {version}",
            env!("CARGO_PKG_VERSION")
        )));
    }
    let running = state.cluster_version()?;
    if version > running {
        state.put_cluster_version(version);
    }
    Ok(Outcome::ClusterVersion {
        version: version.max(running),
    })
}

/// Write a product after asserting the conservation law: a violation is a bug in this module,
/// and stopping the node is better than storing (and replicating) a miscount.
pub(crate) fn put_checked_product(state: &mut impl InventoryState, record: &ProductRecord) {
    assert!(
        record.is_conserved(),
        "conservation violated for product {:?}: {record:?}",
        record.product.id
    );
    state.put_product(record);
}

pub(crate) fn unknown_product(id: &str) -> Outcome {
    Outcome::Rejected(Rejection::UnknownProduct {
        product: id.to_owned(),
    })
}

fn too_much_stock() -> Outcome {
    Outcome::Rejected(Rejection::Invalid {
        reason: format!("stock would exceed {}", flashstock_api::STOCK_MAX),
    })
}

/// The whole inventory state in memory: the reference implementation of [`InventoryState`],
/// used by the scenario tests and by anything that needs the logic without a database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemState {
    pub products: BTreeMap<String, ProductRecord>,
    pub orders: BTreeMap<OrderId, OrderRecord>,
    pub keys: BTreeMap<String, KeyRecord>,
    pub holds: BTreeMap<HoldId, Hold>,
    /// Held holds by deadline, as `hx/`.
    pub holds_due: BTreeSet<(u64, HoldId)>,
    /// Finished holds by finish time, as `hf/`.
    pub holds_finished: BTreeSet<(u64, HoldId)>,
    /// Parts of carts across groups not settled yet → their primary, as `cp/`.
    pub parts: BTreeMap<HoldId, HoldId>,
    /// `(product, customer)` → taken, as `c/`.
    pub taken: BTreeMap<(String, String), u64>,
    pub cancellations: BTreeMap<OrderId, Cancellation>,
    pub meta: InventoryMeta,
    pub incarnations: Incarnations,
    /// `None`: never raised ([`CLUSTER_VERSION_BASE`]).
    pub cluster_version: Option<u32>,
}

impl InventoryState for MemState {
    fn product(&self, id: &str) -> Result<Option<ProductRecord>, Fault> {
        Ok(self.products.get(id).cloned())
    }

    fn order(&self, id: OrderId) -> Result<Option<OrderRecord>, Fault> {
        Ok(self.orders.get(&id).cloned())
    }

    fn hold(&self, id: HoldId) -> Result<Option<Hold>, Fault> {
        Ok(self.holds.get(&id).cloned())
    }

    fn holds_due(&self, before_ms: u64, limit: usize) -> Result<Vec<(u64, HoldId)>, Fault> {
        Ok(self
            .holds_due
            .iter()
            .take_while(|(at, _)| *at < before_ms)
            .take(limit)
            .copied()
            .collect())
    }

    fn holds_finished_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, HoldId)>, Fault> {
        Ok(self
            .holds_finished
            .iter()
            .take_while(|(at, _)| *at < before_ms)
            .take(limit)
            .copied()
            .collect())
    }

    fn customer_taken(&self, product: &str, customer: &str) -> Result<u64, Fault> {
        Ok(self
            .taken
            .get(&(product.to_owned(), customer.to_owned()))
            .copied()
            .unwrap_or(0))
    }

    fn key_record(&self, key: &str) -> Result<Option<KeyRecord>, Fault> {
        Ok(self.keys.get(key).cloned())
    }

    fn keys_recorded_before(
        &self,
        before_ms: u64,
        limit: usize,
    ) -> Result<Vec<(u64, String)>, Fault> {
        let mut expired: Vec<(u64, String)> = self
            .keys
            .iter()
            .filter(|(_, record)| record.recorded_at_ms < before_ms)
            .map(|(key, record)| (record.recorded_at_ms, key.clone()))
            .collect();
        expired.sort();
        expired.truncate(limit);
        Ok(expired)
    }

    fn meta(&self) -> Result<InventoryMeta, Fault> {
        Ok(self.meta)
    }

    fn incarnations(&self) -> Result<Incarnations, Fault> {
        Ok(self.incarnations.clone())
    }

    fn orders_between(
        &self,
        after: Option<OrderId>,
        up_to: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, Fault> {
        Ok(self
            .orders
            .values()
            .filter(|record| after.is_none_or(|after| record.order.id > after))
            .take_while(|record| up_to.is_none_or(|up_to| record.order.id <= up_to))
            .take(limit)
            .map(|record| record.order.clone())
            .collect())
    }

    fn put_product(&mut self, record: &ProductRecord) {
        self.products
            .insert(record.product.id.clone(), record.clone());
    }

    fn put_order(&mut self, record: &OrderRecord) {
        self.orders.insert(record.order.id, record.clone());
    }

    fn put_hold(&mut self, hold: &Hold) {
        self.holds_due.remove(&(hold.expires_at_ms, hold.id));
        if hold.state == HoldState::Held {
            self.holds_due.insert((hold.expires_at_ms, hold.id));
        } else {
            self.holds_finished.insert((hold.changed_at_ms, hold.id));
        }
        self.holds.insert(hold.id, hold.clone());
    }

    fn forget_hold(&mut self, hold: &Hold) {
        self.holds_finished.remove(&(hold.changed_at_ms, hold.id));
        self.holds.remove(&hold.id);
    }

    fn part_of(&self, id: HoldId) -> Result<Option<HoldId>, Fault> {
        Ok(self.parts.get(&id).copied())
    }

    fn put_part(&mut self, hold: &Hold, primary: HoldId) {
        if primary == hold.id {
            self.put_hold(hold);
        } else {
            self.holds.insert(hold.id, hold.clone());
        }
        self.parts.insert(hold.id, primary);
    }

    fn delete_part(&mut self, id: HoldId) {
        self.parts.remove(&id);
    }

    fn put_customer_taken(&mut self, product: &str, customer: &str, taken: u64) {
        let key = (product.to_owned(), customer.to_owned());
        if taken == 0 {
            self.taken.remove(&key);
        } else {
            self.taken.insert(key, taken);
        }
    }

    fn forget_customers_taken(&mut self, product: &str) {
        self.taken.retain(|(of, _), _| of != product);
    }

    fn put_cancellation(&mut self, position: OrderId, cancellation: &Cancellation) {
        self.cancellations.insert(position, cancellation.clone());
    }

    fn put_key_record(&mut self, key: &str, record: &KeyRecord) {
        self.keys.insert(key.to_owned(), record.clone());
    }

    fn delete_key_record(&mut self, key: &str, _recorded_at_ms: u64) {
        self.keys.remove(key);
    }

    fn delete_orders(&mut self, after: Option<OrderId>, up_to: OrderId) {
        let dropped = |id: &OrderId| after.is_none_or(|after| *id > after) && *id <= up_to;
        self.orders.retain(|id, _| !dropped(id));
        self.cancellations.retain(|position, _| !dropped(position));
    }

    fn put_meta(&mut self, meta: &InventoryMeta) {
        self.meta = *meta;
    }

    fn cluster_version(&self) -> Result<u32, Fault> {
        Ok(self.cluster_version.unwrap_or(CLUSTER_VERSION_BASE))
    }

    fn put_cluster_version(&mut self, version: u32) {
        self.cluster_version = Some(version);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tee() -> Op {
        Op::CreateProduct {
            product: "tee".to_owned(),
            name: "Tee shirt".to_owned(),
            price_cents: 1500,
            stock: 5,
        }
    }

    fn restock(quantity: u64) -> Op {
        Op::Restock {
            product: "tee".to_owned(),
            quantity,
        }
    }

    /// The digest is pinned: a record written by one release must match the same request retried
    /// through another, so its encoding may never change. The expected value was computed apart
    /// from this code (SHA-256 over each field as an 8-byte little-endian length and its bytes).
    #[test]
    fn a_bulk_digest_is_pinned() {
        let Op::BulkDigest { items, sha256 } = bulk_digest(&[tee(), restock(2)]) else {
            panic!("a bulk digest");
        };
        let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(items, 2);
        assert_eq!(
            hex,
            "5151d0cb2a70152f52fdb04f81b263251a621126342aef91e6796e0173fa86f1"
        );
    }

    /// Any difference of a field, of the order or of the number of items is another request.
    #[test]
    fn a_bulk_digest_tells_requests_apart() {
        let request = [tee(), restock(2)];
        let digest = bulk_digest(&request);
        assert!(recorded_same_request(
            &digest,
            &Op::Bulk {
                ops: request.to_vec()
            }
        ));
        for other in [
            vec![tee(), restock(3)],
            vec![restock(2), tee()],
            vec![tee()],
            vec![tee(), restock(2), restock(2)],
        ] {
            assert!(!recorded_same_request(&digest, &Op::Bulk { ops: other }));
        }
        // A field's bytes cannot slide into the next one: "tee" + "Tee shirt" is not "teeT" +
        // "ee shirt".
        let shifted = Op::CreateProduct {
            product: "teeT".to_owned(),
            name: "ee shirt".to_owned(),
            price_cents: 1500,
            stock: 5,
        };
        assert_ne!(bulk_digest(&[tee()]), bulk_digest(&[shifted]));
        // A digest answers only a bulk request.
        assert!(!recorded_same_request(&digest, &tee()));
    }
}
