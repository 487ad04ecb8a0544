//! Wire types of flashstock, shared by the nodes, the client library and the tests.
//!
//! This crate holds what crosses a process boundary and nothing else: the commands a proposer puts
//! in one Raft entry ([`Proposal`]), the outcome of each command ([`Outcome`]), the catalog and
//! order records, and the responses of the voters' internal write endpoint. It depends on `serde`
//! only, so the client library never pulls in RocksDB or openraft.
//!
//! Invariants the types encode:
//! - Every command carries an idempotency key ([`Command::key`]): a retried command with the same
//!   key is answered with the first outcome ([`Outcome::Duplicate`]) and never applied twice.
//! - A [`Rejection`] is a committed, deterministic answer: the command was applied as a no-op and
//!   definitely changed nothing. It is kept apart from "outcome unknown", which is never an
//!   `Outcome` at all but an error of the transport that carried the command.
//! - An [`OrderId`] is derived from the log position of the command that placed the order, so it
//!   is unique, ordered like the log, and the same on every replica.

use std::fmt;

use serde::{Deserialize, Serialize};

pub mod cart;
mod checkout_api;
mod commerce;
mod error_code;
pub mod placement;

pub use checkout_api::{
    CartRequest, HoldDetails, HoldLineView, HoldReleased, HoldResponse, HoldStatus, HoldView,
    OrderChanged, OrderLineView, OrderStatus, OrderWithLines, SetLimitRequest,
};
pub use commerce::{
    Hold, HoldId, HoldLine, HoldState, Line, OrderLine, OrderTerms, ProductDetails, ProductTerms,
    CART_LINES_LIMIT, HOLD_TTL_MS_MAX, HOLD_TTL_MS_MIN,
};
pub use error_code::ErrorCode;

/// Longest product id, in bytes.
pub const PRODUCT_ID_LEN_MAX: usize = 64;
/// Longest product name, in bytes.
pub const PRODUCT_NAME_LEN_MAX: usize = 200;
/// Longest customer reference, in bytes.
pub const CUSTOMER_LEN_MAX: usize = 64;
/// Longest idempotency key, in bytes.
pub const KEY_LEN_MAX: usize = 128;
/// Largest stock a product may hold, and largest restock. Far below `u64::MAX`, so that
/// `initial + restocked` and `stock + sold` can never overflow.
pub const STOCK_MAX: u64 = 1_000_000_000_000;
/// Largest price, in cents.
pub const PRICE_CENTS_MAX: u64 = 100_000_000_000;
/// Hard upper bound of one purchase's quantity, enforced by the state machine. Nodes enforce a
/// lower, configured bound at the edge.
pub const PURCHASE_QUANTITY_LIMIT: u32 = 1_000_000;
/// Most commands in one Raft entry. Bounded so that an [`OrderId`] fits `index << 16 | slot`.
pub const COMMANDS_PER_ENTRY_LIMIT: usize = 65_535;

/// A change to the inventory. Applied only by the state machine, in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Add a product to the catalog with its initial stock.
    CreateProduct {
        product: String,
        name: String,
        price_cents: u64,
        stock: u64,
    },
    /// Add items to a product's stock.
    Restock { product: String, quantity: u64 },
    /// Buy `quantity` items of a product, if that many are left.
    Purchase {
        product: String,
        quantity: u32,
        /// The shop's reference of the buyer, if it gave one; kept on the order.
        customer: Option<String>,
        /// The order's capability ([`Order::token`]), drawn at random by the gateway that took
        /// the purchase. Not part of what the request is: a retry under the same key carries a
        /// fresh token and gets the first order, with the first token, back
        /// ([`Op::same_request`]). `None` from callers of the internal API that read orders
        /// there; such an order cannot be read through the public API.
        token: Option<String>,
    },
    /// Every order up to and including `up_to` is in the archive (PostgreSQL): move the archive
    /// cursor there. The orders stay readable until the retention has passed.
    MarkArchived { up_to: OrderId },
    /// Raise the cluster version to `version` (cluster version 2 and later; see
    /// [`CLUSTER_VERSION`]). Proposed by the leader once every member runs a release that
    /// supports it; from the entry that applies it on, every replica may meet what that version
    /// switches on. It never goes down.
    SetClusterVersion { version: u32 },
    /// Creates and restocks ([`Op::CreateProduct`], [`Op::Restock`]) applied in order, each with
    /// its own outcome ([`Outcome::Bulk`]; [`Outcome::BulkDone`] from cluster version 4), under
    /// the command's one idempotency record (cluster version 2 and later): a catalog import's
    /// request. Before cluster version 2, the same
    /// request is one command per item, keyed [`bulk_item_key`]; the state machine answers a
    /// retry across the switch from whichever form applied first.
    Bulk { ops: Vec<Op> },
    /// Hold every line for the customer until `ttl_ms` after the entry's time (cluster version
    /// 2), or hold nothing: the stock moves from available to held at once ([`Hold`]).
    Hold {
        lines: Vec<Line>,
        customer: Option<String>,
        ttl_ms: u64,
        /// The hold's capability, drawn by the gateway; like a purchase's, not part of what the
        /// request is ([`Op::same_request`]).
        token: Option<String>,
    },
    /// The payment succeeded: the held stock becomes an order (cluster version 2). `token` must
    /// be the hold's; `None` is an admin's (the gateway sends it only from the admin API).
    ConfirmHold { hold: HoldId, token: Option<String> },
    /// The payment failed: the held stock goes back to available (cluster version 2).
    ReleaseHold { hold: HoldId, token: Option<String> },
    /// Buy every line of a cart, or none (cluster version 2): one order of several lines.
    Checkout {
        lines: Vec<Line>,
        customer: Option<String>,
        /// The order's capability, as [`Op::Purchase::token`].
        token: Option<String>,
    },
    /// Cancel an order: its stock goes back to available, exactly once (cluster version 2).
    /// `token` must be the order's; `None` is an admin's. `within_ms`: refused once the order is
    /// older than that (the gateway's configured window); `None` (an admin): no window.
    CancelOrder {
        order: OrderId,
        token: Option<String>,
        within_ms: Option<u64>,
    },
    /// Set, change or remove a product's limit per customer (cluster version 2).
    SetLimit {
        product: String,
        limit_per_customer: Option<u32>,
    },
    /// [`Op::CreateProduct`] with a limit per customer from the start (cluster version 2).
    CreateLimitedProduct {
        product: String,
        name: String,
        price_cents: u64,
        stock: u64,
        limit_per_customer: u32,
    },
    /// Hold every line, or nothing, as one part of a cart whose products lie in several Raft
    /// groups (cluster version 3; see `docs/ARCHITECTURE.md`, "Carts across groups"). The
    /// lines are this group's. `primary: None` makes the cart's primary part: its fate is the
    /// cart's decision, and it expires like a hold `ttl_ms` after the entry's time. `Some(P)`
    /// makes a secondary part, which never expires on its own: it waits for the primary `P`
    /// (in the group `P` names) to be confirmed or to end, and is then settled the same way
    /// ([`Op::SettlePart`]). Neither can be confirmed or released through the hold routes.
    HoldPart {
        lines: Vec<Line>,
        customer: Option<String>,
        ttl_ms: u64,
        /// The cart's capability, one for every part; not part of what the request is.
        token: Option<String>,
        primary: Option<HoldId>,
    },
    /// Settle a part of a cart across groups (cluster version 3): `commit` buys what it holds
    /// (an order), otherwise its stock goes back. Committing the primary part is the cart's
    /// decision, refused `hold_expired` once its deadline has passed; a secondary part is
    /// settled only as its primary was, by the gateway that placed the cart or by its group's
    /// leader ([`Op::HoldPart`]).
    SettlePart { hold: HoldId, commit: bool },
    /// What the idempotency record of an [`Op::Bulk`] keeps of it from cluster version 5: how
    /// many items it held and a SHA-256 of them, enough to tell a retry of the request from a
    /// reuse of its key. Before, the record held the whole request, a second copy of the
    /// entry's products on every replica (about 90 bytes a product). Never proposed: only ever
    /// found in a record, and [`validate_command`] refuses it.
    BulkDigest { items: u32, sha256: [u8; 32] },
}

impl Op {
    /// True for the state machine's internal commands, which only voters propose
    /// ([`Op::MarkArchived`]); false for the public kinds a gateway may forward (purchases, and
    /// the admin API's product creation and restock). Internal commands keep their idempotency
    /// records apart from public ones, so no client key can collide with them, and a gateway's
    /// credential cannot carry them.
    pub fn is_internal(&self) -> bool {
        match self {
            Op::CreateProduct { .. }
            | Op::Restock { .. }
            | Op::Purchase { .. }
            | Op::Bulk { .. }
            | Op::Hold { .. }
            | Op::ConfirmHold { .. }
            | Op::ReleaseHold { .. }
            | Op::Checkout { .. }
            | Op::CancelOrder { .. }
            | Op::SetLimit { .. }
            | Op::CreateLimitedProduct { .. }
            | Op::HoldPart { .. }
            | Op::SettlePart { .. }
            | Op::BulkDigest { .. } => false,
            Op::MarkArchived { .. } | Op::SetClusterVersion { .. } => true,
        }
    }

