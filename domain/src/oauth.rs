//! OAuth 2.0 error codes, as RFC 6749 §5.2 and its companions define them.

use serde::Serialize;

/// An error code of the `error` member of an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// "The request is missing a required parameter, includes an unsupported parameter value
    /// (other than grant type), repeats a parameter, includes multiple credentials, utilizes
    /// more than one mechanism for authenticating the client, or is otherwise malformed."
    InvalidRequest,
    /// "Client authentication failed (e.g., unknown client, no client authentication
    /// included, or unsupported authentication method)."
    InvalidClient,
    /// "The provided authorization grant ... is invalid, expired, revoked, does not match the
    /// redirection URI used in the authorization request, or was issued to another client."
    InvalidGrant,
    /// "The authenticated client is not authorized to use this authorization grant type."
    UnauthorizedClient,
    /// "The authorization grant type is not supported by the authorization server."
    UnsupportedGrantType,
    /// "The requested scope is invalid, unknown, malformed, or exceeds the scope granted by the
    /// resource owner."
    InvalidScope,
    /// RFC 6749 §4.1.2.1: "The resource owner or authorization server denied the request."
    AccessDenied,
    /// RFC 6749 §4.1.2.1: "The authorization server does not support obtaining an
    /// authorization code using this method."
    UnsupportedResponseType,
    /// RFC 6750 §3.1: "The access token provided is expired, revoked, malformed, or invalid."
    InvalidToken,
    /// RFC 6750 §3.1: "The request requires higher privileges than provided by the access
    /// token."
    InsufficientScope,
    /// RFC 7009 §2.2.1: "The authorization server does not support the revocation of the
    /// presented token type."
    UnsupportedTokenType,
    /// Not an OAuth code: the named resource does not exist (admin API).
    NotFound,
    /// Not an OAuth code: the request conflicts with the current state (admin API).
    Conflict,
    /// RFC 6749 §4.1.2.1: "The authorization server encountered an unexpected condition that
    /// prevented it from fulfilling the request."
    ServerError,
    /// RFC 6749 §4.1.2.1: "The authorization server is currently unable to handle the request
    /// due to a temporary overloading or maintenance of the server."
    TemporarilyUnavailable,
    /// OpenID Connect Core §3.1.2.6: `prompt=none` and no signed-in user (or not the one
    /// asked for).
    LoginRequired,
    /// `prompt=none` and the user has not consented to what is asked.
    ConsentRequired,
    /// `prompt=none` and the user would have to do something.
    InteractionRequired,
    /// The `request` parameter (a request object) is not supported.
    RequestNotSupported,
    /// A `request_uri` that is not one of this server's pushed requests (request objects by
    /// reference, RFC 9101, are not supported).
    RequestUriNotSupported,
    /// The `registration` parameter is not supported.
    RegistrationNotSupported,
    /// RFC 7591 §3.2.2: a redirect URI a registration may not have.
    InvalidRedirectUri,
    /// RFC 7591 §3.2.2: client metadata that is invalid or not allowed.
    InvalidClientMetadata,
    /// RFC 7591 §3.2.2: a software statement that is not accepted.
    InvalidSoftwareStatement,
    /// RFC 8707 §2: a `resource` the client may not ask for, or malformed.
    InvalidTarget,
    /// RFC 9449 §5: the DPoP proof is missing, malformed or does not fit the request.
    InvalidDpopProof,
    /// RFC 9449 §8: the proof must carry the nonce the server gives in `DPoP-Nonce`.
    UseDpopNonce,
    /// RFC 8628 §3.5: the user has not finished at the verification page yet.
    AuthorizationPending,
    /// RFC 8628 §3.5: polling too fast; the interval grows by 5 seconds.
    SlowDown,
    /// RFC 8628 §3.5: the device code expired.
    ExpiredToken,
    /// OpenID Connect Core §3.1.2.6 / RFC 9126 §4: the `request_uri` is unknown, used,
    /// expired or another client's.
    InvalidRequestUri,
}

impl ErrorCode {
    /// The wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InsufficientScope => "insufficient_scope",
            ErrorCode::UnsupportedTokenType => "unsupported_token_type",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            ErrorCode::LoginRequired => "login_required",
            ErrorCode::ConsentRequired => "consent_required",
            ErrorCode::InteractionRequired => "interaction_required",
            ErrorCode::RequestNotSupported => "request_not_supported",
            ErrorCode::RequestUriNotSupported => "request_uri_not_supported",
            ErrorCode::RegistrationNotSupported => "registration_not_supported",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::InvalidSoftwareStatement => "invalid_software_statement",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            ErrorCode::UseDpopNonce => "use_dpop_nonce",
            ErrorCode::AuthorizationPending => "authorization_pending",
            ErrorCode::SlowDown => "slow_down",
            ErrorCode::ExpiredToken => "expired_token",
            ErrorCode::InvalidRequestUri => "invalid_request_uri",
        }
    }
}

/// Makes `text` fit the character set RFC 6749 §5.2 allows in `error_description`
/// (%x20-21 / %x23-5B / %x5D-7E): a double quote becomes `'`, a backslash `/`, and any other
/// character outside it (controls, line breaks, non-ASCII) `?`. Every error answer passes
/// through it, so an error that quotes input can inject nothing into a JSON reader, a
/// `WWW-Authenticate` header, a redirect or a log line; it is cut to 300 characters.
pub fn error_description(text: &str) -> String {
    text.chars()
        .take(300)
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            ' '..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod description_tests {
    use super::error_description;

    #[test]
    fn descriptions_keep_to_the_rfc_6749_character_set() {
        let hostile = "grant type \"\\\r\n<script>\u{7f}\u{e9}\t";
        let clean = error_description(hostile);
        assert!(
            clean
                .bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5b | 0x5d..=0x7e)),
            "{clean:?}"
        );
        assert_eq!(clean, "grant type '/??<script>???");
        assert_eq!(error_description("plain words (ok)"), "plain words (ok)");
        assert_eq!(error_description(&"x".repeat(1000)).len(), 300);
    }
}
