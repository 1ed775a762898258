//! The ACD: one routing engine for every channel. Sans-IO: every entry point takes `now` (unix
//! ms) and returns nothing but queued outputs; no clock, no spawning, no RNG inside.
//!
//! - [`types`]: queues, skills, overflow steps, contacts and agents as the engine sees them.
//! - [`rules`]: routing-rules/*.toml → which queue, priority, skills and overflow a contact gets.
//! - [`stats`]: the metric definitions of ARCHITECTURE §7, computed from engine events.
//! - [`erlang`]: Erlang C, to check the engine against theory.

pub mod engine;
pub mod erlang;
pub mod rules;
pub mod stats;
pub mod types;
