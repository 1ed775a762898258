//! Conversations over REST for the console's email pane: read a conversation (emails with
//! sanitized HTML, files, why each message joined, what is still being sent), reply, reply-all
//! and forward, internal notes, split and merge, retry a failed send, upload a file to attach.

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use channel_email::outbound::{self, OutgoingAttachment};
use channel_email::parse::Mailbox;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::auth::AuthUser;
use crate::domain::{now_ms, rfc3339, Channel, ContactState, Role, User};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::server::AppState;
use crate::store::{EmailFile, StoreError};

pub fn api_router(state: &AppState) -> Router<AppState> {
    let upload_limit = state.config.email.max_attachment_bytes + 64 * 1024;
    Router::new()
        .route("/conversations/{id}", get(conversation))
        .route("/conversations/{id}/reply", post(reply))
        .route("/conversations/{id}/notes", post(note))
        .route("/conversations/{id}/split", post(split))
        .route("/conversations/{id}/merge", post(merge))
        .route(
            "/conversations/{id}/files",
            post(upload).layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route("/outbox/{id}/retry", post(retry))
}

const READERS: &[Role] = &[Role::Agent, Role::Supervisor, Role::Admin];

fn not_found(e: StoreError, what: &str) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::not_found(what),
        e => e.into(),
    }
}

