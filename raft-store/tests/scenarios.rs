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
//! tick                                          one entry with no command
//! create-limited KEY PRODUCT "NAME" price=C stock=N limit=L    Op::CreateLimitedProduct
//! limit KEY PRODUCT L|none                      Op::SetLimit
//! hold KEY ttl=MS [customer=C] [token=T] PRODUCT:QTY...        Op::Hold
//! confirm KEY HOLD [token=T]                    Op::ConfirmHold (HOLD: raw id or 3:0)
//! release KEY HOLD [token=T]                    Op::ReleaseHold
//! checkout KEY [customer=C] [token=T] PRODUCT:QTY...           Op::Checkout
//! cancel KEY ORDER [token=T] [within=MS]        Op::CancelOrder
//! part KEY ttl=MS [primary=HOLD] [customer=C] [token=T] PRODUCT:QTY...  Op::HoldPart
//! settle KEY HOLD commit|abort                  Op::SettlePart
//! ```
//!
//! A token `T` is one hex digit, standing for that digit 32 times; no `token=`: `None` (an
//! admin, for confirm, release and cancel).
//!
//! Tokens may be double-quoted to hold spaces or be empty (`""`). Entries get log indexes 1, 2, ...
//! Order ids are printed as `196608(3:0)`: the raw id, then the entry's log index and the slot.
//!
//! After each entry the runner prints the outcomes (`  -> ...`, `  -> [slot] ...` in a batch), one
//! line per product, and a state line; and it asserts, whatever the golden file says:
//! - conservation of every product, by `Product::is_conserved` and recomputed here;
//! - each product's counters moved exactly by this entry's confirmed restocks and purchases (so
//!   stock never goes up but by a restock, and never down but by a purchase);
//! - each product's counters moved exactly by this entry's confirmed commands and the holds it
//!   expired: available, held and sold, with `initial + restocked == stock + held + sold`;
//! - the orders in `MemState.orders` are exactly the placed orders not dropped yet, and their
//!   lines not cancelled plus the dropped ones (tracked here) add up to each product's `sold`;
//!   an order is dropped only once the archive cursor passed it and its retention is over;
//! - the held holds add up to each product's `held`; no order comes from a hold that was not
//!   held and in time; a hold expires only past its deadline;
//! - a part of a cart across groups is linked to its primary (itself, for a primary) exactly
//!   while it is held; a secondary part never expires, and a primary is committed only in time;
//! - no customer has more of a limited product than its limit, and the state's count is what
//!   its held holds and standing orders of the limit's epoch add up to;
//! - the idempotency horizon, the retention horizon and the archive cursor never move backwards;
//! - the meta's counters of placed, archived and dropped orders match the orders themselves;
//! - every fresh outcome is recorded under its key, and a duplicate returns the recorded one.
//!
//! Every script is also run a second time from scratch, with each proposal sent through bincode
//! as a follower would receive it; both runs must give the same text and the same `MemState`.
//! The second run also applies every entry to the RocksDB state machine: after each entry, its
//! outcomes and everything its reader shows (products and orders with their terms, holds,
//! customers' counts, cancellations, the meta, the next hold deadline) must be the reference's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::{fs, iter};

use flashstock_api::{
    Command, HoldId, HoldState, ItemOutcome, Line, Op, OrderId, Outcome, Product, ProductTerms,
    Proposal, Rejection,
};
use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use raft_store::inventory::{apply_proposal, bulk_digest, record_key, MemState, OrderRecord};
use raft_store::Group;

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
    /// Placed orders not dropped yet: must equal `state.orders` after every entry.
    live_orders: BTreeMap<OrderId, OrderRecord>,
    /// Every confirmed purchase, dropped or not.
    placed: u64,
    /// Quantity of the dropped orders, per product.
    dropped_quantity: BTreeMap<String, u64>,
    dropped: u64,
    out: String,
    /// The RocksDB state machine, applying the same entries (the second run only).
    rocks: Option<Rocks>,
}

/// The RocksDB state machine in a temporary directory.
struct Rocks {
    machine: raft_store::StateMachine,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Rocks {
    fn new() -> Rocks {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (_log, machine) = raft_store::open(dir.path()).expect("a fresh store opens");
        Rocks {
            machine,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime"),
            _dir: dir,
        }
    }

    fn apply(&mut self, index: u64, proposal: &Proposal) -> Vec<Outcome> {
        let entry = raft_store::Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(proposal.clone()),
        };
        let mut outcomes = self
            .runtime
            .block_on(self.machine.apply(vec![entry]))
            .expect("RocksDB applies the entry");
        outcomes.pop().expect("one entry's outcomes")
    }

