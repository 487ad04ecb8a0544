//! Scenario (golden-file) tests of the inventory state machine, in the style of toydb's
//! goldenscript tests.
//!
//! Each `tests/scenarios/NAME.txt` is a script. The runner applies it to a fresh
//! [`MemState`] through [`apply_proposal`], writes every step and its outcomes into a text, and
//! compares that text with `tests/scenarios/NAME.golden`. Run with `UPDATE_GOLDENFILES=1` to
//! (re)write the golden files instead, then review them with `git diff`.
//!
//! Script language, one step per line (`#` comments and blank lines are copied to the output):
//!
//! ```text
//! time MS                                       proposer time of the following entries (1000)
//! forget-before MS                              idempotency horizon of the following entries (0)
//! drop-before MS                                archived orders' retention horizon (0)
//! create KEY PRODUCT "NAME" price=CENTS stock=N one entry: Op::CreateProduct
//! restock KEY PRODUCT QTY                       one entry: Op::Restock
//! buy KEY PRODUCT QTY [CUSTOMER]                one entry: Op::Purchase
//! archive KEY UP_TO                             one entry: Op::MarkArchived (UP_TO: 196608 or 3:0)
//! cluster-version KEY VERSION                   one entry: Op::SetClusterVersion
//! batch                                         one entry holding all the indented commands
//!   buy KEY PRODUCT QTY                         up to `end`, applied in order
//! end
//! bulk KEY                                      one entry: Op::Bulk under KEY of the indented
//!   create - PRODUCT "NAME" price=C stock=N     creates and restocks (their own keys are not
//!   restock - PRODUCT QTY                       used: write `-`) up to `end`
//! end
//! ```
//!
//! Tokens may be double-quoted to hold spaces or be empty (`""`). Entries get log indexes 1, 2, ...
//! Order ids are printed as `196608(3:0)`: the raw id, then the entry's log index and the slot.
//!
//! After each entry the runner prints the outcomes (`  -> ...`, `  -> [slot] ...` in a batch), one
//! line per product, and a state line; and it asserts, whatever the golden file says:
//! - conservation of every product, by `Product::is_conserved` and recomputed here;
//! - each product's counters moved exactly by this entry's confirmed restocks and purchases (so
//!   stock never goes up but by a restock, and never down but by a purchase);
//! - the orders in `MemState.orders` are exactly the confirmed purchases not dropped yet, and
//!   their quantities plus the dropped ones (tracked here) add up to each product's `sold`; an
//!   order is dropped only once the archive cursor passed it and its retention is over;
//! - the idempotency horizon, the retention horizon and the archive cursor never move backwards;
//! - the meta's counters of placed, archived and dropped orders match the orders themselves;
//! - every fresh outcome is recorded under its key, and a duplicate returns the recorded one.
//!
//! Every script is also run a second time from scratch, with each proposal sent through bincode
//! as a follower would receive it; both runs must give the same text and the same `MemState`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::{fs, iter};

use flashstock_api::{Command, Op, Order, OrderId, Outcome, Product, Proposal, Rejection};
use raft_store::inventory::{apply_proposal, record_key, MemState};

/// Fewer scripts than this means the directory was not found or emptied: fail, don't pass.
const MIN_SCRIPTS: usize = 5;

#[test]
fn scenarios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let update = std::env::var("UPDATE_GOLDENFILES").is_ok_and(|v| v == "1");
    let mut scripts: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .collect();
    scripts.sort();
    assert!(
        scripts.len() >= MIN_SCRIPTS,
        "found {} scripts in {}, expected at least {MIN_SCRIPTS}",
        scripts.len(),
        dir.display()
    );

    let mut failures = Vec::new();
    for script in &scripts {
        let name = script.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(script).expect("script is readable");
        let output = match catch_unwind(AssertUnwindSafe(|| run_twice(&text))) {
            Ok(Ok(output)) => output,
            Ok(Err(error)) => {
                failures.push(format!("{name}: {error}"));
                continue;
            }
            Err(panic) => {
                let message = (panic.downcast_ref::<String>().cloned())
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: panicked: {message}"));
                continue;
            }
        };
        let golden = script.with_extension("golden");
        if update {
            fs::write(&golden, &output).expect("golden file is writable");
            continue;
        }
        match fs::read_to_string(&golden) {
            Err(_) => failures.push(format!(
                "{name}: {} is missing; run with UPDATE_GOLDENFILES=1 to create it",
                golden.display()
            )),
            Ok(expected) if expected != output => {
                failures.push(format!("{name}: {}", first_difference(&expected, &output)))
            }
            Ok(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} scenarios failed (UPDATE_GOLDENFILES=1 rewrites the golden files):\n\n{}\n",
        failures.len(),
        scripts.len(),
        failures.join("\n\n")
    );
}

