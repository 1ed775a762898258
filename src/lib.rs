//! Contact Hub: one contact center for phone, email, fax and web chat.
//!
//! `src/` holds the hub: domain types, the customer archive, the store, auth, the HTTP API and
//! sockets, and the wiring that serves them. Channel protocols live in `channels/<name>/`.

pub mod acd;
pub mod agents;
pub mod api;
pub mod archive;
pub mod auth;
pub mod chat;
pub mod config;
pub mod demo;
pub mod domain;
pub mod email;
pub mod error;
pub mod https;
pub mod hub;
pub mod identity;
pub mod import;
pub mod ivr;
pub mod metrics;
pub mod push;
pub mod server;
pub mod store;
pub mod voice;
pub mod web;
pub mod ws;