    /// The least cluster version at which a replica may meet this kind: an older release cannot
    /// even decode a kind introduced after it, so a correct node proposes it only once the
    /// cluster runs that version (the switch itself excepted, see [`Op::SetClusterVersion`]).
    pub fn since_cluster_version(&self) -> u32 {
        match self {
            Op::CreateProduct { .. }
            | Op::Restock { .. }
            | Op::Purchase { .. }
            | Op::MarkArchived { .. } => CLUSTER_VERSION_BASE,
            Op::SetClusterVersion { .. }
            | Op::Bulk { .. }
            | Op::Hold { .. }
            | Op::ConfirmHold { .. }
            | Op::ReleaseHold { .. }
            | Op::Checkout { .. }
            | Op::CancelOrder { .. }
            | Op::SetLimit { .. }
            | Op::CreateLimitedProduct { .. } => 2,
            Op::HoldPart { .. } | Op::SettlePart { .. } => cart::CART_CLUSTER_VERSION,
            Op::BulkDigest { .. } => 5,
        }
    }

    /// Whether `self` asks for the same thing as `other`: equal but for the capability a
    /// purchase, a hold or a checkout draws afresh on each attempt (their `token`). A key
    /// recorded for one request answers a retry of the same request, and refuses any other as a
    /// reused key.
    pub fn same_request(&self, other: &Op) -> bool {
        fn without_token(op: &Op) -> std::borrow::Cow<'_, Op> {
            let mut owned = match op {
                Op::Purchase { token: Some(_), .. }
                | Op::Hold { token: Some(_), .. }
                | Op::Checkout { token: Some(_), .. }
                | Op::HoldPart { token: Some(_), .. } => op.clone(),
                other => return std::borrow::Cow::Borrowed(other),
            };
            if let Op::Purchase { token, .. }
            | Op::Hold { token, .. }
            | Op::Checkout { token, .. }
            | Op::HoldPart { token, .. } = &mut owned
            {
                *token = None;
            }
            std::borrow::Cow::Owned(owned)
        }
        without_token(self) == without_token(other)
    }

    /// The kind's name, for logs and refusals: `purchase`, `mark_archived`, ...
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateProduct { .. } => "create_product",
            Op::Restock { .. } => "restock",
            Op::Purchase { .. } => "purchase",
            Op::MarkArchived { .. } => "mark_archived",
            Op::SetClusterVersion { .. } => "set_cluster_version",
            Op::Bulk { .. } => "bulk",
            Op::Hold { .. } => "hold",
            Op::ConfirmHold { .. } => "confirm_hold",
            Op::ReleaseHold { .. } => "release_hold",
            Op::Checkout { .. } => "checkout",
            Op::CancelOrder { .. } => "cancel_order",
            Op::SetLimit { .. } => "set_limit",
            Op::CreateLimitedProduct { .. } => "create_limited_product",
            Op::HoldPart { .. } => "hold_part",
            Op::SettlePart { .. } => "settle_part",
            Op::BulkDigest { .. } => "bulk_digest",
        }
    }
}

/// One command of a proposal: an operation and the idempotency key that makes retrying it safe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Chosen by the client; the same key with the same op returns the first outcome, the same key
    /// with another op is rejected with [`Rejection::KeyReused`]. Keys of internal commands
    /// ([`Op::is_internal`]) are a namespace of their own: `archive-7` proposed by the archiver
    /// and `archive-7` sent by a client are two different keys.
    pub key: String,
    pub op: Op,
}

/// The payload of one Raft log entry: commands proposed together, applied in order.
///
/// Time comes from the proposer and travels in the log, so applying an entry never reads a clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposer's wall clock, milliseconds since the Unix epoch; stamped on orders.
    pub proposed_at_ms: u64,
    /// Idempotency records written before this time may be forgotten. The state machine never
    /// lets this go backwards.
    pub forget_keys_before_ms: u64,
    /// Archived orders placed before this time may be dropped from the state machine. The state
    /// machine never lets this go backwards, and never drops an order the archive cursor has not
    /// passed.
    pub drop_archived_before_ms: u64,
    pub commands: Vec<Command>,
}

/// What applying one command did. Every variant is a committed, final answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The purchase is confirmed: the order exists and the stock was decremented.
    Purchased(Order),
    ProductCreated(Product),
    Restocked(Product),
    /// The archive cursor is at `up_to` (it never moves back).
    Archived {
        up_to: OrderId,
    },
    /// The cluster runs `version` (it never goes down).
    ClusterVersion {
        version: u32,
    },
    /// One outcome per item of an [`Op::Bulk`], in order: each created, restocked or rejected
    /// on its own (an item refused does not undo another), or, for an item applied before under
    /// its own key ([`bulk_item_key`]), that first outcome as a duplicate.
    Bulk(Vec<Outcome>),
    /// Applied as a no-op: nothing changed.
    Rejected(Rejection),
    /// The key was seen before: this is the first command's outcome, not a second application.
    Duplicate(Box<Outcome>),
    /// The stock of every line is held ([`Op::Hold`]).
    Held(Hold),
    /// The hold is released and its stock available again ([`Op::ReleaseHold`]).
    Released(Hold),
    /// An order of one or more lines is placed: from a cart ([`Op::Checkout`]) or a hold
    /// ([`Op::ConfirmHold`]).
    Placed {
        order: Order,
        terms: OrderTerms,
    },
    /// The order is cancelled and its stock available again ([`Op::CancelOrder`]).
    Cancelled {
        order: Order,
        terms: OrderTerms,
    },
    /// A product and its terms (cluster version 2): created with a limit
    /// ([`Op::CreateLimitedProduct`], `created`), its limit changed ([`Op::SetLimit`]), or
    /// restocked while it has terms (stock held, a limit), where [`Outcome::Restocked`] could
    /// not show them. A product without terms is restocked as [`Outcome::Restocked`], as in the
    /// release before.
    ProductWithTerms {
        created: bool,
        product: Product,
        terms: ProductTerms,
    },
    /// One outcome per item of an [`Op::Bulk`] from cluster version 4 on, in order, as
    /// [`Outcome::Bulk`] but saying only what each item did: [`Outcome::Bulk`] held every
    /// created or restocked product, a second copy of what the state holds, in the request's
    /// idempotency record on every replica and again in the answer to the gateway.
    BulkDone(Vec<ItemOutcome>),
}

/// What one item of an [`Op::Bulk`] did ([`Outcome::BulkDone`], cluster version 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemOutcome {
    Created,
    Restocked,
    /// Refused on its own; nothing changed for this item.
    Rejected(Rejection),
    /// Applied before under the item's own key ([`bulk_item_key`]: the request was sent item
    /// by item before cluster version 2): what it did then.
    Duplicate(Box<ItemOutcome>),
}

impl ItemOutcome {
    /// What a create's or a restock's `outcome` did. No other kind answers a bulk item; one
    /// would be a refusal ([`Rejection::Invalid`]), as a bulk command refuses other kinds.
    pub fn of(outcome: Outcome) -> ItemOutcome {
        match outcome {
            Outcome::ProductCreated(_) | Outcome::ProductWithTerms { created: true, .. } => {
                ItemOutcome::Created
            }
            Outcome::Restocked(_) | Outcome::ProductWithTerms { created: false, .. } => {
                ItemOutcome::Restocked
            }
            Outcome::Rejected(rejection) => ItemOutcome::Rejected(rejection),
            Outcome::Duplicate(first) => ItemOutcome::Duplicate(Box::new(ItemOutcome::of(*first))),
            _ => ItemOutcome::Rejected(Rejection::Invalid {
                reason: "a bulk item is a create or a restock".to_owned(),
            }),
        }
    }
}

impl Outcome {
    /// The outcome, with a [`Outcome::Duplicate`] wrapper removed.
    pub fn first(&self) -> &Outcome {
        match self {
            Outcome::Duplicate(first) => first.first(),
            other => other,
        }
    }
}

