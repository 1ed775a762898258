//! The HTTP surface: REST under `/api/v1`, the sockets, `/healthz`, `/metrics`, the OpenAPI
//! document (generated from the handlers' annotations) and the embedded web console.

pub mod auth;
pub mod customers;
pub mod misc;
pub mod routing;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::server::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "Contact Hub API", description = "REST API of Contact Hub. Errors are JSON `{\"error\":{\"code\",\"message\"}}`. \
        Authenticate with `POST /api/v1/auth/login`, then send `Authorization: Bearer <token>` (or the `hub_session` cookie). \
        The agent and supervisor sockets are documented in docs/protocol.md."),
    paths(
        auth::login, auth::logout, auth::me,
        customers::search, customers::create, customers::get, customers::update, customers::delete,
        customers::records, customers::upsert_record, customers::history, customers::screen_pop,
        misc::contacts, misc::contact, routing::create_contact, routing::position, routing::queues, routing::set_profile, routing::routing_status,
        misc::users, misc::create_user, misc::live_agents, misc::create_case,
        misc::healthz, misc::metrics,
        crate::chat::http::status, crate::chat::http::upload, crate::chat::http::transcript, crate::chat::http::leave_message,
        crate::chat::http::request_callback, crate::chat::http::agent_download,
        crate::chat::http::list_canned, crate::chat::http::create_canned, crate::chat::http::delete_canned,
        crate::chat::http::link_customer,
        crate::email::http::conversation, crate::email::http::reply, crate::email::http::note,
        crate::email::http::split, crate::email::http::merge, crate::email::http::upload, crate::email::http::retry,
        crate::voice::http::set_phone, crate::voice::http::get_phone, crate::voice::http::delete_phone,
        crate::voice::http::recordings, crate::voice::http::download,
    ),
    components(schemas(crate::error::ErrorBody, crate::error::ErrorDetail)),
    tags(
        (name = "auth", description = "Login and sessions"),
        (name = "customers", description = "The customer archive and screen-pop"),
        (name = "contacts", description = "Contacts on every channel and their event log"),
        (name = "queues", description = "Queues and live figures"),
        (name = "users", description = "Agents, supervisors and admins"),
        (name = "ops", description = "Health and metrics"),
        (name = "chat", description = "The customer chat widget's endpoints (no login; see docs/chat.md)"),
    )
)]
pub struct ApiDoc;

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.http.body_limit_bytes;
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/customers", get(customers::search).post(customers::create))
        .route(
            "/customers/{id}",
            get(customers::get)
                .patch(customers::update)
                .delete(customers::delete),
        )
        .route(
            "/customers/{id}/records",
            get(customers::records).post(customers::upsert_record),
        )
        .route("/customers/{id}/history", get(customers::history))
        .route("/customers/{id}/screen-pop", get(customers::screen_pop))
        .route(
            "/contacts",
            get(misc::contacts).post(routing::create_contact),
        )
        .route("/contacts/{id}", get(misc::contact))
        .route("/contacts/{id}/position", get(routing::position))
        .route("/cases", post(misc::create_case))
        .route("/queues", get(routing::queues))
        .route("/routing", get(routing::routing_status))
        .route(
            "/users/{id}/profile",
            axum::routing::put(routing::set_profile),
        )
        .route("/users", get(misc::users).post(misc::create_user))
        .route("/agents", get(misc::live_agents))
        .route("/agent/ws", get(crate::ws::agent_socket))
        .route("/supervisor/ws", get(crate::ws::supervisor_socket))
        .route("/openapi.json", get(openapi))
        .merge(crate::chat::http::api_router())
        .merge(crate::email::http::api_router(&state))
        .merge(crate::voice::http::api_router());
    Router::new()
        .nest("/api/v1", api)
        .merge(crate::chat::http::router(&state))
        .route("/healthz", get(misc::healthz))
        .route("/metrics", get(misc::metrics))
        .merge(crate::web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see /api/v1/openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /api/v1/openapi.json",
    )
}

/// Counts requests by route template and status; sets security headers on every answer.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let mut res = next.run(req).await;
    state
        .metrics
        .record_http(&method, &route, res.status().as_u16());
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    // The chat window is made to be framed by the sites its CSP `frame-ancestors` allows.
    if route != "/chat/frame" {
        h.insert(
            header::X_FRAME_OPTIONS,
            header::HeaderValue::from_static("DENY"),
        );
    }
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("same-origin"),
    );
    res.into_response()
}
