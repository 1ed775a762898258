//! Contacts, queues, users, cases, health and metrics.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::acd::types::AgentStateKind;
use crate::auth::{self, AuthUser};
use crate::domain::{Case, Channel, Contact, ContactEvent, ContactState, Role, User};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::server::AppState;
use crate::store::{ContactFilter, StoreError};

use super::customers::ContactList;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ContactParams {
    pub channel: Option<Channel>,
    pub state: Option<ContactState>,
    /// Customer id.
    pub customer: Option<i64>,
    pub limit: Option<i64>,
    /// Contacts with an id below this (paging, newest first).
    pub before: Option<i64>,
}

/// List contacts, newest first.
#[utoipa::path(get, path = "/api/v1/contacts", tag = "contacts", params(ContactParams),
    responses((status = 200, body = ContactList), (status = 400, body = ErrorBody)))]
pub async fn contacts(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(p): ApiQuery<ContactParams>,
) -> Result<Json<ContactList>, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    let contacts = state
        .store
        .list_contacts(&ContactFilter {
            channel: p.channel,
            state: p.state,
            customer_id: p.customer,
            limit: p.limit.unwrap_or(50),
            before_id: p.before,
        })
        .await?;
    Ok(Json(ContactList { contacts }))
}

#[derive(Serialize, ToSchema)]
pub struct ContactDetail {
    pub contact: Contact,
    pub events: Vec<ContactEvent>,
}

/// One contact with its event log.
#[utoipa::path(get, path = "/api/v1/contacts/{id}", tag = "contacts",
    responses((status = 200, body = ContactDetail), (status = 404, body = ErrorBody)))]
pub async fn contact(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ContactDetail>, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    let contact = state.store.get_contact(id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("contact"),
        e => e.into(),
    })?;
    let events = state.store.contact_events(id).await?;
    Ok(Json(ContactDetail { contact, events }))
}

#[derive(Serialize, ToSchema)]
pub struct UserList {
    pub users: Vec<User>,
}

/// All users (supervisor or admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)))]
pub async fn users(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<UserList>, ApiError> {
    user.require(&[Role::Supervisor, Role::Admin])?;
    Ok(Json(UserList {
        users: state.store.list_users().await?,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub display_name: Option<String>,
    pub role: Role,
    pub password: String,
}

/// Create a user (admin only).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(new): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    user.require(&[Role::Admin])?;
    let username = new.username.trim().to_lowercase();
    auth::check_username(&username).map_err(ApiError::unprocessable)?;
    auth::check_password_policy(&new.password).map_err(ApiError::unprocessable)?;
    let password = new.password;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|_| ApiError::internal())?;
    let display = new
        .display_name
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| username.clone());
    let created = state
        .store
        .create_user(&username, &display, new.role, &hash, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub customer_id: Option<i64>,
    pub subject: String,
}

/// Open a case (a matter several contacts may belong to).
#[utoipa::path(post, path = "/api/v1/cases", tag = "contacts", request_body = NewCase,
    responses((status = 201, body = Case), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_case(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(new): ApiJson<NewCase>,
) -> Result<(StatusCode, Json<Case>), ApiError> {
    user.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    let subject = new.subject.trim();
    if subject.is_empty() || subject.chars().count() > 300 {
        return Err(ApiError::unprocessable("subject: 1 to 300 characters"));
    }
    if let Some(cid) = new.customer_id {
        state
            .store
            .get_customer(cid)
            .await
            .map_err(|_| ApiError::not_found("customer"))?;
    }
    let case = state
        .store
        .create_case(new.customer_id, subject, state.now())
        .await?;
    Ok((StatusCode::CREATED, Json(case)))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub database: String,
}

/// Liveness and database reachability (no login needed).
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = ErrorBody)))]
pub async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.store.ping().await.map_err(|e| {
        tracing::error!(error = %e, "health check: database unreachable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database does not answer",
        )
    })?;
    Ok(Json(Health {
        status: "ok".into(),
        database: state.store.backend().name().into(),
    }))
}

/// Prometheus metrics: a supervisor/admin login, or `Authorization: Bearer <http.metrics_token>`.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = &state.config.http.metrics_token;
    let scraper = !token.is_empty()
        && headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {token}"));
    if !scraper {
        auth::authenticate(&state, &headers)
            .await?
            .require(&[Role::Supervisor, Role::Admin])?;
    }
    let snapshot = state.hub.agents().await.unwrap_or_default();
    let agents: Vec<(AgentStateKind, usize)> = AgentStateKind::ALL
        .into_iter()
        .map(|s| (s, snapshot.iter().filter(|(_, v)| v.state == s).count()))
        .collect();
    let customers = state.store.customer_count().await.unwrap_or(-1);
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&agents, customers),
    )
        .into_response())
}

#[derive(Serialize, ToSchema)]
pub struct LiveAgent {
    pub id: i64,
    pub display_name: String,
    pub role: Role,
    pub state: crate::agents::AgentStateView,
}

#[derive(Serialize, ToSchema)]
pub struct LiveAgents {
    /// Logged-in agents and supervisors with their live state, by name.
    pub agents: Vec<LiveAgent>,
}

/// Who is logged in now, with their state (e.g. to transfer a contact to a colleague).
#[utoipa::path(get, path = "/api/v1/agents", tag = "users",
    responses((status = 200, body = LiveAgents)))]
pub async fn live_agents(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<LiveAgents>, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    let live = state.hub.agents().await.map_err(|_| ApiError::internal())?;
    let users = state.store.list_users().await?;
    let mut agents: Vec<LiveAgent> = live
        .into_iter()
        .filter_map(|(id, view)| {
            let u = users.iter().find(|u| u.id == id)?;
            Some(LiveAgent {
                id,
                display_name: u.display_name.clone(),
                role: u.role,
                state: view,
            })
        })
        .collect();
    agents.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    Ok(Json(LiveAgents { agents }))
}