    /// Everything the reader shows is the reference's.
    fn assert_same(&self, reference: &MemState) {
        let reader = self.machine.reader();
        let all = usize::MAX;
        assert_eq!(
            reader.product_records(None, all).unwrap(),
            reference.products.values().cloned().collect::<Vec<_>>(),
            "RocksDB products differ from the reference"
        );
        assert_eq!(
            reader.order_records(None, all).unwrap(),
            reference.orders.values().cloned().collect::<Vec<_>>(),
            "RocksDB orders differ from the reference"
        );
        assert_eq!(
            reader.holds(None, all).unwrap(),
            reference.holds.values().cloned().collect::<Vec<_>>(),
            "RocksDB holds differ from the reference"
        );
        assert_eq!(
            reader.next_hold_deadline().unwrap(),
            reference.holds_due.first().map(|(at, _)| *at),
            "RocksDB's hold deadlines differ from the reference"
        );
        for ((product, customer), taken) in &reference.taken {
            assert_eq!(reader.customer_taken(product, customer).unwrap(), *taken);
        }
        let cancellations: Vec<_> = reader.cancellations(None, all).unwrap();
        assert_eq!(
            cancellations,
            reference
                .cancellations
                .iter()
                .map(|(at, c)| (*at, c.clone()))
                .collect::<Vec<_>>(),
            "RocksDB cancellations differ from the reference"
        );
        assert_eq!(
            reader.cart_parts(None, all).unwrap(),
            reference
                .parts
                .iter()
                .map(|(part, primary)| (*part, *primary))
                .collect::<Vec<_>>(),
            "RocksDB's parts of carts differ from the reference"
        );
        assert_eq!(reader.inventory_meta().unwrap(), reference.meta);
        for (key, record) in &reference.keys {
            assert_eq!(reader.key_record(key).unwrap().as_ref(), Some(record));
        }
    }
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
        rocks: through_bincode.then(Rocks::new),
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
            "tick" if tokens.len() == 1 => runner.apply_entry(Vec::new()),
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
        ("create-limited", [_, product, name, price, stock, limit]) => Op::CreateLimitedProduct {
            product: product.clone(),
            name: name.clone(),
            price_cents: named_number(price, "price")?,
            stock: named_number(stock, "stock")?,
            limit_per_customer: number(limit.strip_prefix("limit=").ok_or("expected limit=N")?)?,
        },
        ("limit", [_, product, limit]) => Op::SetLimit {
            product: product.clone(),
            limit_per_customer: match limit.as_str() {
                "none" => None,
                limit => Some(number(limit)?),
            },
        },
        ("hold", [_, rest @ ..]) => {
            let options = Options::parse(rest)?;
            Op::Hold {
                lines: options.lines,
                customer: options.customer,
                ttl_ms: options.ttl_ms.ok_or("a hold needs ttl=MS")?,
                token: options.token,
            }
        }
        ("checkout", [_, rest @ ..]) => {
            let options = Options::parse(rest)?;
            Op::Checkout {
                lines: options.lines,
                customer: options.customer,
                token: options.token,
            }
        }
        ("confirm" | "release", [_, hold, rest @ ..]) => {
            let options = Options::parse(rest)?;
            let hold = HoldId(order_id(hold)?.0);
            if verb == "confirm" {
                Op::ConfirmHold {
                    hold,
                    token: options.token,
                }
            } else {
                Op::ReleaseHold {
                    hold,
                    token: options.token,
                }
            }
        }
        ("part", [_, rest @ ..]) => {
            let options = Options::parse(rest)?;
            Op::HoldPart {
                lines: options.lines,
                customer: options.customer,
                ttl_ms: options.ttl_ms.ok_or("a part needs ttl=MS")?,
                token: options.token,
                primary: options.primary,
            }
        }
        ("settle", [_, hold, decision]) => Op::SettlePart {
            hold: HoldId(order_id(hold)?.0),
            commit: match decision.as_str() {
                "commit" => true,
                "abort" => false,
                _ => return Err("expected commit or abort".into()),
            },
        },
        ("cancel", [_, order, rest @ ..]) => {
            let options = Options::parse(rest)?;
            Op::CancelOrder {
                order: order_id(order)?,
                token: options.token,
                within_ms: options.within_ms,
            }
        }
        _ => return Err("unknown step, or wrong number of arguments".into()),
    };
    Ok(Command {
        key: args[0].clone(),
        op,
    })
}

