//! Bearer tokens on protected resources (RFC 6750): where a request carries its token, and
//! the errors a resource answers with. Shared by the server's own resources and the
//! resource-server extractor; no server internals.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};

/// Why a protected resource refused a request (RFC 6750 §3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    /// No token at all: 401 with a bare challenge (§3.1: no error code).
    Missing,
    /// Malformed request, or a token sent in more than one way: 400 `invalid_request`.
    InvalidRequest(String),
    /// Expired, revoked, malformed or unknown: 401 `invalid_token`.
    InvalidToken(String),
    /// Valid, but without the scope needed: 403 `insufficient_scope`, naming it.
    InsufficientScope(String),
    /// The authorization server could not be asked: 503.
    Unavailable(String),
    /// A DPoP-bound token without a good proof (RFC 9449 §7.1): 401 `invalid_dpop_proof`
    /// with a `DPoP` challenge.
    InvalidDpopProof(String),
    /// The proof must carry this server nonce (RFC 9449 §9): 401 `use_dpop_nonce`, the nonce
    /// in `DPoP-Nonce`.
    UseDpopNonce(String),
}

impl std::fmt::Display for BearerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BearerError::Missing => f.write_str("a bearer token is required"),
            BearerError::InvalidRequest(d)
            | BearerError::InvalidToken(d)
            | BearerError::InvalidDpopProof(d)
            | BearerError::Unavailable(d) => f.write_str(d),
            BearerError::UseDpopNonce(_) => {
                f.write_str("the DPoP proof must carry the nonce in the DPoP-Nonce header")
            }
            BearerError::InsufficientScope(s) => write!(f, "this needs a token with scope {s}"),
        }
    }
}

impl BearerError {
    /// The RFC 6750 error code, if the answer carries one.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            BearerError::Missing => None,
            BearerError::InvalidRequest(_) => Some("invalid_request"),
            BearerError::InvalidToken(_) => Some("invalid_token"),
            BearerError::InsufficientScope(_) => Some("insufficient_scope"),
            BearerError::Unavailable(_) => Some("temporarily_unavailable"),
            BearerError::InvalidDpopProof(_) => Some("invalid_dpop_proof"),
            BearerError::UseDpopNonce(_) => Some("use_dpop_nonce"),
        }
    }

    /// The `error_description`: the message kept to RFC 6749 §5.2's characters (%x20-21 /
    /// %x23-5B / %x5D-7E), whatever a cause it wraps may hold.
    pub fn description(&self) -> String {
        self.to_string()
            .chars()
            .take(300)
            .map(|c| match c {
                '"' => '\'',
                '\\' => '/',
                ' '..='~' => c,
                _ => '?',
            })
            .collect()
    }

    /// The `WWW-Authenticate` challenge for a realm.
    pub fn challenge(&self, realm: &str) -> String {
        // Header values are ASCII; quotes and backslashes would end the quoted string.
        let quote = |s: &str| -> String {
            s.chars()
                .map(|c| match c {
                    '"' | '\\' => '\'',
                    c if c.is_ascii() && !c.is_ascii_control() => c,
                    _ => '?',
                })
                .collect()
        };
        let scheme = match self {
            BearerError::InvalidDpopProof(_) | BearerError::UseDpopNonce(_) => "DPoP",
            _ => "Bearer",
        };
        let mut c = format!(r#"{scheme} realm="{}""#, quote(realm));
        if let Some(code) = self
            .code()
            .filter(|_| !matches!(self, BearerError::Unavailable(_)))
        {
            c.push_str(&format!(
                r#", error="{code}", error_description="{}""#,
                quote(&self.description())
            ));
        }
        if let BearerError::InsufficientScope(scope) = self {
            c.push_str(&format!(r#", scope="{}""#, quote(scope)));
        }
        c
    }

    /// The answer: status, challenge and a JSON body with `error` and `error_description`.
    pub fn response(&self, realm: &str) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if let Ok(v) = HeaderValue::from_str(&self.challenge(realm)) {
            res.insert_header((header::WWW_AUTHENTICATE, v));
        }
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        if let BearerError::UseDpopNonce(nonce) = self {
            if let Ok(v) = HeaderValue::from_str(nonce) {
                res.insert_header(("DPoP-Nonce", v));
            }
        }
        let mut body = serde_json::json!({ "error_description": self.description() });
        body["error"] = self.code().unwrap_or("invalid_token").into();
        if let BearerError::InsufficientScope(scope) = self {
            body["scope"] = scope.clone().into();
        }
        res.json(body)
    }
}

impl ResponseError for BearerError {
    fn status_code(&self) -> StatusCode {
        match self {
            BearerError::Missing
            | BearerError::InvalidToken(_)
            | BearerError::InvalidDpopProof(_)
            | BearerError::UseDpopNonce(_) => StatusCode::UNAUTHORIZED,
            BearerError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            BearerError::InsufficientScope(_) => StatusCode::FORBIDDEN,
            BearerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.response("api")
    }
}

/// Longest token accepted.
const MAX_TOKEN_LEN: usize = 8192;

/// Whether `s` is a `b64token` (RFC 6750 §2.1).
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && s.len() <= MAX_TOKEN_LEN
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn access_tokens(encoded: &[u8]) -> Vec<String> {
    form_urlencoded::parse(encoded)
        .filter(|(k, _)| k == "access_token")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Whether a request's body may carry the token (§2.2): a form-encoded body of a method
/// that has one.
pub fn body_may_carry_token(req: &HttpRequest) -> bool {
    req.method() != actix_web::http::Method::GET
        && req.method() != actix_web::http::Method::HEAD
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                v.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
}

/// The token of a request: from the `Authorization: Bearer` header (§2.1), the form body
/// (§2.2, pass the body when [`body_may_carry_token`]) or the `access_token` query parameter
/// (§2.3). Exactly one way may be used.
pub fn token(req: &HttpRequest, body: Option<&[u8]>) -> Result<String, BearerError> {
    presented(req, body).map(|(t, _)| t)
}

/// How a token was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 6750: `Authorization: Bearer`, the form body or the query.
    Bearer,
    /// RFC 9449 §7.1: `Authorization: DPoP`, with a proof in the `DPoP` header.
    Dpop,
}

/// The token of a request as [`token`] finds it, or from `Authorization: DPoP`, and which
/// scheme carried it.
pub fn presented(req: &HttpRequest, body: Option<&[u8]>) -> Result<(String, Scheme), BearerError> {
    let mut found: Vec<String> = Vec::new();
    let mut scheme = Scheme::Bearer;
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| BearerError::InvalidRequest("malformed Authorization header".into()))?;
        match value.split_once(' ') {
            Some((name, rest))
                if name.eq_ignore_ascii_case("bearer") || name.eq_ignore_ascii_case("dpop") =>
            {
                let t = rest.trim();
                if !is_b64token(t) {
                    return Err(BearerError::InvalidRequest(
                        "the access token is not a b64token (RFC 6750 section 2.1)".into(),
                    ));
                }
                if name.eq_ignore_ascii_case("dpop") {
                    scheme = Scheme::Dpop;
                }
                found.push(t.to_owned());
            }
            _ => return Err(BearerError::Missing),
        }
    }
    found.extend(access_tokens(req.query_string().as_bytes()));
    if let Some(body) = body {
        found.extend(access_tokens(body));
    }
    match found.len() {
        0 => Err(BearerError::Missing),
        1 => {
            let t = found.remove(0);
            if t.is_empty() || t.len() > MAX_TOKEN_LEN {
                Err(BearerError::InvalidRequest(
                    "the access token is empty or too long".into(),
                ))
            } else {
                Ok((t, scheme))
            }
        }
        _ => Err(BearerError::InvalidRequest(
            "send the access token one way only: header, form body or query (RFC 6750 section 2)"
                .into(),
        )),
    }
}

