//! Tokens (JWT, HS256) and passwords (argon2id). Hashing runs on the blocking pool seam,
//! off the async workers; token expiry is checked against the `Clock` seam.

use crate::problem::Problem;
use agora_actors::seams::BlockingPool;
use agora_actors::seams::RandomSource;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The claims in an access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Role name.
    pub role: String,
    /// Issued at (seconds since epoch).
    pub iat: u64,
    /// Expires at (seconds since epoch).
    pub exp: u64,
    /// Issuer.
    pub iss: String,
}

const ISSUER: &str = "agora";

/// The signing keys for access tokens.
pub struct JwtKeys {
    /// The key id (`kid`) new tokens carry.
    current_kid: String,
    encoding: EncodingKey,
    /// Every accepted key by id: the current one and those of earlier rotations.
    decoding: std::collections::BTreeMap<String, DecodingKey>,
    validation: Validation,
    /// Token lifetime in seconds.
    pub ttl_secs: u64,
}

/// One signing key and its id (`kid` in the token header).
#[derive(Debug, Clone)]
pub struct JwtKey {
    /// The key's id.
    pub kid: String,
    /// The key (at least 32 bytes).
    pub secret: Vec<u8>,
}

impl JwtKeys {
    /// Keys from one shared secret (at least 32 bytes).
    pub fn new(secret: &[u8], ttl_secs: u64) -> Self {
        let current = JwtKey {
            kid: "current".into(),
            secret: secret.to_vec(),
        };
        Self::rotating(current, Vec::new(), ttl_secs)
    }

    /// Tokens are signed with `current`; tokens of `previous` keys are still accepted,
    /// each key chosen by the token's `kid`.
    pub fn rotating(current: JwtKey, previous: Vec<JwtKey>, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is checked against the Clock seam below, not the system clock.
        validation.validate_exp = false;
        validation.required_spec_claims.clear();
        validation.set_issuer(&[ISSUER]);
        let mut decoding: std::collections::BTreeMap<String, DecodingKey> = previous
            .iter()
            .map(|k| (k.kid.clone(), DecodingKey::from_secret(&k.secret)))
            .collect();
        decoding.insert(
            current.kid.clone(),
            DecodingKey::from_secret(&current.secret),
        );
        Self {
            current_kid: current.kid,
            encoding: EncodingKey::from_secret(&current.secret),
            decoding,
            validation,
            ttl_secs,
        }
    }

    /// Issues a token for `user_id` with `role`, valid from `now_secs`.
    pub fn issue(&self, user_id: &str, role: &str, now_secs: u64) -> Result<String, Problem> {
        let claims = Claims {
            sub: user_id.into(),
            role: role.into(),
            iat: now_secs,
            exp: now_secs + self.ttl_secs,
            iss: ISSUER.into(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current_kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| Problem::internal(format!("cannot sign a token: {e}")))
    }

    /// Verifies a token's signature, issuer and expiry.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, Problem> {
        if token.len() > 4096 {
            return Err(Problem::unauthorized("token too long"));
        }
        let invalid = || Problem::unauthorized("invalid token");
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        // A token without a key id (issued before rotation existed) is checked against the
        // current key; an unknown key id is refused.
        let kid = header.kid.unwrap_or_else(|| self.current_kid.clone());
        let key = self.decoding.get(&kid).ok_or_else(invalid)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|_| invalid())?;
        if data.claims.exp <= now_secs {
            return Err(Problem::unauthorized("token expired"));
        }
        Ok(data.claims)
    }
}

/// Hashes a password with argon2id and a salt from the random seam, on the blocking pool.
pub async fn hash_password(
    pool: &Arc<dyn BlockingPool>,
    rng: &Arc<dyn RandomSource>,
    password: String,
) -> Result<String, Problem> {
    let mut salt = [0u8; 16];
    rng.fill(&mut salt);
    crate::run_blocking(pool, move || {
        Argon2::default()
            .hash_password_with_salt(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Problem::internal(format!("cannot hash a password: {e}")))
    })
    .await?
}

/// Whether `password` matches the argon2 PHC string `hash`, checked on the blocking pool.
pub async fn verify_password(
    pool: &Arc<dyn BlockingPool>,
    password: String,
    hash: String,
) -> Result<bool, Problem> {
    crate::run_blocking(pool, move || {
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_expire() {
        let keys = JwtKeys::new(&[7u8; 32], 60);
        let t = keys.issue("u1", "customer", 1000).unwrap();
        assert_eq!(keys.verify(&t, 1000).unwrap().sub, "u1");
        assert!(keys.verify(&t, 1060).is_err());
        let other = JwtKeys::new(&[8u8; 32], 60);
        assert!(other.verify(&t, 1000).is_err());
        assert!(keys.verify("garbage", 1000).is_err());
    }

    #[test]
    fn a_rotated_key_still_verifies_its_tokens_and_unknown_keys_are_refused() {
        let key = |kid: &str, b: u8| JwtKey {
            kid: kid.into(),
            secret: vec![b; 32],
        };
        let old = JwtKeys::rotating(key("a", 1), Vec::new(), 60);
        let old_token = old.issue("u1", "customer", 1000).unwrap();
        let rotated = JwtKeys::rotating(key("b", 2), vec![key("a", 1)], 60);
        assert_eq!(rotated.verify(&old_token, 1000).unwrap().sub, "u1");
        let new_token = rotated.issue("u2", "customer", 1000).unwrap();
        assert_eq!(rotated.verify(&new_token, 1000).unwrap().sub, "u2");
        // Once the old key is dropped, its tokens are refused.
        let later = JwtKeys::rotating(key("b", 2), Vec::new(), 60);
        assert!(later.verify(&old_token, 1000).is_err());
        // A token naming key "b" but signed with key "a" is refused.
        let forged = JwtKeys::rotating(key("b", 1), Vec::new(), 60)
            .issue("admin", "admin", 1000)
            .unwrap();
        assert!(rotated.verify(&forged, 1000).is_err());
    }
}
