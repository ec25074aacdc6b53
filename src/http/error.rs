//! `OAuthError`: every error answer of the HTTP layer, rendered as RFC 6749 §5.2 JSON.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use domain::oauth::ErrorCode;
use std::fmt;

/// An error answer: status, `error`, `error_description`, and a challenge on 401.
#[derive(Debug)]
pub struct OAuthError {
    /// The `error` code.
    pub code: ErrorCode,
    /// Human-readable detail.
    pub description: String,
    /// HTTP status.
    pub status: StatusCode,
    /// `WWW-Authenticate` value, for 401 answers.
    pub challenge: Option<String>,
    /// `Retry-After` seconds, for 429 answers.
    pub retry_after: Option<i64>,
    /// A fresh `DPoP-Nonce` (RFC 9449 §8), for `use_dpop_nonce` answers.
    pub dpop_nonce: Option<String>,
}

impl OAuthError {
    /// An error with the status RFC 6749 §5.2 gives its code.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        let status = match code {
            ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientScope => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        let challenge = match code {
            ErrorCode::InvalidClient => Some(r#"Basic realm="authledger""#.to_owned()),
            // RFC 6750 §3: a refused bearer token (an initial or registration access token).
            ErrorCode::InvalidToken => {
                Some(r#"Bearer realm="authledger", error="invalid_token""#.to_owned())
            }
            _ => None,
        };
        Self {
            code,
            // RFC 6749 §5.2's character set, whatever the message quotes.
            description: domain::oauth::error_description(&description.into()),
            status,
            challenge,
            retry_after: None,
            dpop_nonce: None,
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_client` (401 with a Basic challenge).
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidClient, description)
    }

    /// An internal failure; the cause is logged, not shown.
    pub fn server_error(cause: &dyn fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(ErrorCode::ServerError, "the server failed; try again")
    }

    /// Overrides the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Sets `Retry-After`.
    pub fn with_retry_after(mut self, secs: i64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Sets the `DPoP-Nonce` to send.
    pub fn with_dpop_nonce(mut self, nonce: String) -> Self {
        self.dpop_nonce = Some(nonce);
        self
    }

    /// Sets the `WWW-Authenticate` challenge.
    pub fn with_challenge(mut self, challenge: String) -> Self {
        self.challenge = Some(challenge);
        self
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.description)
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(c) = &self.challenge {
            res.insert_header((header::WWW_AUTHENTICATE, c.as_str()));
        }
        if let Some(n) = &self.dpop_nonce {
            res.insert_header(("DPoP-Nonce", n.as_str()));
        }
        // A store that cannot take writes now (a full disk, a database restarting) is worth
        // asking again in a second (RFC 9110 §10.2.3).
        let retry = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1));
        if let Some(s) = retry {
            res.insert_header((header::RETRY_AFTER, s.to_string()));
        }
        res.json(serde_json::json!({
            "error": self.code.as_str(),
            "error_description": self.description,
        }))
    }
}

impl From<crate::service::ServiceError> for OAuthError {
    fn from(e: crate::service::ServiceError) -> Self {
        use crate::service::ServiceError as S;
        match e {
            S::Invalid(d) => OAuthError::invalid_request(d),
            S::NotFound(id) => {
                OAuthError::new(ErrorCode::NotFound, format!("client {id} not found"))
            }
            S::UserNotFound => OAuthError::new(ErrorCode::NotFound, "user not found"),
            S::Conflict(d) => OAuthError::new(ErrorCode::Conflict, d),
            S::Internal(d) => OAuthError::server_error(&d),
            S::Unavailable(d) => {
                tracing::warn!(error = %d, "a request was refused: the store cannot take writes");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the server cannot record this request now (storage unavailable); try again later",
                )
            }
        }
    }
}

/// An error and every cause under it (`source()`), one line, for the log: the answer to the
/// client carries only the RFC error.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        // A message that already ends with its cause's text (StoreError::Io does) says it once.
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}
