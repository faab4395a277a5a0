//! Money in minor units of one currency.

use serde::{Deserialize, Serialize};

/// The shop's currency. One currency per shop keeps arithmetic exact.
pub const SHOP_CURRENCY: &str = "INR";

/// An amount in minor units (paise for INR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units; never negative.
    pub amount_minor: u64,
    /// ISO 4217 code.
    pub currency: String,
}

impl Money {
    /// An amount in the shop's currency.
    pub fn shop(amount_minor: u64) -> Self {
        Self {
            amount_minor,
            currency: SHOP_CURRENCY.to_string(),
        }
    }
}
