//! Account: a shopper or admin, keyed by user id (derived from the email). It holds the
//! password hash, the role, the wallet balance and the shopper's order history (the newest
//! orders here, older ones in sealed pages: `history`).

use crate::command::{Command, Reply};
use crate::entity::{reply, Ctx, Outcome};
use crate::error::{invalid, DomainError};
use crate::history::Recent;
use crate::inbox::{Channel, InboxCommand};
use crate::limits::MAX_SAVED_ADDRESSES;
use crate::money::{add_minor, Money};
use crate::payment::{charge_answer, Method, PaymentCommand};
use crate::session::{valid_hash, RefreshToken, Refusal, Security};
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
    /// Phone number (E.164), for SMS and WhatsApp.
    pub phone: Option<String>,
    /// Saved addresses, at most `MAX_SAVED_ADDRESSES`.
    pub addresses: Vec<SavedAddress>,
    /// Channels notifications go out on (email when registered).
    pub channels: Vec<Channel>,
}

/// An address the shopper saved on the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAddress {
    /// The shopper's name for it ("home", "office").
    pub label: String,
    /// Recipient.
    pub name: String,
    /// Street line.
    pub line1: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166 alpha-2 country code.
    pub country: String,
}

/// A change of the profile: absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfilePatch {
    /// New display name.
    pub name: Option<String>,
    /// New phone number (`Some(None)` removes it).
    pub phone: Option<Option<String>>,
    /// New list of saved addresses (replaces the old one).
    pub addresses: Option<Vec<SavedAddress>>,
    /// New notification channels.
    pub channels: Option<Vec<Channel>>,
}

/// The profile as `GET /me` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileView {
    /// User id.
    pub user_id: String,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Phone number.
    pub phone: Option<String>,
    /// Saved addresses.
    pub addresses: Vec<SavedAddress>,
    /// Notification channels.
    pub channels: Vec<Channel>,
    /// Wallet balance in minor units.
    pub wallet_minor: u64,
}

impl ProfileView {
    /// The version of what a shopper edits (name, phone, addresses, channels; with email and
    /// role), as a quoted `ETag`: the wallet's balance is not part of it, so a refund landing
    /// between a read and an edit does not refuse the edit.
    pub fn etag(&self) -> String {
        let version = (
            &self.email,
            &self.name,
            self.role,
            &self.phone,
            &self.addresses,
            &self.channels,
        );
        crate::etag::of(&version)
    }
}

/// The account state (no profile until registered).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    /// The profile, once registered.
    pub profile: Option<Profile>,
    /// Wallet balance in minor units.
    pub wallet_minor: u64,
    /// The shopper's order ids: the newest, oldest first, and the count of sealed pages of
    /// older ones (stored as the plain list of ids it was before pages).
    pub orders: Recent<String>,
    /// Failed logins, lockout and refresh tokens.
    pub security: Security,
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
    /// Start a login: the hash and role, unless the account is locked.
    BeginLogin,
    /// A login's password did not match: count it (and lock the account at the threshold).
    LoginFailed,
    /// A login's password matched: forget the failures and make a refresh token live.
    LoginSucceeded {
        /// SHA-256 of the new refresh token (hex).
        refresh_hash: String,
        /// Its lifetime in ms.
        ttl_ms: u64,
    },
    /// Exchange a live refresh token for a new one (the old one stops working).
    RotateRefresh {
        /// SHA-256 of the presented token (hex).
        old_hash: String,
        /// SHA-256 of the new token (hex).
        new_hash: String,
        /// The new token's lifetime in ms.
        ttl_ms: u64,
    },
    /// Revoke a refresh token (logout).
    RevokeRefresh {
        /// SHA-256 of the token (hex).
        hash: String,
    },
    /// Read the full profile.
    GetProfile,
    /// Change the profile.
    UpdateProfile(ProfilePatch),
    /// `UpdateProfile`, only if the profile is still at one of these versions
    /// (`ProfileView::etag`, an HTTP `If-Match`): refused with `PreconditionFailed` otherwise.
    UpdateProfileIfMatch {
        /// The change.
        patch: ProfilePatch,
        /// The versions the editor read; any one will do.
        etags: Vec<String>,
    },
    /// ORDER_PLACED: remember the order for listing (a repeat while it is among the newest
    /// `ORDER_PAGE_LEN` changes nothing).
    OrderPlaced {
        /// The order.
        order_id: String,
    },
    /// List the shopper's newest order ids, oldest first (`OrderHistory` reaches the rest).
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
    /// Read the order history's head: the newest ids and the count of sealed pages.
    OrderHistory,
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