/// Runs a script twice from scratch, the second time through bincode, and checks determinism.
fn run_twice(text: &str) -> Result<String, String> {
    let (output, state) = run_script(text, false)?;
    let (output_again, state_again) = run_script(text, true)?;
    assert_eq!(state, state_again, "the two runs ended in different states");
    assert_eq!(output, output_again, "the two runs printed different texts");
    Ok(output)
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (mut expected_lines, mut actual_lines) = (expected.lines(), actual.lines());
    for number in 1.. {
        match (expected_lines.next(), actual_lines.next()) {
            (Some(e), Some(a)) if e == a => continue,
            (None, None) => break,
            (e, a) => {
                return format!(
                    "output differs from the golden file at line {number}:\n  expected: {}\n  actual:   {}",
                    e.unwrap_or("<end of file>"),
                    a.unwrap_or("<end of output>")
                )
            }
        }
    }
    "output differs from the golden file in line endings".into()
}

/// The runner's state: the state machine, the script's clock, and what it expects of the orders.
struct Runner {
    state: MemState,
    through_bincode: bool,
    next_index: u64,
    time_ms: u64,
    forget_before_ms: u64,
    drop_before_ms: u64,
    /// Confirmed purchases not dropped yet: must equal `state.orders` after every entry.
    live_orders: BTreeMap<OrderId, Order>,
    /// Every confirmed purchase, dropped or not.
    placed: u64,
    /// Quantity of the dropped orders, per product.
    dropped_quantity: BTreeMap<String, u64>,
    dropped: u64,
    out: String,
}

fn run_script(text: &str, through_bincode: bool) -> Result<(String, MemState), String> {
    let mut runner = Runner {
        state: MemState::default(),
        through_bincode,
        next_index: 1,
        time_ms: 1000,
        forget_before_ms: 0,
        drop_before_ms: 0,
        live_orders: BTreeMap::new(),
        placed: 0,
        dropped_quantity: BTreeMap::new(),
        dropped: 0,
        out: String::new(),
    };
    let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line));
    while let Some((number, line)) = lines.next() {
        writeln!(runner.out, "{line}").unwrap();
        let at = |error: String| format!("line {number}: {error}: {line:?}");
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let tokens = tokenize(line).map_err(at)?;
        match tokens[0].as_str() {
            "time" => runner.time_ms = single_number(&tokens).map_err(at)?,
            "forget-before" => runner.forget_before_ms = single_number(&tokens).map_err(at)?,
            "drop-before" => runner.drop_before_ms = single_number(&tokens).map_err(at)?,
            "batch" | "bulk" if tokens.len() <= 2 => {
                let bulk_key = match tokens.as_slice() {
                    [_, key] if tokens[0] == "bulk" => Some(key.clone()),
                    [_] if tokens[0] == "batch" => None,
                    _ => return Err(at("batch takes no argument, bulk its key".into())),
                };
                let mut commands = Vec::new();
                loop {
                    let Some((number, line)) = lines.next() else {
                        return Err(at("batch without end".into()));
                    };
                    writeln!(runner.out, "{line}").unwrap();
                    let at = |error: String| format!("line {number}: {error}: {line:?}");
                    if line.trim().is_empty() || line.trim_start().starts_with('#') {
                        continue;
                    }
                    let tokens = tokenize(line).map_err(at)?;
                    match tokens.first().map(String::as_str) {
                        Some("end") if tokens.len() == 1 => break,
                        _ if !line.starts_with(char::is_whitespace) => {
                            return Err(at("commands of a batch are indented".into()))
                        }
                        _ => commands.push(parse_command(&tokens).map_err(at)?),
                    }
                }
                match bulk_key {
                    Some(key) => runner.apply_entry(vec![Command {
                        key,
                        op: Op::Bulk {
                            ops: commands.into_iter().map(|command| command.op).collect(),
                        },
                    }]),
                    None => runner.apply_entry(commands),
                }
            }
            _ => runner.apply_entry(vec![parse_command(&tokens).map_err(at)?]),
        }
    }
    Ok((runner.out, runner.state))
}