/// Why a command was applied as a no-op. Each has a stable machine-readable [`Rejection::code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    InsufficientStock {
        product: String,
        requested: u32,
        available: u64,
    },
    UnknownProduct {
        product: String,
    },
    ProductExists {
        product: String,
    },
    /// The idempotency key was first used for a different command.
    KeyReused {
        key: String,
    },
    /// The command breaks a rule that does not depend on the state (bad id, zero quantity, ...).
    Invalid {
        reason: String,
    },
    /// No such hold, or not for this token (which cannot tell the two apart).
    UnknownHold {
        hold: HoldId,
    },
    /// The hold expired before this confirmation or release: its stock went back.
    HoldExpired {
        hold: HoldId,
    },
    /// The hold was confirmed or released before: nothing more to do with it.
    HoldFinished {
        hold: HoldId,
        state: HoldState,
    },
    /// The customer would have more of the product than its limit: `taken` held or bought
    /// already, `requested` more.
    LimitReached {
        product: String,
        limit: u32,
        taken: u64,
        requested: u32,
    },
    /// The product has a limit per customer, and the command names no customer.
    CustomerRequired {
        product: String,
    },
    /// No such order in the state (never placed, or dropped after its retention), or not for
    /// this token.
    OrderNotFound {
        order: OrderId,
    },
    /// The order was cancelled before.
    AlreadyCancelled {
        order: OrderId,
    },
    /// The order is older than the cancellation window.
    CancelWindowPassed {
        order: OrderId,
        within_ms: u64,
    },
}

impl Rejection {
    /// A stable, machine-readable code for the rejection.
    pub fn code(&self) -> ErrorCode {
        match self {
            Rejection::InsufficientStock { .. } => ErrorCode::InsufficientStock,
            Rejection::UnknownProduct { .. } => ErrorCode::UnknownProduct,
            Rejection::ProductExists { .. } => ErrorCode::ProductExists,
            Rejection::KeyReused { .. } => ErrorCode::IdempotencyKeyReused,
            Rejection::Invalid { .. } => ErrorCode::InvalidRequest,
            Rejection::UnknownHold { .. } => ErrorCode::UnknownHold,
            Rejection::HoldExpired { .. } => ErrorCode::HoldExpired,
            Rejection::HoldFinished { .. } => ErrorCode::HoldFinished,
            Rejection::LimitReached { .. } => ErrorCode::LimitReached,
            Rejection::CustomerRequired { .. } => ErrorCode::CustomerRequired,
            Rejection::OrderNotFound { .. } => ErrorCode::UnknownOrder,
            Rejection::AlreadyCancelled { .. } => ErrorCode::AlreadyCancelled,
            Rejection::CancelWindowPassed { .. } => ErrorCode::CancelWindowPassed,
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::InsufficientStock {
                product,
                requested,
                available,
            } => write!(
                f,
                "product {product:?} has {available} left, {requested} requested"
            ),
            Rejection::UnknownProduct { product } => write!(f, "no product {product:?}"),
            Rejection::ProductExists { product } => write!(f, "product {product:?} already exists"),
            Rejection::KeyReused { key } => write!(
                f,
                "idempotency key {key:?} was already used for a different request"
            ),
            Rejection::Invalid { reason } => write!(f, "invalid request: {reason}"),
            Rejection::UnknownHold { hold } => write!(f, "no hold {hold} for this token"),
            Rejection::HoldExpired { hold } => {
                write!(f, "hold {hold} expired; its stock is available again")
            }
            Rejection::HoldFinished { hold, state } => {
                write!(f, "hold {hold} is {} already", state.as_str())
            }
            Rejection::LimitReached {
                product,
                limit,
                taken,
                requested,
            } => write!(
                f,
                "product {product:?} is limited to {limit} per customer; this customer has \
                 {taken}, {requested} more requested"
            ),
            Rejection::CustomerRequired { product } => write!(
                f,
                "product {product:?} has a limit per customer: name the customer"
            ),
            Rejection::OrderNotFound { order } => write!(f, "no order {order} for this token"),
            Rejection::AlreadyCancelled { order } => {
                write!(f, "order {order} is cancelled already")
            }
            Rejection::CancelWindowPassed { order, within_ms } => write!(
                f,
                "order {order} is older than the cancellation window ({} s)",
                within_ms / 1000
            ),
        }
    }
}

/// A product and its stock counters: `initial_stock + restocked == stock + held + sold`, where
/// `held` is in its [`ProductTerms`] (0 for a product no hold touched). The layout is the first
/// release's, byte for byte in bincode; what checkout adds is in the terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub price_cents: u64,
    /// Items available: to sell, or to hold.
    pub stock: u64,
    pub initial_stock: u64,
    pub restocked: u64,
    /// Items sold by orders not cancelled.
    pub sold: u64,
}

impl Product {
    /// Whether the conservation law holds for this record with nothing held
    /// ([`ProductTerms::conserves`] and [`ProductDetails::is_conserved`] count what is held).
    pub fn is_conserved(&self) -> bool {
        self.initial_stock.checked_add(self.restocked) == self.stock.checked_add(self.sold)
    }
}

/// The id of a confirmed order: the incarnation of the state that placed it, its entry's log
/// index and its slot within the entry, as `incarnation << 56 | log_index << 16 | slot`.
///
/// A state restored from a backup starts a new incarnation ([`INCARNATION_MAX`] at most), so
/// the orders it places never take the ids of orders placed after the backup by the state it
/// replaces, whose log reached the same indexes. The first incarnation is 0: its ids are the
/// log index and slot alone. Ids are below 2^63, so they fit PostgreSQL's `bigint`; above 2^53
/// (from incarnation 1 on), JavaScript numbers cannot hold them exactly, and the storefront
/// reads them as text.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct OrderId(pub u64);

/// The greatest incarnation: 7 bits, so that every id fits a signed 64-bit integer.
pub const INCARNATION_MAX: u8 = 127;
/// Log indexes of an order id: 40 bits, about 10^12 entries per incarnation.
pub const ORDER_LOG_INDEX_MAX: u64 = (1 << 40) - 1;

impl OrderId {
    /// The order placed by command `slot` of the entry at `log_index`, in incarnation 0.
    pub fn new(log_index: u64, slot: u16) -> OrderId {
        OrderId::placed(0, log_index, slot)
    }

    /// The order placed by command `slot` of the entry at `log_index` of `incarnation`.
    pub fn placed(incarnation: u8, log_index: u64, slot: u16) -> OrderId {
        debug_assert!(incarnation <= INCARNATION_MAX && log_index <= ORDER_LOG_INDEX_MAX);
        OrderId(
            u64::from(incarnation & INCARNATION_MAX) << 56
                | (log_index & ORDER_LOG_INDEX_MAX) << 16
                | u64::from(slot),
        )
    }

    pub fn incarnation(self) -> u8 {
        (self.0 >> 56) as u8 & INCARNATION_MAX
    }

    pub fn log_index(self) -> u64 {
        (self.0 >> 16) & ORDER_LOG_INDEX_MAX
    }

