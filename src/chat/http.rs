//! The chat channel's HTTP surface (docs/chat.md): the widget and its window, the customer
//! socket, status, uploads and downloads, leave-a-message and callback requests; and for agents
//! attachments, canned responses and linking a conversation to a customer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Bytes;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use channel_chat::frames::AttachmentView;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::acd::rules::ContactAttributes;
use crate::acd::types::ContactSpec;
use crate::auth::AuthUser;
use crate::domain::{now_ms, Channel, IdentityKind, Role};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::identity::{normalize_email, normalize_phone};
use crate::server::AppState;
use crate::store::{CannedResponse, NewInbound, StoreError};

/// The client's address (the socket peer).
pub struct PeerIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ))
    }
}

fn frame_csp(state: &AppState) -> String {
    let ancestors = if state.config.chat.allowed_origins.iter().any(|o| o == "*") {
        "*".to_string()
    } else {
        state.config.chat.allowed_origins.join(" ")
    };
    format!(
        "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; \
         connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    )
}

fn static_asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub fn router(state: &AppState) -> Router<AppState> {
    let upload_limit = state.config.chat.max_attachment_bytes + 64 * 1024;
    Router::new()
        .route("/chat/ws", get(socket))
        .route(
            "/chat/widget.js",
            get(|| async {
                let mut r = static_asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../web-agent/chat/widget.js"),
                );
                // Embedded by other sites: they may load it, it never carries credentials.
                r.headers_mut().insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
                r
            }),
        )
        .route("/chat/frame", get(frame))
        .route(
            "/chat/frame.js",
            get(|| async {
                static_asset(
                    "text/javascript; charset=utf-8",
                    include_str!("../../web-agent/chat/frame.js"),
                )
            }),
        )
        .route(
            "/chat/frame.css",
            get(|| async {
                static_asset(
                    "text/css; charset=utf-8",
                    include_str!("../../web-agent/chat/frame.css"),
                )
            }),
        )
        .route("/chat/status", get(status))
        .route(
            "/chat/attachments",
            post(upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/chat/attachments/{id}", get(customer_download))
        .route("/chat/transcript", get(transcript))
        .route(
            "/chat/example",
            get(|| async {
                static_asset(
                    "text/html; charset=utf-8",
                    include_str!("../../web-agent/chat/example.html"),
                )
            }),
        )
        .route("/chat/messages", post(leave_message))
        .route("/chat/callbacks", post(request_callback))
}

/// Agent-side routes under `/api/v1`.
pub fn api_router() -> Router<AppState> {
    Router::new()
        .route("/attachments/{id}", get(agent_download))
        .route("/canned-responses", get(list_canned).post(create_canned))
        .route("/canned-responses/{id}", delete(delete_canned))
        .route("/conversations/{id}/customer", put(link_customer))
}

async fn frame(State(state): State<AppState>) -> Response {
    let mut r = static_asset(
        "text/html; charset=utf-8",
        include_str!("../../web-agent/chat/frame.html"),
    );
    if let Ok(v) = HeaderValue::from_str(&frame_csp(&state)) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

async fn socket(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let allowed = &state.config.chat.allowed_origins;
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same = origin.split("://").nth(1) == Some(host);
        if !same && !allowed.iter().any(|a| a == "*" || a == origin) {
            return Err(ApiError::forbidden("this site may not open the chat"));
        }
    }
    let ws = ws.map_err(|r| {
        ApiError::new(
            r.status(),
            "websocket_required",
            format!("open this endpoint as a WebSocket: {}", r.body_text()),
        )
    })?;
    let ws = ws
        .max_message_size(channel_chat::ws::MAX_FRAME_BYTES)
        .max_frame_size(channel_chat::ws::MAX_FRAME_BYTES);
    let chat = state.chat.clone();
    let hb = std::time::Duration::from_secs(state.config.agent.heartbeat_secs.max(1));
    Ok(ws.on_upgrade(move |socket| async move {
        channel_chat::ws::serve(
            socket,
            ip,
            chat.engine.clone(),
            chat.backend.clone(),
            channel_chat::ws::SocketConfig {
                heartbeat: hb,
                silent_heartbeats: 3,
            },
        )
        .await
    }))
}

#[derive(Deserialize, ToSchema)]
pub struct StatusQuery {
    pub topic: Option<String>,
    pub lang: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatStatus {
    /// A live chat can start now: the queue is open and an agent who may take it is logged in.
    pub open: bool,
    /// The queue is within its opening hours.
    pub within_hours: bool,
    pub agents_available: usize,
    pub agents_logged_in: usize,
    pub expected_wait_secs: i64,
    pub topics: Vec<String>,
    pub max_attachment_bytes: usize,
    pub max_message_chars: usize,
}

/// Whether a live chat can start now (for the widget: else it offers a message or a callback).
#[utoipa::path(get, path = "/chat/status", tag = "chat", params(("topic" = Option<String>, Query,)),
    responses((status = 200, body = ChatStatus)))]
pub async fn status(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<StatusQuery>,
) -> Result<Json<ChatStatus>, ApiError> {
    let mut attrs = ContactAttributes::new(Channel::Chat);
    attrs.called = Some("chat".into());
    attrs.ivr_choice = q.topic.filter(|t| state.config.chat.topics.contains(t));
    attrs.language = q
        .lang
        .map(|l| channel_chat::frames::normalize_language(&l).to_string());
    let decision = state.routing.rules().route(&attrs, now_ms());
    let outlook = state
        .hub
        .outlook(&decision.queue, Channel::Chat)
        .await
        .map_err(|_| ApiError::internal())?;
    let (within_hours, logged_in, available, wait) = match outlook {
        Some(o) => (
            o.open,
            o.agents,
            o.available,
            (o.expected_wait_ms + 999) / 1000,
        ),
        None => (false, 0, 0, 0),
    };
    Ok(Json(ChatStatus {
        open: within_hours && logged_in > 0,
        within_hours,
        agents_available: available,
        agents_logged_in: logged_in,
        expected_wait_secs: wait,
        topics: state.config.chat.topics.clone(),
        max_attachment_bytes: state.config.chat.max_attachment_bytes,
        max_message_chars: state.config.chat.max_message_chars,
    }))
}

/// What a file is, from its first bytes; only these types are accepted.
fn sniff(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(b"\xFF\xD8\xFF") {
        Some("image/jpeg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else if data.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if std::str::from_utf8(data).is_ok() && !data.contains(&0) {
        Some("text/plain")
    } else {
        None
    }
}

/// Decodes `%XX` escapes (the widget percent-encodes file names for the header).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A file name safe to store and show: no paths, no control characters, at most 200 chars.
fn clean_file_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let name: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '<' | '>' | ':' | '*' | '?' | '|'))
        .take(200)
        .collect();
    let name = name.trim().trim_start_matches('.').to_string();
    if name.is_empty() {
        "file".into()
    } else {
        name
    }
}

