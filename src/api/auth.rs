//! Login, logout, who am I.

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use utoipa::ToSchema;

use crate::auth::{self, AuthUser, SESSION_COOKIE};
use crate::domain::{now_ms, rfc3339, User};
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::server::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`; browsers use the HttpOnly cookie set alongside.
    pub token: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub user: User,
}

#[derive(Serialize, ToSchema)]
pub struct MeResponse {
    pub user: User,
}

/// Log in with a username and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse, description = "Logged in; also sets the `hub_session` cookie"),
        (status = 401, body = ErrorBody, description = "`invalid_credentials`"),
        (status = 429, body = ErrorBody, description = "`too_many_attempts`, with `retry_after_secs`")))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let now = now_ms();
    let key = req.username.trim().to_lowercase();
    if key.is_empty() || key.len() > 64 || req.password.len() > 1024 {
        return Err(invalid_credentials());
    }
    let failed = state.store.failed_logins(&key).await?;
    if let Some(secs) = auth::locked_for(failed, now) {
        state.metrics.logins_locked.fetch_add(1, Ordering::Relaxed);
        return Err(too_many(secs));
    }
    let found = state.store.user_for_login(&key).await?;
    let (hash, user) = match found {
        Some((user, hash)) => (hash, Some(user)),
        None => (auth::decoy_hash().to_string(), None),
    };
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
        .await
        .map_err(|_| ApiError::internal())?;
    let user = match (ok, user) {
        (true, Some(user)) => user,
        _ => {
            state.metrics.logins_failed.fetch_add(1, Ordering::Relaxed);
            let next = auth::after_failure(failed, now, &state.config.auth);
            state.store.record_failed_login(&key, next).await?;
            tracing::info!(
                failures = next.failures,
                "failed login (username withheld from logs)"
            );
            return Err(invalid_credentials());
        }
    };
    if failed.failures > 0 {
        state.store.clear_failed_logins(&key).await?;
    }
    let (token, token_hash) = auth::new_token();
    let expires_at = now + state.config.auth.session_hours * 3_600_000;
    state
        .store
        .create_session(&token_hash, user.id, now, expires_at)
        .await?;
    state.metrics.logins_ok.fetch_add(1, Ordering::Relaxed);
    tracing::info!(user_id = user.id, role = %user.role, "login");
    let cookie = format!(
        "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
        state.config.auth.session_hours * 3600,
        if state.config.http.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    );
    let mut headers = HeaderMap::new();
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| ApiError::internal())?,
    );
    Ok((
        headers,
        Json(LoginResponse {
            token,
            expires_at: rfc3339(expires_at),
            user,
        }),
    )
        .into_response())
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong username or password",
    )
}

fn too_many(secs: i64) -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed logins; try again in {secs} s"),
    )
    .with("retry_after_secs", secs)
}

/// End the session (token and cookie).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Logged out"), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<Response, ApiError> {
    state.store.delete_session(&user.token_hash).await?;
    state.hub.log_out(user.user.id).await;
    let mut headers = HeaderMap::new();
    headers.insert(
        SET_COOKIE,
        HeaderValue::from_static("hub_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// The logged-in user.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = MeResponse), (status = 401, body = ErrorBody)))]
pub async fn me(user: AuthUser) -> Json<MeResponse> {
    Json(MeResponse { user: user.user })
}
