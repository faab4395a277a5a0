//! Input validation shared by the routes; every failure is a 4xx problem naming the field.

use crate::problem::Problem;
use agora_actors::limits::{valid_sku, valid_text, MAX_NAME_LEN};

/// Checks a SKU from a path or body; a malformed one cannot exist, so it is a 404 in paths.
pub fn sku(s: &str) -> Result<(), Problem> {
    if valid_sku(s) {
        Ok(())
    } else {
        Err(Problem::invalid("sku", "1..=64 of A-Z a-z 0-9 - _ ."))
    }
}

/// Checks a required short text field.
pub fn name(field: &str, s: &str) -> Result<(), Problem> {
    if s.trim().is_empty() || !valid_text(s, MAX_NAME_LEN) {
        return Err(Problem::invalid(
            field,
            format!("1..={MAX_NAME_LEN} printable characters"),
        ));
    }
    if has_bidi_controls(s) {
        return Err(Problem::invalid(
            field,
            "bidirectional control characters are not allowed",
        ));
    }
    Ok(())
}

/// Whether `s` holds bidirectional marks, embeddings, overrides or isolates, which make text
/// display as something other than it is.
fn has_bidi_controls(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

/// Checks an email address (a pragmatic subset of RFC 5321).
pub fn email(s: &str) -> Result<(), Problem> {
    let bad = || Problem::invalid("email", "a valid email address, at most 254 characters");
    if s.len() > 254
        || s.chars().any(|c| c.is_whitespace() || c.is_control())
        || has_bidi_controls(s)
    {
        return Err(bad());
    }
    let (local, domain) = s.rsplit_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || local.len() > 64
        || local.contains('@')
        || domain.len() < 3
        || !domain.contains('.')
    {
        return Err(bad());
    }
    if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        return Err(bad());
    }
    Ok(())
}

/// Checks a password's length.
pub fn password(s: &str) -> Result<(), Problem> {
    let n = s.chars().count();
    if !(8..=128).contains(&n) {
        return Err(Problem::invalid("password", "8 to 128 characters"));
    }
    Ok(())
}

/// Checks a card number: 12 to 19 digits passing the Luhn check.
pub fn card_number(s: &str) -> Result<(), Problem> {
    let bad = || {
        Problem::invalid(
            "payment.card_number",
            "12 to 19 digits with a valid check digit",
        )
    };
    if !(12..=19).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let sum: u32 = s
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    if !sum.is_multiple_of(10) {
        return Err(bad());
    }
    Ok(())
}

/// Checks a UPI virtual payment address (`handle@bank`).
pub fn vpa(s: &str) -> Result<(), Problem> {
    let ok = s.len() <= 100
        && s.split_once('@').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && (a.bytes().chain(b.bytes()))
                    .all(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-' || c == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Problem::invalid("payment.vpa", "like name@bank"))
    }
}

/// Checks an `Idempotency-Key` header value.
pub fn idempotency_key(s: &str) -> Result<(), Problem> {
    if s.is_empty() || s.len() > 128 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Problem::bad_request(
            "Idempotency-Key must be 1 to 128 visible ASCII characters",
        ));
    }
    Ok(())
}

/// The required `Idempotency-Key` header of a request, checked.
pub fn idempotency_header(headers: &axum::http::HeaderMap) -> Result<&str, Problem> {
    let key = headers
        .get("idempotency-key")
        .ok_or_else(|| Problem::bad_request("the Idempotency-Key header is required"))?
        .to_str()
        .map_err(|_| Problem::bad_request("Idempotency-Key must be visible ASCII"))?;
    idempotency_key(key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(card_number("4242424242424242").is_ok());
        assert!(card_number("4000000000000002").is_ok());
        assert!(card_number("4000000000009995").is_ok());
        assert!(card_number("4000000000000119").is_ok());
        assert!(card_number("4242424242424241").is_err());
        assert!(card_number("42424242424242a2").is_err());
    }

    #[test]
    fn emails() {
        assert!(email("a@b.co").is_ok());
        assert!(email("a@b").is_err());
        assert!(email("a b@c.de").is_err());
        assert!(email("@c.de").is_err());
        assert!(email("rtl\u{202e}@example.com").is_err());
    }
}
