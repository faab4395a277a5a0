//! Success reports: what a gateway's success report says was charged, checked against the
//! payment's own intent before it counts.

use super::{payment_id, Method, MethodKind, PaymentState, PaymentStatus};
use crate::error::DomainError;
use crate::money::{Money, SHOP_CURRENCY};
use serde::{Deserialize, Serialize};

/// What a success report says was charged; the Payment checks it against its own intent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeReport {
    /// The payment id the money was taken under (see [`payment_id`]).
    pub payment_id: String,
    /// The amount taken.
    pub amount: Money,
    /// How it was taken.
    pub method: MethodKind,
}

impl ChargeReport {
    /// The report of a charge of `amount` by `method` for order `order_id`, as asked.
    pub fn of(order_id: &str, method: &Method, amount: &Money) -> Self {
        Self {
            payment_id: payment_id(order_id),
            amount: amount.clone(),
            method: method.kind(),
        }
    }
}

/// Why a success report was refused: it does not describe the charge this payment asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportMismatch {
    /// No charge was asked for (or the report came without the details of what was taken).
    #[error("no charge of this payment matches the report")]
    NoIntent,
    /// Another payment id.
    #[error("payment id {reported} is not {expected}")]
    PaymentId {
        /// The payment's own.
        expected: String,
        /// The report's.
        reported: String,
    },
    /// Another amount.
    #[error("amount {reported} is not {expected}")]
    Amount {
        /// The payment's own (minor units).
        expected: u64,
        /// The report's (minor units).
        reported: u64,
    },
    /// Another currency.
    #[error("currency {reported} is not {expected}")]
    Currency {
        /// The payment's own.
        expected: String,
        /// The report's.
        reported: String,
    },
    /// Another method.
    #[error("method {reported} is not {expected}")]
    Method {
        /// The payment's own.
        expected: &'static str,
        /// The report's.
        reported: &'static str,
    },
}

impl ReportMismatch {
    /// The field that differs, as a metric label.
    pub fn field(&self) -> &'static str {
        match self {
            ReportMismatch::NoIntent => "intent",
            ReportMismatch::PaymentId { .. } => "payment_id",
            ReportMismatch::Amount { .. } => "amount",
            ReportMismatch::Currency { .. } => "currency",
            ReportMismatch::Method { .. } => "method",
        }
    }
}

/// Checks `report` against the charge `s` asked for as the payment of order `order_id`.
pub fn check_report(
    s: &PaymentState,
    order_id: &str,
    report: &ChargeReport,
) -> Result<(), ReportMismatch> {
    let Some(method) = s
        .method
        .as_ref()
        .filter(|_| s.status != PaymentStatus::None)
    else {
        return Err(ReportMismatch::NoIntent);
    };
    let expected = payment_id(order_id);
    if report.payment_id != expected {
        return Err(ReportMismatch::PaymentId {
            expected,
            reported: report.payment_id.clone(),
        });
    }
    if report.amount.amount_minor != s.amount_minor {
        return Err(ReportMismatch::Amount {
            expected: s.amount_minor,
            reported: report.amount.amount_minor,
        });
    }
    if report.amount.currency != SHOP_CURRENCY {
        return Err(ReportMismatch::Currency {
            expected: SHOP_CURRENCY.to_string(),
            reported: report.amount.currency.clone(),
        });
    }
    if report.method != method.kind() {
        return Err(ReportMismatch::Method {
            expected: method.name(),
            reported: report.method.name(),
        });
    }
    Ok(())
}

/// Logs and counts a refused success report (`agora_payment_mismatches_total{field}`).
pub(super) fn report_refused(order_id: &str, event_id: &str, m: &ReportMismatch) -> DomainError {
    tracing::warn!(
        order_id,
        event_id,
        field = m.field(),
        mismatch = %m,
        "payment success report does not match the payment: refused"
    );
    metrics::counter!("agora_payment_mismatches_total", "field" => m.field()).increment(1);
    DomainError::Conflict(format!("charge report refused: {m}"))
}
