//! Card references: what Agora keeps of a card instead of its number, and the gateway-side
//! vault that makes them.
//!
//! A token is vaultless: the card number sealed with AES-256-GCM-SIV under a key only the
//! gateway holds, with a synthetic nonce (an HMAC of the number), so the same number always
//! gives the same token (every replica rewriting a stored number gets the same bytes, and a
//! restart loses nothing: there is no table of tokens to lose). The gateway opens a token to
//! decide a charge; a forged or altered token does not open. The fingerprint is a second
//! HMAC of the number, so equal cards match without the number being kept.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM_SIV, NONCE_LEN};
use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

/// What Agora keeps of a card: the gateway's token, the last four digits and a fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRef {
    /// The gateway's token (`tok_…`): charges name the card by it.
    pub token: String,
    /// The card's last four digits, for receipts and support.
    pub last4: String,
    /// A keyed hash of the number (`fp_…`): equal cards have equal fingerprints.
    pub fingerprint: String,
}

/// Why a card could not be tokenised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// Not a card number (12 to 19 digits).
    #[error("not a card number: 12 to 19 digits")]
    NotACardNumber,
    /// The vault's key is too short.
    #[error("the card token key must be at least {MIN_CARD_KEY_BYTES} bytes")]
    ShortKey,
    /// The crypto backend refused (should not happen).
    #[error("card token crypto failed")]
    Crypto,
}

/// Shortest accepted card token key, in bytes.
pub const MIN_CARD_KEY_BYTES: usize = 32;
/// What every token starts with.
pub const TOKEN_PREFIX: &str = "tok_";
/// What every fingerprint starts with.
pub const FINGERPRINT_PREFIX: &str = "fp_";
/// Bound to every token: a token opens only as a card token of this scheme.
const TOKEN_AAD: &[u8] = b"agora card token v1";

/// Whether `s` is shaped like a card number: 12 to 19 ASCII digits.
pub fn is_card_number(s: &str) -> bool {
    (12..=19).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// The gateway's vault: makes card references and opens tokens (see the module docs).
pub struct CardVault {
    seal: LessSafeKey,
    nonce_key: hmac::Key,
    fingerprint_key: hmac::Key,
}

impl std::fmt::Debug for CardVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CardVault(<key redacted>)")
    }
}

impl CardVault {
    /// A vault whose keys are derived from `secret` (at least `MIN_CARD_KEY_BYTES`).
    pub fn new(secret: &[u8]) -> Result<Self, CardError> {
        if secret.len() < MIN_CARD_KEY_BYTES {
            return Err(CardError::ShortKey);
        }
        let master = hmac::Key::new(hmac::HMAC_SHA256, secret);
        let derive = |label: &[u8]| hmac::sign(&master, label);
        let seal_key = derive(b"agora card token seal");
        let unbound =
            UnboundKey::new(&AES_256_GCM_SIV, seal_key.as_ref()).map_err(|_| CardError::Crypto)?;
        Ok(Self {
            seal: LessSafeKey::new(unbound),
            nonce_key: hmac::Key::new(
                hmac::HMAC_SHA256,
                derive(b"agora card token nonce").as_ref(),
            ),
            fingerprint_key: hmac::Key::new(
                hmac::HMAC_SHA256,
                derive(b"agora card fingerprint").as_ref(),
            ),
        })
    }

    /// The reference of card `number` (the same for the same number, always).
    pub fn tokenise(&self, number: &str) -> Result<CardRef, CardError> {
        if !is_card_number(number) {
            return Err(CardError::NotACardNumber);
        }
        let mut nonce_bytes = [0u8; NONCE_LEN];
        let synthetic = hmac::sign(&self.nonce_key, number.as_bytes());
        nonce_bytes.copy_from_slice(&synthetic.as_ref()[..NONCE_LEN]);
        let mut sealed = number.as_bytes().to_vec();
        self.seal
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(TOKEN_AAD),
                &mut sealed,
            )
            .map_err(|_| CardError::Crypto)?;
        let fingerprint = hmac::sign(&self.fingerprint_key, number.as_bytes());
        Ok(CardRef {
            token: format!(
                "{TOKEN_PREFIX}{}{}",
                crate::hex::encode(&nonce_bytes),
                crate::hex::encode(&sealed)
            ),
            last4: number[number.len() - 4..].to_string(),
            fingerprint: format!(
                "{FINGERPRINT_PREFIX}{}",
                crate::hex::encode(&fingerprint.as_ref()[..16])
            ),
        })
    }

    /// The card number behind `token`, if this vault made it.
    pub fn number(&self, token: &str) -> Option<String> {
        let bytes = crate::hex::decode(token.strip_prefix(TOKEN_PREFIX)?)?;
        let (nonce, sealed) = bytes.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let opened = self
            .seal
            .open_in_place(nonce, Aad::from(TOKEN_AAD), &mut sealed)
            .ok()?;
        let number = String::from_utf8(opened.to_vec()).ok()?;
        is_card_number(&number).then_some(number)
    }
}

/// A fixed, public key for tests and examples: anyone can open its tokens, so never for
/// real cards.
pub const TEST_CARD_KEY: &[u8] = b"agora-test-card-key-public-never-for-real-cards";

/// The reference of card `number` under `TEST_CARD_KEY` (for tests); `None` for a non-number.
pub fn test_card(number: &str) -> Option<CardRef> {
    CardVault::new(TEST_CARD_KEY).ok()?.tokenise(number).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"card-vault-unit-test-key-0123456789";

    #[test]
    fn tokens_are_deterministic_open_only_under_their_key_and_hold_no_digits_in_clear() {
        let vault = CardVault::new(KEY).unwrap();
        let card = vault.tokenise("4242424242424242").unwrap();
        assert_eq!(card, vault.tokenise("4242424242424242").unwrap());
        assert_eq!(card.last4, "4242");
        assert!(!card.token.contains("4242424242424242"));
        assert!(!card.fingerprint.contains("4242424242424242"));
        assert_eq!(
            vault.number(&card.token).as_deref(),
            Some("4242424242424242")
        );
        let other = vault.tokenise("4000000000000002").unwrap();
        assert_ne!(other.fingerprint, card.fingerprint);
        let again = CardVault::new(KEY).unwrap();
        assert_eq!(again.tokenise("4242424242424242").unwrap(), card);
        let stranger = CardVault::new(b"another-card-vault-key-0123456789abc").unwrap();
        assert_eq!(stranger.number(&card.token), None);
    }

    #[test]
    fn forged_tokens_short_keys_and_non_numbers_are_refused() {
        let vault = CardVault::new(KEY).unwrap();
        let card = vault.tokenise("4242424242424242").unwrap();
        let mut forged = card.token.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == '0' { '1' } else { '0' });
        assert_eq!(vault.number(&forged), None);
        assert_eq!(vault.number("tok_zz"), None);
        assert_eq!(vault.number("4242424242424242"), None);
        assert_eq!(CardVault::new(b"short").unwrap_err(), CardError::ShortKey);
        assert_eq!(vault.tokenise("42"), Err(CardError::NotACardNumber));
        assert_eq!(
            vault.tokenise("4242x24242424242"),
            Err(CardError::NotACardNumber)
        );
    }
}
