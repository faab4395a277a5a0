//! Where an order's payment stands, as the order last heard it. Stored as its name (the
//! record format has always held a string), typed in memory.

use serde::{Deserialize, Serialize};

/// An order's payment status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum OrderPaymentStatus {
    /// No payment started (or none yet placed).
    #[default]
    None,
    /// A charge was asked for.
    Processing,
    /// The charge went through.
    Succeeded,
    /// The charge was declined or timed out.
    Failed,
    /// Money is being paid back.
    Refunding,
    /// Money was paid back.
    Refunded,
}

impl OrderPaymentStatus {
    /// Every status.
    pub const ALL: [OrderPaymentStatus; 6] = [
        Self::None,
        Self::Processing,
        Self::Succeeded,
        Self::Failed,
        Self::Refunding,
        Self::Refunded,
    ];

    /// The name shown in the API and stored in records.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Processing => "processing",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Refunding => "refunding",
            Self::Refunded => "refunded",
        }
    }
}

impl std::fmt::Display for OrderPaymentStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<OrderPaymentStatus> for String {
    fn from(s: OrderPaymentStatus) -> String {
        s.name().to_string()
    }
}

impl TryFrom<String> for OrderPaymentStatus {
    type Error = String;

    /// A stored name; an empty one is a record written before its order was placed.
    fn try_from(name: String) -> Result<Self, String> {
        if name.is_empty() {
            return Ok(Self::None);
        }
        Self::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("unknown order payment status {name:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_is_stored_as_the_name_it_always_had() {
        for s in OrderPaymentStatus::ALL {
            let stored =
                bincode::serde::encode_to_vec(s, bincode::config::standard()).expect("encode");
            let as_string =
                bincode::serde::encode_to_vec(s.name().to_string(), bincode::config::standard())
                    .expect("encode");
            assert_eq!(stored, as_string, "{s}");
            assert_eq!(OrderPaymentStatus::try_from(s.name().to_string()), Ok(s));
        }
        assert_eq!(
            OrderPaymentStatus::try_from(String::new()),
            Ok(OrderPaymentStatus::None)
        );
        assert!(OrderPaymentStatus::try_from("paid?".to_string()).is_err());
    }
}
