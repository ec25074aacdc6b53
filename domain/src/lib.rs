//! authledger's domain: events, commands, aggregates and the pure decisions between them.
//!
//! Nothing here does IO, reads a clock or draws a random number: time and fresh ids arrive in
//! commands, so every decision can be replayed and tested as given / when / then.
#![warn(missing_docs)]

pub mod assertion;
pub mod client;
pub mod device;
pub mod dpop;
pub mod event;
pub mod exchange;
pub mod grant;
pub mod keys;
pub mod oauth;
pub mod par;
pub mod registration;
pub mod saml;
pub mod session;
pub mod token;
pub mod user;
pub mod values;

#[cfg(test)]
pub(crate) mod testing;

pub use event::{Cause, Event, Metadata, RecordedEvent};
