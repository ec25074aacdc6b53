//! Reading `application/x-www-form-urlencoded` bodies the way RFC 6749 asks: bounded size, the
//! right content type, and no repeated parameter.

use super::error::OAuthError;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use std::collections::HashMap;

/// Largest request body accepted by the OAuth endpoints.
pub const MAX_BODY: usize = 16 * 1024;

/// The parameters that may be repeated: RFC 8707 §2 `resource` and RFC 8693 §2.1
/// `audience` each name one target per occurrence.
pub const REPEATABLE: [&str; 2] = ["resource", "audience"];

/// The parameters of a form body, each present at most once but for [`REPEATABLE`] ones.
#[derive(Debug, Default)]
pub struct Form(HashMap<String, String>, HashMap<&'static str, Vec<String>>);

impl Form {
    /// Parses a body; a repeated parameter is `invalid_request` (RFC 6749 §3.1, §3.2).
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut map = HashMap::new();
        let mut repeated: HashMap<&'static str, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(body) {
            if let Some(name) = REPEATABLE.iter().find(|n| **n == k) {
                if !v.is_empty() {
                    repeated.entry(name).or_default().push(v.into_owned());
                }
                continue;
            }
            if map.insert(k.clone().into_owned(), v.into_owned()).is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {k} is repeated"
                )));
            }
        }
        Ok(Self(map, repeated))
    }

    /// Every value of a repeatable parameter, in order (empty values left out).
    pub fn all(&self, name: &str) -> &[String] {
        self.1.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// The `resource` parameters (RFC 8707 §2), each an absolute URI without a fragment.
    pub fn resources(&self) -> Result<Vec<String>, OAuthError> {
        let resources = self.all("resource");
        if resources
            .iter()
            .any(|r| !domain::client::is_resource_uri(r))
        {
            return Err(OAuthError::new(
                domain::oauth::ErrorCode::InvalidTarget,
                "resource must be an absolute URI without a fragment (RFC 8707 2)",
            ));
        }
        let mut unique: Vec<String> = Vec::with_capacity(resources.len());
        for r in resources {
            if !unique.contains(r) {
                unique.push(r.clone());
            }
        }
        Ok(unique)
    }

    /// A parameter; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A required parameter.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }
}

/// Reads and parses the body of an OAuth endpoint request.
pub async fn read_form(req: &HttpRequest, payload: web::Payload) -> Result<Form, OAuthError> {
    Ok(read_form_and_body(req, payload).await?.0)
}

/// Reads the body of an OAuth endpoint request: parsed, and as it came.
pub async fn read_form_and_body(
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<(Form, web::Bytes), OAuthError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = read_body(req, payload, MAX_BODY).await?;
    Ok((Form::parse(&body)?, body.freeze()))
}

/// Reads a request body of at most `max` bytes; a larger one is 413 `invalid_request`.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    max: usize,
) -> Result<web::BytesMut, OAuthError> {
    let too_large = || {
        OAuthError::invalid_request(format!("the body exceeds {max} bytes"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > max {
            return Err(too_large());
        }
    }
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| OAuthError::invalid_request(format!("reading the body: {e}")))?;
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_refused_and_empty_ones_are_absent() {
        assert!(Form::parse(b"a=1&a=2").is_err());
        let f = Form::parse(b"a=&b=x%20y").unwrap();
        assert_eq!(f.get("a"), None);
        assert_eq!(f.get("b"), Some("x y"));
    }
}
