//! The events the benchmarks write and apply, shared by `generate_log.rs` and
//! `criterion/hot.rs` (each includes this file as a module): clients `bench-N` whose secret is
//! their own id, and their opaque `client_credentials` tokens, token `n` having the id
//! `Uuid::from_u128(n)` and the value `n` in decimal (what `bench/load/introspect_many.lua`
//! presents).

use domain::event::{AccessTokenIssued, ClientRegistered, Event, RevocationReason, TokenRevoked};
use domain::values::{ClientId, GrantType, HashKey, Scope, TokenFormat};
use std::sync::LazyLock;

static SCOPES: LazyLock<Vec<Scope>> =
    LazyLock::new(|| Scope::parse_list("read write").expect("two valid scopes"));

/// Client `bench-{n}`.
pub fn client_id(n: u64) -> ClientId {
    ClientId::parse(&format!("bench-{n}")).expect("a valid client id")
}

/// Its registration: confidential, `client_credentials`, opaque tokens, secret = its id.
pub fn registered(id: &ClientId) -> Event {
    Event::ClientRegistered(ClientRegistered {
        client_id: id.clone(),
        name: id.to_string(),
        public: false,
        secret_hash: Some(HashKey::for_tests().hash(id.as_str())),
        redirect_uris: vec![],
        grant_types: vec![GrantType::ClientCredentials],
        scopes: SCOPES.clone(),
        token_format: TokenFormat::Opaque,
        access_token_ttl_secs: 3600,
        can_introspect: false,
        redirect_uri_matching: Default::default(),
        allow_plain_pkce: false,
        signing_alg: None,
        auth_method: None,
        jwks: None,
        trusted_issuers: vec![],
        admin: Some(false),
        oidc: Default::default(),
        dynamic: None,
        imported: None,
        extensions: Default::default(),
    })
}

/// Token `n` of client `id`, valid until 2027-01-15.
pub fn issued(id: &ClientId, n: u128) -> Event {
    Event::AccessTokenIssued(AccessTokenIssued {
        jti: uuid::Uuid::from_u128(n),
        token_hash: Some(HashKey::for_tests().hash(&n.to_string())),
        client_id: id.clone(),
        subject: id.to_string(),
        scopes: SCOPES.clone(),
        grant_type: GrantType::ClientCredentials,
        format: TokenFormat::Opaque,
        issued_at: 1_800_000_000,
        expires_at: 1_800_003_600,
        family_id: None,
        kid: None,
        terms: Default::default(),
    })
}

/// Client `id` revokes its token `n`.
pub fn revoked(id: &ClientId, n: u128) -> Event {
    Event::TokenRevoked(TokenRevoked {
        jti: uuid::Uuid::from_u128(n),
        client_id: id.clone(),
        reason: RevocationReason::RevokedByClient,
        family_id: None,
    })
}
