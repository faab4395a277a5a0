//! Input validation shared by the routes; every failure is a 4xx problem naming the field.

use crate::problem::Problem;
use agora_actors::limits::{valid_sku, valid_text, MAX_NAME_LEN};
use unicode_normalization::UnicodeNormalization;

/// Checks a SKU from a path or body; a malformed one cannot exist, so it is a 404 in paths.
pub fn sku(s: &str) -> Result<(), Problem> {
    if valid_sku(s) {
        Ok(())
    } else {
        Err(Problem::invalid("sku", "1..=64 of A-Z a-z 0-9 - _ ."))
    }
}

/// Checks a required short text field: 1..=200 characters, none of them a control or
/// invisible character (newline included), nor a bidirectional control. Answers its NFKC
/// form, trimmed (what person names are stored as).
pub fn name(field: &str, s: &str) -> Result<String, Problem> {
    if has_bidi_controls(s) {
        return Err(Problem::invalid(
            field,
            "bidirectional control characters are not allowed",
        ));
    }
    let normalized: String = s.nfkc().collect();
    let normalized = normalized.trim();
    if s.chars().any(is_invisible)
        || normalized.is_empty()
        || !valid_text(normalized, MAX_NAME_LEN)
        || normalized.chars().any(is_invisible)
    {
        return Err(Problem::invalid(
            field,
            format!("1..={MAX_NAME_LEN} printable characters, no control or invisible ones"),
        ));
    }
    Ok(normalized.to_string())
}

/// Whether `s` holds bidirectional marks, embeddings, overrides or isolates, which make text
/// display as something other than it is.
fn has_bidi_controls(s: &str) -> bool {
    s.chars().any(|c| {
        matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

/// Whether `c` is a control character, or one that displays as nothing (zero-width spaces
/// and joiners, soft hyphen, byte order mark, invisible operators, fillers, variation
/// selectors, tags): two strings that differ only by them look the same.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}'
            | '\u{17b5}' | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{3164}'
            | '\u{fe00}'..='\u{fe0f}' | '\u{feff}' | '\u{ffa0}' | '\u{fff0}'..='\u{fffb}'
            | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}')
}

/// The canonical form of an email address: NFKC, trimmed and lower-cased, refused when it
/// holds a control or invisible character or is not an address (`email_address`, with a
/// dot in the domain and no display text or domain literal), or is longer than 254 bytes.
/// Accounts are keyed by this form, so look-alike spellings are one account.
pub fn email(s: &str) -> Result<String, Problem> {
    let bad = || Problem::invalid("email", "a valid email address, at most 254 characters");
    if s.chars().any(is_invisible) {
        return Err(bad());
    }
    let normalized: String = s.trim().nfkc().collect::<String>().to_lowercase();
    if normalized.len() > 254
        || normalized
            .chars()
            .any(|c| is_invisible(c) || c.is_whitespace())
    {
        return Err(bad());
    }
    let options = email_address::Options {
        minimum_sub_domains: 2,
        allow_domain_literal: false,
        allow_display_text: false,
        ..email_address::Options::default()
    };
    email_address::EmailAddress::parse_with_options(&normalized, options).map_err(|_| bad())?;
    Ok(normalized)
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

    #[test]
    fn look_alike_emails_are_one_address_and_invisible_characters_are_refused() {
        assert_eq!(email(" Admin@Agora.Local ").unwrap(), "admin@agora.local");
        // Fullwidth letters and NFD forms become their NFKC (and lower-case) form.
        assert_eq!(
            email("ａｄｍｉｎ@agora.local").unwrap(),
            "admin@agora.local"
        );
        assert_eq!(
            email("jose\u{301}@example.com").unwrap(),
            "jos\u{e9}@example.com"
        );
        assert_eq!(
            email("jos\u{e9}@example.com").unwrap(),
            "jos\u{e9}@example.com"
        );
        for invisible in ["\u{200b}", "\u{ad}", "\u{feff}", "\u{2060}", "\u{0}", "\n"] {
            let e = format!("admin{invisible}@agora.local");
            assert!(email(&e).is_err(), "{e:?}");
        }
        for bad in ["Name <a@b.co>", "a@[127.0.0.1]", "a@@b.co", "a..b@c.de", ""] {
            assert!(email(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_are_nfkc_and_refuse_control_and_invisible_characters() {
        assert_eq!(name("name", " Ａｓｈａ ").unwrap(), "Asha");
        for bad in [
            "Asha\nBcc: x",
            "Asha\t",
            "A\u{200b}sha",
            "\u{ad}",
            "   ",
            "\u{feff}",
        ] {
            assert!(name("name", bad).is_err(), "{bad:?}");
        }
    }
}
