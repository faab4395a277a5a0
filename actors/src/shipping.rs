//! Couriers and their rate quotes. A quote is a pure function of the courier and the
//! destination city, so the edge can show quotes and the checkout can price the chosen one
//! the same way, and a retried checkout prices it identically.

use serde::{Deserialize, Serialize};

/// One courier's service and tariff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CourierSpec {
    /// The id a checkout names (`shipping: {courier}`).
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Price to a metro city, minor units.
    pub metro_minor: u64,
    /// Price elsewhere, minor units.
    pub other_minor: u64,
    /// Days to a metro city: (earliest, latest).
    pub metro_days: (u32, u32),
    /// Days elsewhere: (earliest, latest).
    pub other_days: (u32, u32),
}

/// The courier used when a checkout names none: free standard shipping, as before couriers
/// could be chosen (so the order total stays the sum of its lines).
pub const DEFAULT_COURIER: &str = "agora-post";

/// The couriers Agora ships with (simulated).
pub const COURIERS: &[CourierSpec] = &[
    CourierSpec {
        id: "agora-post",
        name: "Agora Post (standard)",
        metro_minor: 0,
        other_minor: 0,
        metro_days: (3, 5),
        other_days: (4, 7),
    },
    CourierSpec {
        id: "swift",
        name: "Swift Couriers (express)",
        metro_minor: 9_900,
        other_minor: 14_900,
        metro_days: (1, 2),
        other_days: (2, 3),
    },
    CourierSpec {
        id: "nightjar",
        name: "Nightjar (next day)",
        metro_minor: 24_900,
        other_minor: 34_900,
        metro_days: (1, 1),
        other_days: (1, 2),
    },
];

/// Cities the couriers treat as metro (compared case-insensitively).
const METROS: &[&str] = &[
    "bengaluru",
    "bangalore",
    "mumbai",
    "delhi",
    "new delhi",
    "chennai",
    "kolkata",
    "hyderabad",
    "pune",
];

/// A price and delivery estimate from one courier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The courier id.
    pub courier: String,
    /// Display name.
    pub name: String,
    /// Price in minor units.
    pub price_minor: u64,
    /// Earliest delivery, in days.
    pub eta_days_min: u32,
    /// Latest delivery, in days.
    pub eta_days_max: u32,
}

/// The courier with this id.
pub fn courier(id: &str) -> Option<&'static CourierSpec> {
    COURIERS.iter().find(|c| c.id == id)
}

/// Whether `city` is a metro for the couriers' tariffs.
pub fn is_metro(city: &str) -> bool {
    let c = city.trim().to_lowercase();
    METROS.contains(&c.as_str())
}

/// The quote of courier `id` for `city`; `None` for an unknown courier.
pub fn quote(id: &str, city: &str) -> Option<Quote> {
    let c = courier(id)?;
    let metro = is_metro(city);
    let (price_minor, (lo, hi)) = if metro {
        (c.metro_minor, c.metro_days)
    } else {
        (c.other_minor, c.other_days)
    };
    Some(Quote {
        courier: c.id.to_string(),
        name: c.name.to_string(),
        price_minor,
        eta_days_min: lo,
        eta_days_max: hi,
    })
}

/// Every courier's quote for `city`, cheapest first.
pub fn quotes(city: &str) -> Vec<Quote> {
    let mut all: Vec<Quote> = COURIERS.iter().filter_map(|c| quote(c.id, city)).collect();
    all.sort_by(|a, b| {
        a.price_minor
            .cmp(&b.price_minor)
            .then(a.courier.cmp(&b.courier))
    });
    all
}

/// The shipping chosen at checkout, priced then (fixed for the order's life).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingChoice {
    /// The courier id.
    pub courier: String,
    /// The price quoted at checkout, in minor units.
    pub price_minor: u64,
}

impl Default for ShippingChoice {
    fn default() -> Self {
        Self {
            courier: DEFAULT_COURIER.to_string(),
            price_minor: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_courier_quotes_and_metros_are_cheaper_or_equal() {
        for c in COURIERS {
            let metro = quote(c.id, "Bengaluru").unwrap();
            let other = quote(c.id, "Shillong").unwrap();
            assert!(metro.price_minor <= other.price_minor, "{c:?}");
            assert!(metro.eta_days_min <= metro.eta_days_max);
        }
        assert!(quote("pigeon", "Pune").is_none());
        assert_eq!(quotes("pune").len(), COURIERS.len());
        assert_eq!(quotes("pune")[0].courier, DEFAULT_COURIER);
        assert_eq!(quote(DEFAULT_COURIER, "x").unwrap().price_minor, 0);
    }
}
