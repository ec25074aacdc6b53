//! Decisions taken on a user's behalf: consent, authorization codes (RFC 6749 §4.1 with
//! RFC 7636), the implicit grant (§4.2), the password grant (§4.3) and refresh-token rotation
//! (§6, RFC 9700 §4.14).
//!
//! Like every token decision these run in the client's actor against its configuration. What
//! they need to know of earlier codes, refresh tokens and consents arrives in the command as a
//! *view*: the read model's row, brought up to date by [`CodeView::observe`] (and its siblings)
//! with the actor's events still being flushed. The projections build their rows from the same
//! events, so a view never disagrees with the decision that produced it.

use crate::client::Client;
use crate::event::{
    AccessTokenIssued, AuthorizationCodeIssued, AuthorizationCodeRedeemed,
    AuthorizationCodeReplayed, AuthorizationGranted, AuthorizationRevoked, Event, IdTokenIssued,
    OidcContext, RefreshTokenIssued, RefreshTokenReuseDetected, RefreshTokenRotated, TokenTerms,
};
use crate::token::{ClientRefused, GrantRejected, Refusal, RequestRejected, TokenError};
use crate::values::{pkce_verifies, GrantType, PkceMethod, Scope, SecretHash, TokenFormat, UserId};
use uuid::Uuid;

/// What the read model knows of an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeView {
    /// The code as issued.
    pub issued: AuthorizationCodeIssued,
    /// The family its redemption started, once redeemed.
    pub redeemed_family: Option<Uuid>,
    /// The browser session it was issued in has ended (a logout).
    pub session_ended: bool,
    /// An administrator locked the user's account.
    pub user_locked: bool,
}

impl CodeView {
    /// Brings the view up to date with an event not yet in the read model.
    pub fn observe(&mut self, event: &Event) {
        if let Event::AuthorizationCodeRedeemed(e) = event {
            if e.code_hash == self.issued.code_hash {
                self.redeemed_family = Some(e.family_id);
            }
        }
    }
}

/// What the read model knows of a refresh token and its family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshView {
    /// The token as issued.
    pub issued: RefreshTokenIssued,
    /// When it was used (rotated), or retired unused by a grace-window retry.
    pub used_at: Option<i64>,
    /// The family's newest refresh token: (generation, id).
    pub head: (u32, Uuid),
    /// The family was revoked (reuse, code replay, revocation).
    pub family_revoked: bool,
    /// The user withdrew the client's authorization after this token was issued.
    pub authorization_revoked: bool,
    /// The browser session its grant began in has ended (a logout).
    pub session_ended: bool,
    /// An administrator locked the user's account.
    pub user_locked: bool,
}

impl RefreshView {
    /// Brings the view up to date with an event not yet in the read model.
    pub fn observe(&mut self, event: &Event) {
        let family = self.issued.family_id;
        match event {
            Event::RefreshTokenRotated(e)
                if e.id == self.issued.id || e.superseded == Some(self.issued.id) =>
            {
                self.used_at.get_or_insert(e.rotated_at);
            }
            Event::RefreshTokenIssued(e) if e.family_id == family => {
                self.head = (e.generation, e.id);
            }
            Event::AuthorizationRevoked(e)
                if e.user_id == self.issued.user_id && e.client_id == self.issued.client_id =>
            {
                self.authorization_revoked = true;
            }
            e if e.revoked_family() == Some(family) => self.family_revoked = true,
            _ => {}
        }
    }
}

impl RefreshView {
    /// Whether the token could be used now: its family's newest, never used, unexpired, and
    /// neither its family nor the user's authorization revoked.
    pub fn is_active(&self, now: i64) -> bool {
        self.used_at.is_none()
            && self.head.1 == self.issued.id
            && !self.family_revoked
            && !self.authorization_revoked
            && now < self.issued.expires_at
            && now < self.issued.family_expires_at
    }
}

/// Whether any view's `observe` reads this event: the events an actor must keep while they
/// are in flight. Access tokens, most of all appends, are not among them.
pub fn observed_by_views(event: &Event) -> bool {
    matches!(
        event,
        Event::AuthorizationGranted(_)
            | Event::AuthorizationRevoked(_)
            | Event::AuthorizationCodeRedeemed(_)
            | Event::RefreshTokenIssued(_)
            | Event::RefreshTokenRotated(_)
            | Event::JwtAssertionAccepted(_)
            | Event::TokenRevoked(_)
            | Event::DpopProofAccepted(_)
            | Event::SamlAssertionAccepted(_)
            | Event::PushedAuthorizationRequestUsed(_)
            | Event::DeviceAuthorizationApproved(_)
            | Event::DeviceAuthorizationDenied(_)
            | Event::DeviceCodeRedeemed(_)
    ) || event.revoked_family().is_some()
}

/// The scopes a user has granted a client (remembered consent), if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsentView {
    /// Granted scopes; `None`: no remembered consent.
    pub scopes: Option<Vec<Scope>>,
}

impl ConsentView {
    /// Brings the view up to date with an event not yet in the read model.
    pub fn observe(&mut self, user: UserId, event: &Event) {
        match event {
            Event::AuthorizationGranted(e) if e.user_id == user => {
                self.scopes = Some(e.scopes.clone())
            }
            Event::AuthorizationRevoked(e) if e.user_id == user => self.scopes = None,
            _ => {}
        }
    }
}

/// How the user's consent to an authorization request was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentDecision {
    /// The user pressed Approve on the consent page just now.
    Approved,
    /// No page was shown: the remembered consent must cover the request.
    Remembered,
}

/// A validated authorization request the user has signed in for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// The signed-in user.
    pub user_id: UserId,
    /// Requested scopes; `None`: the client's default scopes.
    pub scopes: Option<Vec<Scope>>,
    /// The `redirect_uri` as presented, or `None` when the request named none.
    pub redirect_uri: Option<String>,
    /// PKCE challenge and method.
    pub pkce: Option<(String, PkceMethod)>,
    /// How consent was given.
    pub consent: ConsentDecision,
    /// The user's remembered consent for this client.
    pub existing_consent: ConsentView,
    /// The sign-in behind the request, recorded on the code when `openid` is granted.
    pub oidc: Option<OidcContext>,
    /// The `resource`s asked for (RFC 8707 §2.1) and the `dpop_jkt` (RFC 9449 §10).
    pub terms: TokenTerms,
    /// The pushed request it came from (RFC 9126), spent by the decision.
    pub pushed: Option<crate::par::PushedUse>,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Issue an authorization code (`response_type=code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueCode {
    /// The request.
    pub request: AuthorizationRequest,
    /// Keyed hash of the fresh code.
    pub code_hash: SecretHash,
    /// Code lifetime in seconds.
    pub ttl_secs: u32,
}

/// Issue tokens in the redirect: `response_type=token`, `id_token` or `id_token token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueImplicit {
    /// The request.
    pub request: AuthorizationRequest,
    /// The new access token, when one is asked for.
    pub token: Option<NewAccessToken>,
    /// The new id_token, when one is asked for (OpenID Connect Core §3.2).
    pub id_token: Option<NewIdToken>,
}

/// Fresh values for an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccessToken {
    /// Its id.
    pub jti: Uuid,
    /// Keyed hash of the opaque value, used if the client issues opaque tokens.
    pub opaque_token_hash: SecretHash,
    /// The key that will sign it, used if the client issues JWTs.
    pub kid: Option<String>,
    /// The `resource`s the token request names (RFC 8707 §2.2), syntax checked; empty: none.
    pub resources: Vec<String>,
    /// The request's verified DPoP proof (RFC 9449 §4): the token is bound to its key.
    pub dpop: Option<crate::dpop::DpopProof>,
}

