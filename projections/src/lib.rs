//! authledger's read models. Each projection is a pure function of recorded events plus its
//! sled storage and a checkpoint (the last global position it applied), so any of them can be
//! dropped and rebuilt from the log with the same result.
#![warn(missing_docs)]

pub mod audit_log;
pub mod client_directory;
mod storage;
pub mod token_index;

pub use audit_log::{AuditLog, AuditPage, AuditQuery, EventLookup};
pub use client_directory::{ClientDirectory, ClientView};
pub use storage::{ProjectionError, Write};
pub use token_index::{TokenIndex, TokenRecord, TokenView};

use domain::RecordedEvent;

/// Every local read model, applied together in global order.
pub struct ReadModels {
    /// Token hash / jti → token facts.
    pub tokens: TokenIndex,
    /// Client id → client configuration.
    pub clients: ClientDirectory,
    /// Indexes of the audit trail.
    pub audit: AuditLog,
}

impl ReadModels {
    /// Opens (or creates) every projection in `db`.
    pub fn open(db: &sled::Db) -> Result<Self, ProjectionError> {
        Ok(Self {
            tokens: TokenIndex::open(db)?,
            clients: ClientDirectory::open(db)?,
            audit: AuditLog::open(db)?,
        })
    }

    /// The lowest checkpoint of all projections: catching up starts after it.
    pub fn checkpoint(&self) -> Result<u64, ProjectionError> {
        Ok(self
            .tokens
            .checkpoint()?
            .min(self.clients.checkpoint()?)
            .min(self.audit.checkpoint()?))
    }

    /// Applies events in global order; each projection skips what it already applied.
    pub fn apply<E: AsRef<RecordedEvent>>(&self, events: &[E]) -> Result<(), ProjectionError> {
        self.tokens.apply(events)?;
        self.clients.apply(events)?;
        self.audit.apply(events)?;
        Ok(())
    }

    /// Deletes every projection's rows and checkpoint, ready for a rebuild.
    pub fn clear(&self) -> Result<(), ProjectionError> {
        self.tokens.clear()?;
        self.clients.clear()?;
        self.audit.clear()?;
        Ok(())
    }
}
