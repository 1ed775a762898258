//! The agent socket's call-control frames (docs/protocol.md, "Calls"): hold, mute, DTMF,
//! transfers, consultation, conference, hang-up.

use serde_json::{json, Value};

use super::calls::TransferTarget;
use super::CallOp;
use crate::domain::User;
use crate::server::AppState;

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "code": code, "message": message.into()})
}

/// Whether `kind` is a call-control or softphone frame.
pub fn is_call_frame(kind: &str) -> bool {
    kind.starts_with("call_") || kind.starts_with("webrtc_") || kind == "set_endpoint"
}

fn target(v: &Value) -> Result<TransferTarget, Value> {
    if let Some(q) = v.get("queue").and_then(Value::as_str) {
        return Ok(TransferTarget::Queue(q.to_string()));
    }
    if let Some(a) = v.get("agent_id").and_then(Value::as_i64) {
        return Ok(TransferTarget::Agent(a));
    }
    if let Some(n) = v.get("number").and_then(Value::as_str) {
        return Ok(TransferTarget::Number(n.to_string()));
    }
    Err(error(
        "invalid_message",
        "give a queue, an agent_id or a number",
    ))
}

pub async fn frame(
    state: &AppState,
    agent: &User,
    kind: &str,
    v: &Value,
) -> Result<Option<Value>, Value> {
    let Some(voice) = &state.voice else {
        return Err(error(
            "unavailable",
            "the voice channel is not running (sip.listen is empty)",
        ));
    };
    match kind {
        "set_endpoint" => {
            let endpoint = match v.get("endpoint").and_then(Value::as_str) {
                Some("browser") => super::Endpoint::Browser,
                Some("phone") => super::Endpoint::Phone,
                _ => return Err(error("invalid_message", "endpoint: browser or phone")),
            };
            let (endpoint, ready) = voice
                .set_endpoint(agent.id, Some(endpoint), true)
                .await
                .ok_or_else(|| error("unavailable", "the voice channel has stopped"))?;
            return Ok(Some(
                json!({"type": "endpoint", "endpoint": endpoint, "ready": ready}),
            ));
        }
        "call_dial" => {
            let number = v
                .get("number")
                .and_then(Value::as_str)
                .ok_or_else(|| error("invalid_message", "number (a string) is required"))?
                .to_string();
            let customer = v.get("customer_id").and_then(Value::as_i64);
            let sdp = v.get("sdp").and_then(Value::as_str).map(String::from);
            return match voice.dial(agent.id, number, customer, sdp).await {
                Ok(mut r) => {
                    r["type"] = json!("call_dialing");
                    Ok(Some(r))
                }
                Err(m) => Err(error("call_refused", m)),
            };
        }
        _ => {}
    }
    let contact = v
        .get("contact_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| error("invalid_message", "contact_id (a number) is required"))?;
    match kind {
        "webrtc_offer" => {
            let sdp = v
                .get("sdp")
                .and_then(Value::as_str)
                .filter(|s| s.len() <= 64 * 1024)
                .ok_or_else(|| error("invalid_message", "sdp (a string) is required"))?
                .to_string();
            return match voice.webrtc_offer(agent.id, contact, sdp).await {
                Ok(answer) => Ok(Some(
                    json!({"type": "webrtc_answer", "contact_id": contact, "sdp": answer}),
                )),
                Err(m) => Err(
                    json!({"type": "error", "code": "webrtc_refused", "message": m, "contact_id": contact}),
                ),
            };
        }
        "call_stats" => {
            // Numbers only, and only the ones the console knows: this goes into the record.
            let mut stats = serde_json::Map::new();
            for key in [
                "packets_received",
                "packets_lost",
                "jitter_ms",
                "rtt_ms",
                "fraction_lost",
            ] {
                match v.get(key) {
                    None | Some(Value::Null) => {}
                    Some(Value::Number(n))
                        if n.as_f64().is_some_and(|f| f.is_finite() && f >= 0.0) =>
                    {
                        stats.insert(key.into(), Value::Number(n.clone()));
                    }
                    Some(_) => {
                        return Err(error("invalid_message", format!("{key}: a number ≥ 0")))
                    }
                }
            }
            voice.browser_stats(agent.id, contact, Value::Object(stats));
            return Ok(None);
        }
        "webrtc_candidate" => {
            let candidate = v
                .get("candidate")
                .and_then(Value::as_str)
                .filter(|c| c.len() <= 1024)
                .ok_or_else(|| error("invalid_message", "candidate (a string) is required"))?
                .to_string();
            let ufrag = v.get("ufrag").and_then(Value::as_str).map(String::from);
            voice.webrtc_candidate(agent.id, contact, candidate, ufrag);
            return Ok(None);
        }
        _ => {}
    }
    let op = match kind {
        "call_hold" => CallOp::Hold,
        "call_unhold" => CallOp::Unhold,
        "call_mute" => CallOp::Mute,
        "call_unmute" => CallOp::Unmute,
        "call_hangup" => CallOp::Hangup,
        "call_dtmf" => CallOp::Dtmf(
            v.get("digits")
                .and_then(Value::as_str)
                .ok_or_else(|| error("invalid_message", "digits (a string) is required"))?
                .to_string(),
        ),
        "call_transfer" => CallOp::Transfer(target(v)?),
        "call_consult" => CallOp::Consult(target(v)?),
        "call_complete_transfer" => CallOp::CompleteTransfer,
        "call_cancel_consult" => CallOp::CancelConsult,
        "call_conference" => CallOp::Conference,
        other => {
            return Err(error(
                "unknown_type",
                format!("unknown message type {other:?}"),
            ))
        }
    };
    // The new state reaches every socket of the agent as a `call_state` push.
    match voice.control(agent.id, contact, op).await {
        Ok(_) => Ok(None),
        Err(message) => Err(error("call_refused", message)),
    }
}
