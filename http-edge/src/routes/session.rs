//! Refresh tokens: renewal with rotation, and logout. A refresh token is
//! `<user id>.<64 hex digits of randomness>`; the account stores only its SHA-256.

use crate::dto::{RefreshRequest, TokenResponse};
use crate::extract::ApiJson;
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::account::AccountCommand;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// Longest refresh token accepted.
const MAX_TOKEN_LEN: usize = 200;

/// A new refresh token for `user_id`, from the random seam.
pub fn new_refresh_token(st: &EdgeState, user_id: &str) -> String {
    let mut secret = [0u8; 32];
    st.rng.fill(&mut secret);
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    format!("{user_id}.{hex}")
}

/// The stored form of a token: SHA-256, lower-case hex.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A duration in ms, as the account wants it.
pub fn ttl_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The user id a well-formed token names; `None` for anything else.
fn owner(token: &str) -> Option<&str> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let (user, secret) = token.split_once('.')?;
    let user_ok = !user.is_empty()
        && user.len() <= 64
        && user.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    let secret_ok = secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit());
    (user_ok && secret_ok).then_some(user)
}

/// The answer to a login or refresh the account accepted: a new access token with the
/// `refresh` token.
pub fn tokens(st: &EdgeState, reply: Reply, refresh: String) -> ApiResult<Json<TokenResponse>> {
    let Reply::Session { user_id, role } = reply else {
        return Err(Problem::unauthorized(
            "the session was revoked; log in again",
        ));
    };
    let now = st.clock.now_ms() / 1000;
    let access_token = st.keys.issue(&user_id, role.name(), now)?;
    Ok(Json(TokenResponse {
        access_token,
        refresh_token: refresh,
        token_type: "Bearer".into(),
        expires_in: st.keys.ttl_secs,
    }))
}

/// Exchanges a refresh token for a new access token and a new refresh token; the presented
/// one stops working. Presenting an already-rotated token again revokes every session of
/// the account (it was copied).
#[utoipa::path(post, path = "/api/v1/auth/refresh", request_body = RefreshRequest, tag = "accounts",
    responses((status = 200, body = TokenResponse), (status = 401, description = "unknown, expired, revoked or already used refresh token")))]
pub async fn refresh(
    State(st): State<Arc<EdgeState>>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let user_id =
        owner(&req.refresh_token).ok_or_else(|| Problem::unauthorized("invalid refresh token"))?;
    let account = EntityRef::new(EntityKind::Account, user_id);
    let new = new_refresh_token(&st, user_id);
    let cmd = AccountCommand::RotateRefresh {
        old_hash: hash_token(&req.refresh_token),
        new_hash: hash_token(&new),
        ttl_ms: ttl_ms(st.config.refresh_ttl),
    };
    let reply = st
        .client
        .ask(account, Command::Account(cmd))
        .await
        .map_err(|e| match Problem::from(e) {
            p if p.status == StatusCode::NOT_FOUND => {
                Problem::unauthorized("invalid refresh token")
            }
            p => p,
        })?;
    tokens(&st, reply, new)
}

/// Revokes a refresh token (logout). Idempotent: an unknown or already revoked token also
/// answers 204. Access tokens already issued stay valid until they expire (minutes).
#[utoipa::path(post, path = "/api/v1/auth/logout", request_body = RefreshRequest, tag = "accounts",
    responses((status = 204, description = "revoked"), (status = 401, description = "not a refresh token")))]
pub async fn logout(
    State(st): State<Arc<EdgeState>>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<StatusCode> {
    let user_id =
        owner(&req.refresh_token).ok_or_else(|| Problem::unauthorized("invalid refresh token"))?;
    let cmd = AccountCommand::RevokeRefresh {
        hash: hash_token(&req.refresh_token),
    };
    st.client
        .ask(
            EntityRef::new(EntityKind::Account, user_id),
            Command::Account(cmd),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_tokens_name_an_owner() {
        let t = format!("5b0e0000-0000-0000-0000-000000000000.{}", "a".repeat(64));
        assert_eq!(owner(&t), Some("5b0e0000-0000-0000-0000-000000000000"));
        assert_eq!(owner("nodot"), None);
        assert_eq!(owner(&format!("u.{}", "a".repeat(63))), None);
        assert_eq!(owner(&format!("../x.{}", "a".repeat(64))), None);
        assert_eq!(hash_token("x").len(), 64);
    }
}
