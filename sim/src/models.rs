//! Sequential models of the entities whose client operations the workload records, and the
//! checker that feeds each entity's sub-history to the linearizability search
//! (`crate::linearizable`). Only answers read from the entity actor itself (on its shard's
//! owner, or with replicated shards its leader) are checked: those are the linearizable
//! paths. See `docs/simulation.md` for what is left out and why.

use crate::check::{Violation, World};
use crate::linearizable::{self, Answer, Model, Operation, Verdict};
use crate::workload::{Op, Outcome, Shown, STOCK_READ, TOP_UP, WALLET_READ};
use agora_actors::order::OrderStatus;
use std::collections::BTreeMap;

/// Model steps the search may take per entity before it calls the verdict inconclusive.
pub const STEP_BUDGET: u64 = 200_000;

/// Every order status, to read the API's names back.
const STATUSES: [OrderStatus; 13] = [
    OrderStatus::Pending,
    OrderStatus::StockReserved,
    OrderStatus::AwaitingPayment,
    OrderStatus::PaymentProcessing,
    OrderStatus::Confirmed,
    OrderStatus::Shipped,
    OrderStatus::Delivered,
    OrderStatus::PaymentFailed,
    OrderStatus::Cancelled,
    OrderStatus::Expired,
    OrderStatus::RefundPending,
    OrderStatus::Refunded,
    OrderStatus::Returned,
];

/// The status an API name stands for.
fn status_named(name: &str) -> Option<OrderStatus> {
    STATUSES.into_iter().find(|s| s.name() == name)
}

/// One order's status, as the sequence the order's stored history went through: the saga
/// moves it on by itself (messages no client sees), so between two client operations any
/// number of the history's later steps may have happened, never an earlier one. A client
/// operation (checkout, replayed checkout, read, cancel) answers the status at the moment
/// it takes effect. The state is the position in the stored history; the smallest position
/// showing the answered status is taken, which allows every continuation a later one does.
#[derive(Debug, Clone)]
pub struct OrderModel {
    /// The order's stored status history, oldest first.
    pub history: Vec<OrderStatus>,
}

impl Model for OrderModel {
    type State = usize;
    type Input = ();
    type Output = OrderStatus;

    fn init(&self) -> usize {
        0
    }

    fn step(&self, at: &usize, _input: &(), seen: Option<&OrderStatus>) -> Option<usize> {
        match seen {
            None => Some(*at),
            Some(seen) => (*at..self.history.len()).find(|&i| self.history[i] == *seen),
        }
    }
}

/// What a client asks of a SKU's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockInput {
    /// The admin receives units; the answer shows the units ever received.
    Receive(u64),
    /// The admin reads the stock (through any node); the answer shows the units ever
    /// received.
    Read,
    /// The units ever received as the disks hold them once the run is over.
    ReadAtEnd,
}

/// A SKU's stock as far as its receipts go: units ever received (`on_hand + sold`, which
/// reservations, releases, commits and restocks leave alone; nothing is written off in the
/// simulation). A receipt adds its units and answers the new total.
#[derive(Debug, Clone, Copy, Default)]
pub struct StockModel;

impl Model for StockModel {
    type State = u64;
    type Input = StockInput;
    type Output = u64;

    fn init(&self) -> u64 {
        0
    }

    fn step(&self, total: &u64, input: &StockInput, shown: Option<&u64>) -> Option<u64> {
        let next = match input {
            StockInput::Receive(units) => total.checked_add(*units)?,
            StockInput::Read | StockInput::ReadAtEnd => *total,
        };
        shown.is_none_or(|s| *s == next).then_some(next)
    }
}

/// What happens to a wallet: the shopper's top-ups and reads, and the moves of their wallet
/// payments, which messages apply at times no client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalletInput {
    /// A top-up under an Idempotency-Key; a key already credited credits nothing and answers
    /// the balance. Answers the balance after it.
    TopUp {
        /// The Idempotency-Key.
        key: String,
        /// Minor units.
        amount_minor: u64,
    },
    /// A read of the wallet; answers the balance.
    Read,
    /// A wallet payment took its amount (a saga step: its outcome is unknown to clients).
    Debit(u64),
    /// A refund paid money back into the wallet (a saga step).
    Credit(u64),
    /// The balance as the disks hold it once every saga is over.
    ReadAtEnd,
}

/// One wallet: its balance and the top-up keys credited. Debits never take the balance
/// below zero.
#[derive(Debug, Clone, Default)]
pub struct WalletModel {
    /// The balance of a new account, minor units.
    pub initial_minor: u64,
}

impl Model for WalletModel {
    type State = (u64, std::collections::BTreeSet<String>);
    type Input = WalletInput;
    type Output = u64;

