//! Token decisions, taken by a client's actor against its configuration (stream `tokens-<id>`).
//!
//! Token events live in a stream of their own so that restoring a client never folds them: the
//! decisions below need only the client's configuration and what the command carries.

use crate::assertion;
use crate::client::ClientState;
use crate::event::{Event, RevocationReason, TokenRevoked};
use crate::grant;
use crate::oauth::ErrorCode;
use crate::values::{ClientId, GrantType, Scope};
use uuid::Uuid;

/// Issue an access token to the client itself (RFC 6749 §4.4), after the caller authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueClientCredentialsToken {
    /// Scopes asked for; `None` means the client's default scopes.
    pub requested_scopes: Option<Vec<Scope>>,
    /// The new token's id, opaque-value hash and signing key.
    pub token: grant::NewAccessToken,
    /// Now, in seconds since the Unix epoch.
    pub now: i64,
}

/// What the token index knows of a token that a client asks to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownToken {
    /// Its id.
    pub jti: Uuid,
    /// The client it was issued to.
    pub client_id: ClientId,
    /// Already revoked (recorded, or in flight in the actor).
    pub revoked: bool,
    /// For a refresh token: its family, revoked with it.
    pub refresh_family: Option<Uuid>,
}

impl KnownToken {
    /// Brings the index's answer up to date with an event not yet in the index.
    pub fn observe(&mut self, event: &Event) {
        if let Event::TokenRevoked(r) = event {
            self.revoked |= r.jti == self.jti;
        }
    }
}

/// Revoke a token (RFC 7009); the index lookup arrives in the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeToken {
    /// The token, if the index knows it.
    pub token: Option<KnownToken>,
    /// Why.
    pub reason: RevocationReason,
}

/// Commands on a client's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenCommand {
    /// See [`IssueClientCredentialsToken`].
    IssueClientCredentials(IssueClientCredentialsToken),
    /// See [`RevokeToken`].
    Revoke(RevokeToken),
    /// See [`grant::IssueCode`].
    IssueCode(grant::IssueCode),
    /// See [`grant::IssueImplicit`].
    IssueImplicit(grant::IssueImplicit),
    /// See [`grant::RedeemCode`].
    RedeemCode(grant::RedeemCode),
    /// See [`grant::PasswordGrant`].
    Password(grant::PasswordGrant),
    /// See [`grant::RefreshGrant`].
    Refresh(grant::RefreshGrant),
    /// See [`grant::RevokeAuthorization`].
    RevokeAuthorization(grant::RevokeAuthorization),
    /// See [`assertion::AcceptAssertion`]: client authentication by `private_key_jwt`.
    AuthenticateByAssertion(assertion::AcceptAssertion),
    /// See [`assertion::JwtBearerGrant`].
    JwtBearer(assertion::JwtBearerGrant),
    /// The SAML 2.0 bearer assertion grant (RFC 7522).
    Saml2Bearer(crate::saml::SamlBearerGrant),
    /// Exchange a token (RFC 8693).
    ExchangeToken(crate::exchange::ExchangeToken),
    /// Start a device authorization (RFC 8628 §3.1).
    StartDevice(crate::device::StartDevice),
    /// A user's answer to a device's request (RFC 8628 §3.3).
    DecideDevice(crate::device::DecideDevice),
    /// A device polls for its tokens (RFC 8628 §3.4).
    PollDevice(crate::device::PollDevice),
    /// Record a pushed authorization request (RFC 9126).
    PushAuthorizationRequest(crate::par::PushRequest),
    /// Record a DPoP proof presented with a bound token at a protected resource (RFC 9449
    /// §7), refusing a replayed one.
    AcceptDpopProof(crate::dpop::DpopProof),
}

impl TokenCommand {
    /// Whether what the command records holds whatever else the client's token stream holds
    /// by the time it is written: a `client_credentials` token rests on the client's
    /// configuration alone. Such events may be appended at any version of the stream, so two
    /// nodes issuing them for one client never make each other decide again. Everything that
    /// spends or checks something single-use (codes, refresh tokens, assertion ids) or
    /// revokes must be appended at the version its decision saw.
    pub fn independent_of_stream(&self) -> bool {
        // A DPoP proof's jti is single-use: checked against the stream's version like a code.
        matches!(self, TokenCommand::IssueClientCredentials(c) if c.token.dpop.is_none())
    }