/// Splits a line at whitespace; a double-quoted token may hold spaces or be empty.
fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let token: String = iter::from_fn(|| chars.next_if(|&c| c != '"')).collect();
            chars.next().ok_or("unterminated quote")?;
            tokens.push(token);
        } else {
            tokens.push(iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())).collect());
        }
    }
    if tokens.is_empty() {
        return Err("empty step".into());
    }
    Ok(tokens)
}

fn single_number(tokens: &[String]) -> Result<u64, String> {
    match tokens {
        [_, value] => number(value),
        _ => Err("expected exactly one number".into()),
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("not a number: {text:?}"))
}

fn named_number(text: &str, name: &str) -> Result<u64, String> {
    let value = text
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('='));
    number(value.ok_or_else(|| format!("expected {name}=N, found {text:?}"))?)
}

/// An order id, raw (`196608`) or as log index and slot (`3:0`).
fn order_id(text: &str) -> Result<OrderId, String> {
    match text.split_once(':') {
        Some((index, slot)) => Ok(OrderId::new(number(index)?, number(slot)?)),
        None => Ok(OrderId(number(text)?)),
    }
}

fn parse_command(tokens: &[String]) -> Result<Command, String> {
    let (verb, args) = tokens.split_first().expect("tokenize returns a token");
    let op = match (verb.as_str(), args) {
        ("create", [_, product, name, price, stock]) => Op::CreateProduct {
            product: product.clone(),
            name: name.clone(),
            price_cents: named_number(price, "price")?,
            stock: named_number(stock, "stock")?,
        },
        ("restock", [_, product, quantity]) => Op::Restock {
            product: product.clone(),
            quantity: number(quantity)?,
        },
        ("buy", [_, product, quantity]) => Op::Purchase {
            product: product.clone(),
            quantity: number(quantity)?,
            customer: None,
            token: None,
        },
        ("buy", [_, product, quantity, customer]) => Op::Purchase {
            product: product.clone(),
            quantity: number(quantity)?,
            customer: Some(customer.clone()),
            token: None,
        },
        ("archive", [_, up_to]) => Op::MarkArchived {
            up_to: order_id(up_to)?,
        },
        ("cluster-version", [_, version]) => Op::SetClusterVersion {
            version: number(version)?,
        },
        _ => return Err("unknown step, or wrong number of arguments".into()),
    };
    Ok(Command {
        key: args[0].clone(),
        op,
    })
}