    fn init(&self) -> Self::State {
        (self.initial_minor, Default::default())
    }

    fn step(
        &self,
        state: &Self::State,
        input: &WalletInput,
        shown: Option<&u64>,
    ) -> Option<Self::State> {
        let (balance, keys) = state;
        let mut keys = keys.clone();
        let next = match input {
            WalletInput::TopUp { key, amount_minor } if keys.insert(key.clone()) => {
                balance.checked_add(*amount_minor)?
            }
            WalletInput::TopUp { .. } | WalletInput::Read | WalletInput::ReadAtEnd => *balance,
            WalletInput::Debit(minor) => balance.checked_sub(*minor)?,
            WalletInput::Credit(minor) => balance.checked_add(*minor)?,
        };
        shown.is_none_or(|s| *s == next).then_some((next, keys))
    }
}

/// How a recorded operation ended, for the search: answered ones carry `output`, unknown
/// ones nothing; definite refusals are left out (`None`).
pub(crate) fn answer_of<O>(op: &Op, output: Option<O>) -> Option<Answer<O>> {
    match (op.outcome, output) {
        (Outcome::Ok, Some(output)) => Some(Answer::Returned {
            at_ms: op.end_ms,
            output,
        }),
        (Outcome::Unknown, _) => Some(Answer::Unknown),
        _ => None,
    }
}

/// One entity's operations for the search, each beside the recorded operation it came
/// from (`None`: the disks' state once the run is over, read last).
pub(crate) struct SubHistory<'a, I, O> {
    ops: Vec<Operation<I, O>>,
    recorded: Vec<Option<&'a Op>>,
}

impl<I, O> Default for SubHistory<'_, I, O> {
    fn default() -> Self {
        Self {
            ops: Vec::new(),
            recorded: Vec::new(),
        }
    }
}

impl<'a, I: std::fmt::Debug, O: std::fmt::Debug> SubHistory<'a, I, O> {
    pub(crate) fn push(&mut self, op: Operation<I, O>, recorded: Option<&'a Op>) {
        self.ops.push(op);
        self.recorded.push(recorded);
    }

    /// One operation, for a violation's detail.
    fn describe(&self, i: usize) -> String {
        let op = &self.ops[i];
        let answer = match &op.answer {
            Answer::Returned { at_ms, output } => format!("{output:?} at {at_ms} ms"),
            Answer::Unknown => "unknown".to_string(),
        };
        let who = self.recorded[i].map_or("the disks".to_string(), |r| {
            format!("{} {}", r.client, r.kind)
        });
        format!("{who} {:?} sent at {} ms: {answer}", op.input, op.invoke_ms)
    }

    /// Runs the search against `model` and names what it found.
    pub(crate) fn judge<M>(
        &self,
        invariant: &'static str,
        entity: &str,
        model: &M,
    ) -> Option<Violation>
    where
        M: Model<Input = I, Output = O>,
    {
        let list = |ops: &[usize]| {
            let named: Vec<String> = ops.iter().map(|i| self.describe(*i)).collect();
            named.join(", ")
        };
        match linearizable::check(model, &self.ops, STEP_BUDGET) {
            Verdict::Linearizable => None,
            Verdict::NotLinearizable { prefix, unplaced } => Some(Violation {
                invariant,
                detail: format!(
                    "{entity}: no linearization; after [{}] none of [{}] fits",
                    list(&prefix),
                    list(&unplaced)
                ),
            }),
            Verdict::Inconclusive { steps } => Some(Violation {
                invariant: "linearizable-inconclusive",
                detail: format!(
                    "{entity}: no verdict within {steps} steps ({} operations)",
                    self.ops.len()
                ),
            }),
        }
    }
}

/// Order statuses: every checkout, replayed checkout, read and cancel a shopper got a 2xx
/// for, by order, against the order's stored history (`linearizable-order`). A status the
/// history never had is named as such.
pub fn orders(world: &World, history: &[Op]) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut by_order: BTreeMap<&str, SubHistory<(), OrderStatus>> = BTreeMap::new();
    for op in history.iter().filter(|o| o.outcome == Outcome::Ok) {
        let (Some(id), Some(name)) = (op.order_id.as_deref(), op.status_seen.as_deref()) else {
            continue;
        };
        let Some(order) = world.order(id) else {
            continue; // reported as a lost order
        };
        let Some(seen) = status_named(name).filter(|s| order.history.iter().any(|(h, _)| h == s))
        else {
            let stored: Vec<&str> = order.history.iter().map(|(s, _)| s.name()).collect();
            out.push(Violation {
                invariant: "linearizable-order",
                detail: format!(
                    "{} saw order {id} {name}, which its history {stored:?} never had",
                    op.client
                ),
            });
            continue;
        };
        let answer = Answer::Returned {
            at_ms: op.end_ms,
            output: seen,
        };
        let operation = Operation {
            invoke_ms: op.invoke_ms,
            answer,
            input: (),
        };
        by_order.entry(id).or_default().push(operation, Some(op));
    }
    for (id, sub) in by_order {
        let Some(order) = world.order(id) else {
            continue;
        };
        let model = OrderModel {
            history: order.history.iter().map(|(s, _)| *s).collect(),
        };
        out.extend(sub.judge("linearizable-order", &format!("order {id}"), &model));
    }
    out
}

