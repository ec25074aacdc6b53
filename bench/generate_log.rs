//! Writes a synthetic log into a fresh data directory for replay measurements: many clients,
//! each registered, then a mix of issued and revoked tokens.
//!
//! `authledger init --data-dir DATA_DIR` first (a log with events but no signing keys reads
//! as one written before keys were events, and the server refuses it), then
//! `cargo run --release --example generate_log -- DATA_DIR EVENTS [CLIENTS]`, then
//! `authledger replay --data-dir DATA_DIR`. Client `bench-N` has the secret `bench-N`, set
//! through events directly (the CLI would ask for 32 characters).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark tool")]

#[path = "fixtures.rs"]
mod fixtures;

use authledger::store::{EventStore, Log, NewEvent};
use domain::event::{client_stream, token_stream};
use domain::values::ClientId;
use domain::Metadata;
use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: generate_log DATA_DIR EVENTS [CLIENTS]"),
    );
    let events: u64 = args.next().expect("EVENTS").parse().unwrap();
    let clients: u64 = args.next().map(|c| c.parse().unwrap()).unwrap_or(1000);
    std::fs::create_dir_all(&dir).unwrap();
    // The signing keys and the admin client come from `authledger init`, run before.
    let store = Log::embedded(&dir.join(authledger::store::segments::LOG_DIR)).unwrap();
    let started = Instant::now();
    let meta = Metadata::system();
    let mut written = 0u64;
    let ids: Vec<ClientId> = (0..clients).map(fixtures::client_id).collect();
    for id in &ids {
        let e = fixtures::registered(id);
        store
            .append(
                &client_stream(id),
                0,
                vec![NewEvent {
                    event: e,
                    metadata: meta.clone(),
                }],
            )
            .wait()
            .unwrap();
        written += 1;
    }
    let mut versions = vec![0u64; ids.len()];
    let mut n: u128 = 0;
    // Appends of 500 events each, spread over clients in turn; every tenth event revokes.
    while written < events {
        let c = (n as usize / 500) % ids.len();
        let id = &ids[c];
        let batch: Vec<NewEvent> = (0..500)
            .map(|i| {
                n += 1;
                let event = if i % 10 == 9 {
                    fixtures::revoked(id, n - 1)
                } else {
                    fixtures::issued(id, n)
                };
                NewEvent {
                    event,
                    metadata: meta.clone(),
                }
            })
            .collect();
        let len = batch.len() as u64;
        store
            .append(&token_stream(id), versions[c], batch)
            .wait()
            .unwrap();
        versions[c] += len;
        written += len;
    }
    store.close();
    println!(
        "wrote {written} events for {clients} clients in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
