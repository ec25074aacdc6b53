//! Actors: one `ClientActor` per client, started on first use by the `Registry`.

pub mod client;
pub mod registry;

pub use client::{
    ClientActor, CommandError, CommandResult, ExecuteClientCommand, ExecuteTokenCommand,
};
pub use registry::Registry;
