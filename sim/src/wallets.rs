//! Wallets are conserved: once every saga is over, each account's balance is its starting
//! balance, plus its top-ups and the refunds paid back into it, less the wallet payments
//! that took money from it. The debits and credits are read from the payments (each order's
//! payment entity records its method, whether the money was taken and which refunds went
//! back), the balances from the accounts: two kinds of entity, usually on different shards,
//! that only messages keep in step. A debit applied twice, a credit lost or a refund that
//! reached the account but not its payment shows here.

use crate::check::Violation;
use agora_actors::account::AccountState;
use agora_actors::payment::{Method, PaymentState, PaymentStatus};
use std::collections::BTreeMap;

/// An account's wallet as its entity holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wallet {
    /// The balance, minor units.
    pub balance_minor: u64,
    /// Top-ups the account remembers, minor units.
    pub top_ups_minor: u64,
    /// The account's email (the simulated shopper's name at `sim.test`).
    pub email: String,
}

impl Wallet {
    /// The wallet of an account with a profile (`None` for an account never registered).
    pub fn of(account: &AccountState) -> Option<Self> {
        let profile = account.profile.as_ref()?;
        Some(Self {
            balance_minor: account.wallet_minor,
            top_ups_minor: account.top_ups.iter().map(|(_, a)| *a).sum(),
            email: profile.email.clone(),
        })
    }
}

/// What one wallet payment moved: debited from the account, and refunded back into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletMoves {
    /// The account paying.
    pub customer: String,
    /// Taken from the wallet (0 unless the money was taken).
    pub debited_minor: u64,
    /// Paid back into the wallet (refunds that succeeded).
    pub credited_minor: u64,
    /// Each refund paid back, minor units (they sum to `credited_minor`).
    pub credits_minor: Vec<u64>,
}

impl WalletMoves {
    /// What `payment` moved, if it is a wallet payment.
    pub fn of(payment: &PaymentState) -> Option<Self> {
        if !matches!(payment.method, Some(Method::Wallet)) {
            return None;
        }
        let taken = matches!(
            payment.status,
            PaymentStatus::Succeeded | PaymentStatus::Refunding | PaymentStatus::Refunded
        );
        let credits_minor: Vec<u64> = payment
            .refunds
            .iter()
            .filter(|r| r.succeeded)
            .map(|r| r.amount_minor)
            .collect();
        Some(Self {
            customer: payment.customer.clone(),
            debited_minor: if taken { payment.amount_minor } else { 0 },
            credited_minor: payment.refunded_minor(),
            credits_minor,
        })
    }
}

/// Checks every wallet of `wallets` (by account id) against the `moves` of the payments,
/// each account having started with `initial_minor`. Only meaningful once every saga is over
/// (`settled`): before, a debit may be on its way to a payment.
pub fn check(
    wallets: &BTreeMap<String, Wallet>,
    moves: &[WalletMoves],
    initial_minor: u64,
    settled: bool,
) -> Vec<Violation> {
    if !settled {
        return Vec::new();
    }
    let mut flows: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for m in moves {
        let flow = flows.entry(m.customer.as_str()).or_default();
        flow.0 += m.debited_minor;
        flow.1 += m.credited_minor;
    }
    let mut out = Vec::new();
    for (account, w) in wallets {
        let (debited, credited) = flows.get(account.as_str()).copied().unwrap_or_default();
        let expected = (i128::from(initial_minor) + i128::from(w.top_ups_minor)
            - i128::from(debited))
            + i128::from(credited);
        if i128::from(w.balance_minor) != expected {
            out.push(Violation {
                invariant: "wallet-conserved",
                detail: format!(
                    "account {account}: balance {} but {initial_minor} + top-ups {} - debits {debited} + refunds {credited} = {expected}",
                    w.balance_minor, w.top_ups_minor
                ),
            });
        }
    }
    for account in flows.keys().filter(|a| !wallets.contains_key(**a)) {
        out.push(Violation {
            invariant: "wallet-conserved",
            detail: format!("wallet payments of account {account}, which no disk holds"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wallet(balance_minor: u64) -> Wallet {
        Wallet {
            balance_minor,
            top_ups_minor: 0,
            email: String::new(),
        }
    }

    fn moved(customer: &str, debited_minor: u64, credited_minor: u64) -> WalletMoves {
        WalletMoves {
            customer: customer.into(),
            debited_minor,
            credited_minor,
            credits_minor: [credited_minor].into_iter().filter(|c| *c > 0).collect(),
        }
    }

    #[test]
    fn balances_match_what_the_payments_moved() {
        let wallets = BTreeMap::from([
            ("a".to_string(), wallet(1_000 - 300 - 200 + 200)),
            ("b".to_string(), wallet(1_000)),
        ]);
        let moves = [moved("a", 300, 0), moved("a", 200, 200), moved("b", 0, 0)];
        assert!(check(&wallets, &moves, 1_000, true).is_empty());
    }

    #[test]
    fn a_debit_taken_twice_a_lost_refund_and_a_stray_payment_are_reported() {
        let wallets = BTreeMap::from([
            ("a".to_string(), wallet(1_000 - 300 - 300)),
            ("b".to_string(), wallet(1_000 - 200)),
        ]);
        let moves = [moved("a", 300, 0), moved("b", 200, 200), moved("c", 5, 0)];
        let found = check(&wallets, &moves, 1_000, true);
        let details: Vec<&str> = found.iter().map(|v| v.detail.as_str()).collect();
        assert_eq!(found.len(), 3, "{details:?}");
        assert!(found.iter().all(|v| v.invariant == "wallet-conserved"));
        assert!(
            details[0].starts_with("account a: balance 400"),
            "{details:?}"
        );
        assert!(
            details[1].starts_with("account b: balance 800"),
            "{details:?}"
        );
        assert!(details[2].contains("account c"), "{details:?}");
        // Before the sagas are over nothing is judged.
        assert!(check(&wallets, &moves, 1_000, false).is_empty());
    }

    #[test]
    fn only_wallet_payments_move_wallets_and_only_once_the_money_was_taken() {
        let mut p = PaymentState {
            method: Some(Method::Wallet),
            amount_minor: 700,
            customer: "a".into(),
            status: PaymentStatus::Processing,
            ..PaymentState::default()
        };
        assert_eq!(WalletMoves::of(&p), Some(moved("a", 0, 0)));
        p.status = PaymentStatus::Succeeded;
        assert_eq!(WalletMoves::of(&p), Some(moved("a", 700, 0)));
        p.method = Some(Method::Upi {
            vpa: "success@upi".into(),
        });
        assert_eq!(WalletMoves::of(&p), None);
    }
}
