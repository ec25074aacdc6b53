//! authledger: an event-sourced OAuth 2.0 authorization server.
//!
//! See `docs/architecture.md` for the map: `http` parses protocol input and builds commands,
//! `actors` decide them with the pure `domain` and append to the `store`, whose writer feeds
//! the `projections` before any reply is sent.
//!
//! With only the `resource-server` feature, this library is [`resource`] (an actix-web
//! extractor that protects an API with authledger tokens) and what it needs, [`bearer`] and
//! [`jose`]: no store, actors or server endpoints.

#[cfg(feature = "server")]
pub mod actors;
#[cfg(feature = "server")]
pub mod app;
pub mod bearer;
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
pub mod dpop;
#[cfg(feature = "server")]
pub mod engine;
#[cfg(feature = "server")]
pub mod fsutil;
#[cfg(feature = "server")]
pub mod http;
pub mod jose;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod passwords;
#[cfg(feature = "resource-server")]
pub mod resource;
#[cfg(feature = "server")]
pub mod retention;
#[cfg(feature = "server")]
pub mod saml;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod signed_checkpoint;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod telemetry;
#[cfg(feature = "server")]
pub mod timetravel;
#[cfg(feature = "server")]
pub mod tls;
