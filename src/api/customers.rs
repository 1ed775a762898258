//! The customer archive over REST: search, create, read, update, delete, records, history,
//! screen-pop.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::archive::{self, ScreenPop};
use crate::auth::AuthUser;
use crate::domain::{ArchiveRecord, ArchiveRecordInput, Contact, Customer, CustomerInput, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::server::AppState;
use crate::store::{ContactFilter, CustomerSearch, StoreError};

const EVERYONE: &[Role] = &[Role::Agent, Role::Supervisor, Role::Admin];
const MANAGERS: &[Role] = &[Role::Supervisor, Role::Admin];

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Name (any part, any script), phone number in any format, email, or external reference.
    pub q: Option<String>,
    /// At most 200; default 20.
    pub limit: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerList {
    pub customers: Vec<Customer>,
}

#[derive(Serialize, ToSchema)]
pub struct RecordList {
    pub records: Vec<ArchiveRecord>,
}

#[derive(Serialize, ToSchema)]
pub struct ContactList {
    pub contacts: Vec<Contact>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    pub limit: Option<i64>,
    /// Contacts older than this contact id (paging).
    pub before: Option<i64>,
}

fn not_found(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found("customer"),
        other => other.into(),
    }
}

/// Search customers.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(SearchParams),
    responses((status = 200, body = CustomerList), (status = 401, body = ErrorBody)))]
pub async fn search(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(p): ApiQuery<SearchParams>,
) -> Result<Json<CustomerList>, ApiError> {
    user.require(EVERYONE)?;
    let q = p.q.unwrap_or_default();
    if q.chars().count() > 200 {
        return Err(ApiError::bad_request("q is longer than 200 characters"));
    }
    let customers = state
        .store
        .search_customers(&CustomerSearch {
            q,
            limit: p.limit.unwrap_or(20),
            default_region: state.config.archive.default_region.clone(),
        })
        .await?;
    Ok(Json(CustomerList { customers }))
}

/// Create a customer.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", request_body = CustomerInput,
    responses((status = 201, body = Customer), (status = 409, body = ErrorBody, description = "an identity belongs to another customer"),
        (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<CustomerInput>,
) -> Result<(StatusCode, Json<Customer>), ApiError> {
    user.require(EVERYONE)?;
    let c = archive::normalize_customer(&input, None, &state.config.archive)
        .map_err(ApiError::unprocessable)?;
    let id = state.store.create_customer(&c, state.now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(state.store.get_customer(id).await?),
    ))
}

/// Read a customer.
#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers",
    responses((status = 200, body = Customer), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Customer>, ApiError> {
    user.require(EVERYONE)?;
    Ok(Json(state.store.get_customer(id).await.map_err(not_found)?))
}

/// Update a customer: absent fields keep their value; a given identity list replaces that kind.
#[utoipa::path(patch, path = "/api/v1/customers/{id}", tag = "customers", request_body = CustomerInput,
    responses((status = 200, body = Customer), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<CustomerInput>,
) -> Result<Json<Customer>, ApiError> {
    user.require(EVERYONE)?;
    let current = state.store.get_customer(id).await.map_err(not_found)?;
    let c = archive::normalize_customer(&input, Some(&current), &state.config.archive)
        .map_err(ApiError::unprocessable)?;
    state
        .store
        .update_customer(id, &c, state.now())
        .await
        .map_err(not_found)?;
    Ok(Json(state.store.get_customer(id).await?))
}

/// Delete a customer and its archive (admin only).
#[utoipa::path(delete, path = "/api/v1/customers/{id}", tag = "customers",
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    user.require(&[Role::Admin])?;
    state.store.delete_customer(id).await.map_err(not_found)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A customer's archive records.
#[utoipa::path(get, path = "/api/v1/customers/{id}/records", tag = "customers",
    responses((status = 200, body = RecordList), (status = 404, body = ErrorBody)))]
pub async fn records(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<RecordList>, ApiError> {
    user.require(EVERYONE)?;
    state.store.get_customer(id).await.map_err(not_found)?;
    Ok(Json(RecordList {
        records: state.store.records(id).await?,
    }))
}

/// Add or update (by category and reference) an archive record (supervisor or admin).
#[utoipa::path(post, path = "/api/v1/customers/{id}/records", tag = "customers", request_body = ArchiveRecordInput,
    responses((status = 200, body = ArchiveRecord), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upsert_record(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ArchiveRecordInput>,
) -> Result<Json<ArchiveRecord>, ApiError> {
    user.require(MANAGERS)?;
    archive::validate_record(&input).map_err(ApiError::unprocessable)?;
    state.store.get_customer(id).await.map_err(not_found)?;
    Ok(Json(
        state
            .store
            .upsert_record(id, &input, state.now())
            .await
            .map_err(not_found)?,
    ))
}

/// Every contact of a customer on every channel, newest first.
#[utoipa::path(get, path = "/api/v1/customers/{id}/history", tag = "customers", params(HistoryParams),
    responses((status = 200, body = ContactList), (status = 404, body = ErrorBody)))]
pub async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(p): ApiQuery<HistoryParams>,
) -> Result<Json<ContactList>, ApiError> {
    user.require(EVERYONE)?;
    state.store.get_customer(id).await.map_err(not_found)?;
    let contacts = state
        .store
        .list_contacts(&ContactFilter {
            customer_id: Some(id),
            limit: p.limit.unwrap_or(50),
            before_id: p.before,
            ..Default::default()
        })
        .await?;
    Ok(Json(ContactList { contacts }))
}

/// The screen-pop: customer card, balance, archive, recent contacts, open cases and alerts.
#[utoipa::path(get, path = "/api/v1/customers/{id}/screen-pop", tag = "customers",
    responses((status = 200, body = ScreenPop), (status = 404, body = ErrorBody)))]
pub async fn screen_pop(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<ScreenPop>, ApiError> {
    user.require(EVERYONE)?;
    let today = chrono::Utc::now().date_naive();
    Ok(Json(
        state
            .store
            .screen_pop(id, today, &state.config.archive)
            .await
            .map_err(not_found)?,
    ))
}
