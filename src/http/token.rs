//! `POST /token`: the token endpoint (RFC 6749 §3.2), for every grant: `client_credentials`
//! (§4.4), `authorization_code` with PKCE (§4.1.3, RFC 7636), `password` (§4.3) and
//! `refresh_token` with rotation (§6, RFC 9700 §4.14) and `jwt-bearer` (RFC 7523 §2.1).

use super::client_auth::authenticate_or_public;
use super::error::OAuthError;
use super::form::{read_form, Form};
use super::AppState;
use crate::actors::CommandError;
use crate::keys::AccessTokenClaims;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use domain::assertion::{AcceptAssertion, JwtBearerGrant};
use domain::event::{AccessTokenIssued, AssertionUse, Event};
use domain::grant::{
    self, NewAccessToken, NewIdToken, NewRefreshToken, PasswordGrant, RedeemCode, RefreshGrant,
};
use domain::oauth::ErrorCode;
use domain::token::{IssueClientCredentialsToken, TokenCommand, TokenError};
use domain::values::{join_scopes, GrantType, HashKey, Scope, SecretHash, TokenFormat};
use domain::Cause;
use uuid::Uuid;

/// Maps an actor failure to its OAuth error.
pub fn command_error(e: CommandError) -> OAuthError {
    match e {
        CommandError::Token(t) => token_error(t),
        CommandError::Client(c) => OAuthError::invalid_request(c.to_string()),
        CommandError::User(u) => OAuthError::invalid_request(u.to_string()),
        CommandError::Session(s) => OAuthError::invalid_request(s.to_string()),
        CommandError::Registration(r) => OAuthError::new(ErrorCode::InvalidToken, r.to_string()),
        CommandError::Unavailable(d) => OAuthError::new(ErrorCode::TemporarilyUnavailable, d),
        e @ CommandError::Recovering => {
            OAuthError::new(ErrorCode::TemporarilyUnavailable, e.to_string())
        }
        CommandError::Keys(d) => OAuthError::invalid_request(d),
        CommandError::Store(e) => store_error(&e),
        e @ CommandError::ReadModels(_) => {
            tracing::error!(error = %super::error::chain(&e), "a decision could not read its read models");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the server cannot decide this request now; try again later",
            )
        }
    }
}

/// A store failure on the write path: the request was not recorded. Anything but corruption
/// is a storage that cannot take writes now (a full disk, an unreachable database), which the
/// client may retry: 503. The cause goes to the log, not to the client.
pub fn store_error(e: &crate::store::StoreError) -> OAuthError {
    use crate::store::StoreError as S;
    match e {
        S::Corrupt(_) | S::Corrupted(_) => OAuthError::server_error(e),
        _ => {
            tracing::warn!(
                error = %super::error::chain(e),
                "a request was refused: the store cannot take writes"
            );
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the server cannot record this request now (storage unavailable); try again later",
            )
        }
    }
}

/// Maps a refused token decision to its OAuth error.
pub fn token_error(t: TokenError) -> OAuthError {
    OAuthError::new(t.code(), t.to_string())
}

/// The wire value of an issued access token: the opaque value drawn for it, or a JWT signed
/// now, outside the actor, once its event is durable.
pub fn access_token_value(
    state: &AppState,
    issued: &AccessTokenIssued,
    opaque: String,
) -> Result<String, OAuthError> {
    match issued.format {
        TokenFormat::Opaque => Ok(opaque),
        TokenFormat::Jwt => state
            .keys
            .sign(
                issued
                    .kid
                    .as_deref()
                    .ok_or_else(|| OAuthError::server_error(&"no signing key was chosen"))?,
                &AccessTokenClaims {
                    iss: state.issuer.clone(),
                    sub: issued
                        .grant_type
                        .speaks_for_a_user()
                        .then(|| domain::values::UserId::parse(&issued.subject).ok())
                        .flatten()
                        .and_then(|user| {
                            super::oidc::outside_subject(state, &issued.client_id, Some(user))
                        })
                        .unwrap_or_else(|| issued.subject.clone()),
                    aud: crate::keys::audience_claim(&issued.terms.audience, &state.issuer),
                    client_id: issued.client_id.to_string(),
                    scope: join_scopes(&issued.scopes),
                    iat: issued.issued_at,
                    exp: issued.expires_at,
                    jti: issued.jti.to_string(),
                    cnf: issued
                        .terms
                        .jkt
                        .clone()
                        .map(|jkt| crate::keys::Confirmation { jkt }),
                    act: issued.terms.act.clone(),
                },
            )
            .map_err(|e| OAuthError::server_error(&e)),
    }
}

