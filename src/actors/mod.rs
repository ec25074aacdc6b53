//! Actors: one `ClientActor` per client, started on first use by the `Registry`, and one
//! `UserActor` for every user.

pub mod client;
pub mod keys;
pub mod registry;
pub mod user;

pub use client::{
    ClientActor, CommandError, CommandResult, ExecuteClientCommand, ExecuteTokenCommand,
};
pub use keys::{ExecuteKeyRequest, KeyActor, KeyRequest};
pub use registry::Registry;
pub use user::{
    ChangeUserProfile, ExecuteRegistrationTokenCommand, ExecuteSessionCommand, ExecuteUserCommand,
    RecordUnknownLogin, UserActor,
};
