//! The chat socket's JSON frames (docs/chat.md): what a customer's client sends, checked
//! before anything acts on it, and what the hub sends back.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest `client_id` a client may give a message.
pub const MAX_CLIENT_ID: usize = 64;

/// Size rules for what customers send.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Characters (not bytes) in one message.
    pub max_message_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_chars: 2000,
        }
    }
}

/// A checked frame from a customer's client.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Start(StartRequest),
    Resume { token: String, last_seq: u64 },
    Message { client_id: String, text: String },
    Typing { active: bool },
    Read { seq: u64 },
    End,
    Ping,
}

/// The pre-chat form. Contact fields are checked for shape here; the hub normalizes them
/// (E.164, lower-cased email) and may still refuse them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct StartRequest {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub topic: Option<String>,
    pub language: Option<String>,
    /// The page the customer was on (shown to the agent).
    pub page: Option<String>,
    pub message: Option<OutgoingText>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct OutgoingText {
    pub client_id: String,
    pub text: String,
}

/// Why a frame was refused: the `code` and `message` of the error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError {
    pub code: &'static str,
    pub message: String,
    /// The message concerned, so the client knows it was not stored.
    pub client_id: Option<String>,
}

impl FrameError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        FrameError {
            code,
            message: message.into(),
            client_id: None,
        }
    }

    pub fn for_message(mut self, client_id: &str) -> Self {
        self.client_id = Some(client_id.to_string());
        self
    }

    pub fn frame(&self) -> ServerFrame {
        ServerFrame::Error {
            code: self.code,
            message: self.message.clone(),
            client_id: self.client_id.clone(),
        }
    }
}

/// The languages the widget and the system messages speak.
pub const LANGUAGES: &[&str] = &["zh-CN", "zh-TW", "en"];

/// Maps a browser language tag to one we speak (`zh-HK` → `zh-TW`, `en-GB` → `en`).
pub fn normalize_language(tag: &str) -> &'static str {
    let t = tag.trim().to_ascii_lowercase();
    if t.starts_with("zh") {
        if t.contains("tw") || t.contains("hk") || t.contains("mo") || t.contains("hant") {
            "zh-TW"
        } else {
            "zh-CN"
        }
    } else if t.is_empty() {
        "zh-CN"
    } else {
        "en"
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Result<Option<&'a str>, FrameError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(FrameError::new(
            "invalid_message",
            format!("{key} must be a string"),
        )),
    }
}

fn bounded(
    v: &Value,
    key: &str,
    max_chars: usize,
    code: &'static str,
) -> Result<Option<String>, FrameError> {
    let Some(s) = str_field(v, key)? else {
        return Ok(None);
    };
    let s = s.trim();
    if s.chars().count() > max_chars {
        return Err(FrameError::new(
            code,
            format!("{key}: at most {max_chars} characters"),
        ));
    }
    Ok((!s.is_empty()).then(|| s.to_string()))
}

fn client_id(v: &Value) -> Result<String, FrameError> {
    match str_field(v, "client_id")? {
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_CLIENT_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) =>
        {
            Ok(id.to_string())
        }
        _ => Err(FrameError::new(
            "invalid_message",
            format!("client_id: 1 to {MAX_CLIENT_ID} characters of letters, digits, - _ ."),
        )),
    }
}

/// Text of a message: trimmed of surrounding whitespace, not empty, within the limit. Control
/// characters other than newlines and tabs are removed (they break displays and logs).
fn message_text(v: &Value, limits: &Limits, id: &str) -> Result<String, FrameError> {
    let raw = match v.get("text") {
        Some(Value::String(s)) => s,
        _ => {
            return Err(FrameError::new("invalid_message", "text must be a string").for_message(id))
        }
    };
    let text: String = raw
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(FrameError::new("invalid_message", "text is empty").for_message(id));
    }
    if text.chars().count() > limits.max_message_chars {
        return Err(FrameError::new(
            "too_long",
            format!(
                "a message is at most {} characters",
                limits.max_message_chars
            ),
        )
        .for_message(id));
    }
    Ok(text)
}