    pub fn slot(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// The order placed by command `slot` of the entry at `log_index` of `incarnation` in
    /// `group`, in a cluster of several groups: the group takes the slot field's top
    /// [`placement::GROUP_BITS`] bits, and `slot` is below [`placement::GROUP_SLOTS`]. Group 0's
    /// ids are those of [`OrderId::placed`].
    pub fn placed_in(group: u16, incarnation: u8, log_index: u64, slot: u16) -> OrderId {
        debug_assert!(group < placement::GROUPS_MAX && usize::from(slot) < placement::GROUP_SLOTS);
        let group = group & (placement::GROUPS_MAX - 1);
        let slot = slot & (placement::GROUP_SLOTS as u16 - 1);
        OrderId::placed(
            incarnation,
            log_index,
            group << placement::GROUP_SLOT_BITS | slot,
        )
    }

    /// The group that placed the order, in a cluster of several groups. Meaningless in a
    /// cluster of one group whose entries held more than [`placement::GROUP_SLOTS`] commands
    /// (`limits.commands_per_entry_max` above its default), where the slot fills the field.
    pub fn group(self) -> u16 {
        self.slot() >> placement::GROUP_SLOT_BITS
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A confirmed purchase, as kept by the state machine until it is archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    /// The idempotency key of the purchase that placed it.
    pub key: String,
    pub product: String,
    pub quantity: u32,
    /// The buyer's reference, if the purchase gave one.
    pub customer: Option<String>,
    /// Unit price when the order was placed.
    pub price_cents: u64,
    /// Stock left right after this purchase.
    pub remaining: u64,
    /// The proposer's time of the entry that placed the order.
    pub placed_at_ms: u64,
    /// The capability to read the order through the public API: [`ORDER_TOKEN_LEN`] lowercase
    /// hex digits (128 random bits) the purchase answer returns. `None`: the purchase came
    /// through the internal API without one, and the public API shows the order to nobody.
    #[serde(default)]
    pub token: Option<String>,
}

/// Checks that hold for a command whatever the state is. Used by the state machine (which must
/// stay safe against any entry) and by nodes at the edge (to answer early).
pub fn validate_command(command: &Command) -> Result<(), String> {
    validate_key(&command.key)?;
    validate_op(&command.op)
}

/// The checks of [`validate_command`] on the operation alone.
fn validate_op(op: &Op) -> Result<(), String> {
    match op {
        Op::CreateProduct {
            product,
            name,
            price_cents,
            stock,
        } => {
            validate_product_id(product)?;
            if name.trim().is_empty() || name.len() > PRODUCT_NAME_LEN_MAX {
                return Err(format!(
                    "name must be 1 to {PRODUCT_NAME_LEN_MAX} bytes and not blank"
                ));
            }
            if name.chars().any(char::is_control) {
                return Err("name must not contain control characters".into());
            }
            if *price_cents > PRICE_CENTS_MAX {
                return Err(format!("price_cents must be at most {PRICE_CENTS_MAX}"));
            }
            if *stock > STOCK_MAX {
                return Err(format!("stock must be at most {STOCK_MAX}"));
            }
        }
        Op::Restock { product, quantity } => {
            validate_product_id(product)?;
            if *quantity == 0 || *quantity > STOCK_MAX {
                return Err(format!("quantity must be 1 to {STOCK_MAX}"));
            }
        }
        Op::Purchase {
            product,
            quantity,
            customer,
            token,
        } => {
            validate_product_id(product)?;
            if *quantity == 0 || *quantity > PURCHASE_QUANTITY_LIMIT {
                return Err(format!("quantity must be 1 to {PURCHASE_QUANTITY_LIMIT}"));
            }
            if let Some(customer) = customer {
                validate_customer(customer)?;
            }
            if let Some(token) = token {
                validate_order_token(token)?;
            }
        }
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
            validate_lines(lines)?;
            validate_capability(customer, token)?;
            if !(HOLD_TTL_MS_MIN..=HOLD_TTL_MS_MAX).contains(ttl_ms) {
                return Err(format!(
                    "a hold lasts {HOLD_TTL_MS_MIN} to {HOLD_TTL_MS_MAX} ms, not {ttl_ms}"
                ));
            }
        }
        Op::ConfirmHold { token, .. }
        | Op::ReleaseHold { token, .. }
        | Op::CancelOrder { token, .. } => validate_capability(&None, token)?,
        Op::Checkout {
            lines,
            customer,
            token,
        } => {
            validate_lines(lines)?;
            validate_capability(customer, token)?;
        }
        Op::SetLimit {
            product,
            limit_per_customer,
        } => {
            validate_product_id(product)?;
            if let Some(limit) = limit_per_customer {
                validate_limit(*limit)?;
            }
        }
        Op::CreateLimitedProduct {
            product,
            name,
            price_cents,
            stock,
            limit_per_customer,
        } => {
            validate_op(&Op::CreateProduct {
                product: product.clone(),
                name: name.clone(),
                price_cents: *price_cents,
                stock: *stock,
            })?;
            validate_limit(*limit_per_customer)?;
        }
        Op::MarkArchived { .. } | Op::SettlePart { .. } => {}
        Op::BulkDigest { .. } => {
            return Err("a bulk digest is what a record keeps of a request, not a command".into())
        }
        Op::SetClusterVersion { version } => {
            if *version < 2 {
                return Err(format!("cluster version {version} is not one to switch to"));
            }
        }
        Op::Bulk { ops } => {
            if ops.is_empty() || ops.len() > COMMANDS_PER_ENTRY_LIMIT {
                return Err(format!(
                    "a bulk command holds 1 to {COMMANDS_PER_ENTRY_LIMIT} items, not {}",
                    ops.len()
                ));
            }
            for (index, op) in ops.iter().enumerate() {
                match op {
                    Op::CreateProduct { .. } | Op::Restock { .. } => validate_op(op)
                        .map_err(|message| format!("bulk item {index}: {message}"))?,
                    other => {
                        return Err(format!(
                            "bulk item {index}: a bulk command holds creates and restocks, not \
                             {}",
                            other.kind()
                        ))
                    }
                }
            }
        }
    }
    Ok(())
}

/// The lines of a cart or a hold: 1 to [`CART_LINES_LIMIT`], each of a distinct product, each
/// quantity 1 to [`PURCHASE_QUANTITY_LIMIT`].
pub fn validate_lines(lines: &[Line]) -> Result<(), String> {
    if lines.is_empty() || lines.len() > CART_LINES_LIMIT {
        return Err(format!(
            "a cart holds 1 to {CART_LINES_LIMIT} lines, not {}",
            lines.len()
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (index, line) in lines.iter().enumerate() {
        validate_product_id(&line.product).map_err(|message| format!("line {index}: {message}"))?;
        if line.quantity == 0 || line.quantity > PURCHASE_QUANTITY_LIMIT {
            return Err(format!(
                "line {index}: quantity must be 1 to {PURCHASE_QUANTITY_LIMIT}"
            ));
        }
        if !seen.insert(line.product.as_str()) {
            return Err(format!(
                "line {index}: product {:?} is on an earlier line; one line per product",
                line.product
            ));
        }
    }
    Ok(())
}

/// A limit per customer is 1 to [`PURCHASE_QUANTITY_LIMIT`] items.
pub fn validate_limit(limit: u32) -> Result<(), String> {
    if limit == 0 || limit > PURCHASE_QUANTITY_LIMIT {
        return Err(format!(
            "limit_per_customer must be 1 to {PURCHASE_QUANTITY_LIMIT}"
        ));
    }
    Ok(())
}

fn validate_capability(customer: &Option<String>, token: &Option<String>) -> Result<(), String> {
    if let Some(customer) = customer {
        validate_customer(customer)?;
    }
    if let Some(token) = token {
        validate_order_token(token)?;
    }
    Ok(())
}

/// A product id is 1 to 64 bytes of ASCII letters, digits, `-` and `_`.
pub fn validate_product_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= PRODUCT_ID_LEN_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "product id must be 1 to {PRODUCT_ID_LEN_MAX} ASCII letters, digits, '-' or '_'"
        ))
    }
}

/// A customer reference is 1 to 64 bytes of printable ASCII.
pub fn validate_customer(customer: &str) -> Result<(), String> {
    let ok = !customer.is_empty()
        && customer.len() <= CUSTOMER_LEN_MAX
        && customer.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "customer must be 1 to {CUSTOMER_LEN_MAX} printable ASCII characters without spaces"
        ))
    }
}

/// Length of an order token: lowercase hex digits of 128 random bits.
pub const ORDER_TOKEN_LEN: usize = 32;

/// An order token is [`ORDER_TOKEN_LEN`] lowercase hex digits.
pub fn validate_order_token(token: &str) -> Result<(), String> {
    let ok = token.len() == ORDER_TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "an order token is {ORDER_TOKEN_LEN} lowercase hex digits"
        ))
    }
}

/// An idempotency key is 1 to 128 bytes of printable ASCII.
pub fn validate_key(key: &str) -> Result<(), String> {
    let ok =
        !key.is_empty() && key.len() <= KEY_LEN_MAX && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "idempotency key must be 1 to {KEY_LEN_MAX} printable ASCII characters without spaces"
        ))
    }
}

/// The answer of a voter's internal write endpoint to a [`Proposal`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteResponse {
    /// Committed on a majority and applied; one outcome per command, in order.
    Applied {
        log_index: u64,
        outcomes: Vec<Outcome>,
    },
    /// This node is not the leader and proposed nothing: definitely not applied. Retry at the
    /// leader, if one is known.
    NotLeader { leader: Option<NodeAddr> },
    /// Refused before proposing (bad batch, overload): definitely not applied.
    Refused { code: ErrorCode, message: String },
    /// Proposed, but the node cannot tell whether it committed (it shut down or timed out). The
    /// client must retry with the same keys to learn the outcome.
    Unknown { message: String },
}

/// A node's id and the address its internal API listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    pub id: u64,
    pub addr: String,
}

/// The body of a voter's internal write endpoint: commands to propose as one entry. The leader
/// stamps the time and the idempotency horizon when it proposes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteRequest {
    pub commands: Vec<Command>,
}

/// The answer of a voter's `POST /internal/read-index`: the index a linearizable read must wait
/// for, confirmed by a quorum of the current leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadIndexResponse {
    Index(u64),
    NotLeader { leader: Option<NodeAddr> },
    Unavailable { message: String },
}

/// A voter's internal read (`/internal/products`, `/internal/orders`, `/internal/holds`):
/// records and the applied index of the replica they were read from, which they are at least as
/// fresh as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    pub applied_index: u64,
    pub items: Vec<T>,
}

/// A product as the internal read (`/internal/products`) serves it: every field of [`Product`],
/// at the top level as before checkout, and what checkout adds in `terms` (held, limit,
/// cancelled). A reader of the release before reads it as a [`Product`] (it ignores `terms`);
/// a node of the release before sends no `terms`, read as empty. JSON only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductWithTerms {
    #[serde(flatten)]
    pub product: Product,
    #[serde(default)]
    pub terms: ProductTerms,
}

impl ProductWithTerms {
    /// The product as the public API shows it.
    pub fn details(&self) -> ProductDetails {
        ProductDetails::new(self.product.clone(), self.terms)
    }
}