impl Runner {
    /// Applies one Raft entry, prints its outcomes and the state, and checks the invariants.
    fn apply_entry(&mut self, commands: Vec<Command>) {
        let index = self.next_index;
        self.next_index += 1;
        let mut proposal = Proposal {
            proposed_at_ms: self.time_ms,
            forget_keys_before_ms: self.forget_before_ms,
            drop_archived_before_ms: self.drop_before_ms,
            commands,
        };
        if self.through_bincode {
            let bytes = bincode::serialize(&proposal).expect("a proposal serializes");
            proposal = bincode::deserialize(&bytes).expect("a proposal deserializes");
        }
        let before = self.state.clone();
        let outcomes =
            apply_proposal(&mut self.state, index, &proposal).expect("MemState never faults");
        assert_eq!(
            outcomes.len(),
            proposal.commands.len(),
            "one outcome per command"
        );

        if outcomes.is_empty() {
            writeln!(self.out, "  -> no commands").unwrap();
        }
        for (slot, outcome) in outcomes.iter().enumerate() {
            let slot = if proposal.commands.len() == 1 {
                String::new()
            } else {
                format!("[{slot}] ")
            };
            writeln!(self.out, "  -> {slot}{}", format_outcome(outcome)).unwrap();
        }
        self.check(index, &before, &proposal, &outcomes);
        for p in self.state.products.values() {
            let (id, stock, sold) = (&p.id, p.stock, p.sold);
            let (initial, restocked) = (p.initial_stock, p.restocked);
            writeln!(
                self.out,
                "  {id} stock={stock} sold={sold} initial={initial} restocked={restocked}"
            )
            .unwrap();
        }
        let orders: Vec<_> = self
            .state
            .orders
            .keys()
            .map(|id| format!("{}:{}", id.log_index(), id.slot()))
            .collect();
        let meta = self.state.meta;
        let archived = meta.archived_up_to.map_or("none".into(), format_order_id);
        writeln!(
            self.out,
            "  state: keys={} forget_before={} archived_up_to={archived} orders=[{}]",
            self.state.keys.len(),
            meta.forget_keys_before_ms,
            orders.join(" ")
        )
        .unwrap();
        if let Some(version) = self.state.cluster_version {
            writeln!(self.out, "  cluster_version={version}").unwrap();
        }
        if meta.orders_placed > 0 {
            let dropped = meta.dropped_up_to.map_or("none".into(), format_order_id);
            writeln!(
                self.out,
                "  orders: placed={} archived={} backlog={} dropped={} dropped_up_to={dropped} drop_before={}",
                meta.orders_placed,
                meta.orders_archived,
                meta.archive_backlog(),
                meta.orders_dropped,
                meta.drop_archived_before_ms
            )
            .unwrap();
        }
    }

