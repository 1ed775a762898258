//! Voice over REST: agents' desk-phone accounts (admins), call recordings (download).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::Role;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::server::AppState;
use crate::store::{Recording, StoreError};

pub fn api_router() -> Router<AppState> {
    Router::new()
        .route(
            "/users/{id}/phone",
            put(set_phone).get(get_phone).delete(delete_phone),
        )
        .route("/contacts/{id}/recordings", get(recordings))
        .route("/recordings/{id}", get(download))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneAccount {
    /// The SIP username the desk phone registers with (e.g. `1001`).
    pub username: String,
    /// Stored only as the digest hash.
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct PhoneStatus {
    pub username: Option<String>,
    /// A phone is registered now.
    pub registered: bool,
}

fn voice(state: &AppState) -> Result<&std::sync::Arc<super::VoiceService>, ApiError> {
    state.voice.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "voice_disabled",
            "the voice channel is not running (sip.listen is empty)",
        )
    })
}

/// Sets a user's desk-phone account (digest credentials for the hub's registrar).
#[utoipa::path(put, path = "/api/v1/users/{id}/phone", tag = "users", request_body = PhoneAccount,
    responses((status = 204), (status = 409, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn set_phone(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(a): ApiJson<PhoneAccount>,
) -> Result<StatusCode, ApiError> {
    user.require(&[Role::Admin])?;
    state.store.get_user(id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("user"),
        e => e.into(),
    })?;
    let name = a.username.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    {
        return Err(ApiError::unprocessable(
            "username: 1 to 64 letters, digits or . _ - +",
        ));
    }
    if a.password.chars().count() < 8 || a.password.len() > 128 {
        return Err(ApiError::unprocessable("password: 8 to 128 characters"));
    }
    voice(&state)?.set_account(id, name, &a.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/users/{id}/phone", tag = "users",
    responses((status = 200, body = PhoneStatus)))]
pub async fn get_phone(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<PhoneStatus>, ApiError> {
    if user.user.id != id {
        user.require(&[Role::Admin, Role::Supervisor])?;
    }
    let account = state
        .store
        .sip_accounts()
        .await?
        .into_iter()
        .find(|a| a.user_id == id);
    let registered = match (&account, &state.voice) {
        (Some(a), Some(v)) => v.registered(&a.username),
        _ => false,
    };
    Ok(Json(PhoneStatus {
        username: account.map(|a| a.username),
        registered,
    }))
}

#[utoipa::path(delete, path = "/api/v1/users/{id}/phone", tag = "users", responses((status = 204)))]
pub async fn delete_phone(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    user.require(&[Role::Admin])?;
    voice(&state)?.remove_account(id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct RecordingList {
    pub recordings: Vec<Recording>,
}

/// The recordings of a call (and of a voicemail).
#[utoipa::path(get, path = "/api/v1/contacts/{id}/recordings", tag = "contacts",
    responses((status = 200, body = RecordingList)))]
pub async fn recordings(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RecordingList>, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    Ok(Json(RecordingList {
        recordings: state.store.contact_recordings(id).await?,
    }))
}

/// A recording as a WAV file (stereo: customer left, agent right).
#[utoipa::path(get, path = "/api/v1/recordings/{id}", tag = "contacts",
    responses((status = 200, description = "audio/wav"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn download(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    user.require(&[Role::Supervisor, Role::Admin, Role::Agent])?;
    let r = state.store.recording(id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("recording"),
        e => e.into(),
    })?;
    let data = tokio::fs::read(&r.path)
        .await
        .map_err(|_| ApiError::not_found("recording file"))?;
    let mut res = data.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"recording-{id}.wav\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}
