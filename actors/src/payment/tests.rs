//! Tests of the payment: charges, gateway events, wallet payments and refunds.

use super::*;
use crate::card::test_card;
use crate::entity::DomainConfig;
use crate::message::{Body, Destination};
use proptest::prelude::*;

fn run(s: &mut PaymentState, cmd: PaymentCommand) -> Vec<crate::OutboxMessage> {
    let me = EntityRef::new(EntityKind::Payment, "o1");
    let cfg = DomainConfig::default();
    let mut ctx = Ctx::new(1_000, &me, 1, &cfg);
    handle(s, cmd, &mut ctx).unwrap();
    ctx.take_outbox()
}

fn card_paid(amount_minor: u64) -> PaymentState {
    let mut s = PaymentState::default();
    run(
        &mut s,
        PaymentCommand::Authorize {
            customer: "u".into(),
            amount_minor,
            method: Method::Card(test_card("4242424242424242").unwrap()),
        },
    );
    run(&mut s, success("e-ok", amount_minor));
    assert_eq!(s.status, PaymentStatus::Succeeded);
    s
}

/// A success report of a card charge of `amount_minor` for order `o1`.
fn success(event_id: &str, amount_minor: u64) -> PaymentCommand {
    charge_answer(
        event_id.into(),
        "o1",
        &Method::Card(test_card("4242424242424242").unwrap()),
        &Money::shop(amount_minor),
        Ok(()),
    )
}

#[test]
fn amounts_beyond_the_money_bound_are_refused() {
    let mut s = PaymentState::default();
    for amount_minor in [0, MAX_AMOUNT_MINOR + 1, u64::MAX] {
        let cmd = PaymentCommand::Authorize {
            customer: "u".into(),
            amount_minor,
            method: Method::Wallet,
        };
        assert!(matches!(
            try_run(&mut s, cmd),
            Err(DomainError::Invalid { .. })
        ));
    }
    assert_eq!(s, PaymentState::default());
    // Sums of refunds saturate instead of overflowing.
    let entry = |id: &str| RefundEntry {
        refund_id: id.into(),
        amount_minor: u64::MAX,
        succeeded: true,
        requested_at_ms: 0,
        updated_at_ms: 0,
    };
    s.refunds = vec![entry("a"), entry("b")];
    assert_eq!(s.refunds_minor(), u64::MAX);
    assert_eq!(s.refunded_minor(), u64::MAX);
}

fn try_run(
    s: &mut PaymentState,
    cmd: PaymentCommand,
) -> Result<Vec<crate::OutboxMessage>, DomainError> {
    let me = EntityRef::new(EntityKind::Payment, "o1");
    let cfg = DomainConfig::default();
    let mut ctx = Ctx::new(1_000, &me, 1, &cfg);
    handle(s, cmd, &mut ctx)?;
    Ok(ctx.take_outbox())
}

#[test]
fn a_success_report_that_does_not_match_the_intent_is_refused_and_changes_nothing() {
    let mut s = PaymentState::default();
    // Before any charge was asked for: nothing to match.
    assert!(matches!(
        try_run(&mut s, success("e0", 29_800)),
        Err(DomainError::Conflict(_))
    ));
    run(
        &mut s,
        PaymentCommand::Authorize {
            customer: "u".into(),
            amount_minor: 29_800,
            method: Method::Card(test_card("4000000000000119").unwrap()),
        },
    );
    let before = s.clone();
    let card = |n: &str| Method::Card(test_card(n).unwrap());
    let report = ChargeReport::of("o1", &card("4000000000000119"), &Money::shop(29_800));
    let wrong = [
        ChargeReport {
            amount: Money::shop(1),
            ..report.clone()
        },
        ChargeReport {
            amount: Money {
                amount_minor: 29_800,
                currency: "USD".into(),
            },
            ..report.clone()
        },
        ChargeReport {
            payment_id: "attacker-key".into(),
            ..report.clone()
        },
        ChargeReport {
            payment_id: payment_id("o2"),
            ..report.clone()
        },
        ChargeReport {
            method: MethodKind::Upi,
            ..report.clone()
        },
    ];
    for (i, report) in wrong.into_iter().enumerate() {
        let cmd = PaymentCommand::ChargeSucceeded {
            event_id: format!("e{i}"),
            report,
        };
        let r = try_run(&mut s, cmd);
        assert!(matches!(r, Err(DomainError::Conflict(_))), "{r:?}");
        assert_eq!(s, before, "a refused report changes nothing");
    }
    // A bare success (no report of what was taken) is refused too.
    let bare = PaymentCommand::ChargeResult {
        event_id: "e9".into(),
        result: Ok(()),
    };
    assert!(try_run(&mut s, bare).is_err());
    assert_eq!(s, before);
    // The matching report confirms the order, once.
    let ok = PaymentCommand::ChargeSucceeded {
        event_id: "e-ok".into(),
        report,
    };
    let out = run(&mut s, ok);
    assert_eq!(to_order(&out), vec![OrderCommand::PaymentSucceeded]);
    assert_eq!(s.status, PaymentStatus::Succeeded);
    // A mismatched report after the success is refused as well (and changes nothing).
    let late = success("e-late", 1);
    assert!(try_run(&mut s, late).is_err());
    assert_eq!(s.status, PaymentStatus::Succeeded);
}

