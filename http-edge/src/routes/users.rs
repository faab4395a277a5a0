//! Registration and login.

use super::{session, validate};
use crate::dto::{LoginRequest, RegisterRequest, TokenResponse, UserCreated};
use crate::extract::ApiJson;
use crate::limits::client_address;
use crate::problem::{ApiResult, Problem};
use crate::EdgeState;
use agora_actors::account::{AccountCommand, Role};
use agora_actors::client::AskError;
use agora_actors::ids::user_id_for_email;
use agora_actors::{Command, DomainError, EntityKind, EntityRef, Reply};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use std::net::SocketAddr;
use std::sync::Arc;

/// Creates a customer account.
#[utoipa::path(post, path = "/api/v1/users", request_body = RegisterRequest, tag = "accounts",
    responses((status = 201, body = UserCreated, description = "the account was created",
               headers(("Location" = String, description = "the account, read once logged in: /api/v1/me"))),
              (status = 409, description = "email taken (answered after the same password hash as a new account, so the time does not tell)"), (status = 422, description = "invalid input"),
        (status = 429, description = "too many registrations from this address; see Retry-After"),
        (status = 503, description = "too many password hashes at once; see Retry-After")))]
pub async fn register(
    State(st): State<Arc<EdgeState>>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<axum::response::Response> {
    let email = validate::email(&req.email)?;
    validate::password(&req.password)?;
    let name = validate::name("name", &req.name)?;
    let user_id = user_id_for_email(&email);
    let password_hash = st
        .passwords
        .hash(&st.blocking, &st.rng, req.password)
        .await?;
    let cmd = Command::Account(AccountCommand::Register {
        email,
        name,
        password_hash,
        role: Role::Customer,
    });
    st.client
        .ask(EntityRef::new(EntityKind::Account, user_id.clone()), cmd)
        .await?;
    // The new account is read, once logged in, as the caller's own profile.
    Ok(crate::created::with_location(
        (StatusCode::CREATED, Json(UserCreated { user_id })),
        "/api/v1/me",
    ))
}

/// Exchanges credentials for an access token and a refresh token. Five failed logins in a
/// row for one email from one client address lock that address out of that email for a
/// minute, doubling with each further failure (up to an hour): while locked, a login
/// answers 429 `account-locked` with `Retry-After`, without checking the password. Other
/// addresses are not locked out, and unknown emails behave alike (their password is checked
/// against a dummy hash), so neither the lock nor the time tells whether an account exists.
#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginRequest, tag = "accounts",
    responses((status = 200, body = TokenResponse), (status = 401, description = "bad credentials (also for an unknown email)"),
        (status = 429, description = "this address is locked out of this email after repeated failures, or too many login attempts from this address; see Retry-After"),
        (status = 503, description = "too many password checks at once; see Retry-After")))]
