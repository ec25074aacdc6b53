//! DPoP (RFC 9449) at this server's endpoints: the proof of a token request, which binds the
//! tokens it gets; the proof that must come with a bound token at `/userinfo` and
//! `/api/whoami`; and the server nonces of §8.
//!
//! Nonces are stateless: the keyed hash of the current 5-minute window, so every node and a
//! restarted server agree on them without storing any. A proof carrying the current or the
//! previous window's nonce is accepted.

use super::error::OAuthError;
use super::AppState;
use crate::bearer::{BearerError, Scheme};
use crate::dpop::{self, Expected};
use actix_web::HttpRequest;
use domain::dpop::DpopProof;
use domain::oauth::ErrorCode;
use domain::token::TokenCommand;
use domain::Cause;

/// How long one nonce lasts, in seconds.
const NONCE_WINDOW_SECS: i64 = 300;

fn nonce_at(state: &AppState, window: i64) -> String {
    let hash = state.hash_key.hash(&format!("dpop-nonce\0{window}"));
    // The digest's hex, without the scheme name.
    hash.as_str()
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .chars()
        .take(32)
        .collect()
}

/// The nonce proofs must carry now, when nonces are required.
pub fn current_nonce(state: &AppState, now: i64) -> Option<String> {
    state
        .grants
        .dpop_nonce
        .then(|| nonce_at(state, now.div_euclid(NONCE_WINDOW_SECS)))
}

fn nonce_ok(state: &AppState, nonce: Option<&str>, now: i64) -> bool {
    let window = now.div_euclid(NONCE_WINDOW_SECS);
    nonce.is_some_and(|n| n == nonce_at(state, window) || n == nonce_at(state, window - 1))
}

/// The URL a request was addressed to, as the issuer names this server.
fn request_url(state: &AppState, req: &HttpRequest) -> String {
    format!("{}{}", state.issuer.trim_end_matches('/'), req.path())
}

/// The verified proof of a token request, if it has one; `use_dpop_nonce` (with a fresh nonce
/// in `DPoP-Nonce`) when nonces are required and it lacks a current one.
pub fn token_request_proof(
    req: &HttpRequest,
    state: &AppState,
    now: i64,
) -> Result<Option<DpopProof>, OAuthError> {
    let invalid = |e: dpop::DpopError| OAuthError::new(ErrorCode::InvalidDpopProof, e.to_string());
    let Some(proof) = dpop::header_value(req.headers()).map_err(invalid)? else {
        return Ok(None);
    };
    let url = request_url(state, req);
    let verified = dpop::verify(
        proof,
        &Expected {
            method: req.method().as_str(),
            url: &url,
            access_token: None,
            now,
        },
    )
    .map_err(invalid)?;
    if let Some(nonce) = current_nonce(state, now) {
        if !nonce_ok(state, verified.nonce.as_deref(), now) {
            return Err(OAuthError::new(
                ErrorCode::UseDpopNonce,
                "the DPoP proof must carry the nonce in the DPoP-Nonce header",
            )
            .with_dpop_nonce(nonce));
        }
    }
    Ok(Some(DpopProof {
        expires_at: verified.remember_until(),
        jkt: verified.jkt,
        jti: verified.jti,
        seen: false,
    }))
}

/// Checks a token at one of this server's protected resources: it must be for this server,
/// and a DPoP-bound token needs the
/// `DPoP` scheme and a proof by its key for this request, whose `jti` is recorded (refused if
/// seen); a bearer token must not claim the `DPoP` scheme.
pub async fn check_presentation(
    req: &HttpRequest,
    state: &AppState,
    token: &str,
    scheme: Scheme,
    record: &projections::TokenRecord,
) -> Result<(), BearerError> {
    // This server's own resources take tokens for this server only (RFC 8707): a token for
    // another resource must not read the user's claims here.
    if !record.terms.audience.is_empty() && !record.terms.audience.contains(&state.issuer) {
        return Err(BearerError::InvalidToken(
            "this token is for another resource (its aud does not name this server)".into(),
        ));
    }
    let Some(bound) = &record.terms.jkt else {
        return match scheme {
            Scheme::Bearer => Ok(()),
            Scheme::Dpop => Err(BearerError::InvalidToken(
                "this token is not DPoP-bound: present it as a Bearer token".into(),
            )),
        };
    };
    if scheme != Scheme::Dpop {
        return Err(BearerError::InvalidToken(
            "this token is DPoP-bound: present it with Authorization: DPoP and a DPoP proof".into(),
        ));
    }
    let invalid = |e: dpop::DpopError| BearerError::InvalidDpopProof(e.to_string());
    let proof = dpop::header_value(req.headers())
        .map_err(invalid)?
        .ok_or_else(|| BearerError::InvalidDpopProof("a DPoP proof is required".into()))?;
    let now = state.engine.clock.unix_now();
    let url = request_url(state, req);
    let verified = dpop::verify(
        proof,
        &Expected {
            method: req.method().as_str(),
            url: &url,
            access_token: Some(token),
            now,
        },
    )
    .map_err(invalid)?;
    if verified.jkt != *bound {
        return Err(BearerError::InvalidDpopProof(
            "the DPoP proof is signed by another key than the one the token is bound to".into(),
        ));
    }
    if let Some(nonce) = current_nonce(state, now) {
        if !nonce_ok(state, verified.nonce.as_deref(), now) {
            return Err(BearerError::UseDpopNonce(nonce));
        }
    }
    let command = TokenCommand::AcceptDpopProof(DpopProof {
        expires_at: verified.remember_until(),
        jkt: verified.jkt,
        jti: verified.jti,
        seen: false,
    });
    let cause = Cause::Client(record.client_id.to_string());
    state
        .decide(req, &record.client_id, cause, command)
        .await
        .map_err(|e| {
            let e = super::token::command_error(e);
            match e.code {
                ErrorCode::InvalidDpopProof => BearerError::InvalidDpopProof(e.description),
                ErrorCode::TemporarilyUnavailable => BearerError::Unavailable(e.description),
                _ => BearerError::InvalidToken(e.description),
            }
        })?;
    Ok(())
}
