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

/// Adds two amounts of money: `None` when the sum would pass `MAX_AMOUNT_MINOR` (it never
/// wraps or panics).
pub fn add_minor(a_minor: u64, b_minor: u64) -> Option<u64> {
    a_minor
        .checked_add(b_minor)
        .filter(|sum| *sum <= crate::limits::MAX_AMOUNT_MINOR)
}

/// The sum of `amounts` (minor units), saturating rather than overflowing: a check such as
/// "never more than was paid" stays true when the sum is capped.
pub fn sum_minor(amounts: impl IntoIterator<Item = u64>) -> u64 {
    amounts.into_iter().fold(0, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_AMOUNT_MINOR;

    #[test]
    fn sums_of_money_are_bounded_and_never_overflow() {
        assert_eq!(add_minor(1, 2), Some(3));
        assert_eq!(add_minor(MAX_AMOUNT_MINOR, 0), Some(MAX_AMOUNT_MINOR));
        assert_eq!(add_minor(MAX_AMOUNT_MINOR, 1), None);
        assert_eq!(add_minor(u64::MAX, u64::MAX), None);
        assert_eq!(sum_minor([u64::MAX, u64::MAX]), u64::MAX);
        assert_eq!(sum_minor([1, 2, 3]), 6);
    }
}