    /// The DPoP proof presented with the command, if any: the decision records it.
    pub fn dpop_proof(&self) -> Option<&crate::dpop::DpopProof> {
        match self {
            TokenCommand::AcceptDpopProof(p) => Some(p),
            TokenCommand::IssueClientCredentials(c) => c.token.dpop.as_ref(),
            other => other.grant_token().and_then(|t| t.dpop.as_ref()),
        }
    }

    /// The same, for the actor to fill in whether it was seen.
    pub fn dpop_proof_mut(&mut self) -> Option<&mut crate::dpop::DpopProof> {
        match self {
            TokenCommand::AcceptDpopProof(p) => Some(p),
            TokenCommand::IssueClientCredentials(c) => c.token.dpop.as_mut(),
            TokenCommand::RedeemCode(c) => c.token.dpop.as_mut(),
            TokenCommand::Password(c) => c.token.dpop.as_mut(),
            TokenCommand::Refresh(c) => c.access.dpop.as_mut(),
            TokenCommand::JwtBearer(c) => c.token.dpop.as_mut(),
            TokenCommand::PollDevice(c) => c.token.dpop.as_mut(),
            TokenCommand::ExchangeToken(c) => c.token.dpop.as_mut(),
            TokenCommand::Saml2Bearer(c) => c.token.dpop.as_mut(),
            _ => None,
        }
    }

    /// The new access token of a grant decided on a user's or an assertion's behalf.
    fn grant_token(&self) -> Option<&grant::NewAccessToken> {
        match self {
            TokenCommand::RedeemCode(c) => Some(&c.token),
            TokenCommand::Password(c) => Some(&c.token),
            TokenCommand::Refresh(c) => Some(&c.access),
            TokenCommand::JwtBearer(c) => Some(&c.token),
            TokenCommand::PollDevice(c) => Some(&c.token),
            TokenCommand::ExchangeToken(c) => Some(&c.token),
            TokenCommand::Saml2Bearer(c) => Some(&c.token),
            _ => None,
        }
    }
}

/// Why a client may not use a grant (`unauthorized_client`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientRefused {
    /// The client is not registered for the grant type.
    #[error("this client is not allowed the {0} grant")]
    GrantNotAllowed(GrantType),
    /// A public client has no credentials to use `client_credentials` with.
    #[error("public clients cannot use the client_credentials grant")]
    PublicClientCredentials,
}

/// Why a request breaks a rule of the client's configuration (`invalid_request`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestRejected {
    /// A public client's code request without PKCE.
    #[error("public clients must send a PKCE code_challenge (S256)")]
    PkceRequired,
    /// `plain` PKCE from a client not registered for it.
    #[error("code_challenge_method plain is not allowed for this client; use S256")]
    PlainPkceNotAllowed,
    /// The redirect URI is not one the client registered.
    #[error(transparent)]
    RedirectUri(#[from] crate::client::RedirectError),
    /// An id_token was asked for without the scope `openid` (Core §3.2.2.1).
    #[error("response_type id_token needs the scope openid")]
    IdTokenNeedsOpenid,
    /// A client that must push its requests sent one to `/authorize` (RFC 9126 §6).
    #[error("this client must push its authorization requests to the pushed_authorization_request_endpoint first (RFC 9126)")]
    PushRequired,
    /// RFC 8693 §2.2.2: the subject token was issued to a client this one may not exchange
    /// tokens of.
    #[error("this client may not exchange tokens issued to the subject token's client")]
    NotExchangeable,
    /// The subject token names as many actors as a token may (`exchange::MAX_ACTORS`).
    #[error("the subject token's chain of actors is as long as it may be")]
    ActorChainTooLong,
    /// An id_token in the front channel was asked for without a `nonce` (Core §3.2.2.1).
    #[error("nonce is required when an id_token is returned from the authorization endpoint")]
    NonceRequired,
}

