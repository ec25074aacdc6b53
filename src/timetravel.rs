//! Time travel: the read models as they were at a moment, built into a view of their own.
//!
//! `replay --as-of T` applies every event recorded at or before `T` into a fresh set of
//! projections, saved as checkpoints in `<data dir>/views/as-of-<T in ns>/` apart from the
//! live ones, with a description of what it holds. Nothing writes to a view after it is built: `client show --as-of`
//! and `audit query --as-of` read from it (building it first when it is missing), and
//! deleting the `views` directory loses nothing but time.

use crate::engine::{load_models, rebuild_into, save_models, Engine, EngineError};
use projections::ReadModels;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Directory of the views inside the data directory.
pub const VIEWS_DIR: &str = "views";
/// The view's description, written last: a view without one was never finished.
const META: &str = "view.json";

/// What a view holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewInfo {
    /// The moment it shows (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub as_of: time::OffsetDateTime,
    /// The last position it applied (0: the log was empty then).
    pub position: u64,
    /// Events applied.
    pub events: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// An opened, complete view.
pub struct View {
    /// The projections as of the moment.
    pub models: ReadModels,
    /// What it holds.
    pub info: ViewInfo,
}

fn view_path(engine: &Engine, as_of: time::OffsetDateTime) -> PathBuf {
    engine
        .data_dir
        .join(VIEWS_DIR)
        .join(format!("as-of-{}", as_of.unix_timestamp_nanos()))
}

/// Opens the view of `as_of`, building it first if it does not exist or was never finished.
/// A moment still in the future is refused: its view would change as events arrive.
pub fn open_or_build(
    engine: &Engine,
    as_of: time::OffsetDateTime,
    progress: impl FnMut(u64),
) -> Result<View, EngineError> {
    // One view at a time: two builds of the same view would write the same files.
    static OPENING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    if as_of > engine.clock.now() {
        return Err(EngineError::Invalid(
            "that moment has not happened yet; pick a time in the past".into(),
        ));
    }
    let path = view_path(engine, as_of);
    if let Ok(bytes) = std::fs::read(path.join(META)) {
        if let Ok(info) = serde_json::from_slice::<ViewInfo>(&bytes) {
            return Ok(View {
                models: load_models(&path)?,
                info,
            });
        }
    }
    // Missing or unfinished (its description is written last): build from scratch.
    let models = ReadModels::open(&projections::NoCheckpoints)?;
    let (events, position) = rebuild_into(&engine.store, &models, Some(as_of), progress)?;
    let info = ViewInfo {
        as_of,
        position,
        events,
        path: path.clone(),
    };
    save_models(&models, &path)?;
    let bytes = serde_json::to_vec(&info).map_err(|e| EngineError::Invalid(e.to_string()))?;
    crate::store::segments::write_atomically(&path.join(META), &bytes)
        .map_err(|e| EngineError::Invalid(format!("saving the view: {e}")))?;
    Ok(View { models, info })
}