/// The whole conversation as the console shows it.
pub async fn conversation_json(state: &AppState, id: i64) -> Result<Value, ApiError> {
    let conv = state
        .store
        .conversation_row(id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let messages = state.store.conversation_messages(id).await?;
    let emails = state.store.conversation_emails(id).await?;
    let files = state.store.message_files(id).await?;
    let outbox = state.store.outbox_status(id).await?;
    let chat_attachments: Vec<i64> = messages.iter().filter_map(|m| m.attachment_id).collect();
    let chat_files = state.store.attachments_by_ids(&chat_attachments).await?;
    let list: Vec<Value> = messages
        .iter()
        .map(|m| {
            let email = emails.iter().find(|e| e.seq == m.seq);
            let mut attachments: Vec<Value> = files
                .iter()
                .filter(|(seq, ..)| *seq == m.seq)
                .map(|(_, a, cid, inline)| {
                    json!({"id": a.id, "name": a.file_name, "content_type": a.content_type, "size": a.size,
                           "content_id": cid, "inline": inline})
                })
                .collect();
            if let Some(a) = m.attachment_id.and_then(|id| chat_files.iter().find(|f| f.id == id)) {
                attachments.push(json!({"id": a.id, "name": a.file_name, "content_type": a.content_type, "size": a.size,
                                        "content_id": null, "inline": false}));
            }
            json!({
                "seq": m.seq, "from": m.sender, "name": m.name, "agent_id": m.agent_id, "text": m.body,
                "at": rfc3339(m.created_at), "event": m.event, "client_id": m.client_id,
                "email": email, "attachments": attachments,
                "outbox": outbox.iter().filter(|o| o.seq == Some(m.seq)).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({"conversation": conv, "messages": list}))
}

/// One conversation: every message (emails with headers and sanitized HTML, files, sending
/// state), for the console.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "contacts",
    responses((status = 200, description = "`{conversation, messages}`"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn conversation(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    user.require(READERS)?;
    Ok(Json(conversation_json(&state, id).await?))
}

/// The agent may act on the conversation through `contact` (in their hands), or is a supervisor.
async fn may_act(
    state: &AppState,
    user: &User,
    conversation: i64,
    contact: Option<i64>,
) -> Result<(), ApiError> {
    if user.role == Role::Supervisor {
        return Ok(());
    }
    let Some(contact) = contact else {
        return Err(ApiError::unprocessable(
            "contact_id: the contact in your hands is required",
        ));
    };
    let c = state
        .store
        .get_contact(contact)
        .await
        .map_err(|e| not_found(e, "contact"))?;
    if c.conversation_id != Some(conversation) {
        return Err(ApiError::unprocessable(
            "contact_id: that contact is not of this conversation",
        ));
    }
    let phase = state
        .hub
        .contact_phase(contact)
        .await
        .map_err(|_| ApiError::internal())?;
    match phase {
        Some((_, Some(a), _)) if a == user.id => Ok(()),
        _ if c.agent_id == Some(user.id) && c.state == ContactState::Closed => Ok(()),
        _ => Err(ApiError::forbidden(
            "this conversation is not in your hands",
        )),
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum ReplyMode {
    Reply,
    ReplyAll,
    Forward,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyRequest {
    /// The contact in the agent's hands.
    pub contact_id: Option<i64>,
    pub mode: ReplyMode,
    /// The message answered or forwarded (default: the latest from the customer).
    pub seq: Option<i64>,
    /// Forward: the recipients. Reply: extra recipients.
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    pub text: String,
    /// Files uploaded with `POST /conversations/{id}/files`.
    #[serde(default)]
    pub attachment_ids: Vec<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplyQueued {
    /// The reply's place in the conversation.
    pub seq: i64,
    pub outbox_id: i64,
    pub message_id: String,
}

fn mailboxes(list: &[String]) -> Result<Vec<Mailbox>, ApiError> {
    list.iter()
        .map(|a| {
            crate::identity::normalize_email(a)
                .map(|address| Mailbox {
                    name: None,
                    address,
                })
                .map_err(|_| ApiError::unprocessable(format!("not an email address: {a:?}")))
        })
        .collect()
}

/// Reply, reply-all or forward: stored in the conversation and the outbox at once, then sent
/// through the relay with retries; the answer says where to watch its state.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/reply", tag = "contacts", request_body = ReplyRequest,
    responses((status = 202, body = ReplyQueued), (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn reply(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(r): ApiJson<ReplyRequest>,
) -> Result<(StatusCode, Json<ReplyQueued>), ApiError> {
    user.require(&[Role::Agent, Role::Supervisor])?;
    may_act(&state, &user.user, id, r.contact_id).await?;
    let text = r.text.trim().to_string();
    if text.is_empty() || text.chars().count() > 100_000 {
        return Err(ApiError::unprocessable("text: 1 to 100000 characters"));
    }
    let emails = state.store.conversation_emails(id).await?;
    let original = match r.seq {
        Some(s) => emails.iter().find(|e| e.seq == s),
        None => emails.iter().rev().find(|e| e.direction == "inbound"),
    }
    .ok_or_else(|| ApiError::unprocessable("seq: no such email in this conversation"))?;
    let parsed = state
        .email
        .parsed(id, original.seq)
        .await
        .map_err(|e| not_found(e, "email"))?;
    // We write from the address the customer wrote to.
    let mailbox = original
        .flags
        .get("mailbox")
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| {
            original
                .from_addr
                .clone()
                .filter(|_| original.direction == "outbound")
        });
    let from = state.config.email.mailbox(mailbox.as_deref());
    let to = mailboxes(&r.to)?;
    let cc = mailboxes(&r.cc)?;
    let mut mail = match r.mode {
        ReplyMode::Forward => {
            if to.is_empty() {
                return Err(ApiError::unprocessable("to: a forward needs a recipient"));
            }
            let raw = state.store.email_raw(id, original.seq).await?;
            outbound::forward(&parsed, &raw, from.clone(), to, text.clone())
        }
        ReplyMode::Reply | ReplyMode::ReplyAll => {
            let mut m = outbound::reply(&parsed, from.clone(), text.clone(), None);
            if original.direction == "outbound" {
                // Answering our own mail again: to whom it went.
                m.to = original
                    .to
                    .iter()
                    .map(|a| Mailbox {
                        name: None,
                        address: a.clone(),
                    })
                    .collect();
            }
            if matches!(r.mode, ReplyMode::ReplyAll) {
                let ours = |a: &str| {
                    a.eq_ignore_ascii_case(&from.address)
                        || state
                            .config
                            .email
                            .addresses
                            .iter()
                            .any(|m| m.address.eq_ignore_ascii_case(a))
                };
                for a in parsed.to.iter().chain(parsed.cc.iter()) {
                    if !ours(&a.address) && !m.to.iter().any(|t| t.address == a.address) {
                        m.cc.push(a.clone());
                    }
                }
            }
            m.to.extend(to);
            m
        }
    };
    mail.cc.extend(cc);
    if mail.to.is_empty() && mail.cc.is_empty() {
        return Err(ApiError::unprocessable(
            "this email has no address to answer",
        ));
    }
    mail.ticket = Some(super::ticket_of(id));
    let mut files = Vec::new();
    for a in &r.attachment_ids {
        let (row, data) = state
            .store
            .attachment(*a)
            .await
            .map_err(|e| not_found(e, "attachment"))?;
        if row.conversation_id != id {
            return Err(ApiError::unprocessable(
                "attachment_ids: a file of another conversation",
            ));
        }
        mail.attachments.push(OutgoingAttachment {
            filename: row.file_name.clone(),
            content_type: row.content_type.clone(),
            data: data.clone(),
        });
        files.push(EmailFile {
            file_name: row.file_name,
            content_type: row.content_type,
            sha256: row.sha256,
            data,
            content_id: None,
            inline: false,
        });
    }
    let kind = match r.mode {
        ReplyMode::Forward => "forward",
        _ => "reply",
    };
    let (seq, outbox_id, message_id) = state
        .email
        .send_stored(
            id,
            r.contact_id,
            kind,
            "agent",
            Some((user.user.id, user.user.display_name.clone())),
            mail,
            Some(files),
        )
        .await
        .map_err(ApiError::unprocessable)?;
    if let Some(c) = r.contact_id {
        let _ = state
            .store
            .append_contact_event(
                c,
                now_ms(),
                "replied",
                &json!({"seq": seq, "kind": kind, "agent": user.user.id}),
            )
            .await;
    }
    tracing::info!(
        conversation_id = id,
        seq,
        outbox_id,
        agent_id = user.user.id,
        "email reply queued"
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(ReplyQueued {
            seq,
            outbox_id,
            message_id,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteRequest {
    pub contact_id: Option<i64>,
    pub text: String,
}

/// An internal note in the conversation (never sent to the customer).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/notes", tag = "contacts", request_body = NoteRequest,
    responses((status = 201, description = "`{seq}`"), (status = 403, body = crate::error::ErrorBody)))]
pub async fn note(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(n): ApiJson<NoteRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.require(&[Role::Agent, Role::Supervisor])?;
    may_act(&state, &user.user, id, n.contact_id).await?;
    let text = n.text.trim();
    if text.is_empty() || text.chars().count() > 4000 {
        return Err(ApiError::unprocessable("text: 1 to 4000 characters"));
    }
    let conv = state
        .store
        .conversation_row(id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    if conv.channel == Channel::Chat.as_str() {
        return Err(ApiError::unprocessable(
            "chat notes go over the agent socket (chat_note)",
        ));
    }
    let seq = state
        .store
        .add_note(id, user.user.id, &user.user.display_name, text, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"seq": seq}))))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitRequest {
    /// The first message of the new conversation.
    pub seq: i64,
}

/// Moves a message and those after it into a new conversation (it joined the wrong thread).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/split", tag = "contacts", request_body = SplitRequest,
    responses((status = 201, description = "`{conversation_id}`"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn split(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(s): ApiJson<SplitRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.require(&[Role::Agent, Role::Supervisor])?;
    if state.store.email(id, s.seq).await?.is_none() {
        return Err(ApiError::not_found("email"));
    }
    let new = state
        .store
        .split_conversation(id, s.seq, now_ms())
        .await
        .map_err(|e| not_found(e, "conversation"))?;
    tracing::info!(
        conversation_id = id,
        new_conversation_id = new,
        seq = s.seq,
        agent_id = user.user.id,
        "conversation split"
    );
    // The split-off thread needs someone to answer it: a contact of its own, in line where the
    // original's is (or where the routing rules send mail).
    let old = state.store.latest_contact(id).await?;
    let conv = state.store.conversation_row(new).await?;
    let rules = state.routing.rules();
    let route = rules.route(
        &crate::acd::rules::ContactAttributes::new(Channel::Email),
        now_ms(),
    );
    let queue = old
        .as_ref()
        .and_then(|c| c.queue.clone())
        .filter(|q| rules.queue(q).is_some())
        .unwrap_or(route.queue);
    let priority = old.as_ref().map_or(route.priority, |c| c.priority);
    let contact = state
        .store
        .create_follow_up_contact(
            new,
            Channel::Email,
            conv.as_ref().and_then(|c| c.customer_id),
            conv.as_ref().and_then(|c| c.subject.as_deref()),
            &queue,
            priority,
            &crate::acd::types::SkillSet::default(),
            "split",
            json!({ "split_from": id, "seq": s.seq }),
            now_ms(),
        )
        .await?;
    state
        .hub
        .route(
            crate::acd::types::ContactSpec {
                id: contact.id,
                channel: Channel::Email,
                queue,
                priority,
                enqueued_at: now_ms(),
                extra_skills: crate::acd::types::SkillSet::default(),
                last_agent: Some(user.user.id),
            },
            None,
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(json!({"conversation_id": new, "contact_id": contact.id})),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The conversation this one joins.
    pub into: i64,
}

/// Appends this conversation to another one (two threads about one matter) and closes it.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/merge", tag = "contacts", request_body = MergeRequest,
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn merge(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    ApiJson(m): ApiJson<MergeRequest>,
) -> Result<StatusCode, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor])?;
    for c in [id, m.into] {
        let row = state
            .store
            .conversation_row(c)
            .await?
            .ok_or_else(|| ApiError::not_found("conversation"))?;
        if row.channel != Channel::Email.as_str() {
            return Err(ApiError::unprocessable(
                "only email conversations are merged",
            ));
        }
    }
    state
        .store
        .merge_conversations(id, m.into, now_ms())
        .await?;
    tracing::info!(
        conversation_id = id,
        into = m.into,
        agent_id = user.user.id,
        "conversations merged"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Upload a file to attach to a reply (the raw bytes; `X-Filename` percent-encoded).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/files", tag = "contacts",
    request_body(content = String, content_type = "application/octet-stream"),
    responses((status = 201, description = "`{id, name, content_type, size}`"), (status = 413, body = crate::error::ErrorBody)))]
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    user.require(&[Role::Agent, Role::Supervisor])?;
    state
        .store
        .conversation_row(id)
        .await?
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    if body.is_empty() {
        return Err(ApiError::bad_request("the file is empty"));
    }
    let ctype = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .split(';')
        .next()
        .unwrap_or("application/octet-stream")
        .trim()
        .to_ascii_lowercase();
    let name = crate::chat::http::file_name_header(&headers);
    let sha = crate::auth::hex(&Sha256::digest(&body));
    let row = state
        .store
        .create_attachment(id, &name, &ctype, &body, &sha, now_ms())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": row.id, "name": row.file_name, "content_type": row.content_type, "size": row.size}),
        ),
    ))
}

/// Send a failed (or waiting) mail again now.
#[utoipa::path(post, path = "/api/v1/outbox/{id}/retry", tag = "contacts",
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn retry(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<i64>,
) -> Result<StatusCode, ApiError> {
    user.require(&[Role::Agent, Role::Supervisor])?;
    state
        .email
        .retry(id)
        .await
        .map_err(|e| not_found(e, "outbox entry"))?;
    Ok(StatusCode::NO_CONTENT)
}
