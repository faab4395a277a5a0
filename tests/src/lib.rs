//! Black-box test harness for Agora: starts real `agora` processes on free
//! ports, talks HTTP to them, and offers polling helpers with deadlines.
//!
//! Environment knobs:
//! - `AGORA_BIN`: path of the `agora` binary (default: `<target>/debug/agora`).
//! - `AGORA_TEST_RUST_LOG`: `RUST_LOG` for the spawned servers (default `warn`).
//! - `AGORA_KEEP_TMP=1`: keep the temp dirs (data, stdout/stderr logs) after the test.

pub mod cluster;
pub mod dead_letters;
pub mod encoding;
pub mod http;
pub mod operations;
pub mod process;
pub mod shop;

pub use encoding::*;
pub use http::*;
pub use process::*;
pub use shop::*;

use std::time::Duration;

pub use reqwest::Method;
pub use serde_json::{json, Value};

/// Password given to the server through `AGORA_ADMIN_PASSWORD`.
pub const ADMIN_PASSWORD: &str = "admin-test-password-1";
/// Email of the admin account the server seeds on first start.
pub const ADMIN_EMAIL: &str = "admin@agora.local";
/// Password used for every user the tests register.
pub const USER_PASSWORD: &str = "correct-horse-battery";
/// Card number that the simulated gateway approves.
pub const CARD_OK: &str = "4242424242424242";
/// Card number that the simulated gateway declines.
pub const CARD_DECLINED: &str = "4000000000000002";
/// Card number that fails with insufficient funds.
pub const CARD_INSUFFICIENT: &str = "4000000000009995";
/// Card number for which the gateway never answers.
pub const CARD_NEVER_ANSWERS: &str = "4000000000000119";
/// Balance (minor units) of the wallet of a freshly registered account.
pub const INITIAL_WALLET_BALANCE: u64 = 500_000;
/// Default deadline for polling helpers.
pub const POLL_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between two polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long a server may take to print its addresses after being spawned.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Every order status of the contract.
pub const ALL_ORDER_STATUSES: &[&str] = &[
    "PENDING",
    "STOCK_RESERVED",
    "AWAITING_PAYMENT",
    "PAYMENT_PROCESSING",
    "CONFIRMED",
    "SHIPPED",
    "DELIVERED",
    "PAYMENT_FAILED",
    "RETURNED",
    "CANCELLED",
    "EXPIRED",
    "REFUND_PENDING",
    "REFUNDED",
];
/// Order statuses after which nothing more happens to an order.
pub const TERMINAL_ORDER_STATUSES: &[&str] = &["DELIVERED", "CANCELLED", "EXPIRED", "REFUNDED"];