/// An order as the internal read (`/internal/orders`) serves it: every field of [`Order`] at
/// the top level, as before checkout, and its lines, hold and cancellation in `terms` (empty for
/// a single purchase never cancelled). Compatible both ways like [`ProductWithTerms`]. JSON
/// only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderWithTerms {
    #[serde(flatten)]
    pub order: Order,
    #[serde(default)]
    pub terms: OrderTerms,
}

impl OrderWithTerms {
    /// Every line: the terms' lines, or the one line of the order's own fields.
    pub fn lines(&self) -> Vec<OrderLine> {
        self.terms.lines_of(&self.order)
    }

    pub fn is_cancelled(&self) -> bool {
        self.terms.cancelled_at_ms.is_some()
    }
}

/// Header of the internal wire version a request speaks, on every call to a node's internal
/// listener (Raft RPCs, the writes gateways forward, the admin API) and the replies' version in
/// their answers. A request without it is version 1 (sent before the header existed).
pub const WIRE_VERSION_HEADER: &str = "x-flashstock-wire";
/// The internal wire version this release speaks: the routes of the internal listener and the
/// encoding of their bodies (bincode of this crate's and openraft's types). Raise it when any
/// of them changes; a node refuses a request of a version outside
/// [`WIRE_VERSION_MIN`]`..=`[`WIRE_VERSION`] with `unsupported_version`, naming both.
///
/// - 1: the first release.
/// - 2: a call may name its Raft group ([`GROUP_HEADER`]; on the binary wire, a field of every
///   call frame). A call for group 0 means what it meant in version 1.
pub const WIRE_VERSION: u32 = 2;
/// The oldest internal wire version this release still accepts.
pub const WIRE_VERSION_MIN: u32 = 1;
/// The version an HTTP request says it speaks unless it needs a later one: 1, whose meaning
/// every later version keeps, so that a release before a version's change still takes the
/// request. A request that names a group other than 0 says [`WIRE_VERSION_GROUPS`], so that a
/// release that knows no groups refuses it rather than take it for group 0.
pub const WIRE_VERSION_BASE: u32 = 1;
/// The first internal wire version in which a call names its Raft group.
pub const WIRE_VERSION_GROUPS: u32 = 2;
/// Header naming the Raft group an internal call is for (Raft's RPCs, forwarded writes,
/// read-index calls), as a decimal number. Absent: group 0, the only group of a one-group
/// cluster. Sent only for another group, with [`WIRE_VERSION_HEADER`] at least
/// [`WIRE_VERSION_GROUPS`].
pub const GROUP_HEADER: &str = "x-flashstock-group";

/// The cluster version every cluster starts at: what the first release wrote into the log and
/// the state.
pub const CLUSTER_VERSION_BASE: u32 = 1;
/// The newest cluster version this release runs. A cluster version says what may go into the
/// log and the state (command kinds, record layouts); it is replicated (`m/cluster_version`),
/// raised by a command in the log ([`Op::SetClusterVersion`]) only once every member runs a
/// release that supports it, and never lowered. Until then a newer release writes what the
/// older one reads.
///
/// - 1: the first release.
/// - 2: [`Op::SetClusterVersion`] exists; [`Op::Bulk`]: a bulk request under one idempotency
///   record, instead of one per item; the state is in format 2 (`m/cluster_version`, and those
///   commands' records).
/// - 3: carts across Raft groups, [`Op::HoldPart`] and [`Op::SettlePart`], and the state's
///   index of parts not settled yet (`cp/`).
/// - 4: [`Op::Bulk`] answers [`Outcome::BulkDone`] (what each item did) instead of
///   [`Outcome::Bulk`] (each item's product).
/// - 5: the idempotency record of an [`Op::Bulk`] keeps [`Op::BulkDigest`] (a SHA-256 of its
///   items) instead of the request.
pub const CLUSTER_VERSION: u32 = 5;

/// Header that carries the caller's credential (a voter's, a gateway's or an operator's secret)
/// on internal and admin calls.
pub const SECRET_HEADER: &str = "x-flashstock-secret";

/// A node's view of the cluster, served by `GET /admin/status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    /// The configured role.
    pub role: NodeRole,
    /// The Raft state.
    pub state: RaftState,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    /// The last index this node knows committed (the leader knows first; others learn it with
    /// the next append).
    #[serde(default)]
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Voter ids of the current membership.
    pub voters: Vec<u64>,
    /// Every member, voter or learner, with its address.
    pub members: Vec<NodeAddr>,
    /// On the leader: each follower's last replicated index and how far it lags behind the
    /// leader's last log index.
    pub replication: Vec<PeerReplication>,
    /// On the leader: milliseconds since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// The order archive as this node sees it; `None` on gateways.
    #[serde(default)]
    pub archive: Option<ArchiveStatus>,
    /// The membership this node follows: one voter set, or two while a change is in its joint
    /// phase, and, on the leader, which members an uncommitted change waits for.
    #[serde(default)]
    pub membership: Option<MembershipStatus>,
    /// Why this node's Raft core stopped, if it did. Such a node answers nothing useful and exits
    /// with a non-zero status moments later.
    #[serde(default)]
    pub fatal: Option<String>,
    /// When this node's process started (milliseconds since the Unix epoch): a restart changes
    /// it, which is how a rolling restart sees that a node came back.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    /// The release this node runs, and the formats it speaks and writes.
    #[serde(default)]
    pub release: Option<ReleaseStatus>,
    /// What this node's store holds on disk, by part.
    #[serde(default)]
    pub storage: Option<StorageStatus>,
    /// The cluster version in this node's applied state; absent from releases before cluster
    /// versions (the cluster then runs 1).
    #[serde(default)]
    pub cluster_version: Option<u32>,
    /// The Raft group this status is of (its Raft fields, membership, storage and archive):
    /// group 0 unless the request named another ([`GROUP_HEADER`]). Absent from releases before
    /// groups, which run group 0 alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<u16>,
    /// How many Raft groups this node runs (`cluster.groups`); absent from releases before
    /// groups (one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<u16>,
}

impl NodeStatus {
    /// How many Raft groups the node runs (1 from a release before groups).
    pub fn group_count(&self) -> u16 {
        self.groups.unwrap_or(1)
    }

    /// The cluster version in the node's applied state ([`CLUSTER_VERSION_BASE`] from a release
    /// before cluster versions).
    pub fn applied_cluster_version(&self) -> u32 {
        self.cluster_version.unwrap_or(CLUSTER_VERSION_BASE)
    }

    /// The newest cluster version the node's release runs ([`CLUSTER_VERSION_BASE`] from a
    /// release before cluster versions).
    pub fn supported_cluster_version(&self) -> u32 {
        self.release
            .as_ref()
            .map_or(CLUSTER_VERSION_BASE, |release| release.cluster_version_max)
    }
}

/// The release a node runs and the versions of what it exchanges and stores, in its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseStatus {
    /// The package version of the node's binary.
    pub version: String,
    /// The internal wire versions it accepts, `wire_min..=wire` (it sends `wire`).
    pub wire: u32,
    pub wire_min: u32,
    /// The state format it writes and reads (its store and snapshots).
    pub state_format: u32,
    /// The newest cluster version it runs ([`CLUSTER_VERSION`]); absent from releases before
    /// cluster versions, which run 1.
    #[serde(default = "cluster_version_base")]
    pub cluster_version_max: u32,
}

fn cluster_version_base() -> u32 {
    CLUSTER_VERSION_BASE
}

impl ReleaseStatus {
    /// This binary's.
    pub fn current(state_format: u32) -> ReleaseStatus {
        ReleaseStatus {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            wire: WIRE_VERSION,
            wire_min: WIRE_VERSION_MIN,
            state_format,
            cluster_version_max: CLUSTER_VERSION,
        }
    }
}

impl std::fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (wire {}, state format {}, cluster version up to {})",
            self.version, self.wire, self.state_format, self.cluster_version_max
        )
    }
}

/// Bytes of a node's store by part: RocksDB's table files and memtables of each column family,
/// its write-ahead log files, and the snapshot files beside them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageStatus {
    /// The Raft log: entries not yet purged.
    pub log_bytes: u64,
    /// The state machine: products, orders held, idempotency records.
    pub state_bytes: u64,
    /// The snapshot files (the current one, and for a moment one being built, received or
    /// ingested) and Raft's own records (vote, commit index, the snapshot's record).
    pub snapshot_bytes: u64,
    /// Write-ahead log files not yet recycled.
    pub wal_bytes: u64,
}

impl StorageStatus {
    pub fn total_bytes(&self) -> u64 {
        self.log_bytes + self.state_bytes + self.snapshot_bytes + self.wal_bytes
    }
}