/// Checks that `granted` holds every scope of `required`; the error names what is needed.
pub fn require_scopes<S: AsRef<str>>(granted: &[S], required: &[&str]) -> Result<(), BearerError> {
    if required
        .iter()
        .all(|r| granted.iter().any(|g| g.as_ref() == *r))
    {
        Ok(())
    } else {
        Err(BearerError::InsufficientScope(required.join(" ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn a_token_is_taken_from_exactly_one_place() {
        let req = TestRequest::default()
            .insert_header(("Authorization", "Bearer abc.def-_~+/=="))
            .to_http_request();
        assert_eq!(token(&req, None).unwrap(), "abc.def-_~+/==");
        let req = TestRequest::with_uri("/r?access_token=q1").to_http_request();
        assert_eq!(token(&req, None).unwrap(), "q1");
        assert_eq!(token(&req, Some(b"x=1")).unwrap(), "q1");
        let req = TestRequest::default().to_http_request();
        assert_eq!(token(&req, Some(b"access_token=b1")).unwrap(), "b1");
        assert_eq!(token(&req, None).unwrap_err(), BearerError::Missing);
        let both = TestRequest::with_uri("/r?access_token=q1")
            .insert_header(("Authorization", "Bearer h1"))
            .to_http_request();
        assert!(matches!(
            token(&both, None),
            Err(BearerError::InvalidRequest(_))
        ));
        let twice = TestRequest::with_uri("/r?access_token=a&access_token=b").to_http_request();
        assert!(matches!(
            token(&twice, None),
            Err(BearerError::InvalidRequest(_))
        ));
        let bad = TestRequest::default()
            .insert_header(("Authorization", "Bearer a b"))
            .to_http_request();
        assert!(matches!(
            token(&bad, None),
            Err(BearerError::InvalidRequest(_))
        ));
    }

    #[test]
    fn challenges_follow_rfc_6750() {
        assert_eq!(
            BearerError::Missing.challenge("api"),
            r#"Bearer realm="api""#
        );
        let c = BearerError::InsufficientScope("write".into()).challenge("api");
        assert!(c.contains(r#"error="insufficient_scope""#) && c.ends_with(r#"scope="write""#));
        assert_eq!(BearerError::InvalidToken("x".into()).status_code(), 401);
        assert_eq!(BearerError::InvalidRequest("x".into()).status_code(), 400);
        assert_eq!(
            BearerError::InsufficientScope("x".into()).status_code(),
            403
        );
    }
}