/// Stock receipts: every answered or unknown receipt and every answered read, by SKU, and
/// what the disks hold at the end as a last read after every operation
/// (`linearizable-stock`).
pub fn stock(world: &World, history: &[Op]) -> Vec<Violation> {
    let mut by_sku: BTreeMap<&str, SubHistory<StockInput, u64>> = BTreeMap::new();
    for op in history
        .iter()
        .filter(|o| o.kind == "receive" || o.kind == STOCK_READ)
    {
        let Some(sku) = op.sku.as_deref() else {
            continue;
        };
        let shown = match op.shown {
            Shown::StockReceived(total) => Some(total),
            _ => None,
        };
        let Some(answer) = answer_of(op, shown) else {
            continue;
        };
        let operation = Operation {
            invoke_ms: op.invoke_ms,
            answer,
            input: if op.kind == STOCK_READ {
                StockInput::Read
            } else {
                StockInput::Receive(op.quantity)
            },
        };
        by_sku.entry(sku).or_default().push(operation, Some(op));
    }
    let end = end_of(history);
    let mut out = Vec::new();
    for (sku, mut sub) in by_sku {
        if let Some(s) = world.stock(sku) {
            sub.push(read_at_end(end, StockInput::ReadAtEnd, s.received), None);
        }
        out.extend(sub.judge("linearizable-stock", &format!("stock {sku}"), &StockModel));
    }
    out
}

/// Wallets: every top-up and read a shopper sent, by account, with the debits and refunds
/// their wallet payments made (placed anywhere, as messages apply them when no client
/// sees), and the balance the disks hold at the end as a last read (`linearizable-wallet`).
/// Only once every saga is over (`settled`): before, a move may be on its way.
pub fn wallets(world: &World, history: &[Op], initial_minor: u64, settled: bool) -> Vec<Violation> {
    if !settled {
        return Vec::new();
    }
    let mut by_email: BTreeMap<String, SubHistory<WalletInput, u64>> = BTreeMap::new();
    for op in history
        .iter()
        .filter(|o| [TOP_UP, WALLET_READ].contains(&o.kind))
    {
        let shown = match op.shown {
            Shown::WalletBalance(minor) => Some(minor),
            _ => None,
        };
        let Some(answer) = answer_of(op, shown) else {
            continue;
        };
        let input = match (op.kind, &op.key) {
            (TOP_UP, Some(key)) => WalletInput::TopUp {
                key: key.clone(),
                amount_minor: op.quantity,
            },
            (TOP_UP, None) => continue,
            _ => WalletInput::Read,
        };
        let operation = Operation {
            invoke_ms: op.invoke_ms,
            answer,
            input,
        };
        let email = format!("{}@sim.test", op.client);
        by_email.entry(email).or_default().push(operation, Some(op));
    }
    let end = end_of(history);
    let mut out = Vec::new();
    for (account, wallet) in world.wallets() {
        let Some(mut sub) = by_email.remove(&wallet.email) else {
            continue;
        };
        for moved in world
            .wallet_moves()
            .iter()
            .filter(|m| &m.customer == account)
        {
            let debit =
                (moved.debited_minor > 0).then_some(WalletInput::Debit(moved.debited_minor));
            let credits = moved.credits_minor.iter().map(|c| WalletInput::Credit(*c));
            for input in debit.into_iter().chain(credits) {
                let unseen = Operation {
                    invoke_ms: 0,
                    answer: Answer::Unknown,
                    input,
                };
                sub.push(unseen, None);
            }
        }
        sub.push(
            read_at_end(end, WalletInput::ReadAtEnd, wallet.balance_minor),
            None,
        );
        let model = WalletModel { initial_minor };
        out.extend(sub.judge(
            "linearizable-wallet",
            &format!("wallet of {}", wallet.email),
            &model,
        ));
    }
    out
}