/// Why a grant was refused with `invalid_grant`; its text is the `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantRejected {
    /// An unknown code, or another client's.
    #[error("the authorization code is invalid or was issued to another client")]
    UnknownCode,
    /// The code was redeemed before: what it issued is revoked.
    #[error("the authorization code was already used; every token issued for it is revoked")]
    CodeReplayed,
    /// The code's lifetime is over.
    #[error("the authorization code expired")]
    CodeExpired,
    /// `redirect_uri` is not the authorization request's.
    #[error("redirect_uri differs from the one of the authorization request")]
    RedirectUriDiffers,
    /// `redirect_uri` is missing though the authorization request named one.
    #[error("redirect_uri is required: the authorization request named one (RFC 6749 §4.1.3)")]
    RedirectUriMissing,
    /// The PKCE verifier does not match the challenge.
    #[error("code_verifier does not match the code_challenge")]
    VerifierMismatch,
    /// The code has a PKCE challenge and no verifier came.
    #[error("code_verifier is required for this code")]
    VerifierMissing,
    /// A verifier for a code without a challenge: a downgrade (RFC 9700 §2.1.1).
    #[error("code_verifier sent for a code issued without a code_challenge")]
    VerifierWithoutChallenge,
    /// An unknown refresh token, or another client's.
    #[error("the refresh token is invalid or was issued to another client")]
    UnknownRefreshToken,
    /// The refresh token's grant was revoked.
    #[error("the refresh token was revoked")]
    RefreshRevoked,
    /// The refresh token or its family expired.
    #[error("the refresh token expired")]
    RefreshExpired,
    /// The refresh token was used before: its family is revoked.
    #[error("the refresh token was already used; every token of its grant is revoked")]
    RefreshReused,
    /// The browser session of an OpenID Connect grant ended (a logout): its relying parties
    /// were told the user left, so no new id_token may name it (Back-Channel Logout §2.7).
    #[error("the user signed out of the session this grant belongs to")]
    SessionEnded,
    /// An administrator locked the user's account: its grants get no new tokens.
    #[error("the user's account is locked")]
    AccountLocked,
    /// The DPoP proof's key is not the one the code or refresh token is bound to (RFC 9449
    /// §5, §10).
    #[error("the DPoP proof's key is not the key this grant is bound to")]
    DpopKeyMismatch,
    /// An unknown device code, or another client's.
    #[error("the device code is invalid or was issued to another client")]
    UnknownDeviceCode,
    /// The device code was exchanged for tokens before.
    #[error("the device code was used already")]
    DeviceCodeUsed,
    /// The user answered the request already.
    #[error("this request was answered already")]
    DeviceAlreadyDecided,
    /// A SAML assertion's issuer is not the client's trusted IdP.
    #[error("the assertion's issuer is not this client's SAML identity provider")]
    SamlUntrustedIssuer,
    /// A SAML assertion's `ID` was accepted before.
    #[error("the assertion was used before (its ID is not new)")]
    SamlReplayed,
    /// A JWT bearer assertion was refused (RFC 7523 §3.1).
    #[error(transparent)]
    Assertion(#[from] crate::assertion::AssertionRejected),
}

