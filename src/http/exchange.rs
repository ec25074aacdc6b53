//! Token exchange at the token endpoint (RFC 8693 §2.1): finds the subject and actor tokens
//! (they must be active tokens this server issued) and builds the command; the client's
//! policy is the domain's business (`domain::exchange`).

use super::error::OAuthError;
use super::form::Form;
use super::AppState;
use domain::event::ExchangedToken;
use domain::exchange::{ExchangeToken, Presented};
use domain::grant::NewAccessToken;
use domain::oauth::ErrorCode;
use domain::values::Scope;
use serde::Deserialize;

/// The token type URIs of RFC 8693 §3 this server takes.
const TYPE_PREFIX: &str = "urn:ietf:params:oauth:token-type:";

/// What a JWT of ours says, when it is an id_token.
#[derive(Deserialize)]
struct IdTokenClaims {
    sub: String,
    aud: serde_json::Value,
    exp: i64,
    #[serde(default)]
    jti: Option<String>,
}

fn invalid(why: &str) -> OAuthError {
    OAuthError::invalid_request(why.to_owned())
}

/// Finds a presented token of `token_type` (the full URI): active, and issued here.
fn find(state: &AppState, token: &str, token_type: &str) -> Result<Presented, OAuthError> {
    let found = find_any(state, token, token_type)?;
    // A user an administrator locked is not spoken for by a new token either.
    let locked = uuid::Uuid::parse_str(&found.token.subject)
        .ok()
        .and_then(|id| state.engine.models.users.get(&domain::values::UserId(id)))
        .is_some_and(|u| u.disabled);
    if locked {
        return Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            "the token presented speaks for a user whose account is locked",
        ));
    }
    Ok(found)
}

fn find_any(state: &AppState, token: &str, token_type: &str) -> Result<Presented, OAuthError> {
    let kind = token_type
        .strip_prefix(TYPE_PREFIX)
        .filter(|k| matches!(*k, "access_token" | "refresh_token" | "id_token" | "jwt"))
        .ok_or_else(|| {
            invalid("token types are urn:ietf:params:oauth:token-type:access_token, refresh_token, id_token or jwt")
        })?;
    // RFC 8693 §2.2.2: an invalid subject or actor token is invalid_request.
    let inactive = || {
        OAuthError::new(
            ErrorCode::InvalidRequest,
            format!("the {kind} presented is not an active token this server issued"),
        )
    };
    let client_exists =
        |c: &domain::values::ClientId| state.engine.models.clients.get(c.as_str()).is_some();
    let now = state.engine.clock.unix_now();
    // A `jwt` is what its name says: an opaque access token is an access_token.
    let jwt_shaped = token.split('.').count() == 3;
    if kind == "access_token" || (kind == "jwt" && jwt_shaped) {
        if let Some(t) = super::introspect::active(state, token)? {
            let r = t.record;
            return Ok(Presented {
                token: ExchangedToken {
                    token_type: kind.into(),
                    id: r.jti.to_string(),
                    client_id: Some(r.client_id),
                    subject: r.subject,
                },
                scopes: r.scopes,
                act: r.terms.act,
                expires_at: r.expires_at,
            });
        }
    }
    if matches!(kind, "id_token" | "jwt") {
        if let Some(c) = state
            .keys
            .verify_id_token::<IdTokenClaims>(token, &state.issuer)
            .filter(|c| c.exp > now)
        {
            let client = match &c.aud {
                serde_json::Value::String(a) => Some(a.clone()),
                serde_json::Value::Array(a) => {
                    a.first().and_then(|v| v.as_str()).map(str::to_owned)
                }
                _ => None,
            };
            let client = client.and_then(|c| domain::values::ClientId::parse(&c).ok());
            if !client.as_ref().is_some_and(client_exists) {
                return Err(inactive());
            }
            return Ok(Presented {
                token: ExchangedToken {
                    token_type: kind.into(),
                    id: c.jti.unwrap_or_default(),
                    client_id: client,
                    subject: c.sub,
                },
                // An id_token proves who signed in; it grants nothing more.
                scopes: vec![Scope::parse(domain::grant::OPENID_SCOPE)
                    .map_err(|e| OAuthError::server_error(&e.0))?],
                act: None,
                expires_at: c.exp,
            });
        }
    }
    if kind == "refresh_token" {
        if let Some(v) = super::introspect::resolve_refresh(state, token)? {
            if v.is_active(now) && client_exists(&v.issued.client_id) {
                let r = v.issued;
                return Ok(Presented {
                    token: ExchangedToken {
                        token_type: kind.into(),
                        id: r.id.to_string(),
                        client_id: Some(r.client_id),
                        subject: r.user_id.to_string(),
                    },
                    scopes: r.scopes,
                    act: None,
                    expires_at: r.expires_at,
                });
            }
        }
    }
    Err(inactive())
}

/// The command for a token-exchange request.
pub fn command(
    state: &AppState,
    form: &Form,
    scopes: Option<Vec<Scope>>,
    token: NewAccessToken,
    now: i64,
) -> Result<ExchangeToken, OAuthError> {
    if let Some(t) = form.get("requested_token_type") {
        if t != "urn:ietf:params:oauth:token-type:access_token" {
            return Err(invalid(
                "requested_token_type: this server issues access tokens (urn:ietf:params:oauth:token-type:access_token)",
            ));
        }
    }
    let subject = find(
        state,
        form.require("subject_token")?,
        form.require("subject_token_type")?,
    )?;
    let actor = match (form.get("actor_token"), form.get("actor_token_type")) {
        (None, None) => None,
        (Some(t), Some(kind)) => Some(find(state, t, kind)?),
        _ => {
            return Err(invalid(
                "actor_token and actor_token_type come together (RFC 8693 2.1)",
            ))
        }
    };
    let mut audiences: Vec<String> = Vec::new();
    for a in form
        .all("audience")
        .iter()
        .cloned()
        .chain(form.resources()?)
    {
        if !audiences.contains(&a) {
            audiences.push(a);
        }
    }
    Ok(ExchangeToken {
        subject,
        actor,
        audiences,
        scopes,
        // The resources are the audiences here.
        token: NewAccessToken {
            resources: Vec::new(),
            ..token
        },
        now,
    })
}