fn to_order(out: &[crate::OutboxMessage]) -> Vec<OrderCommand> {
    out.iter()
        .filter_map(|m| match (&m.to, &m.body) {
            (Destination::Entity(e), Body::Command(Command::Order(c)))
                if e.kind == EntityKind::Order =>
            {
                Some(c.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_late_pending_or_failure_after_success_changes_nothing() {
    let mut s = card_paid(500);
    let before = s.clone();
    let out = run(
        &mut s,
        PaymentCommand::ChargePending {
            event_id: "e-pending".into(),
        },
    );
    assert!(out.is_empty());
    let out = run(
        &mut s,
        PaymentCommand::ChargeResult {
            event_id: "e-fail".into(),
            result: Err("declined".into()),
        },
    );
    assert!(out.is_empty());
    assert_eq!(s.status, before.status);
    assert_eq!(view(&s).entries[0].status, "succeeded");
}

#[test]
fn partial_refunds_are_bounded_by_the_amount_paid_and_settle_once() {
    let mut s = card_paid(1_000);
    let out = run(
        &mut s,
        PaymentCommand::RefundPart {
            refund_id: "r1".into(),
            amount_minor: 600,
        },
    );
    assert!(out.iter().any(|m| matches!(
        &m.body,
        Body::External(ExternalCall::Refund { key, refund_id, .. }) if key == "o1:refund:r1" && refund_id == "r1"
    )));
    // Beyond what is left: ignored.
    let out = run(
        &mut s,
        PaymentCommand::RefundPart {
            refund_id: "r2".into(),
            amount_minor: 401,
        },
    );
    assert!(out.is_empty());
    assert_eq!(s.refunds_minor(), 600);
    let result = PaymentCommand::RefundResult {
        event_id: "e-r1".into(),
        refund_id: "r1".into(),
        result: Ok(()),
    };
    let out = run(&mut s, result.clone());
    assert_eq!(
        to_order(&out),
        vec![OrderCommand::RefundSettled {
            refund_id: "r1".into()
        }]
    );
    assert!(run(&mut s, result).is_empty(), "a duplicate settles once");
    assert_eq!(s.refunded_minor(), 600);
    // The saga's full refund takes what is left.
    run(&mut s, PaymentCommand::Refund);
    assert_eq!(s.status, PaymentStatus::Refunding);
    assert_eq!(s.refunds.last().unwrap().amount_minor, 400);
    let out = run(
        &mut s,
        PaymentCommand::RefundResult {
            event_id: "e-full".into(),
            refund_id: FULL_REFUND_ID.into(),
            result: Ok(()),
        },
    );
    assert_eq!(to_order(&out), vec![OrderCommand::RefundCompleted]);
    assert_eq!(s.status, PaymentStatus::Refunded);
    assert_eq!(s.refunded_minor(), 1_000);
}

fn event() -> impl Strategy<Value = PaymentCommand> {
    let id = 0u8..6;
    prop_oneof![
        id.clone().prop_map(|i| PaymentCommand::ChargePending {
            event_id: format!("e{i}")
        }),
        id.clone().prop_map(|i| success(&format!("e{i}"), 1_000)),
        id.clone().prop_map(|i| PaymentCommand::ChargeResult {
            event_id: format!("e{i}"),
            result: Err("declined".into())
        }),
        (id, 0u8..3).prop_map(|(i, r)| PaymentCommand::RefundResult {
            event_id: format!("e{i}"),
            refund_id: format!("r{r}"),
            result: Ok(())
        }),
        (0u8..3, 1u64..800).prop_map(|(r, a)| PaymentCommand::RefundPart {
            refund_id: format!("r{r}"),
            amount_minor: a
        }),
        Just(PaymentCommand::Refund),
        Just(PaymentCommand::RetryRefund),
        Just(PaymentCommand::RetryCharge),
    ]
}

fn rank(s: &PaymentStatus) -> u8 {
    match s {
        PaymentStatus::None => 0,
        PaymentStatus::Processing => 1,
        PaymentStatus::Succeeded | PaymentStatus::Failed(_) => 2,
        PaymentStatus::Refunding => 3,
        PaymentStatus::Refunded => 4,
    }
}

proptest! {
    /// Whatever events come, duplicated, late or out of order: the status never moves
    /// backwards, the first charge result decides, and refunds never exceed the amount.
    #[test]
    fn events_in_any_order_never_move_the_payment_backwards(events in prop::collection::vec(event(), 0..40)) {
        let mut s = PaymentState::default();
        run(&mut s, PaymentCommand::Authorize {
            customer: "u".into(),
            amount_minor: 1_000,
            method: Method::Card(test_card("4242424242424242").unwrap()),
        });
        let mut first_result: Option<bool> = None;
        for e in events {
            let before = s.clone();
            let decided = match &e {
                PaymentCommand::ChargeResult { event_id, result } => Some((event_id, result.is_ok())),
                PaymentCommand::ChargeSucceeded { event_id, .. } => Some((event_id, true)),
                _ => None,
            };
            if let Some((event_id, ok)) = decided {
                if first_result.is_none() && !before.events.contains(event_id) {
                    first_result = Some(ok);
                }
            }
            let out = run(&mut s, e);
            prop_assert!(rank(&s.status) >= rank(&before.status), "{:?} -> {:?}", before.status, s.status);
            prop_assert!(s.refunds_minor() <= s.amount_minor);
            prop_assert!(s.refunded_minor() <= s.refunds_minor());
            // At most one PaymentSucceeded/PaymentFailed to the order per change.
            prop_assert!(to_order(&out).len() <= 1);
        }
        match first_result {
            Some(true) => prop_assert!(rank(&s.status) >= 2 && !matches!(s.status, PaymentStatus::Failed(_))),
            Some(false) => prop_assert!(matches!(s.status, PaymentStatus::Failed(_))),
            None => prop_assert_eq!(&s.status, &PaymentStatus::Processing),
        }
    }
}
