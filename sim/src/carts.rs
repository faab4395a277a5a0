//! Carts checked for linearizability (`linearizable-cart`). A shopper's adds answer the whole
//! cart, so each answer is a read of every line; checkouts take the lines out (the cart
//! holds them for the order), and a checkout refused for stock gives them back later by a
//! message no client sees. The model follows the cart's own rules, written again here:
//! - an add puts units on a line (capped as the cart caps them) and answers the lines;
//! - a checkout holds every line for its order (a retry of it holds nothing new); one
//!   answered "empty cart" found no line and held nothing for its order;
//! - a return gives a held checkout's lines back: after a checkout refused for stock, an
//!   unknown one, or one refused for another reason after its lines may have been held
//!   (the edge gives them back then, but its own ask may fail), or after a checkout
//!   answered while its order was still PENDING (an order cancelled later for stock gives
//!   them back too: seed 5 of session 26's traces). A return is of unknown
//!   outcome: it may happen at any point after its checkout was sent, or never.
//!
//! After the run, each cart as the disks hold it is a last read of its lines (the account
//! with the shopper's email gives the cart's id): an add acknowledged and then lost, or lines
//! a placed order took coming back, show there even when no later add read them.

use crate::check::Violation;
use crate::linearizable::{Answer, Model, Operation};
use crate::models::{answer_of, end_of, read_at_end, SubHistory};
use crate::workload::{Op, Outcome, Shown};
use agora_actors::limits::{MAX_CART_LINES, MAX_LINE_QUANTITY};
use std::collections::BTreeMap;

/// Lines by SKU.
type Lines = BTreeMap<String, u32>;

/// What the model holds of one cart: its lines, and the lines held for each checkout key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CartModelState {
    lines: Lines,
    held: BTreeMap<String, Lines>,
}

/// What a shopper (or a message after a checkout) does to a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartInput {
    /// Adds units of a SKU; answers the lines.
    Add(String, u32),
    /// A checkout under a key: holds every line for its order.
    Checkout(String),
    /// The lines held for a checkout key come back (a refusal's compensation).
    Return(String),
    /// The lines as the disks hold them once the run is over.
    ReadAtEnd,
}

/// What a cart operation answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartOutput {
    /// The lines (an add).
    Lines(Lines),
    /// The checkout held lines (placed, or refused for stock).
    Held,
    /// The checkout found the cart empty.
    Empty,
}

/// The cart as a sequential model.
#[derive(Debug, Clone, Copy, Default)]
pub struct CartModel;

impl Model for CartModel {
    type State = CartModelState;
    type Input = CartInput;
    type Output = CartOutput;

    fn init(&self) -> CartModelState {
        CartModelState::default()
    }

    fn step(
        &self,
        s: &CartModelState,
        input: &CartInput,
        out: Option<&CartOutput>,
    ) -> Option<CartModelState> {
        let mut next = s.clone();
        match input {
            CartInput::Add(sku, units) => {
                if !next.lines.contains_key(sku) && next.lines.len() >= MAX_CART_LINES {
                    return None;
                }
                let line = next.lines.entry(sku.clone()).or_insert(0);
                *line = line
                    .checked_add(*units)
                    .filter(|q| *q <= MAX_LINE_QUANTITY)?;
                let answered = out.is_none_or(|o| *o == CartOutput::Lines(next.lines.clone()));
                answered.then_some(next)
            }
            CartInput::Checkout(key) => {
                let held_before = next.held.contains_key(key);
                let empty = !held_before && next.lines.is_empty();
                if !held_before && !empty {
                    let lines = std::mem::take(&mut next.lines);
                    next.held.insert(key.clone(), lines);
                }
                match out {
                    None => Some(next),
                    Some(CartOutput::Empty) => empty.then_some(next),
                    Some(CartOutput::Held) => (!empty).then_some(next),
                    Some(CartOutput::Lines(_)) => None,
                }
            }
            CartInput::ReadAtEnd => match out {
                None => Some(next),
                Some(CartOutput::Lines(lines)) => (*lines == next.lines).then_some(next),
                Some(_) => None,
            },
            CartInput::Return(key) => {
                for (sku, units) in next.held.remove(key).unwrap_or_default() {
                    if !next.lines.contains_key(&sku) && next.lines.len() >= MAX_CART_LINES {
                        continue;
                    }
                    let line = next.lines.entry(sku).or_insert(0);
                    *line = line.saturating_add(units).min(MAX_LINE_QUANTITY);
                }
                Some(next)
            }
        }
    }
}

/// How a checkout's answer reads for the cart: its output (`None`: unknown), and whether a
/// return of its lines may follow.
fn checkout_answer(op: &Op) -> (Option<CartOutput>, bool) {
    match (op.outcome, &op.shown) {
        // Answered while its order was still PENDING (the edge did not see its stock settle),
        // the order may yet be cancelled for stock, which gives the lines back.
        (Outcome::Ok, _) => (
            Some(CartOutput::Held),
            op.status_seen.as_deref() == Some("PENDING"),
        ),
        (Outcome::Fail, Shown::Refused(t)) if t.ends_with("/out-of-stock") => {
            (Some(CartOutput::Held), true)
        }
        (Outcome::Fail, Shown::Refused(t)) if t.ends_with("/empty-cart") => {
            (Some(CartOutput::Empty), false)
        }
        _ => (None, true),
    }
}