/// The `X-Filename` of an upload (percent-encoded by the client), made safe.
pub fn file_name_header(headers: &HeaderMap) -> String {
    clean_file_name(&percent_decode(
        headers
            .get("x-filename")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("file"),
    ))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn conversation_of_token(state: &AppState, token: &str) -> Result<i64, ApiError> {
    let hash = crate::auth::token_hash(token);
    match state.store.chat_by_token(&hash).await? {
        Some(c) => Ok(c.conversation_id),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unknown_session",
            "no chat session for this token",
        )),
    }
}

/// Upload a file into the customer's conversation; answered once stored.
#[utoipa::path(post, path = "/chat/attachments", tag = "chat",
    request_body(content = String, content_type = "application/octet-stream", description = "the file's bytes"),
    responses((status = 201, description = "stored: `{seq, message}`"), (status = 413, body = crate::error::ErrorBody),
        (status = 415, body = crate::error::ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let token = crate::auth::request_token(&headers).ok_or_else(ApiError::unauthorized)?;
    let conv = conversation_of_token(&state, &token).await?;
    if !state.chat.allow_http(ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many uploads; wait a moment",
        ));
    }
    let max = state.config.chat.max_attachment_bytes;
    if body.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a file may be at most {max} bytes"),
        ));
    }
    if body.is_empty() {
        return Err(ApiError::bad_request("the file is empty"));
    }
    let Some(kind) = sniff(&body) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
            "only images (PNG, JPEG, GIF, WebP), PDF and plain text may be sent",
        ));
    };
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if declared != kind && declared != "application/octet-stream" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "type_mismatch",
            format!("the file is {kind}, not {declared}"),
        ));
    }
    let name = file_name_header(&headers);
    let client_id = headers
        .get("x-client-id")
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= channel_chat::frames::MAX_CLIENT_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .ok_or_else(|| ApiError::bad_request("X-Client-Id: 1 to 64 letters, digits, - _ ."))?
        .to_string();
    if !state.chat.ensure_live(conv).await {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the chat is not available; try again",
        ));
    }
    let sha = crate::auth::hex(&Sha256::digest(&body));
    let row = state
        .store
        .create_attachment(conv, &name, kind, &body, &sha, now_ms())
        .await?;
    let view = AttachmentView {
        id: row.id,
        name: row.file_name,
        content_type: row.content_type,
        size: row.size.max(0) as u64,
        url: None,
    };
    match state
        .chat
        .engine
        .upload(conv, client_id, name.clone(), view)
        .await
    {
        Ok(Ok(m)) => Ok((
            StatusCode::CREATED,
            Json(json!({"seq": m.seq, "message": m})),
        )),
        Ok(Err(e)) if e.code == "ended" => Err(ApiError::new(
            StatusCode::CONFLICT,
            "ended",
            "this conversation has ended",
        )),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_stored",
            e.message,
        )),
        Err(_) => Err(ApiError::internal()),
    }
}