/// Fresh values for an id_token, issued when the grant holds the scope `openid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewIdToken {
    /// Its `jti`.
    pub jti: Uuid,
    /// The key that will sign it (the client's id_token algorithm).
    pub kid: Option<String>,
}

/// The authentication context class of a sign-in with a password: level 1 of ISO/IEC 29115,
/// single-factor (the only kind this server has).
pub const ACR_PASSWORD: &str = "1";

/// The scope that keeps a grant usable after its browser session ended (Core §11).
pub const OFFLINE_ACCESS_SCOPE: &str = "offline_access";

/// The scope that makes a request an OpenID Connect request (Core §3.1.2.1).
pub const OPENID_SCOPE: &str = "openid";

/// Whether the scopes make an OpenID Connect grant.
pub fn is_openid(scopes: &[Scope]) -> bool {
    scopes.iter().any(|s| s.as_str() == OPENID_SCOPE)
}

/// The `sub` a client sees for a user: the user's id for a `public` client, or the pairwise
/// identifier the sign-in recorded (Core §8).
pub fn subject_for(user: UserId, signed_in: &OidcContext) -> String {
    signed_in
        .subject
        .clone()
        .unwrap_or_else(|| user.to_string())
}

/// Fresh values and lifetimes for a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefreshToken {
    /// Its id.
    pub id: Uuid,
    /// Keyed hash of its value.
    pub token_hash: SecretHash,
    /// Its own lifetime in seconds.
    pub ttl_secs: u32,
    /// The family's absolute lifetime in seconds (used when a family starts).
    pub family_ttl_secs: u32,
}