fn profile_view(s: &AccountState, ctx: &Ctx) -> Result<Reply, DomainError> {
    let p = profile(s, ctx)?;
    Ok(Reply::Profile(ProfileView {
        user_id: ctx.me.id.clone(),
        email: p.email.clone(),
        name: p.name.clone(),
        role: p.role,
        phone: p.phone.clone(),
        addresses: p.addresses.clone(),
        channels: p.channels.clone(),
        wallet_minor: s.wallet_minor,
    }))
}

/// Tells the shopper's inbox where and how to reach them (versioned by the account's seq, so
/// a late copy of an older contact is ignored).
fn send_contact(p: &Profile, ctx: &mut Ctx) {
    let inbox = EntityRef::new(EntityKind::Inbox, ctx.me.id.clone());
    let cmd = Command::Inbox(InboxCommand::SetContact {
        version: ctx.seq,
        name: p.name.clone(),
        email: p.email.clone(),
        phone: p.phone.clone(),
        channels: p.channels.clone(),
    });
    ctx.send(inbox, "CONTACT_UPDATED", cmd);
}

fn token(hash: &str, ttl_ms: u64, ctx: &Ctx) -> Result<RefreshToken, DomainError> {
    if !valid_hash(hash) {
        return Err(invalid("refresh_token", "not a token hash"));
    }
    Ok(RefreshToken {
        hash: hash.to_string(),
        issued_at_ms: ctx.now_ms,
        expires_at_ms: ctx.now_ms.saturating_add(ttl_ms),
    })
}

fn session(s: &AccountState, ctx: &Ctx) -> Result<Outcome, DomainError> {
    let p = s.profile.as_ref().ok_or(DomainError::BadCredentials)?;
    reply(Reply::Session {
        user_id: ctx.me.id.clone(),
        role: p.role,
    })
}