/// 256 random bits, base64url: an opaque token, refresh token or code, and its keyed hash.
pub fn fresh_secret(key: &HashKey) -> Result<(String, SecretHash), OAuthError> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).map_err(|e| OAuthError::server_error(&e))?;
    let value = URL_SAFE_NO_PAD.encode(bytes);
    let hash = key.hash(&value);
    Ok((value, hash))
}

/// Handles a token request (POST).
#[tracing::instrument(skip_all, fields(client_id, grant_type))]
#[utoipa::path(
    post,
    path = "/token",
    tag = "oauth",
    operation_id = "token",
    request_body(content = crate::http::openapi::TokenRequest, content_type = "application/x-www-form-urlencoded"),
    security(("client" = [])),
    responses(
        (status = 200, description = "Tokens issued", body = crate::http::openapi::TokenResponse),
        crate::http::openapi::ClientErrors,
    )
)]
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    let form = read_form(&req, payload).await?;
    grant(&req, &form, &state).await
}

/// Handles a token request by GET, only when `--allow-get-token-requests` is on (some old
/// clients send them; credentials then travel in URLs).
#[utoipa::path(
    get,
    path = "/token",
    tag = "oauth",
    operation_id = "token_by_get",
    params(("grant_type" = String, Query, description = "As the POST form has it")),
    responses(
        (status = 200, description = "Tokens issued (only with `allow_get_token_requests`)", body = crate::http::openapi::TokenResponse),
        (status = 405, description = "Token requests are POST (the default)", body = crate::http::openapi::OAuthErrorBody),
        crate::http::openapi::ClientErrors,
    )
)]
pub async fn token_by_get(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OAuthError> {
    if !state.grants.allow_get_token_requests {
        return Ok(super::method_not_allowed("POST"));
    }
    let form = Form::parse(req.query_string().as_bytes())?;
    grant(&req, &form, &state).await
}

/// Longest a SAML assertion may still live, in seconds: it bounds how long its `ID` is kept.
const SAML_MAX_LIFETIME_SECS: i64 = 3600;

/// The SAML 2.0 bearer grant (RFC 7522): the assertion's signature by the client's trusted
/// IdP, then its issuer, audience, recipient and time window (`crate::saml`).
fn saml_grant(
    state: &AppState,
    client: &domain::client::Client,
    form: &Form,
    scopes: Option<Vec<Scope>>,
    token: NewAccessToken,
    now: i64,
) -> Result<domain::saml::SamlBearerGrant, OAuthError> {
    let refused = |why: crate::saml::SamlError| {
        OAuthError::new(ErrorCode::InvalidGrant, format!("assertion refused: {why}"))
    };
    let Some(idp) = &client.extensions.saml_idp else {
        return Err(token_error(TokenError::UnauthorizedClient(
            domain::token::ClientRefused::GrantNotAllowed(GrantType::Saml2Bearer),
        )));
    };
    let verified = crate::saml::verify_assertion(form.require("assertion")?, &idp.certificate_pem)
        .map_err(refused)?;
    let issuer = state.issuer.as_str();
    let token_url = format!("{issuer}/token");
    let expires_at = verified
        .check(&crate::saml::Expected {
            issuer: &idp.issuer,
            audiences: &[idp.audience.as_str(), issuer, &token_url],
            recipients: &[&token_url],
            now,
            leeway: domain::assertion::LEEWAY_SECS,
            max_lifetime: SAML_MAX_LIFETIME_SECS,
        })
        .map_err(refused)?;
    Ok(domain::saml::SamlBearerGrant {
        assertion: domain::saml::SamlAssertion {
            issuer: verified.issuer,
            id: verified.id,
            subject: verified.subject,
            expires_at,
        },
        seen: false,
        scopes,
        token,
        now,
    })
}

async fn grant(
    req: &HttpRequest,
    form: &Form,
    state: &AppState,
) -> Result<HttpResponse, OAuthError> {
    let client = authenticate_or_public(req, form, state).await?;
    state.limits.token(&client.view.client.client_id)?;
    let client_id = client.view.client.client_id.clone();
    let span = tracing::Span::current();
    span.record("client_id", client_id.as_str());
    let grant = form.require("grant_type")?;
    span.record("grant_type", grant);
    let scopes = form
        .get("scope")
        .map(Scope::parse_list)
        .transpose()
        // Named, not echoed: the value is the caller's and may hold anything.
        .map_err(|_| OAuthError::new(ErrorCode::InvalidScope, "scope must be space-separated scope tokens of printable ASCII without quotes or backslashes (RFC 6749 §3.3)"))?;
    let (opaque, opaque_token_hash) = fresh_secret(&state.hash_key)?;
    let now = state.engine.clock.unix_now();
    let access = NewAccessToken {
        jti: Uuid::now_v7(),
        opaque_token_hash,
        kid: state.kid_for(&client.view.client, now),
        dpop: super::dpop::token_request_proof(req, state, now)?,
        resources: form.resources()?,
    };
    // Used only when the grant turns out to be an OpenID Connect grant.
    let id_token = NewIdToken {
        jti: Uuid::now_v7(),
        kid: super::oidc::id_token_kid(state, &client.view.client, now),
    };
    let parsed = GrantType::parse(grant);
    // Only the user grants may issue a refresh token: client_credentials, the hot path, draws
    // none. Its value is kept for the answer; the command carries its hash.
    let mut refresh_value = String::new();
    let mut new_refresh = || -> Result<NewRefreshToken, OAuthError> {
        let (value, token_hash) = fresh_secret(&state.hash_key)?;
        refresh_value = value;
        Ok(NewRefreshToken {
            id: Uuid::now_v7(),
            token_hash,
            ttl_secs: state.grants.refresh_token_ttl_secs,
            family_ttl_secs: state.grants.refresh_family_ttl_secs,
        })
    };
    let command = match parsed {
        Ok(GrantType::ClientCredentials) => {
            TokenCommand::IssueClientCredentials(IssueClientCredentialsToken {
                requested_scopes: scopes,
                token: access,
                now,
            })
        }
        Ok(GrantType::AuthorizationCode) => {
            let [code_hash, legacy_code_hash] = state.hash_key.candidates(form.require("code")?);
            TokenCommand::RedeemCode(RedeemCode {
                code: None,
                code_hash,
                legacy_code_hash: Some(legacy_code_hash),
                redirect_uri: form.get("redirect_uri").map(str::to_owned),
                code_verifier: form.get("code_verifier").map(str::to_owned),
                token: access,
                refresh: new_refresh()?,
                id_token,
                family_id: Uuid::now_v7(),
                now,
            })
        }
        Ok(GrantType::RefreshToken) => {
            let [token_hash, legacy_token_hash] =
                state.hash_key.candidates(form.require("refresh_token")?);
            TokenCommand::Refresh(RefreshGrant {
                token_hash,
                legacy_token_hash: Some(legacy_token_hash),
                token: None,
                scopes,
                access,
                refresh: new_refresh()?,
                id_token,
                grace_secs: state.grants.refresh_grace_secs,
                now,
            })
        }
        Ok(GrantType::Password) => {
            grant::allowed(&client.view.client, GrantType::Password).map_err(token_error)?;
            let username = form.require("username")?;
            let password = form.require("password")?;
            let user = super::account::check_password(
                req,
                state,
                username,
                password,
                domain::event::SignInVia::PasswordGrant {
                    client_id: client_id.clone(),
                },
            )
            .await?;
            TokenCommand::Password(PasswordGrant {
                user_id: user.user_id,
                scopes,
                token: access,
                refresh: new_refresh()?,
                id_token,
                pairwise_subject: super::oidc::pairwise_subject(
                    state,
                    &client.view.client,
                    user.user_id,
                ),
                family_id: Uuid::now_v7(),
                now,
            })
        }
        Ok(GrantType::Saml2Bearer) => {
            grant::allowed(&client.view.client, GrantType::Saml2Bearer).map_err(token_error)?;
            TokenCommand::Saml2Bearer(saml_grant(
                state,
                &client.view.client,
                form,
                scopes,
                access,
                now,
            )?)
        }
        Ok(GrantType::TokenExchange) => {
            grant::allowed(&client.view.client, GrantType::TokenExchange).map_err(token_error)?;
            TokenCommand::ExchangeToken(super::exchange::command(state, form, scopes, access, now)?)
        }
        Ok(GrantType::DeviceCode) => TokenCommand::PollDevice(domain::device::PollDevice {
            device_code_hash: state.hash_key.hash(form.require("device_code")?),
            device: None,
            pace: None,
            token: access,
            refresh: new_refresh()?,
            id_token,
            family_id: Uuid::now_v7(),
            now,
        }),
        Ok(GrantType::JwtBearer) => {
            grant::allowed(&client.view.client, GrantType::JwtBearer).map_err(token_error)?;
            let assertion = form.require("assertion")?;
            let claims = super::assertion::verify(assertion, client.view.client.jwks.as_ref())
                .map_err(|why| {
                    OAuthError::new(ErrorCode::InvalidGrant, format!("assertion refused: {why}"))
                })?;
            let issuer = &state.issuer;
            TokenCommand::JwtBearer(JwtBearerGrant {
                accept: AcceptAssertion {
                    assertion: claims,
                    used_for: AssertionUse::AuthorizationGrant,
                    audiences: vec![issuer.clone(), format!("{issuer}/token")],
                    seen: false,
                    now,
                },
                scopes,
                token: access,
            })
        }
        _ => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "the grant_type parameter names a grant this server does not support; see \
                 grant_types_supported in /.well-known/oauth-authorization-server",
            ))
        }
    };
    let cause = Cause::Client(client_id.to_string());
    let events = state
        .decide(req, &client_id, cause, command)
        .await
        .map_err(command_error)?;
    let Some(issued) = events.iter().find_map(|e| match &e.event {
        Event::AccessTokenIssued(i) => Some(i),
        _ => None,
    }) else {
        return Err(OAuthError::server_error(&"no token was recorded"));
    };
    let refreshed = events
        .iter()
        .any(|e| matches!(e.event, Event::RefreshTokenIssued(_)));
    let access_token = access_token_value(state, issued, opaque)?;
    let scope = join_scopes(&issued.scopes);
    let mut body = serde_json::json!({
        "access_token": access_token,
        // RFC 9449 §5: a token bound to a key is a DPoP token.
        "token_type": if issued.terms.jkt.is_some() { "DPoP" } else { "Bearer" },
        "expires_in": issued.expires_at - issued.issued_at,
    });
    if !scope.is_empty() {
        body["scope"] = scope.into();
    }
    if refreshed {
        body["refresh_token"] = refresh_value.into();
    }
    if issued.grant_type == GrantType::TokenExchange {
        body["issued_token_type"] = "urn:ietf:params:oauth:token-type:access_token".into();
    }
    if let Some(id) = events.iter().find_map(|e| match &e.event {
        Event::IdTokenIssued(i) => Some(i),
        _ => None,
    }) {
        let extras = super::oidc::IdTokenExtras {
            access_token: Some(&access_token),
            granted: &issued.scopes,
            ..Default::default()
        };
        body["id_token"] = super::oidc::id_token_value(state, id, extras)?.into();
    }
    let mut res = HttpResponse::Ok();
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"));
    if let Some(nonce) = super::dpop::current_nonce(state, now) {
        res.insert_header(("DPoP-Nonce", nonce));
    }
    Ok(res.json(body))
}