/// A node's view of the membership, in `GET /admin/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipStatus {
    /// The log index of the membership entry in force on this node.
    pub log_index: Option<u64>,
    /// Whether that entry is committed. A change is in progress until it is: no other change is
    /// accepted meanwhile.
    pub committed: bool,
    /// The voter sets: one, or two (old and new) in the joint phase of a change, when every
    /// commit needs a majority of each.
    pub configs: Vec<Vec<u64>>,
    /// Members that receive the log without voting.
    pub learners: Vec<u64>,
    /// On the leader, while the entry is not committed: the voters that have not acknowledged it.
    /// The change completes as soon as enough of them answer again.
    pub waiting_for: Vec<u64>,
}

/// A node's configured role, in [`NodeStatus::role`]: `voter` or `gateway` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// A member of the Raft group that votes and may lead.
    Voter,
    /// A learner that serves the public API from its replica.
    Gateway,
}

impl NodeRole {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Voter => "voter",
            NodeRole::Gateway => "gateway",
        }
    }
}

impl fmt::Display for NodeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A node's Raft state, in [`NodeStatus::state`]; on the wire as named here (`Leader`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RaftState {
    Leader,
    Follower,
    Candidate,
    /// Replicates the log without voting: gateways, and voters being added.
    Learner,
    /// Raft has stopped on this node.
    Shutdown,
}

impl RaftState {
    pub fn as_str(self) -> &'static str {
        match self {
            RaftState::Leader => "Leader",
            RaftState::Follower => "Follower",
            RaftState::Candidate => "Candidate",
            RaftState::Learner => "Learner",
            RaftState::Shutdown => "Shutdown",
        }
    }
}

impl fmt::Display for RaftState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Units sold and revenue per product over a time range, read from the archive database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveReport {
    /// Start of the range (orders committed at or after), milliseconds since the Unix epoch.
    pub from_ms: u64,
    /// End of the range (orders committed before), milliseconds since the Unix epoch.
    pub to_ms: u64,
    /// One row per product with orders in the range, by product id.
    pub products: Vec<ArchiveReportRow>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveReportRow {
    pub product: String,
    /// Orders with a line of this product placed in the range, cancelled or not.
    pub orders: u64,
    pub units: u64,
    /// Sum of quantity × unit price, in cents, of every line placed in the range.
    pub revenue_cents: u64,
    /// Units of those lines whose order was cancelled since (archived so far).
    #[serde(default)]
    pub cancelled_units: u64,
    /// `revenue_cents` less the lines of cancelled orders.
    #[serde(default)]
    pub net_revenue_cents: u64,
}

/// Query of `GET /admin/archive/report`: a time range, milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveReportQuery {
    pub from_ms: u64,
    pub to_ms: u64,
}

/// The order archive, as one voter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveStatus {
    /// True when this cluster has an archive database configured.
    pub enabled: bool,
    /// True when this node is the one archiving (the leader, with the archive enabled).
    pub active: bool,
    /// Every order up to and including this id is in the archive (replicated, same on all nodes).
    pub cursor: Option<OrderId>,
    /// Confirmed orders not archived yet (replicated count).
    pub backlog: u64,
    /// Orders placed since the cluster began (replicated count).
    pub orders_placed: u64,
    /// Orders still held by the state machine: the backlog plus archived orders within the
    /// retention.
    pub orders_held: u64,
    /// This node's archiver: the last error it met, if its last attempt failed, verbatim (it may
    /// name database users, hosts and tables: only on the authenticated `/admin/status`).
    pub last_error: Option<String>,
    /// The kind of `last_error`: a stable category, safe to show publicly.
    #[serde(default)]
    pub last_error_kind: Option<ArchiveErrorKind>,
    /// This node's archiver: when it last wrote a batch, milliseconds since the Unix epoch.
    pub last_batch_at_ms: Option<u64>,
}

/// What kind of failure stopped the archiver's last attempt; every one is retried from the
/// replicated cursor (a `conflict` only succeeds once an operator resolved the row). Stable
/// names on the wire (`database_unavailable`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveErrorKind {
    /// No connection to the archive database could be had.
    DatabaseUnavailable,
    /// The archive database refused a statement.
    DatabaseError,
    /// A database step took longer than `archive.timeout_ms`.
    Timeout,
    /// Reading orders from this node's own state machine failed.
    Storage,
    /// The new archive cursor could not be replicated through Raft.
    Cursor,
    /// The archive already holds a row with the id of an order to archive and different
    /// contents: the archiver halts at that order, never skipping it, until an operator resolves
    /// the row (`deploy/RUNBOOK.md`).
    Conflict,
}

impl ArchiveErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArchiveErrorKind::DatabaseUnavailable => "database_unavailable",
            ArchiveErrorKind::DatabaseError => "database_error",
            ArchiveErrorKind::Timeout => "timeout",
            ArchiveErrorKind::Storage => "storage",
            ArchiveErrorKind::Cursor => "cursor",
            ArchiveErrorKind::Conflict => "conflict",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerReplication {
    pub id: u64,
    pub matched_index: Option<u64>,
    pub lag: u64,
}

/// `POST /admin/init`: initialize the cluster with these voters (default: the configured ones,
/// or this node alone).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitRequest {
    #[serde(default)]
    pub voters: Vec<NodeAddr>,
}

/// `POST /admin/add-learner`: replicate the log to a new node, which does not vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddLearnerRequest {
    pub id: u64,
    pub addr: String,
    /// Answer once the change is committed, without waiting for the learner to catch up.
    #[serde(default)]
    pub no_wait: bool,
}

/// The answer of a membership change: where it is in the log, and, when adding a learner, whether
/// the learner caught up with the leader before the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipChanged {
    pub log_index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caught_up: Option<bool>,
}

/// `POST /admin/change-membership`: make exactly these nodes the voters. Former voters stay as
/// learners when `retain` is set, and are removed otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeMembershipRequest {
    pub voters: Vec<u64>,
    #[serde(default)]
    pub retain: bool,
}

/// `POST /admin/remove-learner`: stop replicating to a learner and drop it from the membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveLearnerRequest {
    pub id: u64,
}

/// `POST /admin/hand-off` (on the leader): hand leadership to another voter before a planned
/// stop. `to`: the voter to hand to; default: the voter whose log is furthest along.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandOffRequest {
    #[serde(default)]
    pub to: Option<u64>,
}

/// The answer to a completed hand-off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandedOff {
    pub from: u64,
    pub to: u64,
    /// The new leader's term.
    pub term: u64,
    /// From the moment new writes were held back on the old leader until the new leader was
    /// known there: the longest a write waited because of the hand-off.
    pub took_ms: u64,
}

/// `POST /raft/elect` (voter to voter, during a hand-off): stand for election now. The caller,
/// the leader, has stopped proposing; the callee stands only if its log reaches
/// `last_log_index`, so the leader grants its vote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElectRequest {
    pub from: u64,
    pub last_log_index: u64,
}

/// `POST /raft/pre-vote` (voter to voter): would the callee vote in an election of the caller's
/// now? Asked before a voter stands on its own, so that a voter cut off from a leader that the
/// others still hear raises no term and, when it comes back, deposes no one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteRequest {
    pub from: u64,
}

/// The answer to a [`PreVoteRequest`]: `granted` unless the callee leads the group or has heard
/// from its leader within the lease (`raft.election_timeout_max_ms`), the two cases in which it
/// would refuse the vote itself; `leader` is the leader it knows, if any, and `lease_left_ms`,
/// when it refused for the lease, how long until that lease runs out (the caller asks again
/// then, not an election timeout later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteResponse {
    pub granted: bool,
    pub leader: Option<u64>,
    #[serde(default)]
    pub lease_left_ms: Option<u64>,
}

/// The JSON error body of every HTTP endpoint: a stable machine-readable `code` and a message
/// for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// Public API (`/v1`, JSON): one product, with what is held and its limit per customer, and
/// the applied index it is at least as fresh as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductView {
    pub applied_index: u64,
    pub product: ProductDetails,
}

/// Public API: a page of products in id order. Pass `next_after` as `after` for the next page;
/// it is absent on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductList {
    pub applied_index: u64,
    pub products: Vec<ProductDetails>,
    pub next_after: Option<String>,
}

/// Public API: the body of `POST /v1/products/{id}/purchase`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    pub quantity: u32,
    /// The shop's reference of the buyer (1 to 64 printable ASCII characters), kept on the order
    /// and in the archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// Public API: a confirmed purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurchaseResponse {
    pub order: Order,
    /// True when this answers a retry of a request already applied (same idempotency key).
    pub replayed: bool,
}

/// Public API: one order and the applied index of the replica that served it. Served only to
/// whoever presents the order's token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub applied_index: u64,
    pub order: OrderDetails,
}

