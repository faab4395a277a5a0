//! Registration and login.

use super::validate;
use crate::auth::{hash_password, verify_password};
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
    responses((status = 201, body = UserCreated), (status = 409, description = "email taken"), (status = 422, description = "invalid input")))]
pub async fn register(
    State(st): State<Arc<EdgeState>>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<UserCreated>)> {
    validate::email(&req.email)?;
    validate::password(&req.password)?;
    validate::name("name", &req.name)?;
    let user_id = user_id_for_email(&req.email);
    let password_hash = hash_password(&st.blocking, &st.rng, req.password).await?;
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

/// Exchanges credentials for an access token.
#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest, tag = "accounts",
    responses((status = 200, body = TokenResponse), (status = 401, description = "bad credentials")))]
pub async fn login(
    State(st): State<Arc<EdgeState>>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let bad = || Problem::unauthorized("invalid email or password");
    if validate::email(&req.email).is_err() || req.password.len() > 1024 {
        return Err(bad());
    }
    let user = EntityRef::new(EntityKind::Account, user_id_for_email(&req.email));
    let Reply::Credentials {
        user_id,
        password_hash,
        role,
    } = st
        .client
        .ask(user, Command::Account(AccountCommand::GetCredentials))
        .await?
    else {
        return Err(Problem::internal("unexpected reply to GetCredentials"));
    };
    if !verify_password(&st.blocking, req.password, password_hash).await? {
        return Err(bad());
    }
    let now = st.clock.now_ms() / 1000;
    let access_token = st.keys.issue(&user_id, role.name(), now)?;
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer".into(),
        expires_in: st.keys.ttl_secs,
    }))
}
