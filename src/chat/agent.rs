//! The agent socket's chat frames (docs/protocol.md, "Chat"): send, note, typing, read, history,
//! end, transfer; and the chat part of an offer.

use channel_chat::AgentInput;
use serde_json::{json, Value};

use crate::acd::types::ContactSpec;
use crate::domain::{now_ms, Channel, Contact, ContactState, Role, User};
use crate::hub::ContactOp;
use crate::server::AppState;
use crate::store::parse_skills;

/// Longest message or note an agent may write.
const MAX_AGENT_CHARS: usize = 4000;
/// How long a contact transferred to a named agent waits for them before its queue takes it.
const AGENT_TRANSFER_WAIT_SECS: u32 = 60;

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "code": code, "message": message.into()})
}

fn contact_id(v: &Value) -> Result<i64, Value> {
    v.get("contact_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| error("invalid_message", "contact_id (a number) is required"))
}

fn client_id(v: &Value) -> Result<String, Value> {
    match v.get("client_id").and_then(Value::as_str) {
        Some(id)
            if !id.is_empty()
                && id.len() <= channel_chat::frames::MAX_CLIENT_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            Ok(id.to_string())
        }
        _ => Err(error(
            "invalid_message",
            "client_id: 1 to 64 characters of letters, digits, - _ .",
        )),
    }
}

fn text(v: &Value) -> Result<String, Value> {
    let t = v.get("text").and_then(Value::as_str).unwrap_or("").trim();
    if t.is_empty() {
        return Err(error("invalid_message", "text is required"));
    }
    if t.chars().count() > MAX_AGENT_CHARS {
        return Err(error(
            "too_long",
            format!("at most {MAX_AGENT_CHARS} characters"),
        ));
    }
    Ok(t.to_string())
}

/// Whether `kind` is a chat frame of the agent socket.
pub fn is_chat_frame(kind: &str) -> bool {
    matches!(
        kind,
        "chat_send"
            | "chat_note"
            | "chat_typing"
            | "chat_read"
            | "chat_history"
            | "chat_end"
            | "transfer"
    )
}

/// The conversation of a chat contact this agent holds, and the contact's phase.
async fn held(
    state: &AppState,
    agent: &User,
    contact: i64,
    must_be_connected: bool,
) -> Result<(i64, ContactState), Value> {
    let Some(conv) = state.chat.conversation_of(contact).await else {
        return Err(error("not_chat", "this contact is not a chat"));
    };
    let phase = state
        .hub
        .contact_phase(contact)
        .await
        .map_err(|_| error("unavailable", "the hub is stopping"))?;
    match phase {
        Some((s, Some(a), _)) if a == agent.id => {
            if must_be_connected && s != ContactState::Connected {
                return Err(error("not_allowed", "this chat is not connected"));
            }
            Ok((conv, s))
        }
        // A supervisor may read any chat; after the contact is over its holder may too.
        _ if !must_be_connected && agent.role == Role::Supervisor => {
            Ok((conv, ContactState::Closed))
        }
        None if !must_be_connected => {
            let c = state
                .store
                .get_contact(contact)
                .await
                .map_err(|_| error("unknown_contact", "no such contact"))?;
            if c.agent_id == Some(agent.id) {
                Ok((conv, c.state))
            } else {
                Err(error("not_allowed", "this chat is not in your hands"))
            }
        }
        _ => Err(error("not_allowed", "this chat is not in your hands")),
    }
}

/// Handles one chat frame of the agent socket.
pub async fn frame(
    state: &AppState,
    agent: &User,
    kind: &str,
    v: &Value,
) -> Result<Option<Value>, Value> {
    let chat = &state.chat;
    let contact = contact_id(v)?;
    match kind {
        "chat_send" | "chat_note" => {
            let note = kind == "chat_note";
            let client_id = client_id(v)?;
            let text = text(v)?;
            let (conv, _) = held(state, agent, contact, !note).await?;
            if !note && chat.links.serving(conv) != Some(agent.id) {
                chat.joined(conv, agent.id).await;
            } else {
                chat.ensure_live(conv).await;
            }
            let me = chat.agent(agent.id).await;
            match chat
                .engine
                .agent_message(conv, me, client_id.clone(), text, note)
                .await
            {
                Ok(Ok(message)) => Ok(Some(json!({
                    "type": "chat_ack", "contact_id": contact, "conversation_id": conv,
                    "client_id": client_id, "message": message,
                }))),
                Ok(Err(e)) => Err(json!({
                    "type": "error", "code": e.code, "message": e.message, "client_id": client_id,
                })),
                Err(_) => Err(error("unavailable", "the hub is stopping")),
            }
        }
        "chat_typing" | "chat_read" | "chat_end" => {
            let (conv, _) = held(state, agent, contact, true).await?;
            if chat.links.serving(conv) != Some(agent.id) {
                chat.joined(conv, agent.id).await;
            }
            let input = match kind {
                "chat_typing" => {
                    AgentInput::Typing(v.get("active").and_then(Value::as_bool).unwrap_or(false))
                }
                "chat_read" => AgentInput::Read(
                    v.get("seq")
                        .and_then(Value::as_u64)
                        .ok_or_else(|| error("invalid_message", "seq (a number) is required"))?,
                ),
                _ => AgentInput::End,
            };
            chat.engine
                .agent(conv, input)
                .await
                .map_err(|_| error("unavailable", "the hub is stopping"))?;
            Ok(None)
        }
        "chat_history" => {
            let (conv, _) = held(state, agent, contact, false).await?;
            Ok(Some(history(state, contact, conv).await))
        }
        "transfer" => transfer(state, agent, contact, v).await,
        _ => Err(error(
            "unknown_type",
            format!("unknown message type {kind:?}"),
        )),
    }
}