/// Public API: an order as its owner reads it: [`Order`] without the idempotency key (never
/// shown back) and without the token (the reader has it); `product`, `quantity`, `price_cents`
/// and `remaining` are its first line's. `lines`, `status`, `cancelled_at_ms` and `hold` came
/// with checkout; a gateway of the release before sends none of them (read as no lines,
/// `placed`, none, none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderDetails {
    pub id: OrderId,
    pub product: String,
    pub quantity: u32,
    pub customer: Option<String>,
    pub price_cents: u64,
    pub remaining: u64,
    pub placed_at_ms: u64,
    /// Every line, in the cart's order; at least one.
    #[serde(default)]
    pub lines: Vec<OrderLineView>,
    #[serde(default)]
    pub status: OrderStatus,
    /// When it was cancelled; `null` while it stands.
    #[serde(default)]
    pub cancelled_at_ms: Option<u64>,
    /// The hold it was confirmed from; `null` for a purchase or a cart.
    #[serde(default)]
    pub hold: Option<HoldId>,
}

impl OrderDetails {
    pub fn new(order: Order, terms: &OrderTerms) -> OrderDetails {
        OrderDetails {
            lines: terms.lines_of(&order).iter().map(Into::into).collect(),
            status: OrderStatus::of(terms),
            cancelled_at_ms: terms.cancelled_at_ms,
            hold: terms.hold,
            id: order.id,
            product: order.product,
            quantity: order.quantity,
            customer: order.customer,
            price_cents: order.price_cents,
            remaining: order.remaining,
            placed_at_ms: order.placed_at_ms,
        }
    }
}

impl From<Order> for OrderDetails {
    fn from(order: Order) -> OrderDetails {
        OrderDetails::new(order, &OrderTerms::default())
    }
}

/// Public API: query parameter, and header, of an order's token on `GET /v1/orders/{id}`.
pub const ORDER_TOKEN_PARAM: &str = "token";
/// Public API: header carrying an order's token, the alternative to the query parameter.
pub const ORDER_TOKEN_HEADER: &str = "x-order-token";

/// Public API: the body of `POST /v1/admin/products`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProductRequest {
    pub id: String,
    pub name: String,
    pub price_cents: u64,
    pub stock: u64,
    /// Most items one customer may hold and buy of it (1 to 1 000 000; cluster version 2);
    /// every purchase, cart and hold of it must then name the `customer`. Absent: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_customer: Option<u32>,
}

/// Public API: the body of `POST /v1/admin/products/{id}/restock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestockRequest {
    pub quantity: u64,
}

/// Public API: the body of `POST /v1/admin/products/bulk`: up to `limits.commands_per_entry_max`
/// creates and restocks, proposed as one Raft entry. Each item is its own command with its own
/// outcome (one item's committed refusal does not undo another's); an item that fails the
/// gateway's checks refuses the whole request, unproposed. The request is one [`Op::Bulk`]
/// under its `Idempotency-Key` `K` (one record for all its items), so a retry of the whole
/// request with the same key and items applies nothing twice; before cluster version 2, item
/// `i` is its own command with the key `K#i` ([`bulk_item_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub items: Vec<BulkItem>,
}

/// Public API: one item of a [`BulkRequest`], tagged by `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum BulkItem {
    /// As `POST /v1/admin/products`.
    Create {
        id: String,
        name: String,
        price_cents: u64,
        stock: u64,
    },
    /// As `POST /v1/admin/products/{id}/restock`.
    Restock { id: String, quantity: u64 },
}

impl BulkItem {
    /// The product the item is about.
    pub fn id(&self) -> &str {
        match self {
            BulkItem::Create { id, .. } | BulkItem::Restock { id, .. } => id,
        }
    }

    /// The item as a command with the key `key`.
    pub fn into_command(self, key: String) -> Command {
        let op = match self {
            BulkItem::Create {
                id,
                name,
                price_cents,
                stock,
            } => Op::CreateProduct {
                product: id,
                name,
                price_cents,
                stock,
            },
            BulkItem::Restock { id, quantity } => Op::Restock {
                product: id,
                quantity,
            },
        };
        Command { key, op }
    }
}

/// The idempotency key of item `index` of a bulk request whose key is `key`, when the request is
/// one command per item (before cluster version 2).
pub fn bulk_item_key(key: &str, index: usize) -> String {
    format!("{key}#{index}")
}

/// The key of the part of a bulk request (key `key`) that Raft group `group` applies, when its
/// items lie in several groups: `key#g<group>`, which no item's key ([`bulk_item_key`]) can be.
/// Group 0 of a one-group cluster applies the whole request under `key` itself.
pub fn bulk_group_key(key: &str, group: u16) -> String {
    format!("{key}#g{group}")
}

/// The bulk request's key and the item's index of a key made by [`bulk_item_key`], if `key`
/// has that form.
pub fn split_bulk_item_key(key: &str) -> Option<(&str, usize)> {
    let (request, index) = key.rsplit_once('#')?;
    let digits = !index.is_empty() && index.len() <= 5 && index.bytes().all(|b| b.is_ascii_digit());
    if request.is_empty() || !digits || (index.len() > 1 && index.starts_with('0')) {
        return None;
    }
    Some((request, index.parse().ok()?))
}

/// Longest idempotency key of a bulk request: its items' keys ([`bulk_item_key`]) must fit
/// [`KEY_LEN_MAX`] with an index of up to five digits.
pub const BULK_KEY_LEN_MAX: usize = KEY_LEN_MAX - 6;

/// Public API: the answer to a [`BulkRequest`] that was applied: one result per item, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkResponse {
    pub results: Vec<BulkItemResult>,
}

/// Public API: what became of one item of a bulk request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkItemResult {
    pub id: String,
    pub status: BulkStatus,
    /// The item's key had been applied before: this is the first outcome, returned again.
    pub replayed: bool,
    /// Why the state machine refused the item (`status` is `rejected`); it changed nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// Public API: the status of one item of a bulk request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkStatus {
    Created,
    Restocked,
    /// Refused by the state machine (the product exists, is unknown, or would pass the stock
    /// limit; the key was used for another command): nothing changed for this item.
    Rejected,
}

/// Public API: a product after an admin change (creation, restock, limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductChanged {
    pub product: ProductDetails,
    pub replayed: bool,
}

/// Public API: one event of the stock stream (`GET /v1/stream`, server-sent events named
/// `stock`). `held` and `limit_per_customer` came with checkout; a gateway of the release
/// before sends neither (read as 0 and none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockEvent {
    pub product: String,
    /// Available.
    pub stock: u64,
    pub sold: u64,
    #[serde(default)]
    pub held: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_per_customer: Option<u32>,
    pub log_index: u64,
}

impl StockEvent {
    pub fn new(product: &Product, terms: &ProductTerms, log_index: u64) -> StockEvent {
        StockEvent {
            product: product.id.clone(),
            stock: product.stock,
            sold: product.sold,
            held: terms.held,
            limit_per_customer: terms.limit_per_customer,
            log_index,
        }
    }
}

