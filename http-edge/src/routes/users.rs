//! Registration and login.

use super::{session, validate};
use crate::dto::{LoginRequest, RegisterRequest, TokenResponse, UserCreated};
use crate::extract::ApiJson;
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::account::{AccountCommand, Role};
use agora_actors::ids::user_id_for_email;
use agora_actors::{Command, EntityKind, EntityRef, Reply};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

/// Creates a customer account.
#[utoipa::path(post, path = "/api/v1/users", request_body = RegisterRequest, tag = "accounts",
    responses((status = 201, body = UserCreated), (status = 409, description = "email taken"), (status = 422, description = "invalid input"),
        (status = 429, description = "too many registrations from this address; see Retry-After"),
        (status = 503, description = "too many password hashes at once; see Retry-After")))]
pub async fn register(
    State(st): State<Arc<EdgeState>>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<UserCreated>)> {
    validate::email(&req.email)?;
    validate::password(&req.password)?;
    validate::name("name", &req.name)?;
    let user_id = user_id_for_email(&req.email);
    let password_hash = st
        .passwords
        .hash(&st.blocking, &st.rng, req.password)
        .await?;
    let cmd = Command::Account(AccountCommand::Register {
        email: req.email.trim().to_lowercase(),
        name: req.name,
        password_hash,
        role: Role::Customer,
    });
    st.client
        .ask(EntityRef::new(EntityKind::Account, user_id.clone()), cmd)
        .await?;
    Ok((StatusCode::CREATED, Json(UserCreated { user_id })))
}

/// Exchanges credentials for an access token and a refresh token. Five failed logins in a
/// row lock the account for a minute, doubling with each further failure (up to an hour):
/// while locked, a login answers 429 `account-locked` with `Retry-After`, without checking
/// the password.
#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest, tag = "accounts",
    responses((status = 200, body = TokenResponse), (status = 401, description = "bad credentials"),
        (status = 429, description = "account locked after repeated failures, or too many login attempts from this address; see Retry-After"),
        (status = 503, description = "too many password checks at once; see Retry-After")))]
pub async fn login(
    State(st): State<Arc<EdgeState>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let bad = || Problem::unauthorized("invalid email or password");
    if validate::email(&req.email).is_err() || req.password.len() > 1024 {
        return Err(bad());
    }
    let user = EntityRef::new(EntityKind::Account, user_id_for_email(&req.email));
    let Reply::Credentials { password_hash, .. } = st
        .client
        .ask(user.clone(), Command::Account(AccountCommand::BeginLogin))
        .await?
    else {
        return Err(Problem::internal("unexpected reply to BeginLogin"));
    };
    let matches = st
        .passwords
        .verify(&st.blocking, req.password, password_hash)
        .await?;
    if !matches {
        st.client
            .ask(user, Command::Account(AccountCommand::LoginFailed))
            .await?;
        return Err(bad());
    }
    let refresh = session::new_refresh_token(&st, &user.id);
    let cmd = AccountCommand::LoginSucceeded {
        refresh_hash: session::hash_token(&refresh),
        ttl_ms: session::ttl_ms(st.config.refresh_ttl),
    };
    let reply = st.client.ask(user, Command::Account(cmd)).await?;
    session::tokens(&st, reply, refresh)
}
