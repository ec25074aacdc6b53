//! The hot pieces of token issuance and of replay, each alone: `cargo bench --bench hot`.
//!
//! - `decide`: a client_credentials command against a client's state;
//! - `apply`: folding client events into state, and the rows the token index and the audit
//!   postings derive from an event;
//! - `event`: encoding a recorded event as stored, and decoding it back;
//! - `sign`: one access token per algorithm, as the server signs it;
//! - `replay`: 10,000 mixed events applied to fresh in-memory projections.
//!
//! The figures of `bench/compare.sh` (whole requests) and `bench/replay.sh` (whole logs) are
//! what users see; these tell which piece moved when those do.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark")]

#[path = "../fixtures.rs"]
mod fixtures;

use authledger::keys::{AccessTokenClaims, Keyring};
use authledger::store::log::decode;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use domain::client::{evolve, ClientState};
use domain::event::{client_stream, token_stream, Event, GENESIS_HASH};
use domain::grant::NewAccessToken;
use domain::token::{decide, IssueClientCredentialsToken, TokenCommand};
use domain::values::{HashKey, Scope, SigningAlgorithm};
use domain::{Metadata, RecordedEvent};
use fixtures::{client_id, issued, registered, revoked};
use projections::ReadModels;
use std::hint::black_box;
use uuid::Uuid;

fn recorded(position: u64, event: Event) -> RecordedEvent {
    let stream = match &event {
        Event::ClientRegistered(e) => client_stream(&e.client_id),
        other => token_stream(other.client_id().unwrap()),
    };
    RecordedEvent {
        position,
        stream,
        version: position,
        id: Uuid::now_v7(),
        recorded_at: time::OffsetDateTime::from_unix_timestamp(
            1_800_000_000 + position as i64 / 100,
        )
        .unwrap(),
        schema_version: event.schema_version(),
        event,
        metadata: Metadata::system(),
        prev_hash: GENESIS_HASH.into(),
    }
}

/// `count` events over 100 clients: their registrations, then tokens, every tenth event
/// revoking the token just before it (as `generate_log.rs` writes them, but interleaved).
fn mixed_log(count: u64) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = (0..100)
        .map(|c| recorded(c + 1, registered(&client_id(c))))
        .collect();
    for p in 101..=count {
        let n = u128::from(p);
        let event = if p % 10 == 0 {
            revoked(&client_id((p - 1) % 100), n - 1)
        } else {
            issued(&client_id(p % 100), n)
        };
        events.push(recorded(p, event));
    }
    events
}

fn decide_and_apply(c: &mut Criterion) {
    let mut state = ClientState::default();
    evolve(&mut state, &registered(&client_id(1)));
    let command = TokenCommand::IssueClientCredentials(IssueClientCredentialsToken {
        requested_scopes: Some(Scope::parse_list("read").unwrap()),
        token: NewAccessToken {
            jti: Uuid::now_v7(),
            opaque_token_hash: HashKey::for_tests().hash("opaque"),
            kid: None,
            dpop: None,
            resources: Vec::new(),
        },
        now: 1_800_000_000,
    });
    c.bench_function("decide/client_credentials", |b| {
        b.iter(|| decide(black_box(&state), black_box(&command)).unwrap())
    });

    let history: Vec<Event> = (0..10).map(|_| registered(&client_id(1))).collect();
    c.bench_function("apply/client_state_fold_10", |b| {
        b.iter(|| {
            let mut s = ClientState::default();
            for e in &history {
                evolve(&mut s, black_box(e));
            }
            s
        })
    });
    let token = recorded(200, issued(&client_id(1), 200));
    c.bench_function("apply/token_index_rows", |b| {
        b.iter(|| {
            let mut rows = Vec::new();
            projections::token_index::changes(black_box(&token), &mut rows);
            rows
        })
    });
    c.bench_function("apply/audit_postings", |b| {
        b.iter(|| projections::audit_log::postings(&[black_box(&token)], None))
    });
}

fn encode_decode(c: &mut Criterion) {
    let event = recorded(200, issued(&client_id(1), 200));
    let stored = serde_json::to_vec(&event).unwrap();
    let mut group = c.benchmark_group("event");
    group.throughput(Throughput::Bytes(stored.len() as u64));
    group.bench_function("encode", |b| {
        b.iter(|| serde_json::to_vec(black_box(&event)).unwrap())
    });
    group.bench_function("decode", |b| b.iter(|| decode(black_box(&stored)).unwrap()));
    group.finish();
}

fn sign(c: &mut Criterion) {
    let ring = Keyring::generated(SigningAlgorithm::ES256).unwrap();
    let claims = AccessTokenClaims {
        iss: "http://127.0.0.1:8080".into(),
        sub: "bench-1".into(),
        aud: "http://127.0.0.1:8080".into(),
        client_id: "bench-1".into(),
        scope: "read".into(),
        iat: 1_800_000_000,
        exp: 1_800_003_600,
        jti: Uuid::now_v7().to_string(),
        act: None,
        cnf: None,
    };
    let mut group = c.benchmark_group("sign");
    for alg in SigningAlgorithm::ALL {
        let kid = ring.signing_kid(alg, 1).unwrap();
        group.bench_function(alg.as_str(), |b| {
            b.iter(|| ring.sign(&kid, black_box(&claims)).unwrap())
        });
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let log = mixed_log(10_000);
    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(log.len() as u64));
    group.sample_size(10);
    group.bench_function("projections_10k_events", |b| {
        b.iter_batched(
            || ReadModels::open(&projections::NoCheckpoints).unwrap(),
            |models| {
                for chunk in log.chunks(512) {
                    models.apply(chunk).unwrap();
                }
                models
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// A hash at rest of a 43-character token (what `/token` computes once per opaque token and
/// `/introspect` once per lookup): the bare SHA-256 of old events against the keyed HMAC.
fn hash_at_rest(c: &mut Criterion) {
    let token = "SsEVYATWy94PfUIJZTIsSfxTasYrp_PPq_ot__ZEwQo";
    let key = HashKey::new(&[7; 32]);
    let mut group = c.benchmark_group("hash_at_rest");
    group.bench_function("sha256", |b| {
        b.iter(|| domain::values::SecretHash::unkeyed(black_box(token)))
    });
    group.bench_function("hmac_sha256", |b| b.iter(|| key.hash(black_box(token))));
    group.finish();
}

criterion_group!(
    benches,
    decide_and_apply,
    encode_decode,
    sign,
    replay,
    hash_at_rest
);
criterion_main!(benches);
