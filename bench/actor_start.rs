//! How long a client's actor takes to start, on a client with a long history:
//! `actor_start DATA_DIR CLIENT_ID [ROUNDS=101]`. Prints the first (cold) start and the median
//! and slowest of the rest, with the length of the client's streams.
//!
//! `bench/replay.sh` runs it on a log where one client holds a million events. A start reads
//! the latest snapshot of the configuration, folds the configuration events after it, and
//! reads the head of the token stream: it never folds token events (ADR 0004), so it should not
//! grow with them.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark tool")]

use authledger::actors::client::ClientActor;
use authledger::engine::Engine;
use authledger::store::EventStore;
use domain::event::{client_stream, token_stream};
use domain::values::ClientId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(dir), Some(id)) = (args.first(), args.get(1)) else {
        panic!("usage: actor_start DATA_DIR CLIENT_ID [ROUNDS]");
    };
    let rounds: usize = args.get(2).map_or(101, |r| r.parse().unwrap());
    let engine = Engine::open_stale(&PathBuf::from(dir), Duration::from_secs(60)).unwrap();
    let client = ClientId::parse(id).unwrap();
    let store: Arc<dyn EventStore> = engine.store.clone();
    let config_events = store.stream_version(&client_stream(&client)).unwrap();
    let token_events = store.stream_version(&token_stream(&client)).unwrap();
    let mut times: Vec<Duration> = (0..rounds.max(2))
        .map(|_| {
            let started = Instant::now();
            let actor = ClientActor::restore(
                client.clone(),
                store.clone(),
                engine.models.clone(),
                Duration::from_secs(60),
            )
            .unwrap();
            let took = started.elapsed();
            drop(actor);
            took
        })
        .collect();
    let cold = times.remove(0);
    times.sort();
    println!(
        "actor_start client={id} config_events={config_events} token_events={token_events} cold_ms={:.3} median_ms={:.3} max_ms={:.3}",
        cold.as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}
