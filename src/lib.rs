//! authledger: an event-sourced OAuth 2.0 authorization server.
//!
//! See `docs/architecture.md` for the map: `http` parses protocol input and builds commands,
//! `actors` decide them with the pure `domain` and append to the `store`, whose writer feeds
//! the `projections` before any reply is sent.

pub mod actors;
pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod fsutil;
pub mod http;
pub mod jose;
pub mod keys;
pub mod passwords;
pub mod service;
pub mod store;
pub mod telemetry;