fn u64_field(v: &Value, key: &str) -> Result<u64, FrameError> {
    v.get(key).and_then(Value::as_u64).ok_or_else(|| {
        FrameError::new(
            "invalid_message",
            format!("{key} (a non-negative number) is required"),
        )
    })
}

/// Parses and checks one text frame.
pub fn parse_client_frame(text: &str, limits: &Limits) -> Result<ClientFrame, FrameError> {
    let v: Value = serde_json::from_str(text)
        .map_err(|e| FrameError::new("invalid_json", format!("not JSON: {e}")))?;
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return Err(FrameError::new(
            "invalid_message",
            "a frame is a JSON object with a string \"type\"",
        ));
    };
    match kind {
        "start" => {
            let message = match v.get("message") {
                None | Some(Value::Null) => None,
                Some(m) if m.is_object() => {
                    let id = client_id(m)?;
                    let text = message_text(m, limits, &id)?;
                    Some(OutgoingText {
                        client_id: id,
                        text,
                    })
                }
                Some(_) => {
                    return Err(FrameError::new(
                        "invalid_message",
                        "message must be an object {client_id, text}",
                    ))
                }
            };
            let topic = bounded(&v, "topic", 40, "invalid_field")?;
            if let Some(t) = &topic {
                if !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                {
                    return Err(FrameError::new(
                        "invalid_field",
                        "topic: letters, digits, _ and - only",
                    ));
                }
            }
            Ok(ClientFrame::Start(StartRequest {
                name: bounded(&v, "name", 100, "invalid_field")?,
                email: bounded(&v, "email", 254, "invalid_field")?,
                phone: bounded(&v, "phone", 40, "invalid_field")?,
                topic,
                language: str_field(&v, "language")?.map(|l| normalize_language(l).to_string()),
                page: bounded(&v, "page", 500, "invalid_field")?,
                message,
            }))
        }
        "resume" => {
            let token = match str_field(&v, "token")? {
                Some(t) if !t.is_empty() && t.len() <= 128 => t.to_string(),
                _ => return Err(FrameError::new("invalid_message", "token is required")),
            };
            Ok(ClientFrame::Resume {
                token,
                last_seq: v.get("last_seq").and_then(Value::as_u64).unwrap_or(0),
            })
        }
        "message" => {
            let id = client_id(&v)?;
            let text = message_text(&v, limits, &id)?;
            Ok(ClientFrame::Message {
                client_id: id,
                text,
            })
        }
        "typing" => Ok(ClientFrame::Typing {
            active: v.get("active").and_then(Value::as_bool).unwrap_or(false),
        }),
        "read" => Ok(ClientFrame::Read {
            seq: u64_field(&v, "seq")?,
        }),
        "end" => Ok(ClientFrame::End),
        "ping" => Ok(ClientFrame::Ping),
        other => Err(FrameError::new(
            "unknown_type",
            format!(
                "unknown message type {:?}",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum From {
    Customer,
    Agent,
    System,
    /// An agent's internal note: stored with the conversation, never shown to the customer.
    Note,
}

impl From {
    pub fn as_str(self) -> &'static str {
        match self {
            From::Customer => "customer",
            From::Agent => "agent",
            From::System => "system",
            From::Note => "note",
        }
    }

    pub fn parse(s: &str) -> Option<From> {
        match s {
            "customer" => Some(From::Customer),
            "agent" => Some(From::Agent),
            "system" => Some(From::System),
            "note" => Some(From::Note),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentView {
    pub id: i64,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    /// Where the customer's client downloads it (the hub fills this in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A stored message as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageView {
    pub seq: u64,
    pub from: From,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub text: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentView>,
    /// The agent who wrote an agent message or note.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationState {
    Queued,
    Connected,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Customer,
    Agent,
    Idle,
    /// The customer left while waiting (no socket for too long).
    Abandoned,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Customer => "customer",
            EndReason::Agent => "agent",
            EndReason::Idle => "idle",
            EndReason::Abandoned => "abandoned",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentInfo {
    pub name: String,
}

/// What the hub sends to a customer's client.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Started {
        conversation_id: i64,
        token: String,
        state: ConversationState,
        agent: Option<AgentInfo>,
    },
    Resumed {
        conversation_id: i64,
        state: ConversationState,
        agent: Option<AgentInfo>,
    },
    Message(MessageView),
    Ack {
        client_id: String,
        seq: u64,
        at: String,
    },
    Queue {
        position: usize,
        expected_wait_secs: i64,
    },
    Typing {
        active: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    Read {
        seq: u64,
    },
    Ended {
        reason: EndReason,
    },
    Error {
        code: &'static str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    Heartbeat {
        server_time: String,
    },
    Pong,
}

impl ServerFrame {
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail (no maps with non-string keys, no custom impls).
        serde_json::to_string(self).unwrap_or_else(|_| "{\"type\":\"error\"}".into())
    }
}

/// Unix milliseconds → RFC 3339 in UTC with milliseconds, the hub's time format.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ClientFrame, FrameError> {
        parse_client_frame(s, &Limits::default())
    }

    #[test]
    fn messages_are_checked() {
        assert_eq!(
            parse(r#"{"type":"message","client_id":"m-1","text":"  你好 \u0007 "}"#).unwrap(),
            ClientFrame::Message {
                client_id: "m-1".into(),
                text: "你好".into()
            }
        );
        let e = parse(r#"{"type":"message","client_id":"m 1","text":"x"}"#).unwrap_err();
        assert_eq!(e.code, "invalid_message");
        let long = "字".repeat(2001);
        let e = parse(&format!(
            r#"{{"type":"message","client_id":"m2","text":"{long}"}}"#
        ))
        .unwrap_err();
        assert_eq!((e.code, e.client_id.as_deref()), ("too_long", Some("m2")));
        // 2000 Chinese characters are 6000 bytes but within the limit.
        let ok = "字".repeat(2000);
        assert!(parse(&format!(
            r#"{{"type":"message","client_id":"m3","text":"{ok}"}}"#
        ))
        .is_ok());
        let e = parse(r#"{"type":"message","client_id":"m4","text":"   "}"#).unwrap_err();
        assert_eq!(e.code, "invalid_message");
    }

    #[test]
    fn bad_frames_get_codes() {
        assert_eq!(parse("{").unwrap_err().code, "invalid_json");
        assert_eq!(parse("[1]").unwrap_err().code, "invalid_message");
        assert_eq!(
            parse(r#"{"type":"launch"}"#).unwrap_err().code,
            "unknown_type"
        );
        assert_eq!(
            parse(r#"{"type":"read"}"#).unwrap_err().code,
            "invalid_message"
        );
        assert_eq!(
            parse(r#"{"type":"start","topic":"bill ing"}"#)
                .unwrap_err()
                .code,
            "invalid_field"
        );
        assert_eq!(
            parse(r#"{"type":"start","name":5}"#).unwrap_err().code,
            "invalid_message"
        );
    }

    #[test]
    fn start_is_read_with_its_first_message() {
        let f = parse(
            r#"{"type":"start","name":" 王小明 ","email":"W@x.cn","language":"zh-hk","topic":"billing",
                "message":{"client_id":"a","text":"发票"}}"#,
        )
        .unwrap();
        let ClientFrame::Start(s) = f else {
            panic!("not a start: {f:?}")
        };
        assert_eq!(s.name.as_deref(), Some("王小明"));
        assert_eq!(s.language.as_deref(), Some("zh-TW"));
        assert_eq!(s.message.unwrap().text, "发票");
    }

    #[test]
    fn languages_map_to_ours() {
        assert_eq!(normalize_language("zh-CN"), "zh-CN");
        assert_eq!(normalize_language("zh-Hant-TW"), "zh-TW");
        assert_eq!(normalize_language("en-GB"), "en");
        assert_eq!(normalize_language("fr"), "en");
    }

    #[test]
    fn server_frames_serialize_with_their_type() {
        let f = ServerFrame::Ack {
            client_id: "m1".into(),
            seq: 3,
            at: rfc3339(0),
        };
        assert_eq!(
            f.to_json(),
            r#"{"type":"ack","client_id":"m1","seq":3,"at":"1970-01-01T00:00:00.000Z"}"#
        );
        assert_eq!(ServerFrame::Pong.to_json(), r#"{"type":"pong"}"#);
    }
}
