//! The hot pieces of token issuance and of replay, each alone: `cargo bench --bench hot`.
//!
//! - `decide`: a client_credentials command against a client's state;
//! - `apply`: folding client events into state, and the rows the token index and the audit
//!   postings derive from an event;
//! - `event`: encoding a recorded event as stored, and decoding it back;
//! - `sign`: one access token per algorithm, as the server signs it;
//! - `replay`: 10,000 mixed events applied to fresh projections in a temporary sled database.
//!
//! The figures of `bench/compare.sh` (whole requests) and `bench/replay.sh` (whole logs) are
//! what users see; these tell which piece moved when those do.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark")]

use authledger::keys::{AccessTokenClaims, Keyring};
use authledger::store::sled_store::decode;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use domain::client::{evolve, ClientState};
use domain::event::{
    client_stream, token_stream, AccessTokenIssued, ClientRegistered, Event, RevocationReason,
    TokenRevoked, GENESIS_HASH,
};
use domain::grant::NewAccessToken;
use domain::token::{decide, IssueClientCredentialsToken, TokenCommand};
use domain::values::{ClientId, GrantType, Scope, SecretHash, SigningAlgorithm, TokenFormat};
use domain::{Metadata, RecordedEvent};
use projections::ReadModels;
use std::hint::black_box;
use uuid::Uuid;

fn client_id(n: u64) -> ClientId {
    ClientId::parse(&format!("bench-{n}")).unwrap()
}

fn registered(n: u64) -> Event {
    Event::ClientRegistered(ClientRegistered {
        client_id: client_id(n),
        name: format!("bench {n}"),
        public: false,
        secret_hash: Some(SecretHash::of("bench-secret")),
        redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        scopes: Scope::parse_list("read write").unwrap(),
        token_format: TokenFormat::Opaque,
        access_token_ttl_secs: 3600,
        can_introspect: false,
        redirect_uri_matching: Default::default(),
        allow_plain_pkce: false,
        signing_alg: None,
        auth_method: None,
        jwks: None,
        trusted_issuers: vec![],
    })
}

fn issued(client: u64, jti: Uuid) -> Event {
    Event::AccessTokenIssued(AccessTokenIssued {
        jti,
        token_hash: Some(SecretHash::of(&jti.to_string())),
        client_id: client_id(client),
        subject: format!("bench-{client}"),
        scopes: Scope::parse_list("read").unwrap(),
        grant_type: GrantType::ClientCredentials,
        format: TokenFormat::Opaque,
        issued_at: 1_800_000_000,
        expires_at: 1_800_003_600,
        family_id: None,
        kid: None,
    })
}

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

/// `count` events over 100 clients: their registrations, then 90% tokens and 10% revocations.
fn mixed_log(count: u64) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = (0..100).map(|c| recorded(c + 1, registered(c))).collect();
    let mut issued_jtis = Vec::new();
    for p in 101..=count {
        let client = p % 100;
        let event = if p % 10 == 0 && !issued_jtis.is_empty() {
            Event::TokenRevoked(TokenRevoked {
                jti: issued_jtis.swap_remove(0),
                client_id: client_id(client),
                reason: RevocationReason::RevokedByClient,
                family_id: None,
            })
        } else {
            let jti = Uuid::now_v7();
            issued_jtis.push(jti);
            issued(client, jti)
        };
        events.push(recorded(p, event));
    }
    events
}

fn decide_and_apply(c: &mut Criterion) {
    let mut state = ClientState::default();
    evolve(&mut state, &registered(1));
    let command = TokenCommand::IssueClientCredentials(IssueClientCredentialsToken {
        requested_scopes: Some(Scope::parse_list("read").unwrap()),
        token: NewAccessToken {
            jti: Uuid::now_v7(),
            opaque_token_hash: SecretHash::of("opaque"),
            kid: None,
        },
        now: 1_800_000_000,
    });
    c.bench_function("decide/client_credentials", |b| {
        b.iter(|| decide(black_box(&state), black_box(&command)).unwrap())
    });

    let history: Vec<Event> = (0..10).map(|_| registered(1)).collect();
    c.bench_function("apply/client_state_fold_10", |b| {
        b.iter(|| {
            let mut s = ClientState::default();
            for e in &history {
                evolve(&mut s, black_box(e));
            }
            s
        })
    });
    let token = recorded(200, issued(1, Uuid::now_v7()));
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
    let event = recorded(200, issued(1, Uuid::now_v7()));
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
            || {
                let db = sled::Config::new().temporary(true).open().unwrap();
                let models = ReadModels::open(&db).unwrap();
                (db, models)
            },
            |(db, models)| {
                for chunk in log.chunks(512) {
                    models.apply(chunk).unwrap();
                }
                (db, models)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, decide_and_apply, encode_decode, sign, replay);
criterion_main!(benches);