/// The `name=value` options and `PRODUCT:QTY` lines of a checkout step.
#[derive(Default)]
struct Options {
    lines: Vec<Line>,
    customer: Option<String>,
    token: Option<String>,
    ttl_ms: Option<u64>,
    within_ms: Option<u64>,
    primary: Option<HoldId>,
}

impl Options {
    fn parse(tokens: &[String]) -> Result<Options, String> {
        let mut options = Options::default();
        for token in tokens {
            if let Some((name, value)) = token.split_once('=') {
                match name {
                    "customer" => options.customer = Some(value.to_owned()),
                    "token" => options.token = Some(value.repeat(flashstock_api::ORDER_TOKEN_LEN)),
                    "ttl" => options.ttl_ms = Some(number(value)?),
                    "within" => options.within_ms = Some(number(value)?),
                    "primary" => options.primary = Some(HoldId(order_id(value)?.0)),
                    _ => return Err(format!("unknown option {name:?}")),
                }
            } else if let Some((product, quantity)) = token.split_once(':') {
                options.lines.push(Line {
                    product: product.to_owned(),
                    quantity: number(quantity)?,
                });
            } else {
                return Err(format!(
                    "expected NAME=VALUE or PRODUCT:QTY, found {token:?}"
                ));
            }
        }
        Ok(options)
    }
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
        let outcomes = apply_proposal(&mut self.state, &Group::only(), index, &proposal)
            .expect("MemState never faults");
        if let Some(rocks) = &mut self.rocks {
            assert_eq!(
                rocks.apply(index, &proposal),
                outcomes,
                "RocksDB answered entry {index} differently"
            );
            rocks.assert_same(&self.state);
        }
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
        for record in self.state.products.values() {
            let p = &record.product;
            let (id, stock, sold) = (&p.id, p.stock, p.sold);
            let (initial, restocked) = (p.initial_stock, p.restocked);
            write!(
                self.out,
                "  {id} stock={stock} sold={sold} initial={initial} restocked={restocked}"
            )
            .unwrap();
            let terms = record.terms;
            if !terms.is_empty() {
                write!(self.out, " held={}", terms.held).unwrap();
                if let Some(limit) = terms.limit_per_customer {
                    write!(self.out, " limit={limit}/epoch{}", terms.limit_epoch).unwrap();
                }
                if terms.cancelled > 0 {
                    write!(self.out, " cancelled={}", terms.cancelled).unwrap();
                }
            }
            writeln!(self.out).unwrap();
        }
        if !self.state.holds.is_empty() {
            let holds: Vec<String> = self
                .state
                .holds
                .values()
                .map(|hold| {
                    let id = OrderId(hold.id.0);
                    let at = format!("{}:{}", id.log_index(), id.slot());
                    match hold.state {
                        HoldState::Held => format!("{at}=held(until {})", hold.expires_at_ms),
                        HoldState::Confirmed { order } => {
                            format!("{at}=confirmed({}:{})", order.log_index(), order.slot())
                        }
                        state => format!("{at}={}(at {})", state.as_str(), hold.changed_at_ms),
                    }
                })
                .collect();
            writeln!(self.out, "  holds: {}", holds.join(" ")).unwrap();
        }
        if !self.state.taken.is_empty() {
            let taken: Vec<String> = self
                .state
                .taken
                .iter()
                .map(|((product, customer), taken)| format!("{product}/{customer}={taken}"))
                .collect();
            writeln!(self.out, "  taken: {}", taken.join(" ")).unwrap();
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
        // What this entry's confirmed commands, and the holds it expired, must have done to
        // each product.
        let mut moves: BTreeMap<String, Moves> = BTreeMap::new();
        let clock = self.state.meta.clock_ms;
        for (slot, (command, outcome)) in proposal.commands.iter().zip(outcomes).enumerate() {
            let position = OrderId::new(index, slot as u16);
            // The record of the bulk command an item key `K#i` belongs to, and the item's index.
            let bulk_record = flashstock_api::split_bulk_item_key(&command.key)
                .and_then(|(request, index)| Some((&self.state.keys.get(request)?.outcome, index)));
            let by_bulk_record = bulk_record.and_then(|(outcome, index)| match outcome {
                Outcome::Bulk(outcomes) => outcomes.get(index),
                _ => None,
            });
            // From cluster version 4 that record says only what the item did: the item's own
            // command is answered with the product as it stands.
            let by_bulk_done = bulk_record.and_then(|(outcome, index)| match outcome {
                Outcome::BulkDone(items) => items.get(index),
                _ => None,
            });
            let recorded = self
                .state
                .keys
                .get(&*record_key(command))
                .map(|record| &record.outcome)
                .or(by_bulk_record);
            match outcome {
                Outcome::Duplicate(first) if recorded.is_none() && by_bulk_done.is_some() => {
                    assert_eq!(
                        Some(&ItemOutcome::of((**first).clone())),
                        by_bulk_done,
                        "an item answered from a bulk record repeats what it did"
                    )
                }
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
                    catalog_moves(op, item, &mut moves);
                }
                continue;
            }
            if let (Op::Bulk { ops }, Outcome::BulkDone(items)) = (&command.op, outcome) {
                assert_eq!(ops.len(), items.len(), "one outcome per bulk item");
                // From cluster version 5 its record keeps a digest of the request, not the
                // request.
                let kept = &self.state.keys[&command.key].op;
                if self.state.cluster_version.unwrap_or(1) >= 5 {
                    assert_eq!(kept, &bulk_digest(ops), "a bulk record keeps the digest");
                } else {
                    assert_eq!(kept, &command.op, "a bulk record keeps the request");
                }
                for (op, item) in ops.iter().zip(items) {
                    item_moves(op, item, &mut moves);
                }
                continue;
            }
            if catalog_moves(&command.op, outcome, &mut moves) {
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
                    assert_eq!(order.id, position, "order id is the log position");
                    assert_eq!(
                        (&order.key, &order.product, order.quantity, &order.customer),
                        (&command.key, product, *quantity, customer)
                    );
                    assert_eq!(order.placed_at_ms, clock);
                    moves.entry(product.clone()).or_default().sold += u64::from(*quantity);
                    let record = self
                        .state
                        .orders
                        .get(&order.id)
                        .expect("the order is stored");
                    assert_eq!(&record.order, order, "the stored order is the answer");
                    self.live_orders.insert(order.id, record.clone());
                    self.placed += 1;
                }
                (
                    Op::Hold {
                        lines, customer, ..
                    },
                    Outcome::Held(hold),
                ) => {
                    assert_eq!(hold.id, HoldId(position.0), "hold id is the log position");
                    assert_eq!(&hold.customer, customer);
                    assert_eq!(hold.lines.len(), lines.len());
                    for (line, held) in lines.iter().zip(&hold.lines) {
                        assert_eq!(
                            (&held.product, held.quantity),
                            (&line.product, line.quantity)
                        );
                        moves.entry(line.product.clone()).or_default().held +=
                            u64::from(line.quantity);
                    }
                    assert_eq!(self.state.holds.get(&hold.id), Some(hold));
                }
                (
                    Op::HoldPart {
                        lines,
                        customer,
                        primary,
                        ..
                    },
                    Outcome::Held(hold),
                ) => {
                    assert_eq!(hold.id, HoldId(position.0), "hold id is the log position");
                    assert_eq!(&hold.customer, customer);
                    for line in lines {
                        moves.entry(line.product.clone()).or_default().held +=
                            u64::from(line.quantity);
                    }
                    assert_eq!(
                        self.state.parts.get(&hold.id),
                        Some(&primary.unwrap_or(hold.id)),
                        "a part is linked to its primary"
                    );
                }
                (Op::SettlePart { hold, commit }, outcome)
                    if !matches!(outcome, Outcome::Rejected(_) | Outcome::Duplicate(_)) =>
                {
                    let was = before.holds.get(hold).expect("a settled part existed");
                    assert_eq!(was.state, HoldState::Held, "only a held part is settled");
                    let primary = before.parts.get(hold).expect("only a part is settled");
                    assert_eq!(
                        self.state.parts.get(hold),
                        None,
                        "a settled part is unlinked"
                    );
                    match outcome {
                        Outcome::Placed { order, terms } => {
                            assert!(*commit, "only a commit places an order");
                            assert!(
                                primary != hold || clock < was.expires_at_ms,
                                "a primary part is committed only in time"
                            );
                            assert_eq!(terms.hold, Some(*hold));
                            for line in &was.lines {
                                let m = moves.entry(line.product.clone()).or_default();
                                m.confirmed += u64::from(line.quantity);
                            }
                            self.placed_order(position, order, terms, &was.customer);
                        }
                        Outcome::Released(_) => {
                            assert!(!*commit, "only an abort releases");
                            for line in &was.lines {
                                moves.entry(line.product.clone()).or_default().returned +=
                                    u64::from(line.quantity);
                            }
                        }
                        other => panic!("outcome {other:?} does not answer a settle"),
                    }
                }
                (Op::ConfirmHold { hold, .. }, Outcome::Placed { order, terms }) => {
                    let was = before.holds.get(hold).expect("a confirmed hold existed");
                    assert_eq!(was.state, HoldState::Held, "only a held hold is confirmed");
                    assert!(
                        clock < was.expires_at_ms,
                        "a hold is confirmed only in time"
                    );
                    assert_eq!(terms.hold, Some(*hold));
                    for line in &was.lines {
                        let m = moves.entry(line.product.clone()).or_default();
                        m.confirmed += u64::from(line.quantity);
                    }
                    self.placed_order(position, order, terms, &was.customer);
                }
                (
                    Op::Checkout {
                        lines, customer, ..
                    },
                    Outcome::Placed { order, terms },
                ) => {
                    assert_eq!(terms.lines.len(), lines.len());
                    for line in lines {
                        moves.entry(line.product.clone()).or_default().sold +=
                            u64::from(line.quantity);
                    }
                    self.placed_order(position, order, terms, customer);
                }
                (Op::ReleaseHold { hold, .. }, Outcome::Released(released)) => {
                    let was = before.holds.get(hold).expect("a released hold existed");
                    assert_eq!(was.state, HoldState::Held, "only a held hold is released");
                    assert_eq!(released.state, HoldState::Released);
                    for line in &was.lines {
                        moves.entry(line.product.clone()).or_default().returned +=
                            u64::from(line.quantity);
                    }
                }
                (Op::CancelOrder { order, .. }, Outcome::Cancelled { terms, .. }) => {
                    let live = self
                        .live_orders
                        .get_mut(order)
                        .expect("a cancelled order stood");
                    assert_eq!(live.terms.cancelled_at_ms, None, "cancelled only once");
                    for line in live.terms.lines_of(&live.order) {
                        moves.entry(line.product.clone()).or_default().cancelled +=
                            u64::from(line.quantity);
                    }
                    assert_eq!(terms.cancelled_at_ms, Some(clock));
                    live.terms = terms.clone();
                }
                (
                    Op::SetLimit {
                        product,
                        limit_per_customer,
                    },
                    Outcome::ProductWithTerms { terms, .. },
                ) => {
                    assert_eq!(&terms.limit_per_customer, limit_per_customer);
                    moves.entry(product.clone()).or_default().terms_set = true;
                }
                (
                    Op::CreateLimitedProduct { product, stock, .. },
                    Outcome::ProductWithTerms { created: true, .. },
                ) => {
                    let m = moves.entry(product.clone()).or_default();
                    m.created = Some(*stock);
                    m.terms_set = true;
                }
                (Op::MarkArchived { .. }, Outcome::Archived { .. }) => {}
                (Op::SetClusterVersion { .. }, Outcome::ClusterVersion { .. }) => {}
                (Op::Bulk { .. }, Outcome::Bulk(_) | Outcome::BulkDone(_)) => {
                    unreachable!("checked above")
                }
                (_, Outcome::Rejected(_) | Outcome::Duplicate(_)) => {}
                (op, outcome) => panic!("outcome {outcome:?} does not answer {op:?}"),
            }
        }

        for id in self.state.parts.keys() {
            let hold = self.state.holds.get(id).expect("a linked part exists");
            assert_eq!(
                hold.state,
                HoldState::Held,
                "part {id} is linked once settled"
            );
        }

        // Holds this entry expired, by the sweep or by a late confirmation or release.
        for (id, was) in &before.holds {
            let Some(now) = self.state.holds.get(id) else {
                assert_ne!(was.state, HoldState::Held, "a held hold was forgotten");
                assert!(
                    was.changed_at_ms < self.state.meta.forget_keys_before_ms,
                    "hold {id} forgotten before the idempotency horizon passed it"
                );
                continue;
            };
            if was.state == HoldState::Held && now.state == HoldState::Expired {
                assert!(
                    clock >= was.expires_at_ms,
                    "hold {id} expired before its deadline"
                );
                assert!(
                    before.parts.get(id).is_none_or(|primary| primary == id),
                    "secondary part {id} expired"
                );
                for line in &was.lines {
                    moves.entry(line.product.clone()).or_default().returned +=
                        u64::from(line.quantity);
                }
            } else if was.state != HoldState::Held {
                assert_eq!(was, now, "a finished hold never changes");
            }
        }

        for id in before.products.keys() {
            assert!(
                self.state.products.contains_key(id),
                "product {id} disappeared"
            );
        }
        for (id, after) in &self.state.products {
            let m = moves.remove(id).unwrap_or_default();
            let prev = match (before.products.get(id), m.created) {
                (Some(prev), None) => prev.clone(),
                (None, Some(stock)) => raft_store::inventory::ProductRecord {
                    product: Product {
                        stock,
                        initial_stock: stock,
                        restocked: 0,
                        sold: 0,
                        ..after.product.clone()
                    },
                    terms: ProductTerms::default(),
                },
                _ => panic!("product {id} appeared without a create, or was created twice"),
            };
            assert!(
                after.is_conserved(),
                "{id}: conservation violated: {after:?}"
            );
            let (p, t) = (&after.product, &after.terms);
            assert_eq!(
                p.initial_stock + p.restocked,
                p.stock + t.held + p.sold,
                "{id}: initial + restocked != stock + held + sold"
            );
            assert!(
                p.stock <= prev.product.stock || m.restocked + m.returned + m.cancelled > 0,
                "{id}: stock went up without a restock, a release, an expiry or a cancellation"
            );
            // Exactly this entry's confirmed commands and expiries moved the counters.
            let stock = (prev.product.stock + m.restocked + m.returned + m.cancelled)
                .checked_sub(m.sold + m.held)
                .expect("took more than the stock");
            let expected = Product {
                stock,
                restocked: prev.product.restocked + m.restocked,
                sold: prev.product.sold + m.sold + m.confirmed - m.cancelled,
                ..prev.product.clone()
            };
            assert_eq!(
                p, &expected,
                "{id}: counters moved by something else than this entry"
            );
            assert_eq!(
                t.held,
                prev.terms.held + m.held - m.confirmed - m.returned,
                "{id}: held moved by something else than this entry"
            );
            assert_eq!(t.cancelled, prev.terms.cancelled + m.cancelled);
            if !m.terms_set {
                assert_eq!(
                    (t.limit_per_customer, t.limit_epoch),
                    (prev.terms.limit_per_customer, prev.terms.limit_epoch),
                    "{id}: the limit changed without a command setting it"
                );
            }
            // What the held holds hold is what the product says is held.
            let held: u64 = self
                .state
                .holds
                .values()
                .filter(|hold| hold.state == HoldState::Held)
                .flat_map(|hold| &hold.lines)
                .filter(|line| &line.product == id)
                .map(|line| u64::from(line.quantity))
                .sum();
            assert_eq!(held, t.held, "{id}: the held holds do not add up to held");
        }
        assert!(
            moves.is_empty(),
            "confirmed commands on missing products: {moves:?}"
        );
        self.check_limits();

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
            let record = self.live_orders.remove(&id).unwrap();
            assert!(
                record.order.placed_at_ms < meta.drop_archived_before_ms,
                "order {id} dropped within its retention"
            );
            if record.terms.cancelled_at_ms.is_none() {
                for line in record.terms.lines_of(&record.order) {
                    *self.dropped_quantity.entry(line.product).or_default() +=
                        u64::from(line.quantity);
                }
            }
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
            "the state's orders are the placed ones"
        );
        for (id, record) in &self.state.products {
            let live: u64 = self
                .live_orders
                .values()
                .filter(|o| o.terms.cancelled_at_ms.is_none())
                .flat_map(|o| o.terms.lines_of(&o.order))
                .filter(|line| &line.product == id)
                .map(|line| u64::from(line.quantity))
                .sum();
            let dropped = self.dropped_quantity.get(id).copied().unwrap_or(0);
            assert_eq!(
                live + dropped,
                record.product.sold,
                "{id}: orders not cancelled do not add up to sold"
            );
        }
    }

    /// An order placed by a confirmation or a checkout at `position`, as the state stores it.
    fn placed_order(
        &mut self,
        position: OrderId,
        order: &flashstock_api::Order,
        terms: &flashstock_api::OrderTerms,
        customer: &Option<String>,
    ) {
        assert_eq!(order.id, position, "order id is the log position");
        assert_eq!(&order.customer, customer);
        let first = &terms.lines[0];
        assert_eq!(
            (&order.product, order.quantity, order.price_cents),
            (&first.product, first.quantity, first.price_cents),
            "an order's own fields are its first line's"
        );
        let record = OrderRecord {
            order: order.clone(),
            terms: terms.clone(),
        };
        assert_eq!(self.state.orders.get(&order.id), Some(&record));
        self.live_orders.insert(order.id, record);
        self.placed += 1;
    }

    /// No customer has more of a limited product than its limit, and each count is what its
    /// held holds and standing orders of the product's limit epoch add up to (orders dropped
    /// after their retention aside).
    fn check_limits(&self) {
        let mut counted: BTreeMap<(String, String), u64> = BTreeMap::new();
        let mut count = |product: &str, customer: &Option<String>, quantity: u32, epoch: u32| {
            let Some(record) = self.state.products.get(product) else {
                return;
            };
            let terms = record.terms;
            if let (Some(customer), Some(_)) = (customer, terms.limit_per_customer) {
                if epoch != 0 && epoch == terms.limit_epoch {
                    *counted
                        .entry((product.to_owned(), customer.clone()))
                        .or_default() += u64::from(quantity);
                }
            }
        };
        for hold in self.state.holds.values() {
            if hold.state == HoldState::Held {
                for line in &hold.lines {
                    count(
                        &line.product,
                        &hold.customer,
                        line.quantity,
                        line.limit_epoch,
                    );
                }
            }
        }
        for record in self.state.orders.values() {
            if record.terms.cancelled_at_ms.is_none() {
                for line in record.terms.lines_of(&record.order) {
                    count(
                        &line.product,
                        &record.order.customer,
                        line.quantity,
                        line.limit_epoch,
                    );
                }
            }
        }
        for ((product, customer), taken) in &self.state.taken {
            let limit = self.state.products[product]
                .terms
                .limit_per_customer
                .expect("counts are kept only under a limit");
            assert!(
                *taken <= u64::from(limit),
                "{customer} has {taken} of {product}, over its limit of {limit}"
            );
        }
        if self.dropped == 0 {
            assert_eq!(
                counted, self.state.taken,
                "the customers' counts are not what their holds and orders add up to"
            );
        }
    }
}