fn attachment_response(row: crate::store::AttachmentRow, data: Vec<u8>) -> Response {
    let ascii: String = row
        .file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let disposition = format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        percent_encode(&row.file_name)
    );
    let mut r = data.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&row.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // Never run as a page, whatever a browser makes of it.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    r
}

#[derive(Deserialize)]
pub struct TokenQuery {
    pub token: String,
}

async fn customer_download(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Response, ApiError> {
    let conv = conversation_of_token(&state, &q.token).await?;
    let (row, data) = state.store.attachment(id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("attachment"),
        e => e.into(),
    })?;
    if row.conversation_id != conv {
        return Err(ApiError::not_found("attachment"));
    }
    Ok(attachment_response(row, data))
}

/// Download an attachment of any conversation (agents, supervisors).
#[utoipa::path(get, path = "/api/v1/attachments/{id}", tag = "contacts",
    responses((status = 200, description = "the file, as an attachment"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn agent_download(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Response, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    let (row, data) = state.store.attachment(id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::not_found("attachment"),
        e => e.into(),
    })?;
    Ok(attachment_response(row, data))
}

/// The conversation as plain text, for the customer to keep (`?token=`; a file download).
#[utoipa::path(get, path = "/chat/transcript", tag = "chat", params(("token" = String, Query,)),
    responses((status = 200, description = "text/plain transcript"), (status = 401, body = crate::error::ErrorBody)))]