/// Every add and checkout of each shopper, by shopper (one cart each), with a possible
/// return after each checkout that may have held lines and did not place its order, and the
/// cart the disks hold (`on_disk`, by shopper) read last.
pub fn check(history: &[Op], on_disk: &BTreeMap<String, Lines>) -> Vec<Violation> {
    let mut by_cart: BTreeMap<&str, SubHistory<CartInput, CartOutput>> = BTreeMap::new();
    for op in history.iter().filter(|o| o.client.starts_with("shopper")) {
        let sub = by_cart.entry(op.client.as_str()).or_default();
        match (op.kind, &op.sku, &op.key) {
            ("add", Some(sku), _) => {
                let Ok(units) = u32::try_from(op.quantity) else {
                    continue;
                };
                let shown = match &op.shown {
                    Shown::Cart(lines) => Some(CartOutput::Lines(lines.iter().cloned().collect())),
                    _ => None,
                };
                if let Some(answer) = answer_of(op, shown) {
                    let input = CartInput::Add(sku.clone(), units);
                    sub.push(operation(op.invoke_ms, answer, input), Some(op));
                }
            }
            ("checkout", _, Some(key)) => {
                let (output, may_return) = checkout_answer(op);
                let answer = match output {
                    Some(output) => Answer::Returned {
                        at_ms: op.end_ms,
                        output,
                    },
                    None => Answer::Unknown,
                };
                let input = CartInput::Checkout(key.clone());
                sub.push(operation(op.invoke_ms, answer, input), Some(op));
                if may_return {
                    let back = CartInput::Return(key.clone());
                    sub.push(operation(op.invoke_ms, Answer::Unknown, back), Some(op));
                }
            }
            _ => {}
        }
    }
    let end = end_of(history);
    for (shopper, sub) in by_cart.iter_mut() {
        if let Some(lines) = on_disk.get(*shopper) {
            let output = CartOutput::Lines(lines.clone());
            sub.push(read_at_end(end, CartInput::ReadAtEnd, output), None);
        }
    }
    by_cart
        .into_iter()
        .filter_map(|(shopper, sub)| {
            sub.judge(
                "linearizable-cart",
                &format!("cart of {shopper}"),
                &CartModel,
            )
        })
        .collect()
}

fn operation(
    invoke_ms: u64,
    answer: Answer<CartOutput>,
    input: CartInput,
) -> Operation<CartInput, CartOutput> {
    Operation {
        invoke_ms,
        answer,
        input,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linearizable::{check as search, Verdict};

    fn returned(
        invoke_ms: u64,
        at_ms: u64,
        input: CartInput,
        output: CartOutput,
    ) -> Operation<CartInput, CartOutput> {
        operation(invoke_ms, Answer::Returned { at_ms, output }, input)
    }

    fn lines(of: &[(&str, u32)]) -> CartOutput {
        CartOutput::Lines(of.iter().map(|(s, q)| (s.to_string(), *q)).collect())
    }

    fn add(
        at: u64,
        sku: &str,
        units: u32,
        shown: &[(&str, u32)],
    ) -> Operation<CartInput, CartOutput> {
        returned(at, at + 1, CartInput::Add(sku.into(), units), lines(shown))
    }

    #[test]
    fn lines_refused_for_stock_come_back_by_a_return_no_client_sees() {
        let ops = vec![
            add(0, "A", 2, &[("A", 2)]),
            returned(10, 20, CartInput::Checkout("k1".into()), CartOutput::Held),
            operation(10, Answer::Unknown, CartInput::Return("k1".into())),
            add(30, "B", 1, &[("A", 2), ("B", 1)]),
        ];
        assert_eq!(search(&CartModel, &ops, 10_000), Verdict::Linearizable);
    }

    #[test]
    fn lines_that_come_back_without_a_refused_checkout_are_not_linearizable() {
        // The checkout placed its order: its lines must not reappear.
        let ops = vec![
            add(0, "A", 2, &[("A", 2)]),
            returned(10, 20, CartInput::Checkout("k1".into()), CartOutput::Held),
            add(30, "B", 1, &[("A", 2), ("B", 1)]),
        ];
        assert!(matches!(
            search(&CartModel, &ops, 10_000),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn the_disks_cart_read_last_must_hold_every_acknowledged_add() {
        let mut ops = vec![
            add(0, "A", 2, &[("A", 2)]),
            returned(10, 20, CartInput::Checkout("k1".into()), CartOutput::Held),
            add(30, "B", 1, &[("B", 1)]),
        ];
        let read = |shown: &[(&str, u32)]| returned(40, 41, CartInput::ReadAtEnd, lines(shown));
        ops.push(read(&[("B", 1)]));
        assert_eq!(search(&CartModel, &ops, 10_000), Verdict::Linearizable);
        // The last add was acknowledged and lost; or the placed order's lines came back.
        for on_disk in [&[][..], &[("A", 2), ("B", 1)][..]] {
            *ops.last_mut().unwrap() = read(on_disk);
            assert!(matches!(
                search(&CartModel, &ops, 10_000),
                Verdict::NotLinearizable { .. }
            ));
        }
    }

    #[test]
    fn a_lost_add_is_not_linearizable() {
        let ops = vec![add(0, "A", 1, &[("A", 1)]), add(10, "A", 1, &[("A", 1)])];
        assert!(matches!(
            search(&CartModel, &ops, 10_000),
            Verdict::NotLinearizable { .. }
        ));
    }

    #[test]
    fn an_empty_cart_answer_needs_an_empty_cart() {
        let ops = vec![
            add(0, "A", 1, &[("A", 1)]),
            returned(10, 20, CartInput::Checkout("k1".into()), CartOutput::Empty),
        ];
        assert!(matches!(
            search(&CartModel, &ops, 10_000),
            Verdict::NotLinearizable { .. }
        ));
    }
}