pub async fn login(
    State(st): State<Arc<EdgeState>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let bad = || Problem::unauthorized("invalid email or password");
    let Ok(email) = validate::email(&req.email) else {
        return Err(bad());
    };
    if req.password.len() > 1024 {
        return Err(bad());
    }
    let user = EntityRef::new(EntityKind::Account, user_id_for_email(&email));
    let peer = connect.map(|Extension(ConnectInfo(addr))| addr.ip());
    let pair = (user.id.clone(), client_address(&st, peer, &headers));
    if let Some(retry_after_ms) = st.lockouts.locked_for(&pair) {
        return Err(DomainError::Locked { retry_after_ms }.into());
    }
    let begin = Command::Account(AccountCommand::BeginLogin);
    let matches = match st.client.ask(user.clone(), begin).await {
        Ok(Reply::Credentials { password_hash, .. }) => {
            st.passwords
                .verify(&st.blocking, req.password, password_hash)
                .await?
        }
        Ok(_) => return Err(Problem::internal("unexpected reply to BeginLogin")),
        // No such account: the same work as a wrong password, and the same answer.
        Err(AskError::Domain(DomainError::BadCredentials)) => {
            st.passwords
                .verify_unknown(&st.blocking, &st.rng, req.password)
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    if !matches {
        if let Some(lock_ms) = st.lockouts.failed(pair) {
            tracing::warn!(user_id = %user.id, lock_ms, "login locked out for this address");
        }
        return Err(bad());
    }
    st.lockouts.succeeded(&pair);
    let refresh = session::new_refresh_token(&st, &user.id);
    let cmd = AccountCommand::LoginSucceeded {
        refresh_hash: session::hash_token(&refresh),
        ttl_ms: session::ttl_ms(st.config.refresh_ttl),
    };
    let reply = st.client.ask(user, Command::Account(cmd)).await?;
    session::tokens(&st, reply, refresh)
}

#[cfg(test)]
mod tests {
    use crate::testing;
    use crate::BlockingPool;
    use agora_actors::account::{AccountCommand, Role};
    use agora_actors::client::{AskError, EntityClient};
    use agora_actors::ids::user_id_for_email;
    use agora_actors::{Command, DomainError, EntityRef, Reply};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use tower::ServiceExt;

    const KNOWN: &str = "known@agora.local";

    /// One account (`KNOWN`, whose hash is `hash`); every command is noted.
    struct OneAccount {
        hash: String,
        commands: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl EntityClient for OneAccount {
        async fn ask(&self, to: EntityRef, cmd: Command) -> Result<Reply, AskError> {
            let name = format!("{cmd:?}");
            self.commands.lock().expect("commands").push(name);
            match cmd {
                Command::Account(AccountCommand::BeginLogin)
                    if to.id == user_id_for_email(KNOWN) =>
                {
                    Ok(Reply::Credentials {
                        user_id: to.id,
                        password_hash: self.hash.clone(),
                        role: Role::Customer,
                    })
                }
                Command::Account(AccountCommand::BeginLogin) => {
                    Err(DomainError::BadCredentials.into())
                }
                _ => Ok(Reply::Ack),
            }
        }

        async fn ask_once(
            &self,
            to: EntityRef,
            cmd: Command,
            _msg_id: String,
        ) -> Result<Reply, AskError> {
            self.ask(to, cmd).await
        }
    }

    /// Runs each job at once and counts them.
    #[derive(Default)]
    struct Counted(AtomicUsize);

    impl BlockingPool for Counted {
        fn run(&self, job: Box<dyn FnOnce() + Send>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            job()
        }
    }

    async fn setup() -> (Arc<OneAccount>, Arc<Counted>, Arc<crate::EdgeState>) {
        let pool = Arc::new(Counted::default());
        let bare = testing::state(Arc::new(testing::Nobody));
        let blocking: Arc<dyn BlockingPool> = pool.clone();
        let hash = bare
            .passwords
            .hash(&blocking, &bare.rng, "right-password".into())
            .await
            .expect("hash");
        let client = Arc::new(OneAccount {
            hash,
            commands: Mutex::new(Vec::new()),
        });
        let state = testing::state_with_pool(client.clone(), pool.clone());
        pool.0.store(0, Ordering::SeqCst);
        (client, pool, state)
    }

    async fn login(state: &Arc<crate::EdgeState>, email: &str, password: &str) -> StatusCode {
        let body = serde_json::json!({"email": email, "password": password});
        let req = Request::post("/api/v1/auth/login")
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .expect("request");
        let resp = crate::router(state.clone()).oneshot(req).await;
        resp.expect("an answer").status()
    }

    #[tokio::test]
    async fn an_unknown_email_costs_the_same_password_check_as_a_wrong_password() {
        let (_, pool, state) = setup().await;
        // The first unknown email also makes the dummy hash, once.
        assert_eq!(
            login(&state, "nobody@agora.local", "x-password").await,
            StatusCode::UNAUTHORIZED
        );
        pool.0.store(0, Ordering::SeqCst);
        assert_eq!(
            login(&state, "else@agora.local", "x-password").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            pool.0.load(Ordering::SeqCst),
            1,
            "one check for an unknown email"
        );
        assert_eq!(
            login(&state, KNOWN, "wrong-password").await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            pool.0.load(Ordering::SeqCst),
            2,
            "one check for a wrong password"
        );
    }

    #[tokio::test]
    async fn failures_lock_the_address_out_of_an_email_known_or_not_never_the_account() {
        let (client, _, state) = setup().await;
        for email in [KNOWN, "nobody@agora.local"] {
            for _ in 0..5 {
                assert_eq!(
                    login(&state, email, "wrong-password").await,
                    StatusCode::UNAUTHORIZED
                );
            }
            assert_eq!(
                login(&state, email, "wrong-password").await,
                StatusCode::TOO_MANY_REQUESTS,
                "{email} locked for this address alike"
            );
        }
        let commands = client.commands.lock().expect("commands").clone();
        assert!(
            !commands.iter().any(|c| c.contains("LoginFailed")),
            "the account itself is never locked: {commands:?}"
        );
    }
}