/// The virtual ms just after every operation of `history`.
pub(crate) fn end_of(history: &[Op]) -> u64 {
    history
        .iter()
        .map(|o| o.end_ms.max(o.invoke_ms))
        .max()
        .unwrap_or(0)
        + 1
}

/// The disks' state once the run is over, read last: `input` answered `output` at `end`.
pub(crate) fn read_at_end<I, O>(end: u64, input: I, output: O) -> Operation<I, O> {
    Operation {
        invoke_ms: end,
        answer: Answer::Returned { at_ms: end, output },
        input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OrderStatus::*;

    #[test]
    fn every_status_reads_back_from_its_name() {
        for s in STATUSES {
            assert_eq!(status_named(s.name()), Some(s));
        }
        assert_eq!(status_named("SHIPPING"), None);
    }

    #[test]
    fn an_orders_status_only_moves_on_along_its_history() {
        let m = OrderModel {
            history: vec![Pending, AwaitingPayment, Confirmed, Shipped, Delivered],
        };
        assert_eq!(m.step(&0, &(), Some(&Confirmed)), Some(2));
        assert_eq!(m.step(&2, &(), Some(&Confirmed)), Some(2));
        assert_eq!(m.step(&2, &(), Some(&AwaitingPayment)), None);
        assert_eq!(m.step(&2, &(), Some(&Cancelled)), None);
        assert_eq!(m.step(&3, &(), None), Some(3));
    }

    #[test]
    fn a_top_up_credits_its_key_once_and_moves_keep_the_balance_above_zero() {
        let m = WalletModel {
            initial_minor: 1_000,
        };
        let top_up = |key: &str| WalletInput::TopUp {
            key: key.into(),
            amount_minor: 500,
        };
        let (balance, keys) = m.step(&m.init(), &top_up("k"), Some(&1_500)).unwrap();
        assert_eq!(balance, 1_500);
        // The same key again: credited once, it answers the balance.
        let state = (balance, keys);
        assert_eq!(
            m.step(&state, &top_up("k"), Some(&1_500)).map(|s| s.0),
            Some(1_500)
        );
        assert_eq!(m.step(&state, &top_up("k"), Some(&2_000)), None);
        assert_eq!(
            m.step(&state, &top_up("j"), Some(&2_000)).map(|s| s.0),
            Some(2_000)
        );
        assert_eq!(m.step(&state, &WalletInput::Debit(1_600), None), None);
        assert_eq!(
            m.step(&state, &WalletInput::Debit(1_500), None)
                .map(|s| s.0),
            Some(0)
        );
        assert_eq!(
            m.step(&state, &WalletInput::Credit(10), None).map(|s| s.0),
            Some(1_510)
        );
        assert_eq!(m.step(&state, &WalletInput::Read, Some(&1_400)), None);
    }

    #[test]
    fn a_read_between_a_debit_and_its_refund_may_see_either_but_not_a_lost_top_up() {
        let m = WalletModel {
            initial_minor: 1_000,
        };
        let op = |invoke_ms, answer, input| Operation {
            invoke_ms,
            answer,
            input,
        };
        let seen = |at_ms, output| Answer::Returned { at_ms, output };
        let top_up = WalletInput::TopUp {
            key: "k".into(),
            amount_minor: 200,
        };
        let mut ops = vec![
            op(0, Answer::Unknown, WalletInput::Debit(300)),
            op(0, Answer::Unknown, WalletInput::Credit(300)),
            op(10, seen(20, 700), WalletInput::Read),
            op(30, seen(40, 1_200), top_up.clone()),
            op(100, seen(100, 1_200), WalletInput::ReadAtEnd),
        ];
        assert_eq!(
            linearizable::check(&m, &ops, STEP_BUDGET),
            Verdict::Linearizable
        );
        // The balance at the end lost the top-up a shopper was told about.
        ops[4] = op(100, seen(100, 1_000), WalletInput::ReadAtEnd);
        assert!(matches!(
            linearizable::check(&m, &ops, STEP_BUDGET),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn a_receipt_adds_its_units_and_the_end_reads_them() {
        let m = StockModel;
        assert_eq!(m.step(&30, &StockInput::Receive(3), Some(&33)), Some(33));
        assert_eq!(m.step(&30, &StockInput::Receive(3), Some(&30)), None);
        assert_eq!(m.step(&30, &StockInput::Receive(3), None), Some(33));
        assert_eq!(m.step(&33, &StockInput::ReadAtEnd, Some(&33)), Some(33));
        assert_eq!(m.step(&33, &StockInput::ReadAtEnd, Some(&30)), None);
        assert_eq!(m.step(&33, &StockInput::Read, Some(&33)), Some(33));
        assert_eq!(m.step(&33, &StockInput::Read, Some(&36)), None);
    }
}