/// Why a token command was refused, with the RFC 6749 §5.2 code it maps to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The client does not exist or was deleted.
    #[error("client authentication failed")]
    UnknownClient,
    /// The client may not use this grant.
    #[error(transparent)]
    UnauthorizedClient(ClientRefused),
    /// A requested scope is not one of the client's.
    #[error("scope {0} is not allowed for this client")]
    InvalidScope(String),
    /// The code, refresh token or credentials are invalid, expired, revoked or another's.
    #[error(transparent)]
    InvalidGrant(GrantRejected),
    /// The request is malformed or breaks a rule of the client's configuration.
    #[error(transparent)]
    InvalidRequest(RequestRejected),
    /// The user has not consented to everything asked for.
    #[error("the user has not approved this request")]
    ConsentRequired,
    /// The client's credentials (here: its assertion) are refused.
    #[error(transparent)]
    InvalidClient(crate::assertion::AssertionRejected),
    /// A `resource` or `audience` the client may not ask for (RFC 8707 §2).
    #[error("{0}")]
    InvalidTarget(String),
    /// A DPoP proof is required and missing (RFC 9449 §5).
    #[error("{0}")]
    InvalidDpopProof(&'static str),
    /// A pushed request's `request_uri` cannot be used (RFC 9126 §4).
    #[error(transparent)]
    InvalidRequestUri(crate::par::PushRejected),
    /// RFC 8628 §3.5: the user has not answered yet.
    #[error("the user has not answered at the verification page yet; poll again later")]
    AuthorizationPending,
    /// RFC 8628 §3.5: polling faster than the interval.
    #[error("polling too fast: wait 5 seconds more between polls from now on")]
    SlowDown,
    /// RFC 8628 §3.5: the user denied the request.
    #[error("the user denied the request")]
    DeviceDenied,
    /// RFC 8628 §3.5: the device code expired.
    #[error("the device code expired; start again")]
    DeviceCodeExpired,
}

/// A refused command: the error to answer, and the events to record anyway (a replayed code or
/// a reused refresh token revokes its grant, and the log must say why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the client is told.
    pub error: TokenError,
    /// Recorded before answering.
    pub record: Vec<Event>,
}

impl From<TokenError> for Refusal {
    fn from(error: TokenError) -> Self {
        Self {
            error,
            record: Vec::new(),
        }
    }
}

impl TokenError {
    /// The RFC 6749 §5.2 error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            TokenError::UnknownClient => ErrorCode::InvalidClient,
            TokenError::UnauthorizedClient(_) => ErrorCode::UnauthorizedClient,
            TokenError::InvalidScope(_) => ErrorCode::InvalidScope,
            TokenError::InvalidGrant(_) => ErrorCode::InvalidGrant,
            TokenError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            TokenError::ConsentRequired => ErrorCode::AccessDenied,
            TokenError::InvalidClient(_) => ErrorCode::InvalidClient,
            TokenError::InvalidTarget(_) => ErrorCode::InvalidTarget,
            TokenError::InvalidDpopProof(_) => ErrorCode::InvalidDpopProof,
            TokenError::InvalidRequestUri(_) => ErrorCode::InvalidRequestUri,
            TokenError::AuthorizationPending => ErrorCode::AuthorizationPending,
            TokenError::SlowDown => ErrorCode::SlowDown,
            TokenError::DeviceDenied => ErrorCode::AccessDenied,
            TokenError::DeviceCodeExpired => ErrorCode::ExpiredToken,
        }
    }
}

/// Decides a token command against the client's configuration; a DPoP proof that came with
/// it is recorded with what it produced, or refused if it was used before.
pub fn decide(client: &ClientState, command: &TokenCommand) -> Result<Vec<Event>, Refusal> {
    let Some(active) = client.active() else {
        return Err(TokenError::UnknownClient.into());
    };
    let mut events = decide_command(client, command)?;
    if let Some(p) = command.dpop_proof() {
        let accepted = crate::dpop::accept(&active.client_id, p).map_err(|e| {
            TokenError::InvalidDpopProof(match e {
                crate::dpop::ProofRejected::Replayed => {
                    "the DPoP proof was used before (its jti is not new)"
                }
            })
        })?;
        events.push(accepted);
    }
    Ok(events)
}