/// The whole conversation for the console: visitor, language, every message (notes too).
pub async fn history(state: &AppState, contact: i64, conv: i64) -> Value {
    let messages = match state.chat.engine.transcript(conv).await {
        Ok(Some(m)) => json!(m),
        _ => match state.chat.backend_messages(conv).await {
            Some(m) => json!(m),
            None => json!([]),
        },
    };
    let chat = state.store.chat(conv).await.ok().flatten();
    let online = state
        .chat
        .engine
        .online(conv)
        .await
        .ok()
        .flatten()
        .unwrap_or(false);
    json!({
        "online": online,
        "type": "chat_history",
        "contact_id": contact,
        "conversation_id": conv,
        "language": chat.as_ref().map(|c| c.language.clone()),
        "visitor": chat.as_ref().map(|c| json!(c.visitor)),
        "open": chat.as_ref().map(|c| c.open),
        "messages": messages,
    })
}

/// The chat part of an offer or work item: who the visitor is and what was said so far.
pub async fn offer_extra(state: &AppState, contact: &Contact) -> Option<Value> {
    if contact.channel != Channel::Chat {
        return None;
    }
    let conv = contact.conversation_id?;
    let mut h = history(state, contact.id, conv).await;
    if let Some(o) = h.as_object_mut() {
        o.remove("type");
    }
    Some(h)
}

async fn transfer(
    state: &AppState,
    agent: &User,
    contact: i64,
    v: &Value,
) -> Result<Option<Value>, Value> {
    let chat = &state.chat;
    let (conv, _) = held(state, agent, contact, true).await?;
    // An accept's join reaches the conversation through the hub's event stream; a transfer
    // right after it must not overtake it, or the customer is never told of the transfer.
    if chat.links.serving(conv) != Some(agent.id) {
        chat.joined(conv, agent.id).await;
    }
    let old = state
        .store
        .get_contact(contact)
        .await
        .map_err(|_| error("unknown_contact", "no such contact"))?;
    let rules = state.routing.rules();
    let to_agent = v.get("agent_id").and_then(Value::as_i64);
    let queue = match v.get("queue").and_then(Value::as_str) {
        Some(q) if rules.queue(q).is_some() => q.to_string(),
        Some(q) => return Err(error("unknown_queue", format!("unknown queue {q:?}"))),
        None if to_agent.is_some() => old.queue.clone().unwrap_or_else(|| "support".into()),
        None => {
            return Err(error(
                "invalid_message",
                "give a queue or an agent_id to transfer to",
            ))
        }
    };
    if to_agent == Some(agent.id) {
        return Err(error(
            "not_allowed",
            "you cannot transfer a chat to yourself",
        ));
    }
    if let Some(a) = to_agent {
        let logged_in = state
            .hub
            .agents()
            .await
            .map(|all| all.iter().any(|(id, _)| *id == a))
            .unwrap_or(false);
        if !logged_in {
            return Err(error("agent_unavailable", "that agent is not logged in"));
        }
    }
    let now = now_ms();
    let priority = old.priority;
    // The customer's needs (e.g. language) go with them.
    let skills = crate::acd::types::SkillSet(
        state
            .store
            .contact_skills(contact)
            .await
            .ok()
            .and_then(|s| parse_skills(&s).ok())
            .unwrap_or_default(),
    );
    let new = state
        .store
        .create_follow_up_contact(
            conv,
            Channel::Chat,
            old.customer_id,
            old.subject.as_deref(),
            &queue,
            priority,
            &skills,
            "transfer",
            json!({ "transferred_from": contact }),
            now,
        )
        .await
        .map_err(|_| error("unavailable", "the transfer could not be stored"))?;
    chat.links.link(conv, new.id);
    chat.links_serving_clear(conv);
    let _ = chat.engine.agent(conv, AgentInput::Left).await;
    // The transferring agent's part is over: their contact goes to wrap-up.
    let _ = state
        .hub
        .contact_op(agent.id, contact, ContactOp::Complete { hold_ms: 0 })
        .await;
    let spec = ContactSpec {
        id: new.id,
        channel: Channel::Chat,
        queue: queue.clone(),
        priority,
        enqueued_at: now,
        extra_skills: skills,
        last_agent: None,
    };
    match to_agent {
        Some(a) => {
            if let Ok(Err(e)) = state
                .hub
                .route_to_agent(spec.clone(), a, AGENT_TRANSFER_WAIT_SECS)
                .await
            {
                tracing::info!(contact_id = new.id, error = %e, "agent transfer fell back to the queue");
                state.hub.route(spec, None).await;
            }
        }
        None => state.hub.route(spec, None).await,
    }
    tracing::info!(contact_id = contact, new_contact_id = new.id, queue = %queue, to_agent = ?to_agent, "chat transferred");
    let agent_name = match to_agent {
        Some(a) => Some(chat.agent(a).await.name),
        None => None,
    };
    Ok(Some(json!({
        "type": "transferred", "contact_id": contact, "new_contact_id": new.id,
        "queue": queue, "agent_id": to_agent, "agent_name": agent_name,
    })))
}