    fn check(&mut self, index: u64, before: &MemState, proposal: &Proposal, outcomes: &[Outcome]) {
        // What the confirmed commands of this entry must have done to each product:
        // (created with this stock, restocked by, sold).
        let mut deltas: BTreeMap<String, (Option<u64>, u64, u64)> = BTreeMap::new();
        for (slot, (command, outcome)) in proposal.commands.iter().zip(outcomes).enumerate() {
            let by_bulk_record =
                flashstock_api::split_bulk_item_key(&command.key).and_then(|(request, index)| {
                    match self.state.keys.get(request) {
                        Some(record) => match &record.outcome {
                            Outcome::Bulk(outcomes) => outcomes.get(index),
                            _ => None,
                        },
                        None => None,
                    }
                });
            let recorded = self
                .state
                .keys
                .get(&*record_key(command))
                .map(|record| &record.outcome)
                .or(by_bulk_record);
            match outcome {
                Outcome::Duplicate(first) => assert_eq!(
                    recorded,
                    Some(&**first),
                    "a duplicate returns the recorded outcome"
                ),
                Outcome::Rejected(Rejection::Invalid { .. } | Rejection::KeyReused { .. }) => {}
                fresh => assert_eq!(
                    recorded,
                    Some(fresh),
                    "a fresh outcome is recorded under its key"
                ),
            }
            if let (Op::Bulk { ops }, Outcome::Bulk(items)) = (&command.op, outcome) {
                assert_eq!(ops.len(), items.len(), "one outcome per bulk item");
                for (op, item) in ops.iter().zip(items) {
                    catalog_delta(op, item, &mut deltas);
                }
                continue;
            }
            if catalog_delta(&command.op, outcome, &mut deltas) {
                continue;
            }
            match (&command.op, outcome) {
                (
                    Op::Purchase {
                        product,
                        quantity,
                        customer,
                        ..
                    },
                    Outcome::Purchased(order),
                ) => {
                    assert_eq!(
                        order.id,
                        OrderId::new(index, slot as u16),
                        "order id is the log position"
                    );
                    assert_eq!(
                        (&order.key, &order.product, order.quantity, &order.customer),
                        (&command.key, product, *quantity, customer)
                    );
                    assert_eq!(order.placed_at_ms, proposal.proposed_at_ms);
                    deltas.entry(product.clone()).or_default().2 += u64::from(*quantity);
                    self.live_orders.insert(order.id, order.clone());
                    self.placed += 1;
                }
                (Op::MarkArchived { .. }, Outcome::Archived { .. }) => {}
                (Op::SetClusterVersion { .. }, Outcome::ClusterVersion { .. }) => {}
                (Op::Bulk { .. }, Outcome::Bulk(_)) => unreachable!("checked above"),
                (_, Outcome::Rejected(_) | Outcome::Duplicate(_)) => {}
                (op, outcome) => panic!("outcome {outcome:?} does not answer {op:?}"),
            }
        }

        for id in before.products.keys() {
            assert!(
                self.state.products.contains_key(id),
                "product {id} disappeared"
            );
        }
        for (id, after) in &self.state.products {
            let (created, restocked, sold) = deltas.remove(id).unwrap_or_default();
            let prev = match (before.products.get(id), created) {
                (Some(prev), None) => prev.clone(),
                (None, Some(stock)) => Product {
                    stock,
                    initial_stock: stock,
                    restocked: 0,
                    sold: 0,
                    ..after.clone()
                },
                _ => panic!("product {id} appeared without a create, or was created twice"),
            };
            assert!(
                after.is_conserved(),
                "{id}: conservation violated: {after:?}"
            );
            let (supplied, accounted) = (
                after.initial_stock + after.restocked,
                after.stock + after.sold,
            );
            assert_eq!(
                supplied, accounted,
                "{id}: initial + restocked != stock + sold"
            );
            assert!(
                after.stock <= prev.stock || restocked > 0,
                "{id}: stock went up without a restock"
            );
            // Exactly this entry's confirmed restocks and purchases moved the counters.
            let stock = (prev.stock + restocked)
                .checked_sub(sold)
                .expect("sold more than stock");
            let expected = Product {
                stock,
                restocked: prev.restocked + restocked,
                sold: prev.sold + sold,
                ..prev
            };
            assert_eq!(
                after, &expected,
                "{id}: counters moved by something else than this entry"
            );
        }
        assert!(
            deltas.is_empty(),
            "confirmed commands on missing products: {deltas:?}"
        );

        let (meta_before, meta) = (before.meta, self.state.meta);
        assert!(
            meta.clock_ms >= meta_before.clock_ms.max(proposal.proposed_at_ms),
            "the state's clock never moves backwards"
        );
        horizon_moves_as_stated(
            "the idempotency horizon",
            meta_before.forget_keys_before_ms,
            proposal.forget_keys_before_ms,
            meta.forget_keys_before_ms,
            meta.clock_ms,
        );
        assert!(
            meta.archived_up_to >= meta_before.archived_up_to,
            "the archive cursor moved back"
        );
        horizon_moves_as_stated(
            "the retention horizon",
            meta_before.drop_archived_before_ms,
            proposal.drop_archived_before_ms,
            meta.drop_archived_before_ms,
            meta.clock_ms,
        );
        assert!(
            meta.dropped_up_to <= meta.archived_up_to,
            "orders dropped beyond the archive cursor"
        );

        // Orders gone from the state must have been archived and be past their retention.
        let gone: Vec<OrderId> = self
            .live_orders
            .keys()
            .filter(|id| !self.state.orders.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            assert!(
                meta.archived_up_to >= Some(id),
                "order {id} vanished without being archived"
            );
            let order = self.live_orders.remove(&id).unwrap();
            assert!(
                order.placed_at_ms < meta.drop_archived_before_ms,
                "order {id} dropped within its retention"
            );
            *self.dropped_quantity.entry(order.product).or_default() += u64::from(order.quantity);
            self.dropped += 1;
        }
        let archived_count = self
            .live_orders
            .keys()
            .filter(|id| meta.archived_up_to >= Some(**id))
            .count() as u64
            + self.dropped;
        assert_eq!(
            (
                meta.orders_placed,
                meta.orders_archived,
                meta.orders_dropped
            ),
            (self.placed, archived_count, self.dropped),
            "order counters (placed, archived, dropped) disagree with the orders"
        );
        assert_eq!(
            self.live_orders, self.state.orders,
            "the state's orders are the confirmed ones"
        );
        for (id, product) in &self.state.products {
            let live: u64 = self
                .live_orders
                .values()
                .filter(|o| &o.product == id)
                .map(|o| u64::from(o.quantity))
                .sum();
            let dropped = self.dropped_quantity.get(id).copied().unwrap_or(0);
            assert_eq!(
                live + dropped,
                product.sold,
                "{id}: orders do not add up to sold"
            );
        }
    }
}

fn format_order_id(id: OrderId) -> String {
    format!("{id}({}:{})", id.log_index(), id.slot())
}

