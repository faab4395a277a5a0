//! Signed payment webhooks. The gateway signs each delivery with a secret shared with the
//! shop: `Agora-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`. The shop
//! recomputes the MAC (compared in constant time) and refuses a timestamp outside the
//! tolerance window, so a captured delivery cannot be replayed later.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

/// The signature header (case-insensitive in HTTP).
pub const SIGNATURE_HEADER: &str = "agora-signature";
/// Default tolerance between the signature's timestamp and the shop's clock (seconds).
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;
/// Longest accepted event id.
pub const MAX_EVENT_ID_LEN: usize = 128;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature header.
    #[error("missing Agora-Signature header")]
    Missing,
    /// The header is not `t=<unix>,v1=<hex>`.
    #[error("malformed Agora-Signature header")]
    Malformed,
    /// The timestamp is outside the tolerance window.
    #[error("signature timestamp {t} is outside the {tolerance} s window around {now}")]
    Stale {
        /// The signed timestamp.
        t: u64,
        /// The shop's time.
        now: u64,
        /// The window.
        tolerance: u64,
    },
    /// No `v1` value matches the body.
    #[error("signature does not match")]
    Mismatch,
}

/// The MAC of `t.body` (HMAC takes keys of any length, so this is always `Some`).
fn mac(secret: &[u8], t: u64, body: &[u8]) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(secret).ok()?;
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    Some(m)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The header value signing `body` at unix time `t`.
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let sig = mac(secret, t, body)
        .map(|m| hex(&m.finalize().into_bytes()))
        .unwrap_or_default();
    format!("t={t},v1={sig}")
}

/// Checks `header` against `body`: a `v1` MAC that matches (constant-time comparison) and a
/// timestamp within `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_secs: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if header.len() > 1024 {
        return Err(SignatureError::Malformed);
    }
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<u64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => sigs.push(unhex(v).ok_or(SignatureError::Malformed)?),
            Some(_) => {} // other schemes are ignored
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if t.abs_diff(now_secs) > tolerance_secs {
        return Err(SignatureError::Stale {
            t,
            now: now_secs,
            tolerance: tolerance_secs,
        });
    }
    let expected = mac(secret, t, body).ok_or(SignatureError::Mismatch)?;
    if sigs
        .iter()
        .any(|s| expected.clone().verify_slice(s).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// A payment event from the gateway (`POST /api/v1/payments/webhook`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "evt_5f2c", "type": "charge.succeeded", "created": 1764028800,
    "data": {"order_id": "ord-1f3a", "amount_minor": 129900, "currency": "INR",
             "payment_id": "ord-1f3a:charge", "method": "card"}}))]
pub struct WebhookEvent {
    /// Event id, unique per event; a repeated delivery has the same id.
    pub id: String,
    /// `charge.pending`, `charge.succeeded`, `charge.failed`, `refund.succeeded` or
    /// `refund.failed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When the gateway created the event (unix seconds).
    pub created: u64,
    /// What it is about.
    pub data: WebhookData,
}

/// The payload of a payment event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(examples(json!({"order_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10", "amount_minor": 259900,
    "currency": "INR", "payment_id": "7b0e8c1e-7f7e-5c4e-9a51-2f1c0c3b9d10:charge", "method": "card"})))]
pub struct WebhookData {
    /// The order paid.
    pub order_id: String,
    /// Amount in minor units.
    #[serde(default)]
    pub amount_minor: u64,
    /// ISO 4217 currency of the amount (required for `charge.succeeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The payment id the charge was asked under (the shop's idempotency key; required for
    /// `charge.succeeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<String>,
    /// `card`, `upi` or `wallet` (required for `charge.succeeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The refund, for `refund.*` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
    /// Why, for `*.failed` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"whsec_test";

    #[test]
    fn a_signature_verifies_and_a_changed_body_does_not() {
        let h = sign(SECRET, 1000, b"{}");
        assert_eq!(verify(SECRET, Some(&h), b"{}", 1000, 300), Ok(()));
        assert_eq!(
            verify(SECRET, Some(&h), b"{ }", 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&h), b"{}", 1000, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_missing_and_malformed_are_refused() {
        let h = sign(SECRET, 1000, b"x");
        assert!(matches!(
            verify(SECRET, Some(&h), b"x", 1301, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert!(matches!(
            verify(SECRET, Some(&h), b"x", 699, 300),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(verify(SECRET, Some(&h), b"x", 1300, 300), Ok(()));
        assert_eq!(
            verify(SECRET, None, b"x", 1000, 300),
            Err(SignatureError::Missing)
        );
        for bad in [
            "",
            "t=1000",
            "v1=abcd",
            "t=x,v1=ab",
            "t=1000,v1=zz",
            "garbage",
        ] {
            assert_eq!(
                verify(SECRET, Some(bad), b"x", 1000, 300),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn only_the_signed_body_and_time_verify(body in prop::collection::vec(any::<u8>(), 0..200),
                                                 other in prop::collection::vec(any::<u8>(), 0..200),
                                                 t in 0u64..4_000_000_000) {
            let h = sign(SECRET, t, &body);
            prop_assert_eq!(verify(SECRET, Some(&h), &body, t, 300), Ok(()));
            if other != body {
                prop_assert_eq!(verify(SECRET, Some(&h), &other, t, 300), Err(SignatureError::Mismatch));
            }
            // A timestamp changed in the header breaks the MAC.
            let forged = h.replacen(&format!("t={t}"), &format!("t={}", t + 1), 1);
            prop_assert_eq!(verify(SECRET, Some(&forged), &body, t, 300), Err(SignatureError::Mismatch));
        }
    }
}