fn apply_patch(p: &mut Profile, patch: ProfilePatch) -> Result<(), DomainError> {
    if let Some(name) = patch.name {
        p.name = name;
    }
    if let Some(phone) = patch.phone {
        p.phone = phone;
    }
    if let Some(addresses) = patch.addresses {
        if addresses.len() > MAX_SAVED_ADDRESSES {
            return Err(invalid(
                "addresses",
                format!("at most {MAX_SAVED_ADDRESSES}"),
            ));
        }
        p.addresses = addresses;
    }
    if let Some(channels) = patch.channels {
        let mut seen = Vec::new();
        for c in channels {
            if seen.contains(&c) {
                return Err(invalid("notification_channels", "each channel once"));
            }
            seen.push(c);
        }
        if seen.is_empty() {
            return Err(invalid("notification_channels", "at least one channel"));
        }
        p.channels = seen;
    }
    if p.phone.is_none() && p.channels.iter().any(|c| *c != Channel::Email) {
        return Err(invalid(
            "notification_channels",
            "sms and whatsapp need a phone number",
        ));
    }
    Ok(())
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
                phone: None,
                addresses: Vec::new(),
                channels: vec![Channel::Email],
            });
            s.wallet_minor = ctx.config.initial_wallet_minor;
            if let Some(p) = &s.profile {
                send_contact(p, ctx);
            }
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
        AccountCommand::BeginLogin => {
            let p = s.profile.as_ref().ok_or(DomainError::BadCredentials)?;
            if let Some(ms) = s.security.locked_for(ctx.now_ms) {
                return Err(DomainError::Locked { retry_after_ms: ms });
            }
            return reply(Reply::Credentials {
                user_id: ctx.me.id.clone(),
                password_hash: p.password_hash.clone(),
                role: p.role,
            });
        }
        AccountCommand::LoginFailed => {
            if s.profile.is_some() {
                let policy = ctx.config.lockout;
                s.security.login_failed(ctx.now_ms, &policy);
            }
            return reply(Reply::Ack);
        }
        AccountCommand::LoginSucceeded {
            refresh_hash,
            ttl_ms,
        } => {
            profile(s, ctx)?;
            let t = token(&refresh_hash, ttl_ms, ctx)?;
            s.security.login_succeeded(t, ctx.now_ms);
            return session(s, ctx);
        }
        AccountCommand::RotateRefresh {
            old_hash,
            new_hash,
            ttl_ms,
        } => {
            profile(s, ctx).map_err(|_| DomainError::BadCredentials)?;
            let t = token(&new_hash, ttl_ms, ctx)?;
            return match s.security.rotate(&old_hash, t, ctx.now_ms) {
                Ok(()) => session(s, ctx),
                // The revocation of every session must be stored: answered as a reply.
                Err(Refusal::Reused) => reply(Reply::SessionsRevoked),
                Err(Refusal::Unknown | Refusal::Expired) => Err(DomainError::BadCredentials),
            };
        }
        AccountCommand::RevokeRefresh { hash } => {
            s.security.revoke(&hash);
            return reply(Reply::Ack);
        }
        AccountCommand::GetProfile => return Ok(Outcome::Reply(profile_view(s, ctx)?)),
        AccountCommand::UpdateProfileIfMatch { patch, etags } => {
            let current = match profile_view(s, ctx) {
                Ok(Reply::Profile(v)) => Some(v.etag()),
                _ => None,
            };
            if !current.as_ref().is_some_and(|tag| etags.contains(tag)) {
                return Err(DomainError::PreconditionFailed(format!(
                    "the profile changed since it was read (now {})",
                    current.as_deref().unwrap_or("gone")
                )));
            }
            return handle(s, AccountCommand::UpdateProfile(patch), ctx);
        }
        AccountCommand::UpdateProfile(patch) => {
            let p = s
                .profile
                .as_mut()
                .ok_or_else(|| DomainError::NotFound(format!("account {}", ctx.me.id)))?;
            let before = p.clone();
            apply_patch(p, patch)?;
            let contact_changed =
                (&p.name, &p.phone, &p.channels) != (&before.name, &before.phone, &before.channels);
            if contact_changed {
                let p = p.clone();
                send_contact(&p, ctx);
            }
            return Ok(Outcome::Reply(profile_view(s, ctx)?));
        }
        AccountCommand::OrderPlaced { order_id } => {
            if !s.orders.newest.contains(&order_id) {
                s.orders.append(order_id, ctx);
            }
            return reply(Reply::Ack);
        }
        AccountCommand::ListOrders => return reply(Reply::OrderIds(s.orders.newest.clone())),
        AccountCommand::OrderHistory => return reply(Reply::OrderHistory(s.orders.clone())),
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
            let amount = Money::shop(amount_minor);
            let answer = charge_answer(event_id, &order_id, &Method::Wallet, &amount, result);
            ctx.send(
                payment(&order_id),
                "WALLET_RESULT",
                Command::Payment(answer),
            );
            return reply(Reply::Ack);
        }
        AccountCommand::CreditWallet {
            order_id,
            amount_minor,
            refund_id,
        } => {
            // A refund never exceeds a payment, itself bounded: a larger credit is a defect.
            s.wallet_minor = add_minor(s.wallet_minor, amount_minor).ok_or_else(|| {
                invalid(
                    "amount_minor",
                    format!("1..={}", crate::limits::MAX_AMOUNT_MINOR),
                )
            })?;
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
                    if s.wallet_minor.saturating_add(amount_minor) > MAX_WALLET_MINOR {
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

    #[test]
    fn a_credit_beyond_the_money_bound_is_refused_without_overflow() {
        let me = EntityRef::new(EntityKind::Account, "u");
        let cfg = DomainConfig::default();
        let mut s = AccountState::default();
        let mut credit = |amount_minor| {
            let cmd = AccountCommand::CreditWallet {
                order_id: "o1".into(),
                amount_minor,
                refund_id: "full".into(),
            };
            handle(&mut s, cmd, &mut Ctx::new(0, &me, 1, &cfg)).map(|_| ())
        };
        credit(1_000).expect("a small credit");
        for _ in 0..2 {
            let r = credit(u64::MAX);
            assert!(matches!(r, Err(DomainError::Invalid { .. })), "{r:?}");
        }
        assert_eq!(s.wallet_minor, 1_000);
    }

    proptest! {
        #[test]
        fn the_wallet_never_goes_negative_and_debits_balance_credits(ops in prop::collection::vec((any::<bool>(), 0u64..400_000), 0..100)) {
            let me = EntityRef::new(EntityKind::Account, "u");
            let cfg = DomainConfig::default();
            let mut s = AccountState::default();
            let mut ctx = Ctx::new(0, &me, 1, &cfg);
            handle(&mut s, AccountCommand::Register { email: "a@b.co".into(), name: "A".into(), password_hash: "h".into(), role: Role::Customer }, &mut ctx).unwrap();
            let _ = ctx.take_outbox();
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

#[cfg(test)]
mod login_and_profile_tests {
    use super::*;
    use crate::entity::DomainConfig;

    fn registered(cfg: &DomainConfig, me: &EntityRef) -> AccountState {
        let mut s = AccountState::default();
        let mut ctx = Ctx::new(0, me, 1, cfg);
        handle(
            &mut s,
            AccountCommand::Register {
                email: "a@b.co".into(),
                name: "A".into(),
                password_hash: "h".into(),
                role: Role::Customer,
            },
            &mut ctx,
        )
        .unwrap();
        // Registration tells the inbox where to reach the shopper.
        assert_eq!(ctx.outbox().len(), 1);
        s
    }

    fn run(
        s: &mut AccountState,
        cmd: AccountCommand,
        now: u64,
        cfg: &DomainConfig,
        me: &EntityRef,
    ) -> (Result<Outcome, DomainError>, usize) {
        let mut work = s.clone();
        let mut ctx = Ctx::new(now, me, 2, cfg);
        let r = handle(&mut work, cmd, &mut ctx);
        if r.is_ok() {
            *s = work;
        }
        (r, ctx.outbox().len())
    }

    #[test]
    fn a_locked_account_refuses_logins_until_the_lock_ends() {
        let cfg = DomainConfig::default();
        let me = EntityRef::new(EntityKind::Account, "u");
        let mut s = registered(&cfg, &me);
        for t in 0..5 {
            assert!(matches!(
                run(&mut s, AccountCommand::BeginLogin, t, &cfg, &me).0,
                Ok(Outcome::Reply(Reply::Credentials { .. }))
            ));
            assert!(run(&mut s, AccountCommand::LoginFailed, t, &cfg, &me)
                .0
                .is_ok());
        }
        assert_eq!(
            run(&mut s, AccountCommand::BeginLogin, 1_004, &cfg, &me).0,
            Err(DomainError::Locked {
                retry_after_ms: 59_000
            })
        );
        assert!(run(&mut s, AccountCommand::BeginLogin, 60_004, &cfg, &me)
            .0
            .is_ok());
    }

    #[test]
    fn refresh_tokens_rotate_once_and_reuse_revokes_everything() {
        let cfg = DomainConfig::default();
        let me = EntityRef::new(EntityKind::Account, "u");
        let mut s = registered(&cfg, &me);
        let h = |n: u8| format!("{:064x}", n);
        let login = AccountCommand::LoginSucceeded {
            refresh_hash: h(1),
            ttl_ms: 1000,
        };
        assert!(run(&mut s, login, 0, &cfg, &me).0.is_ok());
        let rotate = |old, new| AccountCommand::RotateRefresh {
            old_hash: h(old),
            new_hash: h(new),
            ttl_ms: 1000,
        };
        assert!(matches!(
            run(&mut s, rotate(1, 2), 10, &cfg, &me).0,
            Ok(Outcome::Reply(Reply::Session { .. }))
        ));
        assert_eq!(
            run(&mut s, rotate(1, 3), 20, &cfg, &me).0,
            Ok(Outcome::Reply(Reply::SessionsRevoked))
        );
        assert_eq!(
            run(&mut s, rotate(2, 4), 30, &cfg, &me).0,
            Err(DomainError::BadCredentials)
        );
        let bad = AccountCommand::LoginSucceeded {
            refresh_hash: "not-hex".into(),
            ttl_ms: 1000,
        };
        assert!(run(&mut s, bad, 40, &cfg, &me).0.is_err());
    }

    #[test]
    fn a_profile_edit_if_match_applies_only_to_the_version_read() {
        let cfg = DomainConfig::default();
        let me = EntityRef::new(EntityKind::Account, "u");
        let mut s = registered(&cfg, &me);
        let read = |s: &mut AccountState| match run(s, AccountCommand::GetProfile, 1, &cfg, &me).0 {
            Ok(Outcome::Reply(Reply::Profile(v))) => v,
            other => panic!("{other:?}"),
        };
        let rename = |name: &str, etags: Vec<String>| AccountCommand::UpdateProfileIfMatch {
            patch: ProfilePatch {
                name: Some(name.into()),
                ..Default::default()
            },
            etags,
        };
        let before = read(&mut s);
        assert!(
            run(&mut s, rename("Asha", vec![before.etag()]), 2, &cfg, &me)
                .0
                .is_ok()
        );
        let after = read(&mut s);
        assert_ne!(after.etag(), before.etag());
        let stale = run(&mut s, rename("Ravi", vec![before.etag()]), 3, &cfg, &me).0;
        assert!(
            matches!(stale, Err(DomainError::PreconditionFailed(_))),
            "{stale:?}"
        );
        assert_eq!(read(&mut s).name, "Asha", "a refused edit changes nothing");
        // The wallet is not part of the version: a credit does not refuse an edit.
        s.wallet_minor += 500;
        assert_eq!(read(&mut s).etag(), after.etag());
    }

    #[test]
    fn profile_patches_are_validated_and_only_contact_changes_reach_the_inbox() {
        let cfg = DomainConfig::default();
        let me = EntityRef::new(EntityKind::Account, "u");
        let mut s = registered(&cfg, &me);
        let sms = ProfilePatch {
            channels: Some(vec![Channel::Sms]),
            ..Default::default()
        };
        assert!(matches!(
            run(&mut s, AccountCommand::UpdateProfile(sms), 1, &cfg, &me).0,
            Err(DomainError::Invalid { .. })
        ));
        let twice = ProfilePatch {
            channels: Some(vec![Channel::Email, Channel::Email]),
            ..Default::default()
        };
        assert!(
            run(&mut s, AccountCommand::UpdateProfile(twice), 1, &cfg, &me)
                .0
                .is_err()
        );
        let ok = ProfilePatch {
            phone: Some(Some("+919876543210".into())),
            channels: Some(vec![Channel::Sms, Channel::WhatsApp]),
            ..Default::default()
        };
        let (r, sent) = run(&mut s, AccountCommand::UpdateProfile(ok), 2, &cfg, &me);
        assert!(r.is_ok());
        assert_eq!(sent, 1);
        let address = SavedAddress {
            label: "home".into(),
            name: "A".into(),
            line1: "1 Road".into(),
            city: "Pune".into(),
            postal_code: "411001".into(),
            country: "IN".into(),
        };
        let addresses = ProfilePatch {
            addresses: Some(vec![address.clone()]),
            ..Default::default()
        };
        let (r, sent) = run(
            &mut s,
            AccountCommand::UpdateProfile(addresses),
            3,
            &cfg,
            &me,
        );
        assert!(r.is_ok());
        assert_eq!(sent, 0, "an address change does not concern the inbox");
        let too_many = ProfilePatch {
            addresses: Some(vec![address; MAX_SAVED_ADDRESSES + 1]),
            ..Default::default()
        };
        assert!(run(
            &mut s,
            AccountCommand::UpdateProfile(too_many),
            4,
            &cfg,
            &me
        )
        .0
        .is_err());
    }
}