pub async fn transcript(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<TokenQuery>,
) -> Result<Response, ApiError> {
    let conv = conversation_of_token(&state, &q.token).await?;
    let chat = state
        .store
        .chat(conv)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let messages = state.store.conversation_messages(conv).await?;
    // Chinese customers read Beijing/Taipei time (UTC+8); others UTC.
    let (offset_ms, zone) = if chat.language == "en" {
        (0, "UTC")
    } else {
        (8 * 3_600_000, "UTC+8")
    };
    let (title, you, system) = match chat.language.as_str() {
        "zh-TW" => ("對話紀錄", "您", "系統"),
        "en" => ("Chat transcript", "You", "System"),
        _ => ("对话记录", "您", "系统"),
    };
    let mut text = format!("{title} #{conv}\n\n");
    for m in messages.iter().filter(|m| m.sender != "note") {
        let at = chrono::DateTime::from_timestamp_millis(m.created_at + offset_ms)
            .map(|t| format!("{} {zone}", t.format("%Y-%m-%d %H:%M")))
            .unwrap_or_default();
        let who = match m.sender.as_str() {
            "customer" => you.to_string(),
            "agent" => m.name.clone().unwrap_or_default(),
            _ => system.to_string(),
        };
        text.push_str(&format!("[{at}] {who}: {}\n", m.body));
    }
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"chat-{conv}.txt\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebMessage {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub topic: Option<String>,
    pub language: Option<String>,
    /// The message (leave-a-message) or a note on when to call (callback).
    #[serde(default)]
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct Reference {
    /// What the customer can quote later, e.g. `C-000123`.
    pub reference: String,
    pub contact_id: i64,
}

fn bounded(v: &Option<String>, field: &str, max: usize) -> Result<Option<String>, ApiError> {
    match v.as_deref().map(str::trim) {
        Some(s) if s.chars().count() > max => Err(ApiError::unprocessable(format!(
            "{field}: at most {max} characters"
        ))),
        Some("") | None => Ok(None),
        Some(s) => Ok(Some(s.to_string())),
    }
}

/// Stores and routes a contact that opens a conversation of its own.
async fn inbound(
    state: &AppState,
    ip: IpAddr,
    channel: Channel,
    m: WebMessage,
) -> Result<(StatusCode, Json<Reference>), ApiError> {
    if !state.chat.allow_http(ip) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests from this address; wait a moment",
        ));
    }
    let name = bounded(&m.name, "name", 100)?;
    let region =
        &crate::chat::region_for(m.language.as_deref(), &state.config.archive.default_region);
    let email = bounded(&m.email, "email", 254)?
        .map(|e| normalize_email(&e))
        .transpose()
        .map_err(|_| ApiError::unprocessable("email: not an email address"))?;
    let phone = bounded(&m.phone, "phone", 40)?
        .map(|p| normalize_phone(&p, region))
        .transpose()
        .map_err(|_| ApiError::unprocessable("phone: not a phone number"))?;
    let text: String = m
        .text
        .trim()
        .chars()
        .filter(|c| !c.is_control() || *c == '\n')
        .collect();
    if text.chars().count() > 4000 {
        return Err(ApiError::unprocessable("text: at most 4000 characters"));
    }
    match channel {
        Channel::Callback if phone.is_none() => {
            return Err(ApiError::unprocessable(
                "phone: the number to call back is required",
            ))
        }
        Channel::Email if text.is_empty() => {
            return Err(ApiError::unprocessable("text: the message is empty"))
        }
        Channel::Email if email.is_none() && phone.is_none() => {
            return Err(ApiError::unprocessable(
                "email or phone: how we can answer is required",
            ))
        }
        _ => {}
    }
    let mut customer_id = None;
    for (kind, value) in [(IdentityKind::Email, &email), (IdentityKind::Phone, &phone)] {
        if let (None, Some(v)) = (customer_id, value) {
            customer_id = state.store.customer_by_identity(kind, v).await?;
        }
    }
    let customer = match customer_id {
        Some(id) => Some(state.store.get_customer(id).await?),
        None => None,
    };
    let language = m
        .language
        .as_deref()
        .map(channel_chat::frames::normalize_language)
        .unwrap_or("zh-CN")
        .to_string();
    let topic = m.topic.filter(|t| state.config.chat.topics.contains(t));
    let now = now_ms();
    let mut attrs = ContactAttributes::new(channel);
    attrs.called = Some("chat".into());
    attrs.ivr_choice = topic.clone();
    attrs.language = Some(language.clone());
    if let Some(c) = &customer {
        attrs.tier = Some(c.tier.clone());
        attrs.tags = c.tags.clone();
    }
    let decision = state.routing.rules().route(&attrs, now);
    let who = name
        .clone()
        .or_else(|| email.clone())
        .or_else(|| phone.clone())
        .unwrap_or_default();
    let subject = match channel {
        Channel::Callback => format!("回电请求 Callback: {who}"),
        _ => format!(
            "网页留言 Web message: {}",
            text.chars().take(60).collect::<String>()
        ),
    };
    let (conv, contact) = state
        .store
        .create_inbound(
            &NewInbound {
                channel,
                customer_id,
                language,
                subject: Some(subject),
                queue: decision.queue.clone(),
                priority: decision.priority,
                skills: decision.extra_skills.clone(),
                routed_by: decision.rule.clone(),
                overflow: decision.overflow.clone(),
                body: text,
                meta: json!({
                    "source": "chat_widget", "name": name, "email": email, "phone": phone, "topic": topic,
                }),
            },
            now,
        )
        .await?;
    let last_agent = match customer_id {
        Some(c) => state.store.last_agent(c).await?,
        None => None,
    };
    tracing::info!(contact_id = contact.id, conversation_id = conv, channel = %channel, queue = %decision.queue, "web request stored");
    state
        .hub
        .route(
            ContactSpec {
                id: contact.id,
                channel,
                queue: decision.queue,
                priority: decision.priority,
                enqueued_at: now,
                extra_skills: decision.extra_skills,
                last_agent,
            },
            decision.overflow,
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(Reference {
            reference: format!("C-{:06}", contact.id),
            contact_id: contact.id,
        }),
    ))
}

