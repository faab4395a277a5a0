//! Whether a secret is strong enough to run a cluster with: long enough, not a value from
//! an example file, and not a low-entropy string (a word repeated, a keyboard run).

/// The fewest bytes a secret may have.
pub const MIN_SECRET_BYTES: usize = 32;

/// What example files and manifests put where a secret belongs.
const EXAMPLE_MARKERS: [&str; 5] = [
    "change-me",
    "changeme",
    "replace-me",
    "replaceme",
    "example",
];

/// The fewest distinct characters a secret may have.
const MIN_DISTINCT_CHARS: usize = 10;

/// The least Shannon entropy per character a secret may have (random hex has about 3.9).
const MIN_BITS_PER_CHAR: f64 = 3.0;

/// Why `value` is too weak to be a secret, if it is.
pub fn weakness(value: &str) -> Option<&'static str> {
    let lower = value.to_ascii_lowercase();
    if EXAMPLE_MARKERS.iter().any(|m| lower.contains(m)) {
        return Some("is an example value");
    }
    if value.len() < MIN_SECRET_BYTES {
        return Some("is shorter than 32 bytes");
    }
    let mut counts = std::collections::BTreeMap::<char, usize>::new();
    for c in value.chars() {
        *counts.entry(c).or_default() += 1;
    }
    let n = value.chars().count() as f64;
    let bits: f64 = counts
        .values()
        .map(|c| {
            let p = *c as f64 / n;
            -p * p.log2()
        })
        .sum();
    if counts.len() < MIN_DISTINCT_CHARS || bits < MIN_BITS_PER_CHAR {
        return Some("has low entropy");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_secrets_are_named_and_random_ones_pass() {
        assert_eq!(
            weakness("change-me-local-cluster-secret"),
            Some("is an example value")
        );
        assert_eq!(
            weakness("REPLACE-ME-with-a-long-random-string-0123456"),
            Some("is an example value")
        );
        assert_eq!(
            weakness("0123456789abcdef0123"),
            Some("is shorter than 32 bytes")
        );
        assert_eq!(weakness(&"ab".repeat(20)), Some("has low entropy"));
        assert_eq!(
            weakness("passwordpasswordpasswordpassword"),
            Some("has low entropy")
        );
        assert_eq!(
            weakness("9f1c2e7a4b8d03f6e5a1c9b27d4e8f0a3c6b1d5e9f2a7c4b"),
            None
        );
        assert_eq!(weakness("N7q-zR2v_Lk9WpX4sT8mYc1BdF6hJ3gQ"), None);
    }
}
