//! Account: a shopper or admin, keyed by user id (derived from the email). It holds the
//! password hash, the role, the wallet balance and the list of the shopper's orders.

use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::limits::MAX_ACCOUNT_ORDERS;
use crate::payment::PaymentCommand;
use crate::{EntityKind, EntityRef};
use serde::{Deserialize, Serialize};

/// An account's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A shopper.
    Customer,
    /// An operator of the shop: catalog and stock.
    Admin,
}

impl Role {
    /// Lower-case name, as carried in tokens.
    pub fn name(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }
}

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Email as given at registration (normalised to lower case).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Role.
    pub role: Role,
    /// Registration time.
    pub created_at_ms: u64,
}

/// The account state (no profile until registered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// The profile, once registered.
    pub profile: Option<Profile>,
    /// Wallet balance in minor units.
    pub wallet_minor: u64,
    /// The shopper's orders, oldest first.
    pub orders: Vec<String>,
    /// Recent wallet top-ups: id and amount (a repeated id is answered without a change).
    pub top_ups: Vec<(String, u64)>,
}

/// Smallest wallet top-up in minor units (₹1).
pub const MIN_TOP_UP_MINOR: u64 = 100;
/// Largest wallet top-up in minor units (₹1,00,000).
pub const MAX_TOP_UP_MINOR: u64 = 10_000_000;
/// Largest wallet balance a top-up may reach, in minor units (₹10,00,000).
pub const MAX_WALLET_MINOR: u64 = 100_000_000;
/// Top-up ids remembered for idempotency (oldest dropped first).
const MAX_TOP_UP_IDS: usize = 64;

/// Commands for an Account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountCommand {
    /// Create the account.
    Register {
        /// Email (already validated).
        email: String,
        /// Name (already validated).
        name: String,
        /// Argon2id PHC string.
        password_hash: String,
        /// Role.
        role: Role,
    },
    /// Replace the password hash (the seeded admin's password from the environment).
    SetPassword {
        /// Argon2id PHC string.
        password_hash: String,
    },
    /// Read the hash and role, to verify a login.
    GetCredentials,
    /// Read the profile.
    Get,
    /// ORDER_PLACED: remember the order for listing.
    OrderPlaced {
        /// The order.
        order_id: String,
    },
    /// List the shopper's order ids.
    ListOrders,
    /// Pay for an order from the wallet; the result goes back to `Payment(order_id)`.
    DebitWallet {
        /// The order.
        order_id: String,
        /// Amount in minor units.
        amount_minor: u64,
    },
    /// Refund an order into the wallet; the result goes back to `Payment(order_id)`.
    CreditWallet {
        /// The order.
        order_id: String,
        /// Amount in minor units.
        amount_minor: u64,
        /// The refund (`full` for the saga's refund).
        refund_id: String,
    },
    /// Add money to the wallet (from the edge; idempotent by `top_up_id`).
    TopUp {
        /// Id of the top-up (from the request's idempotency key).
        top_up_id: String,
        /// Amount in minor units.
        amount_minor: u64,
    },
}

/// An account as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Wallet balance.
    pub wallet_minor: u64,
}

fn profile<'a>(s: &'a AccountState, ctx: &Ctx) -> Result<&'a Profile, DomainError> {
    s.profile
        .as_ref()
        .ok_or_else(|| DomainError::NotFound(format!("account {}", ctx.me.id)))
}

fn payment(order_id: &str) -> EntityRef {
    EntityRef::new(EntityKind::Payment, order_id)
}