fn format_outcome(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Purchased(o) => format!(
            "purchased order={} {} qty={} remaining={} at={}",
            format_order_id(o.id),
            o.product,
            o.quantity,
            o.remaining,
            o.placed_at_ms
        ),
        Outcome::ProductCreated(p) => {
            format!("created {} stock={} price={}", p.id, p.stock, p.price_cents)
        }
        Outcome::Restocked(p) => format!("restocked {} stock={}", p.id, p.stock),
        Outcome::Archived { up_to } => format!("archived up_to={}", format_order_id(*up_to)),
        Outcome::ClusterVersion { version } => format!("cluster_version={version}"),
        Outcome::Bulk(items) => {
            let items: Vec<String> = items.iter().map(format_outcome).collect();
            format!("bulk [{}]", items.join("; "))
        }
        Outcome::Duplicate(first) => format!("duplicate({})", format_outcome(first)),
        Outcome::Rejected(rejection) => {
            let code = rejection.code();
            match rejection {
                Rejection::InsufficientStock {
                    product,
                    requested,
                    available,
                } => {
                    format!("rejected {code} {product} requested={requested} available={available}")
                }
                Rejection::UnknownProduct { product } | Rejection::ProductExists { product } => {
                    format!("rejected {code} {product}")
                }
                Rejection::KeyReused { key } => format!("rejected {code} {key}"),
                Rejection::Invalid { reason } => format!("rejected {code}: {reason}"),
            }
        }
    }
}

/// What the state machine promises of a horizon that a proposal asks for (`requested`): it
/// never moves backwards, never passes the state's clock (a record stamped at the clock outlives
/// the entry that stamped it), never goes beyond what was asked, and reaches what was asked as
/// far as the clock allows.
fn horizon_moves_as_stated(what: &str, before: u64, requested: u64, after: u64, clock_ms: u64) {
    assert!(
        after >= before,
        "{what} moved backwards: {before} -> {after}"
    );
    assert!(
        after <= clock_ms,
        "{what} passed the state's clock: {after} > {clock_ms}"
    );
    assert!(
        after <= requested.max(before),
        "{what} went beyond the proposal's {requested}: {before} -> {after}"
    );
    assert!(
        after >= requested.min(clock_ms),
        "{what} stopped short of the proposal's {requested} (clock {clock_ms}): {before} -> {after}"
    );
}

/// What a confirmed create or restock must do to its product: `deltas` holds (created with this
/// stock, restocked by, sold) per product. False for other kinds (and for refusals, which
/// change nothing: checked against the state after the entry).
fn catalog_delta(
    op: &Op,
    outcome: &Outcome,
    deltas: &mut BTreeMap<String, (Option<u64>, u64, u64)>,
) -> bool {
    match (op, outcome) {
        (Op::CreateProduct { product, stock, .. }, Outcome::ProductCreated(p)) => {
            assert_eq!(&p.id, product);
            deltas.entry(p.id.clone()).or_default().0 = Some(*stock);
            true
        }
        (Op::Restock { product, quantity }, Outcome::Restocked(p)) => {
            assert_eq!(&p.id, product);
            deltas.entry(p.id.clone()).or_default().1 += quantity;
            true
        }
        _ => false,
    }
}

/// A cluster version above what this release runs stops the apply (a storage fault, so the node
/// stops) rather than applying entries it may not understand; it changes nothing.
#[test]
fn a_cluster_version_this_release_does_not_run_stops_the_apply() {
    let mut state = MemState::default();
    let newer = flashstock_api::CLUSTER_VERSION + 1;
    let proposal = Proposal {
        proposed_at_ms: 1000,
        forget_keys_before_ms: 0,
        drop_archived_before_ms: 0,
        commands: vec![Command {
            key: "cluster-version-next".into(),
            op: Op::SetClusterVersion { version: newer },
        }],
    };
    let before = state.clone();
    let fault = apply_proposal(&mut state, 1, &proposal).expect_err("refused");
    assert!(
        fault.to_string().contains(&format!(
            "raises the cluster version to {newer}; this release"
        )),
        "{fault}"
    );
    assert_eq!(state.cluster_version, before.cluster_version);
    assert!(state.keys.is_empty(), "nothing recorded");
}
