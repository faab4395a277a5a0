//! Sequential models of the entities whose client operations the workload records, and the
//! checker that feeds each entity's sub-history to the linearizability search
//! (`crate::linearizable`). Only answers read from the entity actor itself (on its shard's
//! owner, or with replicated shards its leader) are checked: those are the linearizable
//! paths. See `docs/simulation.md` for what is left out and why.

use crate::check::{Violation, World};
use crate::linearizable::{self, Answer, Model, Operation, Verdict};
use crate::workload::{Op, Outcome, Shown};
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
            StockInput::ReadAtEnd => *total,
        };
        shown.is_none_or(|s| *s == next).then_some(next)
    }
}

/// How a recorded operation ended, for the search: answered ones carry `output`, unknown
/// ones nothing; definite refusals are left out (`None`).
fn answer_of<O>(op: &Op, output: Option<O>) -> Option<Answer<O>> {
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
struct SubHistory<'a, I, O> {
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
    fn push(&mut self, op: Operation<I, O>, recorded: Option<&'a Op>) {
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
    fn judge<M>(&self, invariant: &'static str, entity: &str, model: &M) -> Option<Violation>
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

/// Stock receipts: every answered or unknown receipt, by SKU, and what the disks hold at
/// the end as a last read after every operation (`linearizable-stock`).
pub fn stock(world: &World, history: &[Op]) -> Vec<Violation> {
    let mut by_sku: BTreeMap<&str, SubHistory<StockInput, u64>> = BTreeMap::new();
    for op in history.iter().filter(|o| o.kind == "receive") {
        let Some(sku) = op.sku.as_deref() else {
            continue;
        };
        let shown = match op.shown {
            Shown::StockReceived(total) => Some(total),
            Shown::Nothing => None,
        };
        let Some(answer) = answer_of(op, shown) else {
            continue;
        };
        let operation = Operation {
            invoke_ms: op.invoke_ms,
            answer,
            input: StockInput::Receive(op.quantity),
        };
        by_sku.entry(sku).or_default().push(operation, Some(op));
    }
    let end = history
        .iter()
        .map(|o| o.end_ms.max(o.invoke_ms))
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = Vec::new();
    for (sku, mut sub) in by_sku {
        if let Some(s) = world.stock(sku) {
            let at_end = Operation {
                invoke_ms: end,
                answer: Answer::Returned {
                    at_ms: end,
                    output: s.received,
                },
                input: StockInput::ReadAtEnd,
            };
            sub.push(at_end, None);
        }
        out.extend(sub.judge("linearizable-stock", &format!("stock {sku}"), &StockModel));
    }
    out
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
    fn a_receipt_adds_its_units_and_the_end_reads_them() {
        let m = StockModel;
        assert_eq!(m.step(&30, &StockInput::Receive(3), Some(&33)), Some(33));
        assert_eq!(m.step(&30, &StockInput::Receive(3), Some(&30)), None);
        assert_eq!(m.step(&30, &StockInput::Receive(3), None), Some(33));
        assert_eq!(m.step(&33, &StockInput::ReadAtEnd, Some(&33)), Some(33));
        assert_eq!(m.step(&33, &StockInput::ReadAtEnd, Some(&30)), None);
    }
}