/// Handles one command.
pub fn handle(
    s: &mut AccountState,
    cmd: AccountCommand,
    ctx: &mut Ctx,
) -> Result<Outcome, DomainError> {
    match cmd {
        AccountCommand::Register {
            email,
            name,
            password_hash,
            role,
        } => {
            if s.profile.is_some() {
                return Err(DomainError::AlreadyExists(
                    "an account with this email".into(),
                ));
            }
            if password_hash.is_empty() {
                return Err(invalid("password", "missing"));
            }
            s.profile = Some(Profile {
                email,
                name,
                password_hash,
                role,
                created_at_ms: ctx.now_ms,
            });
            s.wallet_minor = ctx.config.initial_wallet_minor;
        }
        AccountCommand::SetPassword { password_hash } => {
            let p = s
                .profile
                .as_mut()
                .ok_or_else(|| DomainError::NotFound("account".into()))?;
            p.password_hash = password_hash;
        }
        AccountCommand::GetCredentials => {
            let p = s.profile.as_ref().ok_or(DomainError::BadCredentials)?;
            return reply(Reply::Credentials {
                user_id: ctx.me.id.clone(),
                password_hash: p.password_hash.clone(),
                role: p.role,
            });
        }
        AccountCommand::Get => {}
        AccountCommand::OrderPlaced { order_id } => {
            if !s.orders.contains(&order_id) {
                s.orders.push(order_id);
                if s.orders.len() > MAX_ACCOUNT_ORDERS {
                    s.orders.remove(0);
                }
            }
            return reply(Reply::Ack);
        }
        AccountCommand::ListOrders => return reply(Reply::OrderIds(s.orders.clone())),
        AccountCommand::DebitWallet {
            order_id,
            amount_minor,
        } => {
            let result = if s.profile.is_none() {
                Err("no such account".to_string())
            } else if s.wallet_minor < amount_minor {
                Err("insufficient_funds".to_string())
            } else {
                s.wallet_minor -= amount_minor;
                Ok(())
            };
            let event_id = format!("wallet:{order_id}:charge");
            ctx.send(
                payment(&order_id),
                "WALLET_RESULT",
                Command::Payment(PaymentCommand::ChargeResult { event_id, result }),
            );
            return reply(Reply::Ack);
        }
        AccountCommand::CreditWallet {
            order_id,
            amount_minor,
            refund_id,
        } => {
            s.wallet_minor += amount_minor;
            let event_id = if refund_id == crate::payment::FULL_REFUND_ID {
                format!("wallet:{order_id}:refund")
            } else {
                format!("wallet:{order_id}:refund:{refund_id}")
            };
            ctx.send(
                payment(&order_id),
                "WALLET_REFUNDED",
                Command::Payment(PaymentCommand::RefundResult {
                    event_id,
                    refund_id,
                    result: Ok(()),
                }),
            );
            return reply(Reply::Ack);
        }
        AccountCommand::TopUp {
            top_up_id,
            amount_minor,
        } => {
            profile(s, ctx)?;
            match s.top_ups.iter().find(|(id, _)| *id == top_up_id) {
                Some((_, a)) if *a == amount_minor => {}
                Some(_) => return Err(DomainError::IdempotencyMismatch),
                None => {
                    if !(MIN_TOP_UP_MINOR..=MAX_TOP_UP_MINOR).contains(&amount_minor) {
                        return Err(invalid(
                            "amount_minor",
                            format!("{MIN_TOP_UP_MINOR}..={MAX_TOP_UP_MINOR}"),
                        ));
                    }
                    if s.wallet_minor + amount_minor > MAX_WALLET_MINOR {
                        return Err(DomainError::Conflict(format!(
                            "a wallet holds at most {MAX_WALLET_MINOR} minor units"
                        )));
                    }
                    s.wallet_minor += amount_minor;
                    s.top_ups.push((top_up_id, amount_minor));
                    if s.top_ups.len() > MAX_TOP_UP_IDS {
                        s.top_ups.remove(0);
                    }
                }
            }
        }
    }
    let p = profile(s, ctx)?;
    reply(Reply::Account(AccountView {
        user_id: ctx.me.id.clone(),
        email: p.email.clone(),
        name: p.name.clone(),
        role: p.role,
        wallet_minor: s.wallet_minor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entity::DomainConfig;
    use proptest::prelude::*;

    #[test]
    fn a_top_up_is_applied_once_per_id_within_limits() {
        let me = EntityRef::new(EntityKind::Account, "u");
        let cfg = DomainConfig::default();
        let mut s = AccountState::default();
        let run = |s: &mut AccountState, cmd| {
            let mut ctx = Ctx::new(0, &me, 1, &cfg);
            let mut work = s.clone();
            let r = handle(&mut work, cmd, &mut ctx);
            if r.is_ok() {
                *s = work;
            }
            r
        };
        let top_up = |id: &str, amount_minor| AccountCommand::TopUp {
            top_up_id: id.into(),
            amount_minor,
        };
        assert!(matches!(
            run(&mut s, top_up("t0", 1_000)),
            Err(DomainError::NotFound(_))
        ));
        run(
            &mut s,
            AccountCommand::Register {
                email: "a@b.co".into(),
                name: "A".into(),
                password_hash: "h".into(),
                role: Role::Customer,
            },
        )
        .unwrap();
        let start = s.wallet_minor;
        run(&mut s, top_up("t1", 10_000)).unwrap();
        run(&mut s, top_up("t1", 10_000)).unwrap();
        assert_eq!(s.wallet_minor, start + 10_000);
        assert_eq!(
            run(&mut s, top_up("t1", 20_000)),
            Err(DomainError::IdempotencyMismatch)
        );
        for bad in [0, MIN_TOP_UP_MINOR - 1, MAX_TOP_UP_MINOR + 1] {
            assert!(matches!(
                run(&mut s, top_up("t2", bad)),
                Err(DomainError::Invalid { .. })
            ));
        }
        for i in 0..(MAX_WALLET_MINOR / MAX_TOP_UP_MINOR) {
            let _ = run(&mut s, top_up(&format!("big{i}"), MAX_TOP_UP_MINOR));
        }
        assert!(s.wallet_minor <= MAX_WALLET_MINOR);
        assert!(matches!(
            run(&mut s, top_up("over", MAX_TOP_UP_MINOR)),
            Err(DomainError::Conflict(_))
        ));
    }

    proptest! {
        #[test]
        fn the_wallet_never_goes_negative_and_debits_balance_credits(ops in prop::collection::vec((any::<bool>(), 0u64..400_000), 0..100)) {
            let me = EntityRef::new(EntityKind::Account, "u");
            let cfg = DomainConfig::default();
            let mut s = AccountState::default();
            let mut ctx = Ctx::new(0, &me, 1, &cfg);
            handle(&mut s, AccountCommand::Register { email: "a@b.co".into(), name: "A".into(), password_hash: "h".into(), role: Role::Customer }, &mut ctx).unwrap();
            let mut expected = cfg.initial_wallet_minor;
            for (i, (debit, amount)) in ops.into_iter().enumerate() {
                let order_id = format!("o{i}");
                let cmd = if debit {
                    AccountCommand::DebitWallet { order_id, amount_minor: amount }
                } else {
                    AccountCommand::CreditWallet { order_id, amount_minor: amount, refund_id: "full".into() }
                };
                let mut ctx = Ctx::new(0, &me, 2, &cfg);
                handle(&mut s, cmd, &mut ctx).unwrap();
                if !debit {
                    expected += amount;
                } else if amount <= expected {
                    expected -= amount;
                }
                prop_assert_eq!(s.wallet_minor, expected);
                // Every wallet operation answers the payment exactly once.
                prop_assert_eq!(ctx.outbox().len(), 1);
            }
        }
    }
}