fn decide_command(client: &ClientState, command: &TokenCommand) -> Result<Vec<Event>, Refusal> {
    let Some(client) = client.active() else {
        return Err(TokenError::UnknownClient.into());
    };
    match command {
        TokenCommand::IssueClientCredentials(cmd) => {
            if client.public {
                return Err(
                    TokenError::UnauthorizedClient(ClientRefused::PublicClientCredentials).into(),
                );
            }
            grant::allowed(client, GrantType::ClientCredentials)?;
            let scopes = grant::granted_scopes(client, &cmd.requested_scopes)?;
            let terms = grant::token_terms(client, &cmd.token, None)?;
            Ok(vec![Event::AccessTokenIssued(grant::access_token_issued(
                client,
                &cmd.token,
                client.client_id.as_str().to_owned(),
                scopes,
                GrantType::ClientCredentials,
                terms,
                cmd.now,
            ))])
        }
        TokenCommand::Revoke(cmd) => match &cmd.token {
            // Unknown, foreign and already revoked tokens change nothing (RFC 7009 §2.2;
            // docs/decisions/0003-revoking-foreign-tokens.md).
            Some(t) if t.client_id == client.client_id && !t.revoked => {
                Ok(vec![Event::TokenRevoked(TokenRevoked {
                    jti: t.jti,
                    client_id: client.client_id.clone(),
                    reason: cmd.reason,
                    family_id: t.refresh_family,
                })])
            }
            _ => Ok(vec![]),
        },
        TokenCommand::IssueCode(cmd) => grant::issue_code(client, cmd),
        TokenCommand::IssueImplicit(cmd) => grant::issue_implicit(client, cmd),
        TokenCommand::RedeemCode(cmd) => grant::redeem_code(client, cmd),
        TokenCommand::Password(cmd) => grant::password(client, cmd),
        TokenCommand::Refresh(cmd) => grant::refresh(client, cmd),
        TokenCommand::RevokeAuthorization(cmd) => Ok(grant::revoke_authorization(client, cmd)),
        TokenCommand::AuthenticateByAssertion(cmd) => Ok(assertion::authenticate(client, cmd)?),
        TokenCommand::JwtBearer(cmd) => assertion::grant(client, cmd),
        // Recorded by `decide`.
        TokenCommand::AcceptDpopProof(_) => Ok(Vec::new()),
        TokenCommand::PushAuthorizationRequest(cmd) => crate::par::push(client, cmd),
        TokenCommand::StartDevice(cmd) => crate::device::start(client, cmd),
        TokenCommand::ExchangeToken(cmd) => crate::exchange::exchange(client, cmd),
        TokenCommand::Saml2Bearer(cmd) => crate::saml::grant(client, cmd),
        TokenCommand::DecideDevice(cmd) => crate::device::decide(client, cmd),
        TokenCommand::PollDevice(cmd) => crate::device::poll(client, cmd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{id, registered};
    use crate::client::{evolve as client_evolve, ClientCommand, UpdateClient};
    use crate::event::{AccessTokenIssued, ClientDeleted, ClientSettingsChanged};
    use crate::testing::Scenario;
    use crate::values::HashKey;
    use crate::values::TokenFormat;

    fn jti() -> Uuid {
        Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001)
    }

    fn issue(scopes: Option<&str>) -> TokenCommand {
        TokenCommand::IssueClientCredentials(IssueClientCredentialsToken {
            requested_scopes: scopes.map(|s| Scope::parse_list(s).unwrap()),
            token: grant::NewAccessToken {
                jti: jti(),
                opaque_token_hash: HashKey::for_tests().hash("opaque"),
                kid: Some("k1".into()),
                dpop: None,
                resources: Vec::new(),
            },
            now: 1_700_000_000,
        })
    }

    fn scenario() -> Scenario<ClientState, TokenCommand, Refusal> {
        Scenario::new(decide, client_evolve)
    }

    fn issued(scopes: &str, format: TokenFormat) -> Event {
        Event::AccessTokenIssued(AccessTokenIssued {
            jti: jti(),
            token_hash: (format == TokenFormat::Opaque)
                .then(|| HashKey::for_tests().hash("opaque")),
            client_id: id(),
            subject: "svc-billing".into(),
            scopes: Scope::parse_list(scopes).unwrap(),
            grant_type: GrantType::ClientCredentials,
            format,
            issued_at: 1_700_000_000,
            expires_at: 1_700_003_600,
            family_id: None,
            kid: (format == TokenFormat::Jwt).then(|| "k1".to_owned()),
            terms: Default::default(),
        })
    }

    #[test]
    fn issuing_without_scopes_grants_the_client_defaults() {
        scenario()
            .given(vec![registered()])
            .when(issue(None))
            .then(vec![issued("read write", TokenFormat::Jwt)]);
    }

    #[test]
    fn issuing_a_subset_of_scopes_grants_exactly_that_subset() {
        scenario()
            .given(vec![registered()])
            .when(issue(Some("write")))
            .then(vec![issued("write", TokenFormat::Jwt)]);
    }

    #[test]
    fn issuing_an_opaque_token_records_only_its_hash() {
        scenario()
            .given(vec![
                registered(),
                Event::ClientSettingsChanged(ClientSettingsChanged {
                    client_id: id(),
                    token_format: TokenFormat::Opaque,
                    access_token_ttl_secs: 3600,
                    can_introspect: false,
                    redirect_uri_matching: Default::default(),
                    allow_plain_pkce: false,
                    signing_alg: None,
                    auth_method: None,
                }),
            ])
            .when(issue(None))
            .then(vec![issued("read write", TokenFormat::Opaque)]);
    }

    #[test]
    fn issuing_a_scope_the_client_lacks_is_refused() {
        scenario()
            .given(vec![registered()])
            .when(issue(Some("read admin")))
            .then_err(TokenError::InvalidScope("admin".into()).into());
    }

    #[test]
    fn issuing_to_a_client_without_the_grant_is_refused() {
        let mut state = ClientState::default();
        client_evolve(&mut state, &registered());
        let change = crate::client::decide(
            &state,
            &ClientCommand::Update(UpdateClient {
                grant_types: Some(vec![GrantType::AuthorizationCode]),
                ..UpdateClient::default()
            }),
        )
        .unwrap();
        let mut given = vec![registered()];
        given.extend(change);
        scenario().given(given).when(issue(None)).then_err(
            TokenError::UnauthorizedClient(ClientRefused::GrantNotAllowed(
                GrantType::ClientCredentials,
            ))
            .into(),
        );
    }

    #[test]
    fn issuing_to_a_deleted_or_unknown_client_is_refused() {
        scenario()
            .given(vec![
                registered(),
                Event::ClientDeleted(ClientDeleted { client_id: id() }),
            ])
            .when(issue(None))
            .then_err(TokenError::UnknownClient.into());
        scenario()
            .given(vec![])
            .when(issue(None))
            .then_err(TokenError::UnknownClient.into());
    }

    fn revoke(token: Option<KnownToken>) -> TokenCommand {
        TokenCommand::Revoke(RevokeToken {
            token,
            reason: RevocationReason::RevokedByClient,
        })
    }

    #[test]
    fn revoking_an_own_active_token_records_the_revocation() {
        scenario()
            .given(vec![registered()])
            .when(revoke(Some(KnownToken {
                jti: jti(),
                client_id: id(),
                revoked: false,
                refresh_family: None,
            })))
            .then(vec![Event::TokenRevoked(TokenRevoked {
                jti: jti(),
                client_id: id(),
                reason: RevocationReason::RevokedByClient,
                family_id: None,
            })]);
    }

    #[test]
    fn revoking_an_unknown_a_foreign_or_a_revoked_token_records_nothing() {
        scenario()
            .given(vec![registered()])
            .when(revoke(None))
            .then(vec![]);
        scenario()
            .given(vec![registered()])
            .when(revoke(Some(KnownToken {
                jti: jti(),
                client_id: ClientId::parse("someone-else").unwrap(),
                revoked: false,
                refresh_family: None,
            })))
            .then(vec![]);
        scenario()
            .given(vec![registered()])
            .when(revoke(Some(KnownToken {
                jti: jti(),
                client_id: id(),
                revoked: true,
                refresh_family: None,
            })))
            .then(vec![]);
    }

    #[test]
    fn revoking_for_a_deleted_client_is_refused() {
        scenario()
            .given(vec![
                registered(),
                Event::ClientDeleted(ClientDeleted { client_id: id() }),
            ])
            .when(revoke(None))
            .then_err(TokenError::UnknownClient.into());
    }
}