/// Exchange a code for tokens (`grant_type=authorization_code`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedeemCode {
    /// The code's view, if the read model knows its hash.
    pub code: Option<CodeView>,
    /// The keyed hash of the presented code (recorded if it is replayed).
    pub code_hash: SecretHash,
    /// Its bare SHA-256, under which codes issued before keyed hashes were recorded: the
    /// actor looks the code up by it when the keyed hash finds nothing.
    pub legacy_code_hash: Option<SecretHash>,
    /// `redirect_uri` as presented at /token.
    pub redirect_uri: Option<String>,
    /// `code_verifier` as presented.
    pub code_verifier: Option<String>,
    /// The new access token.
    pub token: NewAccessToken,
    /// The new refresh token (issued if the client may use the refresh grant).
    pub refresh: NewRefreshToken,
    /// The id_token, used when the code was issued for an OpenID Connect request.
    pub id_token: NewIdToken,
    /// The new family's id.
    pub family_id: Uuid,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Issue tokens for a user whose password the caller verified (`grant_type=password`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordGrant {
    /// The authenticated user.
    pub user_id: UserId,
    /// Requested scopes; `None`: the client's defaults.
    pub scopes: Option<Vec<Scope>>,
    /// The new access token.
    pub token: NewAccessToken,
    /// The new refresh token.
    pub refresh: NewRefreshToken,
    /// The id_token, used when `openid` is granted.
    pub id_token: NewIdToken,
    /// The `sub` the client sees, when not the user's id (pairwise).
    pub pairwise_subject: Option<String>,
    /// The new family's id.
    pub family_id: Uuid,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Rotate a refresh token (`grant_type=refresh_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshGrant {
    /// The keyed hash of the presented refresh token.
    pub token_hash: SecretHash,
    /// Its bare SHA-256, under which tokens issued before keyed hashes were recorded: the
    /// actor looks the token up by it when the keyed hash finds nothing.
    pub legacy_token_hash: Option<SecretHash>,
    /// The presented token's view, if the read model knows its hash.
    pub token: Option<RefreshView>,
    /// Narrower scopes asked for; `None`: the grant's scopes.
    pub scopes: Option<Vec<Scope>>,
    /// The new access token.
    pub access: NewAccessToken,
    /// The successor refresh token.
    pub refresh: NewRefreshToken,
    /// A new id_token, used when the grant is an OpenID Connect grant.
    pub id_token: NewIdToken,
    /// How long after a rotation the previous token may still be retried while its successor
    /// was never used (0: strict).
    pub grace_secs: u32,
    /// Now (Unix seconds).
    pub now: i64,
}

/// Withdraw a client's authorization on the user's request (`/account`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokeAuthorization {
    /// The user.
    pub user_id: UserId,
}

fn invalid_grant(why: GrantRejected) -> Refusal {
    TokenError::InvalidGrant(why).into()
}

/// Refuses a grant type the client is not registered for.
pub fn allowed(client: &Client, grant: GrantType) -> Result<(), TokenError> {
    if client.grant_types.contains(&grant) {
        Ok(())
    } else {
        Err(TokenError::UnauthorizedClient(
            ClientRefused::GrantNotAllowed(grant),
        ))
    }
}

/// The scopes granted for a request: the requested ones, each allowed to the client, or the
/// client's defaults.
pub fn granted_scopes(
    client: &Client,
    requested: &Option<Vec<Scope>>,
) -> Result<Vec<Scope>, TokenError> {
    match requested {
        None => Ok(client.scopes.clone()),
        Some(r) => match r.iter().find(|s| !client.scopes.contains(s)) {
            Some(bad) => Err(TokenError::InvalidScope(bad.as_str().into())),
            None => Ok(r.clone()),
        },
    }
}

/// Checks requested resources against the client's list (RFC 8707 §2): each must be one it
/// registered.
pub fn check_resources(client: &Client, resources: &[String]) -> Result<(), TokenError> {
    match resources
        .iter()
        .find(|r| !client.extensions.resources.contains(r))
    {
        // Named, not echoed: the value is the caller's.
        Some(_) => Err(TokenError::InvalidTarget(
            "a resource asked for is not one this client may ask for (RFC 8707)".into(),
        )),
        None => Ok(()),
    }
}

/// The terms of a new access token: its audience (the resources the request names, within
/// those of the grant it comes from; else the grant's) and its DPoP key. `grant` is the code's
/// or refresh token's terms, `None` for grants without one.
pub fn token_terms(
    client: &Client,
    token: &NewAccessToken,
    grant: Option<&TokenTerms>,
) -> Result<TokenTerms, TokenError> {
    check_resources(client, &token.resources)?;
    let granted = grant.map(|g| &g.audience[..]).unwrap_or_default();
    if !granted.is_empty() && token.resources.iter().any(|r| !granted.contains(r)) {
        return Err(TokenError::InvalidTarget(
            "a resource asked for was not part of the authorization grant".into(),
        ));
    }
    let jkt = token.dpop.as_ref().map(|p| p.jkt.clone());
    if client.extensions.dpop_bound_access_tokens && jkt.is_none() {
        return Err(TokenError::InvalidDpopProof(
            "this client's access tokens must be DPoP-bound: send a DPoP proof",
        ));
    }
    if let Some(bound) = grant.and_then(|g| g.jkt.as_ref()) {
        if jkt.as_ref() != Some(bound) {
            return Err(TokenError::InvalidGrant(GrantRejected::DpopKeyMismatch));
        }
    }
    Ok(TokenTerms {
        audience: if token.resources.is_empty() {
            granted.to_vec()
        } else {
            token.resources.clone()
        },
        jkt,
        act: None,
    })
}

/// Checks what an authorization request asks for against the client: the grant, the scopes
/// and the PKCE method. `/authorize` runs it before anyone signs in (its errors are redirected
/// to the client), and the decision runs it again against the actor's own state.
pub fn check_request(
    client: &Client,
    grant: GrantType,
    scopes: &Option<Vec<Scope>>,
    pkce: Option<PkceMethod>,
) -> Result<Vec<Scope>, TokenError> {
    allowed(client, grant)?;
    let scopes = granted_scopes(client, scopes)?;
    if grant == GrantType::AuthorizationCode {
        match pkce {
            None if client.public => {
                return Err(TokenError::InvalidRequest(RequestRejected::PkceRequired))
            }
            Some(PkceMethod::Plain) if !client.allow_plain_pkce => {
                return Err(TokenError::InvalidRequest(
                    RequestRejected::PlainPkceNotAllowed,
                ))
            }
            _ => {}
        }
    }
    Ok(scopes)
}

/// Checks the request's redirect URI, grant, scopes and PKCE, and the consent; answers the
/// scopes and the events that record the consent.
fn authorize(
    client: &Client,
    req: &AuthorizationRequest,
    grant: GrantType,
) -> Result<(Vec<Scope>, String, Vec<Event>), Refusal> {
    let redirect = client
        .resolve_redirect_uri(req.redirect_uri.as_deref())
        .map_err(|e| TokenError::InvalidRequest(e.into()))?;
    let scopes = check_request(
        client,
        grant,
        &req.scopes,
        req.pkce.as_ref().map(|(_, m)| *m),
    )?;
    let existing = req.existing_consent.scopes.as_deref().unwrap_or_default();
    let mut events = Vec::new();
    match &req.pushed {
        Some(pushed) => events.push(crate::par::spend(client, pushed, req.now)?),
        None if client.extensions.require_pushed_authorization_requests => {
            return Err(TokenError::InvalidRequest(RequestRejected::PushRequired).into())
        }
        None => {}
    }
    match req.consent {
        ConsentDecision::Approved => {
            events.extend(consent_granted(
                client,
                req.user_id,
                &req.existing_consent,
                &scopes,
            ));
        }
        ConsentDecision::Remembered => {
            // A public client's request always needs the user (RFC 8252 §8.6): anyone can
            // claim its client_id.
            if client.public || !scopes.iter().all(|s| existing.contains(s)) {
                return Err(TokenError::ConsentRequired.into());
            }
        }
    }
    Ok((scopes, redirect, events))
}

/// when that covered them already.
pub(crate) fn consent_granted(
    client: &Client,
    user: UserId,
    existing: &ConsentView,
    scopes: &[Scope],
) -> Option<Event> {
    let mut all = existing.scopes.clone().unwrap_or_default();
    for s in scopes {
        if !all.contains(s) {
            all.push(s.clone());
        }
    }
    (existing.scopes.as_deref() != Some(&all[..])).then(|| {
        Event::AuthorizationGranted(AuthorizationGranted {
            client_id: client.client_id.clone(),
            user_id: user,
            scopes: all,
        })
    })
}

#[allow(
    clippy::too_many_arguments,
    reason = "the facts of one access token, each named"
)]
fn access_token(
    client: &Client,
    token: &NewAccessToken,
    user: UserId,
    scopes: Vec<Scope>,
    grant: GrantType,
    family_id: Option<Uuid>,
    terms: TokenTerms,
    now: i64,
) -> Event {
    Event::AccessTokenIssued(AccessTokenIssued {
        family_id,
        ..access_token_issued(client, token, user.to_string(), scopes, grant, terms, now)
    })
}

/// The record of a new access token for `subject`, in the client's format: an opaque token
/// keeps the hash of its value, a JWT the key it is signed with.
pub fn access_token_issued(
    client: &Client,
    token: &NewAccessToken,
    subject: String,
    scopes: Vec<Scope>,
    grant: GrantType,
    terms: TokenTerms,
    now: i64,
) -> AccessTokenIssued {
    let opaque = client.token_format == TokenFormat::Opaque;
    AccessTokenIssued {
        jti: token.jti,
        token_hash: opaque.then(|| token.opaque_token_hash.clone()),
        client_id: client.client_id.clone(),
        subject,
        scopes,
        grant_type: grant,
        format: client.token_format,
        issued_at: now,
        expires_at: now + i64::from(client.access_token_ttl_secs),
        family_id: None,
        kid: if opaque { None } else { token.kid.clone() },
        terms,
    }
}

/// Who a new family speaks for, with what, and how it was obtained.
pub(crate) struct FamilyStart<'a> {
    pub(crate) user: UserId,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) grant: GrantType,
    pub(crate) family_id: Uuid,
    pub(crate) oidc: Option<&'a OidcContext>,
    /// The grant's resources and DPoP key (a code's), if it had any.
    pub(crate) terms: Option<&'a TokenTerms>,
    pub(crate) now: i64,
}

/// The record of an id_token for `user`, when the grant is an OpenID Connect grant.
fn id_token_issued(
    client: &Client,
    new: &NewIdToken,
    user: UserId,
    oidc: &OidcContext,
    grant: GrantType,
    family_id: Option<Uuid>,
    now: i64,
) -> Event {
    Event::IdTokenIssued(IdTokenIssued {
        jti: new.jti,
        client_id: client.client_id.clone(),
        user_id: user,
        subject: subject_for(user, oidc),
        auth_time: oidc.auth_time,
        sid: oidc.sid.clone(),
        nonce: oidc.nonce.clone(),
        amr: oidc.amr.clone(),
        acr: oidc.acr.clone(),
        claims: oidc.claims.clone(),
        grant_type: grant,
        family_id,
        kid: new.kid.clone(),
        issued_at: now,
        expires_at: now + i64::from(client.access_token_ttl_secs),
    })
}

/// Starts a family: the access token, and a refresh token if the client may refresh.
pub(crate) fn new_family(
    client: &Client,
    start: FamilyStart<'_>,
    token: &NewAccessToken,
    refresh: &NewRefreshToken,
    id_token: &NewIdToken,
) -> Result<Vec<Event>, TokenError> {
    let FamilyStart {
        user,
        scopes,
        grant,
        family_id,
        oidc,
        terms: grant_terms,
        now,
    } = start;
    let terms = token_terms(client, token, grant_terms)?;
    // The grant keeps the resources it was given (a refresh may ask for any of them), and a
    // public client's refresh tokens are bound to its DPoP key (RFC 9449 §5): a confidential
    // client authenticates instead.
    let refresh_terms = TokenTerms {
        audience: grant_terms
            .map(|g| g.audience.clone())
            .filter(|a| !a.is_empty())
            .unwrap_or_else(|| token.resources.clone()),
        jkt: token
            .dpop
            .as_ref()
            .map(|p| p.jkt.clone())
            .filter(|_| client.public),
        act: None,
    };
    let oidc = oidc.filter(|_| is_openid(&scopes));
    let mut events = vec![access_token(
        client,
        token,
        user,
        scopes.clone(),
        grant,
        Some(family_id),
        terms,
        now,
    )];
    if client.grant_types.contains(&GrantType::RefreshToken) {
        let family_expires_at = now + i64::from(refresh.family_ttl_secs);
        events.push(Event::RefreshTokenIssued(RefreshTokenIssued {
            id: refresh.id,
            token_hash: refresh.token_hash.clone(),
            client_id: client.client_id.clone(),
            user_id: user,
            scopes,
            family_id,
            generation: 1,
            issued_at: now,
            expires_at: (now + i64::from(refresh.ttl_secs)).min(family_expires_at),
            family_expires_at,
            oidc: oidc.map(|c| OidcContext {
                nonce: None,
                ..c.clone()
            }),
            terms: refresh_terms,
        }));
    }
    if let Some(context) = oidc {
        events.push(id_token_issued(
            client,
            id_token,
            user,
            context,
            grant,
            Some(family_id),
            now,
        ));
    }
    Ok(events)
}

/// Decides [`IssueCode`].
pub fn issue_code(client: &Client, cmd: &IssueCode) -> Result<Vec<Event>, Refusal> {
    let req = &cmd.request;
    let (scopes, redirect_uri, mut events) = authorize(client, req, GrantType::AuthorizationCode)?;
    check_resources(client, &req.terms.audience)?;
    events.push(Event::AuthorizationCodeIssued(AuthorizationCodeIssued {
        code_hash: cmd.code_hash.clone(),
        client_id: client.client_id.clone(),
        user_id: req.user_id,
        redirect_uri,
        redirect_uri_sent: req.redirect_uri.is_some(),
        code_challenge: req.pkce.as_ref().map(|(c, _)| c.clone()),
        code_challenge_method: req.pkce.as_ref().map(|(_, m)| *m),
        issued_at: req.now,
        expires_at: req.now + i64::from(cmd.ttl_secs),
        oidc: req.oidc.clone().filter(|_| is_openid(&scopes)),
        scopes,
        terms: req.terms.clone(),
    }));
    Ok(events)
}

/// Decides [`IssueImplicit`].
pub fn issue_implicit(client: &Client, cmd: &IssueImplicit) -> Result<Vec<Event>, Refusal> {
    let req = &cmd.request;
    let (scopes, _, mut events) = authorize(client, req, GrantType::Implicit)?;
    let id_token = match &cmd.id_token {
        None => None,
        Some(new) => {
            let Some(context) = req.oidc.as_ref().filter(|_| is_openid(&scopes)) else {
                return Err(TokenError::InvalidRequest(RequestRejected::IdTokenNeedsOpenid).into());
            };
            // A token in the front channel is replayable without a nonce to bind it.
            if context.nonce.is_none() {
                return Err(TokenError::InvalidRequest(RequestRejected::NonceRequired).into());
            }
            Some(id_token_issued(
                client,
                new,
                req.user_id,
                context,
                GrantType::Implicit,
                None,
                req.now,
            ))
        }
    };
    if let Some(token) = &cmd.token {
        check_resources(client, &req.terms.audience)?;
        // No proof comes through the front channel: a client whose tokens must be bound
        // gets none this way.
        let terms = TokenTerms {
            audience: req.terms.audience.clone(),
            ..token_terms(client, token, None)?
        };
        events.push(access_token(
            client,
            token,
            req.user_id,
            scopes,
            GrantType::Implicit,
            None,
            terms,
            req.now,
        ));
    }
    events.extend(id_token);
    Ok(events)
}

/// Decides [`RedeemCode`].
pub fn redeem_code(client: &Client, cmd: &RedeemCode) -> Result<Vec<Event>, Refusal> {
    allowed(client, GrantType::AuthorizationCode)?;
    let Some(view) = cmd
        .code
        .as_ref()
        .filter(|v| v.issued.client_id == client.client_id)
    else {
        return Err(invalid_grant(GrantRejected::UnknownCode));
    };
    let code = &view.issued;
    if let Some(family_id) = view.redeemed_family {
        return Err(Refusal {
            error: TokenError::InvalidGrant(GrantRejected::CodeReplayed),
            record: vec![Event::AuthorizationCodeReplayed(
                AuthorizationCodeReplayed {
                    code_hash: cmd.code_hash.clone(),
                    client_id: client.client_id.clone(),
                    user_id: code.user_id,
                    family_id,
                },
            )],
        });
    }
    if cmd.now >= code.expires_at {
        return Err(invalid_grant(GrantRejected::CodeExpired));
    }
    if view.session_ended {
        return Err(invalid_grant(GrantRejected::SessionEnded));
    }
    if view.user_locked {
        return Err(invalid_grant(GrantRejected::AccountLocked));
    }
    match (&cmd.redirect_uri, code.redirect_uri_sent) {
        (Some(p), _) if *p != code.redirect_uri => {
            return Err(invalid_grant(GrantRejected::RedirectUriDiffers))
        }
        (None, true) => return Err(invalid_grant(GrantRejected::RedirectUriMissing)),
        _ => {}
    }
    match (&code.code_challenge, &cmd.code_verifier) {
        (Some(challenge), Some(verifier)) => {
            let method = code.code_challenge_method.unwrap_or(PkceMethod::Plain);
            if !pkce_verifies(challenge, method, verifier) {
                return Err(invalid_grant(GrantRejected::VerifierMismatch));
            }
        }
        (Some(_), None) => return Err(invalid_grant(GrantRejected::VerifierMissing)),
        // RFC 9700 §2.1.1: a verifier for a code issued without a challenge is a downgrade.
        (None, Some(_)) => return Err(invalid_grant(GrantRejected::VerifierWithoutChallenge)),
        (None, None) => {}
    }
    let mut events = vec![Event::AuthorizationCodeRedeemed(
        AuthorizationCodeRedeemed {
            code_hash: code.code_hash.clone(),
            client_id: client.client_id.clone(),
            user_id: code.user_id,
            family_id: cmd.family_id,
        },
    )];
    events.extend(new_family(
        client,
        FamilyStart {
            user: code.user_id,
            scopes: code.scopes.clone(),
            grant: GrantType::AuthorizationCode,
            family_id: cmd.family_id,
            oidc: code.oidc.as_ref(),
            terms: Some(&code.terms),
            now: cmd.now,
        },
        &cmd.token,
        &cmd.refresh,
        &cmd.id_token,
    )?);
    Ok(events)
}

/// Decides [`PasswordGrant`].
pub fn password(client: &Client, cmd: &PasswordGrant) -> Result<Vec<Event>, Refusal> {
    allowed(client, GrantType::Password)?;
    let scopes = granted_scopes(client, &cmd.scopes)?;
    // The password was checked just now, by the server: that is the sign-in.
    let signed_in = OidcContext {
        auth_time: cmd.now,
        subject: cmd.pairwise_subject.clone(),
        amr: vec!["pwd".into()],
        acr: Some(ACR_PASSWORD.into()),
        ..OidcContext::default()
    };
    Ok(new_family(
        client,
        FamilyStart {
            user: cmd.user_id,
            scopes,
            grant: GrantType::Password,
            family_id: cmd.family_id,
            oidc: Some(&signed_in),
            terms: None,
            now: cmd.now,
        },
        &cmd.token,
        &cmd.refresh,
        &cmd.id_token,
    )?)
}

/// Decides [`RefreshGrant`]: rotation, the grace-window retry, or reuse detection.
pub fn refresh(client: &Client, cmd: &RefreshGrant) -> Result<Vec<Event>, Refusal> {
    allowed(client, GrantType::RefreshToken)?;
    let Some(view) = cmd
        .token
        .as_ref()
        .filter(|v| v.issued.client_id == client.client_id)
    else {
        return Err(invalid_grant(GrantRejected::UnknownRefreshToken));
    };
    let old = &view.issued;
    if view.family_revoked || view.authorization_revoked {
        return Err(invalid_grant(GrantRejected::RefreshRevoked));
    }
    if cmd.now >= old.expires_at || cmd.now >= old.family_expires_at {
        return Err(invalid_grant(GrantRejected::RefreshExpired));
    }
    if view.user_locked {
        return Err(invalid_grant(GrantRejected::AccountLocked));
    }
    // A grant that holds offline_access outlives the session, as that scope asks.
    if view.session_ended
        && !old
            .scopes
            .iter()
            .any(|s| s.as_str() == OFFLINE_ACCESS_SCOPE)
    {
        return Err(invalid_grant(GrantRejected::SessionEnded));
    }
    let scopes = match &cmd.scopes {
        None => old.scopes.clone(),
        Some(r) => match r.iter().find(|s| !old.scopes.contains(s)) {
            Some(bad) => {
                return Err(TokenError::InvalidScope(format!(
                    "{bad} was not granted; a refresh may narrow scopes, never widen them"
                ))
                .into())
            }
            None => r.clone(),
        },
    };
    let terms = token_terms(client, &cmd.access, Some(&old.terms))?;
    let is_head = view.head.1 == old.id;
    let superseded = match view.used_at {
        None if is_head => None,
        Some(used_at)
            if cmd.grace_secs > 0
                && view.head.0 == old.generation + 1
                && cmd.now - used_at <= i64::from(cmd.grace_secs) =>
        {
            // The successor was never used: the client lost the response. Retire it and hand
            // out a fresh one.
            Some(view.head.1)
        }
        _ => {
            return Err(Refusal {
                error: TokenError::InvalidGrant(GrantRejected::RefreshReused),
                record: vec![Event::RefreshTokenReuseDetected(
                    RefreshTokenReuseDetected {
                        id: old.id,
                        client_id: client.client_id.clone(),
                        user_id: old.user_id,
                        family_id: old.family_id,
                    },
                )],
            })
        }
    };
    let mut events = vec![
        Event::RefreshTokenRotated(RefreshTokenRotated {
            id: old.id,
            client_id: client.client_id.clone(),
            family_id: old.family_id,
            superseded,
            rotated_at: cmd.now,
        }),
        Event::RefreshTokenIssued(RefreshTokenIssued {
            id: cmd.refresh.id,
            token_hash: cmd.refresh.token_hash.clone(),
            client_id: client.client_id.clone(),
            user_id: old.user_id,
            scopes: old.scopes.clone(),
            family_id: old.family_id,
            generation: old.generation + 1,
            issued_at: cmd.now,
            expires_at: (cmd.now + i64::from(cmd.refresh.ttl_secs)).min(old.family_expires_at),
            family_expires_at: old.family_expires_at,
            oidc: old.oidc.clone(),
            terms: old.terms.clone(),
        }),
    ];
    // Core §12.2: a refreshed id_token keeps the sign-in's auth_time and the same sub.
    let id_token = old.oidc.as_ref().filter(|_| is_openid(&scopes)).map(|c| {
        id_token_issued(
            client,
            &cmd.id_token,
            old.user_id,
            c,
            GrantType::RefreshToken,
            Some(old.family_id),
            cmd.now,
        )
    });
    events.push(access_token(
        client,
        &cmd.access,
        old.user_id,
        scopes,
        GrantType::RefreshToken,
        Some(old.family_id),
        terms,
        cmd.now,
    ));
    events.extend(id_token);
    Ok(events)
}

/// Decides [`RevokeAuthorization`].
pub fn revoke_authorization(client: &Client, cmd: &RevokeAuthorization) -> Vec<Event> {
    vec![Event::AuthorizationRevoked(AuthorizationRevoked {
        client_id: client.client_id.clone(),
        user_id: cmd.user_id,
    })]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::tests::{id, registration};
    use crate::client::RegisterClient;
    use crate::client::{self, ClientCommand, ClientState};
    use crate::testing::Scenario;
    use crate::token::RequestRejected;
    use crate::token::{decide, TokenCommand};
    use crate::values::HashKey;
    use crate::values::{ClientId, RedirectUri};

    const NOW: i64 = 1_700_000_000;
    const CB: &str = "https://billing.example/cb";
    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    fn user() -> UserId {
        UserId(Uuid::from_u128(42))
    }

    fn registered(public: bool) -> Event {
        let mut r = registration();
        r.public = public;
        r.secret_hash = (!public).then(|| HashKey::for_tests().hash("s"));
        r.redirect_uris = vec![RedirectUri::parse(CB).unwrap()];
        r.grant_types = vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::Password,
        ];
        client::decide(&ClientState::Unregistered, &ClientCommand::Register(r))
            .unwrap()
            .remove(0)
    }

    fn scenario() -> Scenario<ClientState, TokenCommand, Refusal> {
        Scenario::new(decide, client::evolve)
    }

    fn scopes(s: &str) -> Vec<Scope> {
        Scope::parse_list(s).unwrap()
    }

    fn request(consent: ConsentDecision, existing: Option<&str>) -> AuthorizationRequest {
        AuthorizationRequest {
            user_id: user(),
            scopes: Some(scopes("read")),
            redirect_uri: Some(CB.into()),
            pkce: Some((CHALLENGE.into(), PkceMethod::S256)),
            consent,
            existing_consent: ConsentView {
                scopes: existing.map(scopes),
            },
            now: NOW,
            oidc: Default::default(),
            terms: Default::default(),
            pushed: None,
        }
    }

    fn code_issued(challenge: bool) -> AuthorizationCodeIssued {
        AuthorizationCodeIssued {
            code_hash: HashKey::for_tests().hash("code"),
            client_id: id(),
            user_id: user(),
            redirect_uri: CB.into(),
            redirect_uri_sent: true,
            scopes: scopes("read"),
            code_challenge: challenge.then(|| CHALLENGE.to_owned()),
            code_challenge_method: challenge.then_some(PkceMethod::S256),
            issued_at: NOW,
            expires_at: NOW + 60,
            oidc: Default::default(),
            terms: Default::default(),
        }
    }

    fn issue(req: AuthorizationRequest) -> TokenCommand {
        TokenCommand::IssueCode(IssueCode {
            request: req,
            code_hash: HashKey::for_tests().hash("code"),
            ttl_secs: 60,
        })
    }

    fn pushed(used: bool, client: ClientId) -> crate::par::PushedUse {
        let request_uri_hash = HashKey::for_tests().hash("urn:ietf:params:oauth:request_uri:x");
        crate::par::PushedUse {
            request_uri_hash: request_uri_hash.clone(),
            view: Some(crate::par::PushedView {
                pushed: crate::event::AuthorizationRequestPushed {
                    client_id: client,
                    request_uri_hash,
                    parameters: vec![("response_type".into(), "code".into())],
                    pushed_at: NOW - 10,
                    expires_at: NOW + 80,
                },
                used,
            }),
        }
    }

    #[test]
    fn a_pushed_request_is_spent_by_the_code_it_leads_to_and_only_once() {
        use crate::par::PushRejected;
        let mut req = request(ConsentDecision::Remembered, Some("read"));
        req.pushed = Some(pushed(false, id()));
        scenario()
            .given(vec![registered(false)])
            .when(issue(req.clone()))
            .then(vec![
                Event::PushedAuthorizationRequestUsed(
                    crate::event::PushedAuthorizationRequestUsed {
                        client_id: id(),
                        request_uri_hash: req.pushed.clone().unwrap().request_uri_hash,
                    },
                ),
                Event::AuthorizationCodeIssued(code_issued(true)),
            ]);
        for (p, now, why) in [
            (pushed(true, id()), NOW, PushRejected::Used),
            (pushed(false, id()), NOW + 80, PushRejected::Expired),
            (
                pushed(false, ClientId::parse("someone-else").unwrap()),
                NOW,
                PushRejected::Unknown,
            ),
            (
                crate::par::PushedUse {
                    view: None,
                    ..pushed(false, id())
                },
                NOW,
                PushRejected::Unknown,
            ),
        ] {
            let mut r = req.clone();
            r.pushed = Some(p);
            r.now = now;
            scenario()
                .given(vec![registered(false)])
                .when(issue(r))
                .then_err(TokenError::InvalidRequestUri(why).into());
        }
    }

    #[test]
    fn a_client_that_must_push_cannot_send_a_plain_request() {
        let mut r = registration();
        r.redirect_uris = vec![RedirectUri::parse(CB).unwrap()];
        r.grant_types = vec![GrantType::AuthorizationCode];
        r.extensions.require_pushed_authorization_requests = true;
        let registered = client::decide(&ClientState::Unregistered, &ClientCommand::Register(r))
            .unwrap()
            .remove(0);
        scenario()
            .given(vec![registered])
            .when(issue(request(ConsentDecision::Remembered, Some("read"))))
            .then_err(TokenError::InvalidRequest(RequestRejected::PushRequired).into());
    }

    #[test]
    fn approving_records_the_consent_then_the_code() {
        scenario()
            .given(vec![registered(false)])
            .when(issue(request(ConsentDecision::Approved, Some("write"))))
            .then(vec![
                Event::AuthorizationGranted(AuthorizationGranted {
                    client_id: id(),
                    user_id: user(),
                    scopes: scopes("write read"),
                }),
                Event::AuthorizationCodeIssued(code_issued(true)),
            ]);
    }

    #[test]
    fn remembered_consent_skips_the_page_for_confidential_clients_only() {
        scenario()
            .given(vec![registered(false)])
            .when(issue(request(ConsentDecision::Remembered, Some("read"))))
            .then(vec![Event::AuthorizationCodeIssued(code_issued(true))]);
        scenario()
            .given(vec![registered(true)])
            .when(issue(request(ConsentDecision::Remembered, Some("read"))))
            .then_err(TokenError::ConsentRequired.into());
        scenario()
            .given(vec![registered(false)])
            .when(issue(request(ConsentDecision::Remembered, Some("write"))))
            .then_err(TokenError::ConsentRequired.into());
    }

    #[test]
    fn public_clients_need_s256_and_plain_needs_the_clients_permission() {
        let mut req = request(ConsentDecision::Approved, None);
        req.pkce = None;
        scenario()
            .given(vec![registered(true)])
            .when(issue(req.clone()))
            .then_err(TokenError::InvalidRequest(RequestRejected::PkceRequired).into());
        req.pkce = Some((VERIFIER.into(), PkceMethod::Plain));
        scenario()
            .given(vec![registered(false)])
            .when(issue(req))
            .then_err(TokenError::InvalidRequest(RequestRejected::PlainPkceNotAllowed).into());
    }

    fn redeem(
        view: Option<CodeView>,
        verifier: Option<&str>,
        redirect: Option<&str>,
    ) -> TokenCommand {
        TokenCommand::RedeemCode(RedeemCode {
            code: view,
            code_hash: HashKey::for_tests().hash("code"),
            legacy_code_hash: None,
            redirect_uri: redirect.map(str::to_owned),
            code_verifier: verifier.map(str::to_owned),
            token: NewAccessToken {
                jti: Uuid::from_u128(1),
                opaque_token_hash: HashKey::for_tests().hash("at"),
                kid: None,
                dpop: None,
                resources: Vec::new(),
            },
            refresh: NewRefreshToken {
                id: Uuid::from_u128(2),
                token_hash: HashKey::for_tests().hash("rt"),
                ttl_secs: 3600,
                family_ttl_secs: 86_400,
            },
            family_id: Uuid::from_u128(3),
            now: NOW + 5,
            id_token: Default::default(),
        })
    }

    fn view(challenge: bool, redeemed: bool) -> Option<CodeView> {
        Some(CodeView {
            issued: code_issued(challenge),
            redeemed_family: redeemed.then(|| Uuid::from_u128(3)),
            session_ended: false,
            user_locked: false,
        })
    }

    fn refresh_issued(id: u128, generation: u32) -> RefreshTokenIssued {
        RefreshTokenIssued {
            id: Uuid::from_u128(id),
            token_hash: HashKey::for_tests().hash(&format!("rt{id}")),
            client_id: self::id(),
            user_id: user(),
            scopes: scopes("read"),
            family_id: Uuid::from_u128(3),
            generation,
            issued_at: NOW + 5,
            expires_at: NOW + 5 + 3600,
            family_expires_at: NOW + 86_400,
            oidc: Default::default(),
            terms: Default::default(),
        }
    }

    #[test]
    fn a_code_redeems_once_into_a_new_family() {
        let Ok(events) = decide(
            &{
                let mut s = ClientState::default();
                client::evolve(&mut s, &registered(true));
                s
            },
            &redeem(view(true, false), Some(VERIFIER), Some(CB)),
        ) else {
            panic!("refused")
        };
        let types: Vec<_> = events.iter().map(Event::type_name).collect();
        assert_eq!(
            types,
            [
                "AuthorizationCodeRedeemed",
                "AccessTokenIssued",
                "RefreshTokenIssued"
            ]
        );
        let Event::RefreshTokenIssued(r) = &events[2] else {
            panic!()
        };
        assert_eq!((r.generation, r.family_id), (1, Uuid::from_u128(3)));
    }

    #[test]
    fn a_replayed_code_is_refused_and_revokes_its_family() {
        scenario()
            .given(vec![registered(true)])
            .when(redeem(view(true, true), Some(VERIFIER), Some(CB)))
            .then_err(Refusal {
                error: TokenError::InvalidGrant(GrantRejected::CodeReplayed),
                record: vec![Event::AuthorizationCodeReplayed(
                    AuthorizationCodeReplayed {
                        code_hash: HashKey::for_tests().hash("code"),
                        client_id: id(),
                        user_id: user(),
                        family_id: Uuid::from_u128(3),
                    },
                )],
            });
    }

    #[test]
    fn pkce_and_redirect_uri_must_match_the_authorization_request() {
        let refused = |cmd: TokenCommand, why: GrantRejected| {
            scenario()
                .given(vec![registered(true)])
                .when(cmd)
                .then_err(TokenError::InvalidGrant(why).into())
        };
        refused(
            redeem(view(true, false), None, Some(CB)),
            GrantRejected::VerifierMissing,
        );
        refused(
            redeem(
                view(true, false),
                Some(&VERIFIER.replace('d', "e")),
                Some(CB),
            ),
            GrantRejected::VerifierMismatch,
        );
        refused(
            redeem(view(false, false), Some(VERIFIER), Some(CB)),
            GrantRejected::VerifierWithoutChallenge,
        );
        refused(
            redeem(
                view(true, false),
                Some(VERIFIER),
                Some("https://billing.example/cB"),
            ),
            GrantRejected::RedirectUriDiffers,
        );
        refused(
            redeem(view(true, false), Some(VERIFIER), None),
            GrantRejected::RedirectUriMissing,
        );
        refused(
            redeem(None, Some(VERIFIER), Some(CB)),
            GrantRejected::UnknownCode,
        );
    }

    fn rotate(view: RefreshView, grace: u32, at: i64, scope: Option<&str>) -> TokenCommand {
        TokenCommand::Refresh(RefreshGrant {
            token_hash: HashKey::for_tests().hash("rt2"),
            legacy_token_hash: None,
            token: Some(view),
            scopes: scope.map(scopes),
            access: NewAccessToken {
                jti: Uuid::from_u128(10),
                opaque_token_hash: HashKey::for_tests().hash("at2"),
                kid: None,
                dpop: None,
                resources: Vec::new(),
            },
            refresh: NewRefreshToken {
                id: Uuid::from_u128(11),
                token_hash: HashKey::for_tests().hash("rt11"),
                ttl_secs: 3600,
                family_ttl_secs: 86_400,
            },
            grace_secs: grace,
            now: at,
            id_token: Default::default(),
        })
    }

    fn refresh_view(used_at: Option<i64>, head: (u32, u128)) -> RefreshView {
        RefreshView {
            issued: refresh_issued(2, 1),
            used_at,
            head: (head.0, Uuid::from_u128(head.1)),
            family_revoked: false,
            authorization_revoked: false,
            session_ended: false,
            user_locked: false,
        }
    }

    #[test]
    fn refreshing_rotates_the_token_and_may_narrow_scopes() {
        let Ok(events) = decide(
            &{
                let mut s = ClientState::default();
                client::evolve(&mut s, &registered(false));
                s
            },
            &rotate(refresh_view(None, (1, 2)), 0, NOW + 10, Some("read")),
        ) else {
            panic!("refused")
        };
        assert_eq!(
            events[0],
            Event::RefreshTokenRotated(RefreshTokenRotated {
                id: Uuid::from_u128(2),
                client_id: id(),
                family_id: Uuid::from_u128(3),
                superseded: None,
                rotated_at: NOW + 10,
            })
        );
        let Event::RefreshTokenIssued(next) = &events[1] else {
            panic!()
        };
        assert_eq!(next.generation, 2);
        scenario()
            .given(vec![registered(false)])
            .when(rotate(
                refresh_view(None, (1, 2)),
                0,
                NOW + 10,
                Some("read write"),
            ))
            .then_err(
                TokenError::InvalidScope(
                    "write was not granted; a refresh may narrow scopes, never widen them".into(),
                )
                .into(),
            );
    }

    #[test]
    fn a_used_refresh_token_revokes_its_family_unless_retried_within_grace() {
        let reuse = Refusal {
            error: TokenError::InvalidGrant(GrantRejected::RefreshReused),
            record: vec![Event::RefreshTokenReuseDetected(
                RefreshTokenReuseDetected {
                    id: Uuid::from_u128(2),
                    client_id: id(),
                    user_id: user(),
                    family_id: Uuid::from_u128(3),
                },
            )],
        };
        // Strict: any reuse.
        scenario()
            .given(vec![registered(false)])
            .when(rotate(
                refresh_view(Some(NOW + 10), (2, 5)),
                0,
                NOW + 11,
                None,
            ))
            .then_err(reuse.clone());
        // Grace, successor unused: a fresh successor, the unused one retired.
        let Ok(events) = decide(
            &{
                let mut s = ClientState::default();
                client::evolve(&mut s, &registered(false));
                s
            },
            &rotate(refresh_view(Some(NOW + 10), (2, 5)), 30, NOW + 20, None),
        ) else {
            panic!("refused")
        };
        let Event::RefreshTokenRotated(r) = &events[0] else {
            panic!()
        };
        assert_eq!(r.superseded, Some(Uuid::from_u128(5)));
        // Grace, but the successor was used (the head moved on): reuse.
        scenario()
            .given(vec![registered(false)])
            .when(rotate(
                refresh_view(Some(NOW + 10), (3, 6)),
                30,
                NOW + 20,
                None,
            ))
            .then_err(reuse.clone());
        // Grace elapsed: reuse.
        scenario()
            .given(vec![registered(false)])
            .when(rotate(
                refresh_view(Some(NOW + 10), (2, 5)),
                30,
                NOW + 41,
                None,
            ))
            .then_err(reuse);
    }

    #[test]
    fn views_follow_the_events_in_flight() {
        let mut v = refresh_view(None, (1, 2));
        v.observe(&Event::RefreshTokenRotated(RefreshTokenRotated {
            id: Uuid::from_u128(2),
            client_id: id(),
            family_id: Uuid::from_u128(3),
            superseded: None,
            rotated_at: NOW + 10,
        }));
        v.observe(&Event::RefreshTokenIssued(refresh_issued(5, 2)));
        assert_eq!(
            (v.used_at, v.head),
            (Some(NOW + 10), (2, Uuid::from_u128(5)))
        );
        v.observe(&Event::RefreshTokenReuseDetected(
            RefreshTokenReuseDetected {
                id: Uuid::from_u128(2),
                client_id: id(),
                user_id: user(),
                family_id: Uuid::from_u128(3),
            },
        ));
        assert!(v.family_revoked);
        let mut c = view(true, false).unwrap();
        c.observe(&Event::AuthorizationCodeRedeemed(
            AuthorizationCodeRedeemed {
                code_hash: HashKey::for_tests().hash("code"),
                client_id: id(),
                user_id: user(),
                family_id: Uuid::from_u128(9),
            },
        ));
        assert_eq!(c.redeemed_family, Some(Uuid::from_u128(9)));
    }

    fn signed_in(nonce: Option<&str>) -> OidcContext {
        OidcContext {
            auth_time: NOW - 30,
            sid: Some("s1".into()),
            nonce: nonce.map(str::to_owned),
            amr: vec!["pwd".into()],
            acr: Some("1".into()),
            claims: crate::event::ClaimsRequest {
                id_token: vec!["email".into()],
                userinfo: vec![],
            },
            subject: None,
        }
    }

    fn with_openid(mut r: RegisterClient) -> RegisterClient {
        r.scopes = scopes("openid read profile");
        r
    }

    fn registered_for_openid(grants: Vec<GrantType>) -> Event {
        let mut r = with_openid(registration());
        r.secret_hash = Some(HashKey::for_tests().hash("s"));
        r.redirect_uris = vec![RedirectUri::parse(CB).unwrap()];
        r.grant_types = grants;
        client::decide(&ClientState::Unregistered, &ClientCommand::Register(r))
            .unwrap()
            .remove(0)
    }

    fn id_tokens(events: &[Event]) -> Vec<&IdTokenIssued> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::IdTokenIssued(i) => Some(i),
                _ => None,
            })
            .collect()
    }

    fn state_of(events: &[Event]) -> ClientState {
        let mut s = ClientState::default();
        for e in events {
            client::evolve(&mut s, e);
        }
        s
    }

    #[test]
    fn an_openid_code_records_the_sign_in_and_its_redemption_an_id_token_with_the_nonce() {
        let client =
            registered_for_openid(vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
        let mut req = request(ConsentDecision::Approved, None);
        req.scopes = Some(scopes("openid read"));
        req.oidc = Some(signed_in(Some("n-0S6_WzA2Mj")));
        let events = decide(&state_of(std::slice::from_ref(&client)), &issue(req)).unwrap();
        let Some(Event::AuthorizationCodeIssued(code)) = events.last() else {
            panic!("no code: {events:?}")
        };
        assert_eq!(code.oidc, Some(signed_in(Some("n-0S6_WzA2Mj"))));
        // Redeemed: the id_token says who signed in when, with the request's nonce.
        let mut cmd = redeem(
            Some(CodeView {
                issued: code.clone(),
                redeemed_family: None,
                session_ended: false,
                user_locked: false,
            }),
            Some(VERIFIER),
            Some(CB),
        );
        if let TokenCommand::RedeemCode(r) = &mut cmd {
            r.id_token = NewIdToken {
                jti: Uuid::from_u128(7),
                kid: Some("rs".into()),
            };
        }
        let events = decide(&state_of(std::slice::from_ref(&client)), &cmd).unwrap();
        let ids = id_tokens(&events);
        assert_eq!(ids.len(), 1);
        let id = ids[0];
        assert_eq!(
            (id.jti, id.user_id, id.auth_time, id.nonce.as_deref()),
            (Uuid::from_u128(7), user(), NOW - 30, Some("n-0S6_WzA2Mj"))
        );
        assert_eq!(id.subject, user().to_string());
        assert_eq!(id.sid.as_deref(), Some("s1"));
        assert_eq!(id.family_id, Some(Uuid::from_u128(3)));
        assert_eq!(id.claims.id_token, vec!["email".to_owned()]);
        // The grant's refresh token keeps the sign-in, not the nonce.
        let Some(Event::RefreshTokenIssued(rt)) = events
            .iter()
            .find(|e| matches!(e, Event::RefreshTokenIssued(_)))
        else {
            panic!("no refresh token")
        };
        assert_eq!(
            rt.oidc,
            Some(OidcContext {
                nonce: None,
                ..signed_in(None)
            })
        );
        // Refreshed: a new id_token with the first sign-in's auth_time and sub, no nonce.
        let view = RefreshView {
            issued: rt.clone(),
            used_at: None,
            head: (1, rt.id),
            family_revoked: false,
            authorization_revoked: false,
            session_ended: false,
            user_locked: false,
        };
        let mut cmd = rotate(view, 0, NOW + 600, None);
        if let TokenCommand::Refresh(r) = &mut cmd {
            r.id_token = NewIdToken {
                jti: Uuid::from_u128(8),
                kid: Some("rs".into()),
            };
        }
        let events = decide(&state_of(&[client]), &cmd).unwrap();
        let ids = id_tokens(&events);
        assert_eq!(ids.len(), 1);
        assert_eq!(
            (ids[0].auth_time, ids[0].nonce.as_deref(), ids[0].issued_at),
            (NOW - 30, None, NOW + 600)
        );
        assert_eq!(ids[0].subject, user().to_string());
    }

    #[test]
    fn without_openid_no_sign_in_is_recorded_and_no_id_token_issued() {
        let client = registered_for_openid(vec![GrantType::AuthorizationCode]);
        let mut req = request(ConsentDecision::Approved, None);
        req.oidc = Some(signed_in(Some("n")));
        let events = decide(&state_of(std::slice::from_ref(&client)), &issue(req)).unwrap();
        let Some(Event::AuthorizationCodeIssued(code)) = events.last() else {
            panic!()
        };
        assert_eq!(code.oidc, None, "scope read alone is plain OAuth");
        let events = decide(
            &state_of(&[client]),
            &redeem(
                Some(CodeView {
                    issued: code.clone(),
                    redeemed_family: None,
                    session_ended: false,
                    user_locked: false,
                }),
                Some(VERIFIER),
                Some(CB),
            ),
        )
        .unwrap();
        assert!(id_tokens(&events).is_empty());
    }

    #[test]
    fn an_id_token_from_the_authorization_endpoint_needs_openid_and_a_nonce() {
        let client = registered_for_openid(vec![GrantType::Implicit]);
        let implicit = |scope: &str, nonce: Option<&str>| {
            let mut req = request(ConsentDecision::Approved, None);
            req.scopes = Some(scopes(scope));
            req.pkce = None;
            req.oidc = Some(signed_in(nonce));
            TokenCommand::IssueImplicit(IssueImplicit {
                request: req,
                token: None,
                id_token: Some(NewIdToken {
                    jti: Uuid::from_u128(9),
                    kid: Some("rs".into()),
                }),
            })
        };
        scenario()
            .given(vec![client.clone()])
            .when(implicit("openid", None))
            .then_err(TokenError::InvalidRequest(RequestRejected::NonceRequired).into());
        scenario()
            .given(vec![client.clone()])
            .when(implicit("read", Some("n")))
            .then_err(TokenError::InvalidRequest(RequestRejected::IdTokenNeedsOpenid).into());
        let events = decide(&state_of(&[client]), &implicit("openid profile", Some("n"))).unwrap();
        let ids = id_tokens(&events);
        assert_eq!(ids.len(), 1);
        assert_eq!(
            (ids[0].grant_type, ids[0].family_id, ids[0].nonce.as_deref()),
            (GrantType::Implicit, None, Some("n"))
        );
        assert!(!events
            .iter()
            .any(|e| matches!(e, Event::AccessTokenIssued(_))));
    }

    #[test]
    fn a_locked_users_codes_and_refresh_tokens_get_nothing_even_offline() {
        let client =
            registered_for_openid(vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
        let view = CodeView {
            issued: code_issued(true),
            redeemed_family: None,
            session_ended: false,
            user_locked: true,
        };
        scenario()
            .given(vec![client.clone()])
            .when(redeem(Some(view), Some(VERIFIER), Some(CB)))
            .then_err(invalid_grant(GrantRejected::AccountLocked));
        let mut view = refresh_view(None, (1, 2));
        view.user_locked = true;
        view.issued.scopes = scopes("read offline_access");
        scenario()
            .given(vec![client])
            .when(rotate(view, 0, NOW + 10, None))
            .then_err(invalid_grant(GrantRejected::AccountLocked));
    }

    #[test]
    fn a_grant_whose_session_ended_issues_nothing_more_unless_it_is_offline() {
        let client =
            registered_for_openid(vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
        let mut issued = code_issued(true);
        issued.oidc = Some(signed_in(Some("n")));
        let view = CodeView {
            issued,
            redeemed_family: None,
            session_ended: true,
            user_locked: false,
        };
        scenario()
            .given(vec![client.clone()])
            .when(redeem(Some(view), Some(VERIFIER), Some(CB)))
            .then_err(invalid_grant(GrantRejected::SessionEnded));
        let mut view = refresh_view(None, (1, 2));
        view.session_ended = true;
        scenario()
            .given(vec![client.clone()])
            .when(rotate(view.clone(), 0, NOW + 10, None))
            .then_err(invalid_grant(GrantRejected::SessionEnded));
        view.issued.scopes = scopes("read offline_access");
        let events = decide(
            &state_of(std::slice::from_ref(&client)),
            &rotate(view, 0, NOW + 10, None),
        );
        assert!(
            events.is_ok(),
            "offline_access outlives the session: {events:?}"
        );
    }
}