/// Public API: header of the idempotency key on every write.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Public API: header with the applied index of the replica that served a read.
pub const APPLIED_INDEX_HEADER: &str = "x-applied-index";
/// Public API: header on every answer of a gateway to a `GET`: how old, in milliseconds, the
/// replica's state may be when the request arrived: it holds every change the leader had
/// committed that long ago (one network trip aside). `unknown` until the replica has caught up
/// with a leader's commit index since it started. A view that claims freshness this header
/// does not back is a bug.
pub const STALENESS_HEADER: &str = "x-staleness-ms";
/// The value of [`STALENESS_HEADER`] while the staleness is unknown.
pub const STALENESS_UNKNOWN: &str = "unknown";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_id_keeps_log_order() {
        let a = OrderId::new(7, 65_534);
        let b = OrderId::new(8, 0);
        assert!(a < b);
        assert_eq!(a.log_index(), 7);
        assert_eq!(a.slot(), 65_534);
    }

    #[test]
    fn a_later_incarnation_never_meets_an_earlier_id() {
        let before = OrderId::new(ORDER_LOG_INDEX_MAX, u16::MAX);
        let restored = OrderId::placed(1, 1, 0);
        assert!(
            restored > before,
            "a new incarnation's ids follow every earlier one"
        );
        assert_eq!(
            (
                restored.incarnation(),
                restored.log_index(),
                restored.slot()
            ),
            (1, 1, 0)
        );
        let last = OrderId::placed(INCARNATION_MAX, ORDER_LOG_INDEX_MAX, u16::MAX);
        assert!(i64::try_from(last.0).is_ok(), "every id fits a bigint");
        assert_eq!(last.incarnation(), INCARNATION_MAX);
        assert_eq!(
            OrderId::new(7, 3).0,
            7 << 16 | 3,
            "incarnation 0 ids are unchanged"
        );
    }

    #[test]
    fn an_order_id_names_its_group_and_group_0_keeps_todays_ids() {
        let last_slot = placement::GROUP_SLOTS as u16 - 1;
        for group in [0, 1, 5, placement::GROUPS_MAX - 1] {
            let id = OrderId::placed_in(group, 3, 1_000_000, last_slot);
            assert_eq!(
                (id.group(), id.incarnation(), id.log_index()),
                (group, 3, 1_000_000)
            );
            assert_eq!(id.slot() & last_slot, last_slot);
        }
        assert_eq!(OrderId::placed_in(0, 0, 7, 3), OrderId::new(7, 3));
        // The same position in two groups gives two ids; both follow the position before.
        let (a, b) = (
            OrderId::placed_in(1, 0, 9, 0),
            OrderId::placed_in(2, 0, 9, 0),
        );
        assert_ne!(a, b);
        assert!(a > OrderId::placed_in(63, 0, 8, last_slot));
    }

    #[test]
    fn validation_rejects_bad_input() {
        assert!(validate_product_id("tee-shirt_1").is_ok());
        assert!(validate_product_id("").is_err());
        assert!(validate_product_id("a b").is_err());
        assert!(validate_product_id(&"x".repeat(65)).is_err());
        assert!(validate_key("k-1").is_ok());
        assert!(validate_key("with space").is_err());
        let purchase = |quantity| Command {
            key: "k".into(),
            op: Op::Purchase {
                product: "p".into(),
                quantity,
                customer: None,
                token: None,
            },
        };
        assert!(validate_command(&purchase(1)).is_ok());
        assert!(validate_command(&purchase(0)).is_err());
        assert!(validate_command(&purchase(PURCHASE_QUANTITY_LIMIT + 1)).is_err());
        assert!(validate_order_token(&"0a".repeat(16)).is_ok());
        assert!(validate_order_token(&"0A".repeat(16)).is_err());
        assert!(validate_order_token("0a").is_err());
    }

    #[test]
    fn a_purchase_is_the_same_request_whatever_its_token() {
        let purchase = |token: Option<&str>, quantity| Op::Purchase {
            product: "p".into(),
            quantity,
            customer: None,
            token: token.map(str::to_owned),
        };
        let a = "a".repeat(ORDER_TOKEN_LEN);
        let b = "b".repeat(ORDER_TOKEN_LEN);
        assert!(purchase(Some(&a), 1).same_request(&purchase(Some(&b), 1)));
        assert!(purchase(None, 1).same_request(&purchase(Some(&b), 1)));
        assert!(!purchase(Some(&a), 1).same_request(&purchase(Some(&a), 2)));
    }

    /// Outcomes and records travel in bincode (the Raft log, the internal write answer, the
    /// idempotency records): every checkout kind must come back from it as it went, which an
    /// internally tagged enum or a skipped field would break.
    #[test]
    fn checkout_kinds_survive_bincode() {
        let token = Some("a".repeat(ORDER_TOKEN_LEN));
        let lines = vec![Line {
            product: "mug".into(),
            quantity: 2,
        }];
        let order = Order {
            id: OrderId::new(9, 1),
            key: "k".into(),
            product: "mug".into(),
            quantity: 2,
            customer: Some("alice".into()),
            price_cents: 900,
            remaining: 3,
            placed_at_ms: 5,
            token: token.clone(),
        };
        let terms = OrderTerms {
            lines: vec![OrderLine {
                product: "mug".into(),
                quantity: 2,
                price_cents: 900,
                remaining: 3,
                limit_epoch: 1,
            }],
            hold: Some(HoldId(7)),
            cancelled_at_ms: Some(6),
        };
        let hold = |state| Hold {
            id: HoldId(7),
            key: "h".into(),
            customer: None,
            lines: vec![HoldLine {
                product: "mug".into(),
                quantity: 2,
                price_cents: 900,
                limit_epoch: 0,
            }],
            held_at_ms: 1,
            expires_at_ms: 2,
            state,
            changed_at_ms: 1,
            token: None,
        };
        let product = Product {
            id: "mug".into(),
            name: "Mug".into(),
            price_cents: 900,
            stock: 3,
            initial_stock: 5,
            restocked: 0,
            sold: 2,
        };
        let ops = vec![
            Op::Hold {
                lines: lines.clone(),
                customer: Some("alice".into()),
                ttl_ms: 60_000,
                token: token.clone(),
            },
            Op::ConfirmHold {
                hold: HoldId(7),
                token: token.clone(),
            },
            Op::ReleaseHold {
                hold: HoldId(7),
                token: None,
            },
            Op::Checkout {
                lines,
                customer: None,
                token: token.clone(),
            },
            Op::CancelOrder {
                order: OrderId(3),
                token,
                within_ms: Some(1),
            },
            Op::SetLimit {
                product: "mug".into(),
                limit_per_customer: None,
            },
        ];
        for op in ops {
            let bytes = bincode::serialize(&op).unwrap();
            assert_eq!(bincode::deserialize::<Op>(&bytes).unwrap(), op);
        }
        let outcomes = vec![
            Outcome::Held(hold(HoldState::Held)),
            Outcome::Released(hold(HoldState::Confirmed { order: OrderId(8) })),
            Outcome::Placed {
                order: order.clone(),
                terms: terms.clone(),
            },
            Outcome::Cancelled { order, terms },
            Outcome::ProductWithTerms {
                created: true,
                product,
                terms: ProductTerms {
                    held: 1,
                    limit_per_customer: Some(2),
                    limit_epoch: 1,
                    cancelled: 0,
                },
            },
            Outcome::Rejected(Rejection::HoldFinished {
                hold: HoldId(7),
                state: HoldState::Expired,
            }),
        ];
        for outcome in outcomes {
            let bytes = bincode::serialize(&outcome).unwrap();
            assert_eq!(bincode::deserialize::<Outcome>(&bytes).unwrap(), outcome);
        }
    }

    /// The internal reads add `terms` beside the fields they always had: a reader of the
    /// release before reads them as it did, and this release reads an older node's answer with
    /// empty terms.
    #[test]
    fn internal_reads_with_terms_are_compatible_both_ways() {
        let product = Product {
            id: "mug".into(),
            name: "Mug".into(),
            price_cents: 900,
            stock: 4,
            initial_stock: 5,
            restocked: 1,
            sold: 2,
        };
        let with_terms = ProductWithTerms {
            product: product.clone(),
            terms: ProductTerms {
                held: 1,
                limit_per_customer: Some(4),
                limit_epoch: 1,
                cancelled: 2,
            },
        };
        let json = serde_json::to_value(&with_terms).unwrap();
        assert_eq!(
            json["held"],
            serde_json::Value::Null,
            "terms stay in `terms`"
        );
        assert_eq!(
            serde_json::from_value::<Product>(json.clone()).unwrap(),
            product
        );
        assert_eq!(
            serde_json::from_value::<ProductWithTerms>(json).unwrap(),
            with_terms
        );
        let old = serde_json::to_value(&product).unwrap();
        let read = serde_json::from_value::<ProductWithTerms>(old).unwrap();
        assert!(read.terms.is_empty());
        assert!(read.details().is_conserved());

        let order = Order {
            id: OrderId::new(9, 1),
            key: "k".into(),
            product: "mug".into(),
            quantity: 2,
            customer: Some("alice".into()),
            price_cents: 900,
            remaining: 3,
            placed_at_ms: 5,
            token: Some("a".repeat(ORDER_TOKEN_LEN)),
        };
        let with_terms = OrderWithTerms {
            order: order.clone(),
            terms: OrderTerms {
                lines: vec![OrderLine {
                    product: "mug".into(),
                    quantity: 2,
                    price_cents: 900,
                    remaining: 3,
                    limit_epoch: 1,
                }],
                hold: Some(HoldId(7)),
                cancelled_at_ms: Some(6),
            },
        };
        let json = serde_json::to_value(&with_terms).unwrap();
        assert_eq!(
            serde_json::from_value::<Order>(json.clone()).unwrap(),
            order
        );
        assert_eq!(
            serde_json::from_value::<OrderWithTerms>(json).unwrap(),
            with_terms
        );
        let old = serde_json::to_value(&order).unwrap();
        let read = serde_json::from_value::<OrderWithTerms>(old).unwrap();
        assert!(read.terms.is_empty() && !read.is_cancelled());
        assert_eq!(read.lines().len(), 1);
    }

    #[test]
    fn role_and_state_travel_as_they_always_did() {
        for role in [NodeRole::Voter, NodeRole::Gateway] {
            let wire = serde_json::to_string(&role).unwrap();
            assert_eq!(wire, format!("\"{role}\""));
            assert_eq!(serde_json::from_str::<NodeRole>(&wire).unwrap(), role);
        }
        assert_eq!(
            serde_json::to_string(&NodeRole::Voter).unwrap(),
            "\"voter\""
        );
        for state in [
            RaftState::Leader,
            RaftState::Follower,
            RaftState::Candidate,
            RaftState::Learner,
            RaftState::Shutdown,
        ] {
            let wire = serde_json::to_string(&state).unwrap();
            assert_eq!(wire, format!("\"{state}\""));
            assert_eq!(wire, format!("\"{state:?}\""));
            assert_eq!(serde_json::from_str::<RaftState>(&wire).unwrap(), state);
        }
    }
}
