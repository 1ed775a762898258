//! The browser console (web-agent/), embedded in the binary so one file is the whole product.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::server::AppState;

// Images may come from anywhere: an email's remote images, which its sanitized HTML holds back
// until the agent asks to see them (nothing else the console shows points outside).
const CSP: &str = "default-src 'self'; img-src 'self' data: blob: https: http:; style-src 'self'; script-src 'self'; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("../web-agent/index.html"),
                )
            }),
        )
        .route(
            "/app.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../web-agent/app.js"),
                )
            }),
        )
        .route(
            "/softphone.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../web-agent/softphone.js"),
                )
            }),
        )
        .route(
            "/i18n.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../web-agent/i18n.js"),
                )
            }),
        )
        .route(
            "/wallboard",
            get(|| async {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("../web-agent/wallboard.html"),
                )
            }),
        )
        .route(
            "/wallboard.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../web-agent/wallboard.js"),
                )
            }),
        )
        .route(
            "/wallboard.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../web-agent/wallboard.css"),
                )
            }),
        )
        .route(
            "/shared.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../web-agent/shared.js"),
                )
            }),
        )
        .route(
            "/app.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("../web-agent/app.css"),
                )
            }),
        )
}