/// How one entry moves a product's stock, item by item.
#[derive(Debug, Default)]
struct Moves {
    /// Created with this stock.
    created: Option<u64>,
    restocked: u64,
    /// Available → sold (a purchase, a checkout).
    sold: u64,
    /// Available → held (a hold).
    held: u64,
    /// Held → sold (a confirmation).
    confirmed: u64,
    /// Held → available (a release, an expiry).
    returned: u64,
    /// Sold → available (a cancellation).
    cancelled: u64,
    /// The limit was set by a command of this entry.
    terms_set: bool,
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
        Outcome::BulkDone(items) => {
            let items: Vec<String> = items.iter().map(format_item).collect();
            format!("bulk-done [{}]", items.join("; "))
        }
        Outcome::Duplicate(first) => format!("duplicate({})", format_outcome(first)),
        Outcome::Held(hold) => format!(
            "held hold={} [{}] until={}",
            format_order_id(OrderId(hold.id.0)),
            hold.lines
                .iter()
                .map(|line| format!("{}:{}", line.product, line.quantity))
                .collect::<Vec<_>>()
                .join(" "),
            hold.expires_at_ms
        ),
        Outcome::Released(hold) => format!("released hold={}", format_order_id(OrderId(hold.id.0))),
        Outcome::Placed { order, terms } | Outcome::Cancelled { order, terms } => {
            let verb = match outcome {
                Outcome::Placed { .. } => "placed",
                _ => "cancelled",
            };
            let lines: Vec<String> = terms
                .lines_of(order)
                .iter()
                .map(|line| {
                    format!(
                        "{}:{} remaining={}",
                        line.product, line.quantity, line.remaining
                    )
                })
                .collect();
            let hold = terms.hold.map_or(String::new(), |hold| {
                format!(" from={}", format_order_id(OrderId(hold.0)))
            });
            format!(
                "{verb} order={} [{}]{hold} at={}",
                format_order_id(order.id),
                lines.join("; "),
                terms.cancelled_at_ms.unwrap_or(order.placed_at_ms)
            )
        }
        Outcome::ProductWithTerms {
            created,
            product,
            terms,
        } => format!(
            "{} {} stock={} held={} limit={}",
            if *created { "created" } else { "product" },
            product.id,
            product.stock,
            terms.held,
            terms
                .limit_per_customer
                .map_or("none".to_owned(), |limit| limit.to_string())
        ),
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
                Rejection::LimitReached {
                    product,
                    limit,
                    taken,
                    requested,
                } => format!(
                    "rejected {code} {product} limit={limit} taken={taken} requested={requested}"
                ),
                Rejection::CustomerRequired { product } => format!("rejected {code} {product}"),
                Rejection::UnknownHold { hold } | Rejection::HoldExpired { hold } => {
                    format!("rejected {code} hold={}", format_order_id(OrderId(hold.0)))
                }
                Rejection::HoldFinished { hold, state } => format!(
                    "rejected {code} hold={} {}",
                    format_order_id(OrderId(hold.0)),
                    state.as_str()
                ),
                Rejection::OrderNotFound { order } | Rejection::AlreadyCancelled { order } => {
                    format!("rejected {code} order={}", format_order_id(*order))
                }
                Rejection::CancelWindowPassed { order, within_ms } => format!(
                    "rejected {code} order={} within={within_ms}",
                    format_order_id(*order)
                ),
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

/// What a confirmed create or restock must do to its product. False for other kinds (and for
/// refusals, which change nothing: checked against the state after the entry).
fn catalog_moves(op: &Op, outcome: &Outcome, moves: &mut BTreeMap<String, Moves>) -> bool {
    match (op, outcome) {
        (Op::CreateProduct { product, stock, .. }, Outcome::ProductCreated(p)) => {
            assert_eq!(&p.id, product);
            moves.entry(p.id.clone()).or_default().created = Some(*stock);
            true
        }
        (Op::Restock { product, quantity }, Outcome::Restocked(p))
        | (
            Op::Restock { product, quantity },
            Outcome::ProductWithTerms {
                created: false,
                product: p,
                ..
            },
        ) => {
            assert_eq!(&p.id, product);
            moves.entry(p.id.clone()).or_default().restocked += quantity;
            true
        }
        _ => false,
    }
}

/// What an item of an [`Outcome::BulkDone`] says.
fn format_item(item: &ItemOutcome) -> String {
    match item {
        ItemOutcome::Created => "created".to_owned(),
        ItemOutcome::Restocked => "restocked".to_owned(),
        ItemOutcome::Rejected(rejection) => format_outcome(&Outcome::Rejected(rejection.clone())),
        ItemOutcome::Duplicate(first) => format!("duplicate({})", format_item(first)),
    }
}

/// What a bulk item that says only what it did ([`Outcome::BulkDone`]) must have done to its
/// product.
fn item_moves(op: &Op, item: &ItemOutcome, moves: &mut BTreeMap<String, Moves>) {
    match (op, item) {
        (Op::CreateProduct { product, stock, .. }, ItemOutcome::Created) => {
            moves.entry(product.clone()).or_default().created = Some(*stock);
        }
        (Op::Restock { product, quantity }, ItemOutcome::Restocked) => {
            moves.entry(product.clone()).or_default().restocked += quantity;
        }
        (_, ItemOutcome::Rejected(_) | ItemOutcome::Duplicate(_)) => {}
        (op, item) => panic!("bulk item outcome {item:?} does not answer {op:?}"),
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
    let fault = apply_proposal(&mut state, &Group::only(), 1, &proposal).expect_err("refused");
    assert!(
        fault.to_string().contains(&format!(
            "raises the cluster version to {newer}; this release"
        )),
        "{fault}"
    );
    assert_eq!(state.cluster_version, before.cluster_version);
    assert!(state.keys.is_empty(), "nothing recorded");
}
