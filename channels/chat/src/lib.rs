//! Web chat channel: the session protocol (sans-IO) and its WebSocket driver.
//!
//! - [`frames`]: the socket's JSON frames, checked (docs/chat.md).
//! - [`conversation`]: one conversation's protocol core — sequence numbers, store-before-ack,
//!   resume, typing, read receipts, idle and abandon timers — with time as an input.
//! - [`limits`]: token-bucket rate limits.
//! - [`engine`]: the task owning every live conversation and the writer that batches stores;
//!   the hub plugs in through [`engine::ChatBackend`] and [`engine::ChatHandle`].
//! - [`ws`]: one customer socket.

pub mod conversation;
pub mod engine;
pub mod frames;
pub mod limits;
pub mod ws;

pub use conversation::{Agent, AgentEvent, Message, NewMessage, Settings, Snapshot};
pub use engine::{
    start, AgentInput, BackendError, ChatBackend, ChatHandle, ChatNotice, EngineConfig,
    EngineStats, Stopped,
};
pub use frames::{
    AttachmentView, ConversationState, EndReason, FrameError, From, Limits, MessageView,
    StartRequest,
};