/// Leave a message when nobody can chat: an email-channel contact for the queue.
#[utoipa::path(post, path = "/chat/messages", tag = "chat", request_body = WebMessage,
    responses((status = 201, body = Reference), (status = 422, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody)))]
pub async fn leave_message(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    ApiJson(m): ApiJson<WebMessage>,
) -> Result<(StatusCode, Json<Reference>), ApiError> {
    inbound(&state, ip, Channel::Email, m).await
}

/// Ask to be called back: a callback contact for the ACD.
#[utoipa::path(post, path = "/chat/callbacks", tag = "chat", request_body = WebMessage,
    responses((status = 201, body = Reference), (status = 422, body = crate::error::ErrorBody),
        (status = 429, body = crate::error::ErrorBody)))]
pub async fn request_callback(
    State(state): State<AppState>,
    PeerIp(ip): PeerIp,
    ApiJson(m): ApiJson<WebMessage>,
) -> Result<(StatusCode, Json<Reference>), ApiError> {
    inbound(&state, ip, Channel::Callback, m).await
}

/// Canned responses for the chat and email panes.
#[utoipa::path(get, path = "/api/v1/canned-responses", tag = "contacts",
    responses((status = 200, body = Vec<CannedResponse>)))]
pub async fn list_canned(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<CannedResponse>>, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor, Role::Admin])?;
    Ok(Json(state.store.canned_responses().await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCanned {
    pub title: String,
    /// May use `{customer.name}`, `{agent.name}`, `{contact.id}`.
    pub body: String,
    pub language: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/canned-responses", tag = "contacts", request_body = NewCanned,
    responses((status = 201, body = CannedResponse), (status = 422, body = crate::error::ErrorBody)))]
pub async fn create_canned(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(n): ApiJson<NewCanned>,
) -> Result<(StatusCode, Json<CannedResponse>), ApiError> {
    user.require(&[Role::Supervisor, Role::Admin])?;
    let title = n.title.trim();
    let body = n.body.trim();
    if title.is_empty() || title.chars().count() > 100 {
        return Err(ApiError::unprocessable("title: 1 to 100 characters"));
    }
    if body.is_empty() || body.chars().count() > 4000 {
        return Err(ApiError::unprocessable("body: 1 to 4000 characters"));
    }
    let language = match n.language.as_deref() {
        None | Some("") => None,
        Some(l) if channel_chat::frames::LANGUAGES.contains(&l) => Some(l),
        Some(_) => return Err(ApiError::unprocessable("language: zh-CN, zh-TW or en")),
    };
    let c = state
        .store
        .create_canned_response(title, body, language, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[utoipa::path(delete, path = "/api/v1/canned-responses/{id}", tag = "contacts",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_canned(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    user.require(&[Role::Supervisor, Role::Admin])?;
    state
        .store
        .delete_canned_response(id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("canned response"),
            e => e.into(),
        })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkCustomer {
    pub customer_id: i64,
}

/// Links a conversation (and its contacts) to a customer: an unknown visitor became a record.
#[utoipa::path(put, path = "/api/v1/conversations/{id}/customer", tag = "contacts", request_body = LinkCustomer,
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn link_customer(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(l): ApiJson<LinkCustomer>,
) -> Result<StatusCode, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor])?;
    state
        .store
        .get_customer(l.customer_id)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("customer"),
            e => e.into(),
        })?;
    state
        .store
        .chat(id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    state
        .store
        .set_conversation_customer(id, l.customer_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_known_by_their_first_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(b"%PDF-1.7"), Some("application/pdf"));
        assert_eq!(sniff("发票号 123".as_bytes()), Some("text/plain"));
        assert_eq!(sniff(b"MZ\x90\x00\x03"), None, "an .exe is refused");
        assert_eq!(sniff(b"<html>\x00"), None);
    }

    #[test]
    fn file_names_lose_paths_and_odd_characters() {
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("C:\\Users\\发票.pdf"), "发票.pdf");
        assert_eq!(clean_file_name(".hidden"), "hidden");
        assert_eq!(clean_file_name("a\u{0}b<script>.txt"), "abscript.txt");
        assert_eq!(clean_file_name(""), "file");
        assert_eq!(percent_decode("%E5%8F%91%E7%A5%A8.pdf"), "发票.pdf");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
