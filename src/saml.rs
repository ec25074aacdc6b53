//! SAML 2.0 bearer assertions (RFC 7522): decoding, the XML signature, and the reading of
//! what was signed. Whether the assertion is acceptable for a client (issuer, audience,
//! recipient, time window, single use) is [`VerifiedAssertion::check`] plus the replay record
//! the caller keeps.
//!
//! The order is what makes it safe against XML signature wrapping (ADR 0024):
//!
//! 1. the `assertion` parameter is decoded (base64url, or base64) and bounded in size;
//! 2. any markup declaration (`<!DOCTYPE`, `<!ENTITY`, ...) and any encoding but UTF-8 are
//!    refused before an XML parser sees the text;
//! 3. the document is parsed here (roxmltree, DTDs refused) and its signature's *shape* is
//!    checked: the document element is the one `saml:Assertion`, it carries the one
//!    `ds:Signature` as a direct child, that signature has exactly one `ds:Reference`, to
//!    `#` + the document element's `ID`, and only the listed algorithms and transforms;
//! 4. samael hands the same text to libxmlsec1 with the client's certificate as the only key
//!    (`KeyInfo` in the document is ignored) and returns the *pre-digest* octets of that one
//!    reference: the exclusive-canonical form of the assertion, exactly what was hashed;
//! 5. every value is read from those octets, never from the submitted document.
//!
//! Step 5 alone defeats wrapping (what is read is what was signed); steps 2 and 3 keep the
//! two parsers from ever disagreeing about which element is signed, and keep libxmlsec1 from
//! following external references, XSLT or XPath transforms.

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use roxmltree::{Document, Node, ParsingOptions};
use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode,
};
use std::collections::HashSet;

/// Largest decoded assertion accepted. Real assertions are 3 to 12 KiB.
pub const MAX_ASSERTION_BYTES: usize = 64 * 1024;

/// Largest `assertion` parameter accepted: padded base64 of [`MAX_ASSERTION_BYTES`]. Checked
/// before decoding, so an oversized parameter costs no allocation.
const MAX_ENCODED_LEN: usize = MAX_ASSERTION_BYTES.div_ceil(3) * 4;

/// Nodes (elements, text, comments...) one assertion may have.
const MAX_NODES: u32 = 4096;

/// Element depth one assertion may reach. A signed assertion is about 7 deep; libxml2 stops
/// at 256 on its own, and a shallow limit keeps the walk below cheap.
const MAX_DEPTH: usize = 32;

/// Longest `ID` kept: it is the replay key.
pub const MAX_ID_LEN: usize = 256;

/// Longest NameID (the subject) accepted.
pub const MAX_SUBJECT_LEN: usize = 256;

/// Longest Issuer, Audience, Recipient or other URI accepted.
pub const MAX_URI_LEN: usize = 1024;

const SAML_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const C14N_10: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Canonicalization accepted for `SignedInfo` and as the last transform. Both variants drop
/// comments, so a comment added after signing changes nothing that is hashed, and nothing
/// that is read here (the pre-digest octets have no comments at all). The `#WithComments`
/// variants are refused: nobody needs them, and refusing them keeps that reasoning simple.
const C14N_METHODS: &[&str] = &[EXC_C14N, C14N_10];

/// `SignatureMethod` URIs accepted: RSA and ECDSA with SHA-2. Refused: SHA-1, DSA, HMAC (an
/// HMAC "signature" keyed with a public certificate is the classic key-confusion attack;
/// libxmlsec1 refuses it too, as the key type does not match).
const SIGNATURE_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];

/// The same list in samael's terms: samael checks it again inside the verification.
const SAMAEL_ALGORITHMS: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// `DigestMethod` URIs accepted: SHA-2.
const DIGEST_METHODS: &[&str] = &[
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];

/// base64 of either alphabet, padded or not. Trailing bits must be zero (the engine's
/// default), so one assertion has one encoding per alphabet.
const ANY_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PADDING);
const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PADDING);

/// Why an assertion was refused. Its text is the `error_description` of an `invalid_grant`
/// answer: lower-case ASCII that never quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamlError {
    /// The parameter or the decoded document is over the limit.
    #[error("the assertion is larger than 65536 bytes")]
    TooLarge,
    /// Not base64url (nor base64), or line-wrapped.
    #[error("the assertion is not base64url-encoded")]
    NotBase64,
    /// The decoded bytes are not UTF-8, or declare another encoding, or start with a BOM.
    #[error("the assertion must be xml encoded in utf-8")]
    NotUtf8,
    /// A document type declaration, entity declaration or other markup declaration.
    #[error("the assertion must not contain a document type or entity declaration")]
    Dtd,
    /// Not well-formed, too many nodes or too deep.
    #[error("the assertion is not well-formed xml")]
    Malformed,
    /// The document element is not a SAML 2.0 `Assertion`, or an assertion holds another.
    #[error("the assertion parameter must hold exactly one saml 2.0 assertion")]
    NotAnAssertion,
    /// `Version` is not `2.0`.
    #[error("the assertion's version is not 2.0")]
    BadVersion,
    /// `ID` is missing, too long or not made of name characters.
    #[error("the assertion needs an id of 1 to 256 letters, digits, underscores, hyphens or dots")]
    BadId,
    /// Two elements share an `ID`, or an id attribute is namespaced (`xml:id`, `x:ID`).
    #[error("the assertion has duplicate or namespaced id attributes")]
    AmbiguousId,
    /// No `ds:Signature` at all.
    #[error("the assertion is not signed")]
    Unsigned,
    /// More than one `ds:Signature`, one that is not a child of the assertion, or
    /// signature elements outside it.
    #[error("the assertion must carry exactly one signature, as a child of the assertion")]
    SignaturePlacement,
    /// Not exactly one `ds:Reference`, or one that does not point at the assertion's `ID`.
    #[error("the signature must have exactly one reference, to the assertion's own id")]
    SignatureReference,
    /// An algorithm, transform or signature element this server does not accept.
    #[error("the signature uses an algorithm, transform or element that is not accepted")]
    SignatureAlgorithm,
    /// The signature does not verify with the client's certificate.
    #[error("the assertion's signature does not verify with the client's saml certificate")]
    BadSignature,
    /// The client's configured certificate is not PEM `CERTIFICATE` (a configuration fault,
    /// normally refused when the client is registered).
    #[error("the client's saml certificate is not a pem certificate")]
    TrustedCertificate,
    /// A required element or attribute is missing; the text names it.
    #[error("the assertion lacks {0}")]
    Missing(&'static str),
    /// An element that must appear once appears several times; the text names it.
    #[error("the assertion has more than one {0}")]
    Duplicate(&'static str),
    /// A time is not an RFC 3339 / xs:dateTime with a time zone; the text names it.
    #[error("the assertion's {0} is not a utc date and time")]
    BadTime(&'static str),
    /// A text value is empty, too long, has child elements, control characters or (for
    /// NameID and Issuer) surrounding white space; the text names it.
    #[error("the assertion's {0} is empty, too long or not plain text")]
    BadText(&'static str),
    /// `EncryptedID`, `BaseID`, `EncryptedAssertion`: not supported.
    #[error("encrypted or non-nameid subjects are not supported")]
    Unsupported,
    /// A condition other than AudienceRestriction, OneTimeUse and ProxyRestriction.
    #[error("the assertion has a condition this server does not understand")]
    UnknownCondition,
    /// No `SubjectConfirmation` with the bearer method.
    #[error("the assertion has no bearer subject confirmation")]
    NotBearer,
    /// A bearer confirmation without `SubjectConfirmationData` `Recipient` and `NotOnOrAfter`.
    #[error("the bearer subject confirmation needs a recipient and a notonorafter")]
    BearerWithoutData,
    // The checks of `VerifiedAssertion::check`.
    /// Issuer is not the client's trusted IdP.
    #[error("the assertion's issuer is not the client's saml identity provider")]
    UntrustedIssuer,
    /// No `AudienceRestriction`, or one that does not name this server.
    #[error("the assertion's audience restriction does not name this server")]
    WrongAudience,
    /// No bearer confirmation names this token endpoint as `Recipient`.
    #[error("no bearer subject confirmation names this token endpoint as recipient")]
    WrongRecipient,
    /// `NotOnOrAfter` (of the conditions, or of every matching confirmation) has passed.
    #[error("the assertion has expired")]
    Expired,
    /// `NotBefore` lies ahead.
    #[error("the assertion is not valid yet")]
    NotYetValid,
    /// `IssueInstant` lies ahead.
    #[error("the assertion was issued in the future")]
    IssuedInTheFuture,
    /// The expiry is further away than an assertion may live (it bounds the replay record).
    #[error("the assertion expires too far in the future")]
    LivesTooLong,
}

/// A bearer `SubjectConfirmation` with its `SubjectConfirmationData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerConfirmation {
    /// `Recipient`: the token endpoint the IdP meant the assertion for.
    pub recipient: String,
    /// `NotOnOrAfter`, unix seconds.
    pub not_on_or_after: i64,
    /// `NotBefore`, unix seconds, if present.
    pub not_before: Option<i64>,
    /// `Address`, if present (RFC 7522 leaves checking it to the server; not checked).
    pub address: Option<String>,
}

/// What a verified assertion says, read from the signed octets only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// `ID`: with the issuer, the replay key.
    pub id: String,
    /// `Issuer` text.
    pub issuer: String,
    /// `IssueInstant`, unix seconds.
    pub issue_instant: i64,
    /// `Subject/NameID` text: all of its text, in order, as signed (see [`text_content`]).
    pub subject: String,
    /// `NameID/@Format`, if present.
    pub subject_format: Option<String>,
    /// `Conditions/@NotBefore`, unix seconds.
    pub not_before: Option<i64>,
    /// `Conditions/@NotOnOrAfter`, unix seconds.
    pub not_on_or_after: Option<i64>,
    /// One list of `Audience` values per `AudienceRestriction`: each restriction must name
    /// this server (SAML core 2.5.1.4: restrictions are and-ed, audiences within one or-ed).
    pub audience_restrictions: Vec<Vec<String>>,
    /// Whether a `OneTimeUse` condition is present (single use is enforced for every
    /// assertion anyway).
    pub one_time_use: bool,
    /// The bearer confirmations; at least one.
    pub bearer_confirmations: Vec<BearerConfirmation>,
}

/// What the server expects of a client's assertions.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The client's trusted IdP entity ID, compared exactly with `Issuer`.
    pub issuer: &'a str,
    /// Identifiers of this server an `Audience` may name: the client's configured audience,
    /// and/or the issuer identifier and the token endpoint URL.
    pub audiences: &'a [&'a str],
    /// URLs a bearer confirmation's `Recipient` may name: the token endpoint (and aliases).
    pub recipients: &'a [&'a str],
    /// Now, unix seconds.
    pub now: i64,
    /// Clock skew tolerated either way, seconds.
    pub leeway: i64,
    /// Longest an assertion may still live from `now`, seconds.
    pub max_lifetime: i64,
}

/// Decodes an RFC 7522 `assertion` parameter and verifies its signature against the client's
/// certificate; returns what the signed assertion says. Nothing of the time window, audience,
/// recipient or issuer is judged here: that is [`VerifiedAssertion::check`].
pub fn verify_assertion(
    xml_b64url: &str,
    trusted_cert_pem: &str,
) -> Result<VerifiedAssertion, SamlError> {
    let bytes = decode_parameter(xml_b64url)?;
    let xml = std::str::from_utf8(&bytes).map_err(|_| SamlError::NotUtf8)?;
    check_prolog(xml)?;
    let submitted = parse(xml)?;
    let id = check_signature_shape(&submitted)?;
    let certificate = certificate_der(trusted_cert_pem)?;

    // `PreDigest` returns the octets xmlsec hashed for the one reference (checked above to
    // be `#id` of the document element, with enveloped-signature and c14n only): the
    // canonical assertion without its signature. Every signature in the document must
    // verify with `certificate` (there is one) and use an allowed algorithm.
    let signed = Crypto::reduce_xml_to_signed_with_allowed_algorithms(
        xml,
        &[CertificateDer::from(certificate)],
        ReduceMode::PreDigest,
        Some(SAMAEL_ALGORITHMS),
    )
    .map_err(|_| SamlError::BadSignature)?;

    let signed = parse(&signed)?;
    extract(&signed, &id)
}

/// The DER of a PEM `CERTIFICATE`: what the client's trusted certificate must be. Call it at
/// registration too, so a bad certificate is refused there rather than on every grant.
pub fn certificate_der(pem: &str) -> Result<Vec<u8>, SamlError> {
    match pem_rfc7468::decode_vec(pem.trim().as_bytes()) {
        Ok(("CERTIFICATE", der)) => Ok(der),
        _ => Err(SamlError::TrustedCertificate),
    }
}

impl VerifiedAssertion {
    /// RFC 7522 §3 for this server: issuer, audience, time window, a bearer confirmation for
    /// this token endpoint. Returns the instant until which the caller must remember
    /// (issuer, `id`) to refuse a replay: the earlier of the conditions' `NotOnOrAfter` and
    /// the matching confirmation's (plus the leeway, as `now` may lag by that much).
    pub fn check(&self, expected: &Expected<'_>) -> Result<i64, SamlError> {
        let now = expected.now;
        let leeway = expected.leeway;
        if self.issuer != expected.issuer {
            return Err(SamlError::UntrustedIssuer);
        }
        // RFC 7522 §3 item 3: an Audience naming this server is required.
        if self.audience_restrictions.is_empty()
            || !self.audience_restrictions.iter().all(|restriction| {
                restriction
                    .iter()
                    .any(|a| expected.audiences.contains(&a.as_str()))
            })
        {
            return Err(SamlError::WrongAudience);
        }
        if self.issue_instant > now.saturating_add(leeway) {
            return Err(SamlError::IssuedInTheFuture);
        }
        if self
            .not_before
            .is_some_and(|t| t > now.saturating_add(leeway))
        {
            return Err(SamlError::NotYetValid);
        }
        // NotOnOrAfter: valid while now < NotOnOrAfter, give or take the leeway.
        let live = |not_on_or_after: i64| now < not_on_or_after.saturating_add(leeway);
        if self.not_on_or_after.is_some_and(|t| !live(t)) {
            return Err(SamlError::Expired);
        }
        let for_us: Vec<&BearerConfirmation> = self
            .bearer_confirmations
            .iter()
            .filter(|c| expected.recipients.contains(&c.recipient.as_str()))
            .collect();
        if for_us.is_empty() {
            return Err(SamlError::WrongRecipient);
        }
        // RFC 7522 §3 item 6: an expired confirmation is unusable, the assertion may still
        // be confirmed by another.
        let live_for_us: Vec<&BearerConfirmation> = for_us
            .into_iter()
            .filter(|c| live(c.not_on_or_after))
            .collect();
        if live_for_us.is_empty() {
            return Err(SamlError::Expired);
        }
        // Usable now: live and past its NotBefore. The assertion is acceptable while any of
        // them is, so it is remembered (and its lifetime bounded) until the last one ends.
        let last = live_for_us
            .into_iter()
            .filter(|c| c.not_before.is_none_or(|t| t <= now.saturating_add(leeway)))
            .map(|c| c.not_on_or_after)
            .max()
            .ok_or(SamlError::NotYetValid)?;
        let expires_at = match self.not_on_or_after {
            Some(t) => t.min(last),
            None => last,
        };
        if expires_at > now.saturating_add(expected.max_lifetime) {
            return Err(SamlError::LivesTooLong);
        }
        Ok(expires_at.saturating_add(leeway))
    }
}

/// RFC 7522 §2.1 says base64url without padding and without line breaks; base64 (`+`, `/`)
/// and padding are accepted as well, white space is not. An unencoded `+` in a form body
/// arrives here as a space and is refused.
fn decode_parameter(encoded: &str) -> Result<Vec<u8>, SamlError> {
    if encoded.len() > MAX_ENCODED_LEN {
        return Err(SamlError::TooLarge);
    }
    let engine = if encoded.contains(['+', '/']) {
        &BASE64
    } else {
        &BASE64URL
    };
    let bytes = engine.decode(encoded).map_err(|_| SamlError::NotBase64)?;
    if bytes.len() > MAX_ASSERTION_BYTES {
        return Err(SamlError::TooLarge);
    }
    Ok(bytes)
}

/// Refuses, before any parser runs: a byte-order mark, an XML declaration naming an encoding
/// other than UTF-8 (libxml2 would transcode, roxmltree would not: two readings of one
/// text), and every markup declaration (`<!DOCTYPE`, `<!ENTITY`, `<!ELEMENT`, in any case).
///
/// The scan is for `<!` not followed by `--` (comment) or `[CDATA[`. Outside comments, CDATA
/// and processing instructions `<` always starts markup (it cannot appear raw in text or
/// attribute values), so nothing that declares a DTD or an entity can pass. A literal `<!`
/// inside a comment or CDATA section is refused too: a false alarm no IdP produces.
fn check_prolog(xml: &str) -> Result<(), SamlError> {
    if xml.starts_with('\u{feff}') {
        return Err(SamlError::NotUtf8);
    }
    if let Some(rest) = xml.strip_prefix("<?xml") {
        let declaration = rest.split("?>").next().unwrap_or_default();
        let compact: String = declaration
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect::<String>()
            .to_ascii_lowercase();
        if compact.contains("encoding=")
            && !compact.contains("encoding=\"utf-8\"")
            && !compact.contains("encoding='utf-8'")
        {
            return Err(SamlError::NotUtf8);
        }
    }
    for (at, _) in xml.match_indices("<!") {
        let after = &xml[at + 2..];
        if !(after.starts_with("--") || after.starts_with("[CDATA[")) {
            return Err(SamlError::Dtd);
        }
    }
    Ok(())
}

/// roxmltree with DTDs refused (its default; restated) and a node limit.
fn parse(xml: &str) -> Result<Document<'_>, SamlError> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    Document::parse_with_options(xml, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => SamlError::Dtd,
        roxmltree::Error::NodesLimitReached => SamlError::TooLarge,
        _ => SamlError::Malformed,
    })
}

/// The checks on the submitted document that bind the signature to its document element.
/// Returns that element's `ID`.
fn check_signature_shape(doc: &Document<'_>) -> Result<String, SamlError> {
    let root = doc.root_element();
    if !is(root, SAML_NS, "Assertion") {
        return Err(SamlError::NotAnAssertion);
    }
    check_ids_and_depth(doc)?;
    let id = plain_attribute(root, "ID").ok_or(SamlError::BadId)?;
    if !valid_id(id) {
        return Err(SamlError::BadId);
    }
    // One assertion per parameter (RFC 7522 §2.1): none nested in Advice either.
    if doc
        .descendants()
        .any(|n| n != root && (is(n, SAML_NS, "Assertion") || is(n, SAML_NS, "EncryptedAssertion")))
    {
        return Err(SamlError::NotAnAssertion);
    }

    let signatures: Vec<Node<'_, '_>> = doc
        .descendants()
        .filter(|n| is(*n, DSIG_NS, "Signature"))
        .collect();
    let signature = match signatures.as_slice() {
        [] => return Err(SamlError::Unsigned),
        [one] if one.parent() == Some(root) => *one,
        _ => return Err(SamlError::SignaturePlacement),
    };
    // No signature syntax anywhere else (a stray Reference, Manifest or Object).
    if doc.descendants().any(|n| {
        n.is_element()
            && n.tag_name().namespace() == Some(DSIG_NS)
            && n != signature
            && !n.ancestors().any(|a| a == signature)
    }) {
        return Err(SamlError::SignaturePlacement);
    }

    // Signature: SignedInfo, SignatureValue, KeyInfo?; no Object. KeyInfo is not read:
    // samael gives libxmlsec1 the client's key, and libxmlsec1 then skips KeyInfo.
    let parts = elements(signature);
    match parts.as_slice() {
        [signed_info, value] | [signed_info, value, _]
            if is(*signed_info, DSIG_NS, "SignedInfo")
                && is(*value, DSIG_NS, "SignatureValue")
                && parts.get(2).is_none_or(|k| is(*k, DSIG_NS, "KeyInfo")) =>
        {
            check_signed_info(*signed_info, id)?;
        }
        _ => return Err(SamlError::SignatureAlgorithm),
    }
    Ok(id.to_owned())
}

/// SignedInfo: one CanonicalizationMethod, one SignatureMethod, one Reference to `#id`.
fn check_signed_info(signed_info: Node<'_, '_>, id: &str) -> Result<(), SamlError> {
    let parts = elements(signed_info);
    let [c14n, method, references @ ..] = parts.as_slice() else {
        return Err(SamlError::SignatureAlgorithm);
    };
    if !is(*c14n, DSIG_NS, "CanonicalizationMethod")
        || !algorithm_in(*c14n, C14N_METHODS)
        || !only_inclusive_namespaces(*c14n)
        || !is(*method, DSIG_NS, "SignatureMethod")
        || !algorithm_in(*method, SIGNATURE_METHODS)
        || !elements(*method).is_empty()
    {
        return Err(SamlError::SignatureAlgorithm);
    }
    let [reference] = references else {
        return Err(SamlError::SignatureReference);
    };
    if !is(*reference, DSIG_NS, "Reference") {
        return Err(SamlError::SignatureAlgorithm);
    }
    // Same-document, by bare name, to the document element: no "" (whole document), no
    // xpointer(), no external URI (libxmlsec1 would fetch it).
    if plain_attribute(*reference, "URI").and_then(|u| u.strip_prefix('#')) != Some(id) {
        return Err(SamlError::SignatureReference);
    }
    let parts = elements(*reference);
    let (transforms, digest) = match parts.as_slice() {
        [t, m, v] if is(*t, DSIG_NS, "Transforms") => (elements(*t), (*m, *v)),
        _ => return Err(SamlError::SignatureAlgorithm),
    };
    let (digest_method, digest_value) = digest;
    if !is(digest_method, DSIG_NS, "DigestMethod")
        || !algorithm_in(digest_method, DIGEST_METHODS)
        || !is(digest_value, DSIG_NS, "DigestValue")
    {
        return Err(SamlError::SignatureAlgorithm);
    }
    // enveloped-signature, then optionally one canonicalization; nothing else (no XPath,
    // XPath Filter 2, XSLT, base64 or a second enveloped transform).
    let accepted = match transforms.as_slice() {
        [enveloped] => is_transform(*enveloped, &[ENVELOPED]),
        [enveloped, c14n] => {
            is_transform(*enveloped, &[ENVELOPED])
                && is_transform(*c14n, C14N_METHODS)
                && only_inclusive_namespaces(*c14n)
        }
        _ => false,
    };
    if !accepted {
        return Err(SamlError::SignatureAlgorithm);
    }
    Ok(())
}

fn is_transform(node: Node<'_, '_>, algorithms: &[&str]) -> bool {
    is(node, DSIG_NS, "Transform") && algorithm_in(node, algorithms)
}

/// A c14n method may carry exclusive c14n's `InclusiveNamespaces PrefixList`, nothing else.
fn only_inclusive_namespaces(node: Node<'_, '_>) -> bool {
    elements(node)
        .iter()
        .all(|c| is(*c, EXC_C14N, "InclusiveNamespaces"))
}

/// Every element within the depth limit; no namespaced id attribute (`xml:id`, which libxml2
/// registers as an ID on its own, or `foo:ID`, which libxml2's `xmlHasProp` would take for
/// `ID`); no `ID` value twice. Together these make `#id` name one element for both parsers.
fn check_ids_and_depth(doc: &Document<'_>) -> Result<(), SamlError> {
    let mut seen = HashSet::new();
    for element in doc.descendants().filter(|n| n.is_element()) {
        if element.ancestors().count() > MAX_DEPTH {
            return Err(SamlError::Malformed);
        }
        for attribute in element.attributes() {
            if !attribute.name().eq_ignore_ascii_case("id") {
                continue;
            }
            if attribute.namespace().is_some() {
                return Err(SamlError::AmbiguousId);
            }
            if attribute.name() == "ID" && !seen.insert(attribute.value()) {
                return Err(SamlError::AmbiguousId);
            }
        }
    }
    Ok(())
}

/// Reads the signed assertion (the canonical octets xmlsec hashed, already parsed).
fn extract(doc: &Document<'_>, id: &str) -> Result<VerifiedAssertion, SamlError> {
    let assertion = doc.root_element();
    // The reference pointed at `id`, and IDs are unique; restated on the signed octets.
    if !is(assertion, SAML_NS, "Assertion") || plain_attribute(assertion, "ID") != Some(id) {
        return Err(SamlError::SignatureReference);
    }
    if doc.descendants().any(|n| is(n, DSIG_NS, "Signature")) {
        return Err(SamlError::SignaturePlacement);
    }
    if plain_attribute(assertion, "Version") != Some("2.0") {
        return Err(SamlError::BadVersion);
    }
    let issue_instant = instant(
        plain_attribute(assertion, "IssueInstant").ok_or(SamlError::Missing("an issueinstant"))?,
        "issueinstant",
    )?;

    let issuer = one_child(assertion, "Issuer", "an issuer")?;
    let issuer = exact_text(issuer, "issuer", MAX_URI_LEN)?;

    let subject = one_child(assertion, "Subject", "a subject")?;
    if saml_children(subject, "EncryptedID").next().is_some()
        || saml_children(subject, "BaseID").next().is_some()
    {
        return Err(SamlError::Unsupported);
    }
    let name_id = one_child(subject, "NameID", "a subject nameid")?;
    let subject_format = plain_attribute(name_id, "Format").map(str::to_owned);
    let subject_text = exact_text(name_id, "nameid", MAX_SUBJECT_LEN)?;

    let mut bearer_confirmations = Vec::new();
    for confirmation in saml_children(subject, "SubjectConfirmation") {
        let method = plain_attribute(confirmation, "Method")
            .ok_or(SamlError::Missing("a subject confirmation method"))?;
        if uri_value(method, "subject confirmation method")? != BEARER {
            continue;
        }
        let data = at_most_one(
            confirmation,
            "SubjectConfirmationData",
            "subjectconfirmationdata",
        )?
        .ok_or(SamlError::BearerWithoutData)?;
        let recipient = plain_attribute(data, "Recipient").ok_or(SamlError::BearerWithoutData)?;
        let not_on_or_after =
            plain_attribute(data, "NotOnOrAfter").ok_or(SamlError::BearerWithoutData)?;
        bearer_confirmations.push(BearerConfirmation {
            recipient: uri_value(recipient, "recipient")?,
            not_on_or_after: instant(not_on_or_after, "subject confirmation notonorafter")?,
            not_before: plain_attribute(data, "NotBefore")
                .map(|t| instant(t, "subject confirmation notbefore"))
                .transpose()?,
            address: plain_attribute(data, "Address").map(str::to_owned),
        });
    }
    if bearer_confirmations.is_empty() {
        return Err(SamlError::NotBearer);
    }

    // Conditions are required: RFC 7522 §3 item 3 requires an AudienceRestriction in them.
    let conditions = one_child(assertion, "Conditions", "conditions")?;
    let not_before = plain_attribute(conditions, "NotBefore")
        .map(|t| instant(t, "notbefore"))
        .transpose()?;
    let not_on_or_after = plain_attribute(conditions, "NotOnOrAfter")
        .map(|t| instant(t, "notonorafter"))
        .transpose()?;
    let mut audience_restrictions = Vec::new();
    let mut one_time_use = false;
    for condition in elements(conditions) {
        // RFC 7522 §3 item 10: refuse conditions that are not understood.
        if is(condition, SAML_NS, "AudienceRestriction") {
            let audiences = elements(condition)
                .into_iter()
                .map(|a| {
                    if !is(a, SAML_NS, "Audience") {
                        return Err(SamlError::UnknownCondition);
                    }
                    uri_value(&text_content(a, "audience")?, "audience")
                })
                .collect::<Result<Vec<String>, SamlError>>()?;
            if audiences.is_empty() {
                return Err(SamlError::Missing("an audience"));
            }
            audience_restrictions.push(audiences);
        } else if is(condition, SAML_NS, "OneTimeUse") {
            one_time_use = true;
        } else if !is(condition, SAML_NS, "ProxyRestriction") {
            // ProxyRestriction limits what the relying party may issue in turn; an access
            // token is not a SAML assertion, so it is honoured by not issuing any.
            return Err(SamlError::UnknownCondition);
        }
    }
    if audience_restrictions.is_empty() {
        return Err(SamlError::Missing("an audience restriction"));
    }

    Ok(VerifiedAssertion {
        id: id.to_owned(),
        issuer,
        issue_instant,
        subject: subject_text,
        subject_format,
        not_before,
        not_on_or_after,
        audience_restrictions,
        one_time_use,
        bearer_confirmations,
    })
}

/// The text of an element: every text and CDATA child in document order, concatenated;
/// comments skipped; a child element or processing instruction refused.
///
/// Comments: the pre-digest octets this reads come from comment-free canonicalization, so
/// `<NameID>admin<!---->@evil.com</NameID>` reaches here as `admin@evil.com` - the text the
/// IdP signed, and the user it vouched for. (A reader that stops at the first text node
/// would see `admin`: the 2018 CVE-2017-11427 family.) Skipping comments rather than
/// stopping at them gives the same result should a comment ever reach this function.
fn text_content(element: Node<'_, '_>, what: &'static str) -> Result<String, SamlError> {
    let mut text = String::new();
    for child in element.children() {
        if child.is_text() {
            text.push_str(child.text().unwrap_or_default());
        } else if !child.is_comment() {
            return Err(SamlError::BadText(what));
        }
    }
    Ok(text)
}

/// NameID and Issuer are xs:string: compared as they are, so surrounding white space is
/// refused rather than trimmed (`admin ` must not become `admin`).
fn exact_text(element: Node<'_, '_>, what: &'static str, max: usize) -> Result<String, SamlError> {
    let text = text_content(element, what)?;
    if text.is_empty()
        || text.len() > max
        || text.chars().any(char::is_control)
        || text.trim() != text
    {
        return Err(SamlError::BadText(what));
    }
    Ok(text)
}

/// xs:anyURI values (Audience, Recipient, Method) collapse white space by their schema type,
/// so surrounding white space is dropped.
fn uri_value(value: &str, what: &'static str) -> Result<String, SamlError> {
    let value = value.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r'));
    if value.is_empty() || value.len() > MAX_URI_LEN || value.chars().any(char::is_control) {
        return Err(SamlError::BadText(what));
    }
    Ok(value.to_owned())
}

/// An xs:dateTime as unix seconds (fractions dropped: an expiry moves earlier, never later).
/// SAML requires UTC (`Z`); any explicit offset is converted; no time zone is refused.
fn instant(value: &str, what: &'static str) -> Result<i64, SamlError> {
    time::OffsetDateTime::parse(value.trim(), &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| SamlError::BadTime(what))
}

/// 1 to [`MAX_ID_LEN`] characters of an ASCII subset of xs:NCName. Every IdP seen uses `_` or
/// a letter then hex digits, UUIDs or digits.
fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    id.len() <= MAX_ID_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn is(node: Node<'_, '_>, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(namespace)
        && node.tag_name().name() == name
}

/// An attribute without a namespace. roxmltree's `attribute("x")` matches `x` in any
/// namespace; SAML and XML-DSig attributes are never namespaced.
fn plain_attribute<'a>(node: Node<'a, '_>, name: &str) -> Option<&'a str> {
    node.attributes()
        .find(|a| a.namespace().is_none() && a.name() == name)
        .map(|a| a.value())
}

fn algorithm_in(node: Node<'_, '_>, accepted: &[&str]) -> bool {
    plain_attribute(node, "Algorithm").is_some_and(|a| accepted.contains(&a))
}

fn elements<'a, 'i>(node: Node<'a, 'i>) -> Vec<Node<'a, 'i>> {
    node.children().filter(|n| n.is_element()).collect()
}

fn saml_children<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> impl Iterator<Item = Node<'a, 'i>> {
    node.children().filter(move |n| is(*n, SAML_NS, name))
}

fn at_most_one<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'static str,
    what: &'static str,
) -> Result<Option<Node<'a, 'i>>, SamlError> {
    let mut found = saml_children(node, name);
    let first = found.next();
    if found.next().is_some() {
        return Err(SamlError::Duplicate(what));
    }
    Ok(first)
}

fn one_child<'a, 'i>(
    node: Node<'a, 'i>,
    name: &'static str,
    what: &'static str,
) -> Result<Node<'a, 'i>, SamlError> {
    at_most_one(node, name, what)?.ok_or(SamlError::Missing(what))
}

/// Why [`sign_assertion`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The key is not PEM `PRIVATE KEY` (PKCS #8), `RSA PRIVATE KEY` or `EC PRIVATE KEY`.
    #[error("the signing key is not a pem private key")]
    Key,
    /// The certificate is not PEM `CERTIFICATE`.
    #[error("the certificate is not a pem certificate")]
    Certificate,
    /// libxmlsec1 could not sign (no `ds:Signature` template, no `ID` it references, a key
    /// that does not fit the `SignatureMethod`...).
    #[error("libxmlsec1 could not sign the template")]
    Xmlsec,
}

/// Signs an assertion template (tests, examples, and a test IdP): `template` is a whole
/// `saml2:Assertion` whose `ds:Signature` has an empty `DigestValue` and `SignatureValue`
/// and a `Reference URI="#<the assertion's ID>"`; libxmlsec1 fills both values. An empty
/// `<ds:X509Certificate/>` in the template is filled with `cert_pem` (libxmlsec1 leaves
/// KeyInfo alone when the key it signs with carries no certificate). Returns the signed
/// document, with an XML declaration, ready for base64url.
pub fn sign_assertion(template: &str, key_pem: &str, cert_pem: &str) -> Result<String, SignError> {
    let (label, key_der) =
        pem_rfc7468::decode_vec(key_pem.trim().as_bytes()).map_err(|_| SignError::Key)?;
    if !matches!(label, "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY") {
        return Err(SignError::Key);
    }
    let cert_der = certificate_der(cert_pem).map_err(|_| SignError::Certificate)?;
    let cert_b64 = base64::engine::general_purpose::STANDARD.encode(cert_der);
    let template = template.replacen(
        "<ds:X509Certificate/>",
        &format!("<ds:X509Certificate>{cert_b64}</ds:X509Certificate>"),
        1,
    );
    // xmlSecOpenSSLAppKeyLoadMemory, DER: reads PKCS #8 as well as PKCS #1 / SEC1.
    Crypto::sign_xml(template, &key_der).map_err(|_| SignError::Xmlsec)
}

/// The values of a test assertion: see [`assertion_template`].
#[derive(Debug, Clone)]
pub struct AssertionFields<'a> {
    /// `ID`.
    pub id: &'a str,
    /// `Issuer`.
    pub issuer: &'a str,
    /// `NameID` (inserted as is: escape it yourself if it must be, or use it to inject).
    pub name_id_xml: &'a str,
    /// The one `Audience`.
    pub audience: &'a str,
    /// The bearer confirmation's `Recipient`.
    pub recipient: &'a str,
    /// `IssueInstant`, `Conditions/@NotBefore`: unix seconds.
    pub issued_at: i64,
    /// `Conditions/@NotOnOrAfter` and the confirmation's: unix seconds.
    pub expires_at: i64,
}

/// A `saml2:Assertion` template with an enveloped signature (exclusive c14n, RSA-SHA256,
/// SHA-256), for [`sign_assertion`].
pub fn assertion_template(f: &AssertionFields<'_>) -> String {
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    let (id, issued, expires) = (f.id, at(f.issued_at), at(f.expires_at));
    format!(
        concat!(
            r#"<saml2:Assertion xmlns:saml2="urn:oasis:names:tc:SAML:2.0:assertion" ID="{id}" IssueInstant="{issued}" Version="2.0">"#,
            r#"<saml2:Issuer>{issuer}</saml2:Issuer>"#,
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"</ds:Transforms><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>"#,
            r#"<ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/>"#,
            r#"<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo></ds:Signature>"#,
            r#"<saml2:Subject><saml2:NameID Format="urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress">{name_id}</saml2:NameID>"#,
            r#"<saml2:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">"#,
            r#"<saml2:SubjectConfirmationData NotOnOrAfter="{expires}" Recipient="{recipient}"/>"#,
            r#"</saml2:SubjectConfirmation></saml2:Subject>"#,
            r#"<saml2:Conditions NotBefore="{issued}" NotOnOrAfter="{expires}">"#,
            r#"<saml2:AudienceRestriction><saml2:Audience>{audience}</saml2:Audience></saml2:AudienceRestriction>"#,
            r#"</saml2:Conditions>"#,
            r#"<saml2:AuthnStatement AuthnInstant="{issued}"><saml2:AuthnContext>"#,
            r#"<saml2:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified</saml2:AuthnContextClassRef>"#,
            r#"</saml2:AuthnContext></saml2:AuthnStatement></saml2:Assertion>"#,
        ),
        id = id,
        issued = issued,
        expires = expires,
        issuer = xml_escape(f.issuer),
        name_id = f.name_id_xml,
        recipient = xml_escape(f.recipient),
        audience = xml_escape(f.audience),
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

    const IDP_KEY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/saml/idp-key.pem"
    ));
    const IDP_CERT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/saml/idp-cert.pem"
    ));
    const OTHER_KEY: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/saml/other-key.pem"
    ));
    const OTHER_CERT: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/saml/other-cert.pem"
    ));

    const NOW: i64 = 1_796_000_000;
    const IDP: &str = "https://idp.example.test";
    const TOKEN: &str = "https://as.example.test/token";

    fn fields(id: &'static str, name_id_xml: &'static str) -> AssertionFields<'static> {
        AssertionFields {
            id,
            issuer: IDP,
            name_id_xml,
            audience: TOKEN,
            recipient: TOKEN,
            issued_at: NOW - 10,
            expires_at: NOW + 300,
        }
    }

    fn signed(f: &AssertionFields<'_>) -> String {
        sign_assertion(&assertion_template(f), IDP_KEY, IDP_CERT).unwrap()
    }

    fn b64(xml: &str) -> String {
        URL_SAFE_NO_PAD.encode(xml)
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: IDP,
            audiences: &[TOKEN],
            recipients: &[TOKEN],
            now: NOW,
            leeway: 30,
            max_lifetime: 3600,
        }
    }

    #[test]
    fn a_signed_assertion_verifies_and_reads() {
        let xml = signed(&fields("_a1", "alice@example.test"));
        let a = verify_assertion(&b64(&xml), IDP_CERT).unwrap();
        assert_eq!(a.id, "_a1");
        assert_eq!(a.issuer, IDP);
        assert_eq!(a.subject, "alice@example.test");
        assert_eq!(a.audience_restrictions, vec![vec![TOKEN.to_owned()]]);
        assert_eq!(a.bearer_confirmations[0].recipient, TOKEN);
        assert_eq!(a.not_on_or_after, Some(NOW + 300));
        assert_eq!(a.check(&expected()), Ok(NOW + 300 + 30));
        // base64 with padding is accepted too.
        assert_eq!(verify_assertion(&STANDARD.encode(&xml), IDP_CERT), Ok(a));
    }

    #[test]
    fn a_comment_in_the_name_id_reads_as_the_signed_text() {
        let xml = signed(&fields("_a2", "admin@evil.com"));
        let tampered = xml.replacen("admin@evil.com", "admin<!---->@evil.com", 1);
        assert_ne!(tampered, xml);
        let a = verify_assertion(&b64(&tampered), IDP_CERT).unwrap();
        assert_eq!(a.subject, "admin@evil.com");
    }

    #[test]
    fn a_changed_name_id_fails_the_signature() {
        let xml = signed(&fields("_a3", "alice@example.test"));
        let tampered = xml.replacen("alice@example.test", "admin@example.test", 1);
        assert_eq!(
            verify_assertion(&b64(&tampered), IDP_CERT),
            Err(SamlError::BadSignature)
        );
    }

    #[test]
    fn someone_elses_signature_is_refused() {
        let template = assertion_template(&fields("_a4", "alice@example.test"));
        let xml = sign_assertion(&template, OTHER_KEY, OTHER_CERT).unwrap();
        assert_eq!(
            verify_assertion(&b64(&xml), IDP_CERT),
            Err(SamlError::BadSignature)
        );
    }

    #[test]
    fn an_unsigned_assertion_is_refused() {
        let template = assertion_template(&fields("_a5", "alice@example.test"));
        let start = template.find("<ds:Signature").unwrap();
        let end = template.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let unsigned = format!("{}{}", &template[..start], &template[end..]);
        assert_eq!(
            verify_assertion(&b64(&unsigned), IDP_CERT),
            Err(SamlError::Unsigned)
        );
    }

    #[test]
    fn signature_wrapping_is_refused() {
        let genuine = signed(&fields("_a6", "alice@example.test"));
        let genuine = genuine
            .trim_start_matches(|c: char| c != '>')
            .trim_start_matches('>');
        // A forged assertion that carries the genuine one in Advice.
        let forged = assertion_template(&fields("_evil", "admin@example.test"));
        let wrapped = forged.replacen(
            "</saml2:Conditions>",
            &format!("</saml2:Conditions><saml2:Advice>{genuine}</saml2:Advice>"),
            1,
        );
        assert_eq!(
            verify_assertion(&b64(&wrapped), IDP_CERT),
            Err(SamlError::NotAnAssertion)
        );
        // The genuine signature moved onto a forged assertion with the same ID, the genuine
        // assertion hidden in Advice.
        let sig_start = genuine.find("<ds:Signature").unwrap();
        let sig_end = genuine.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let signature = &genuine[sig_start..sig_end];
        let forged = assertion_template(&fields("_a6", "admin@example.test"));
        let f_start = forged.find("<ds:Signature").unwrap();
        let f_end = forged.find("</ds:Signature>").unwrap() + "</ds:Signature>".len();
        let bare = format!("{}{}{}", &forged[..f_start], signature, &forged[f_end..]);
        // The genuine signature alone over forged content: the digest does not match.
        assert_eq!(
            verify_assertion(&b64(&bare), IDP_CERT),
            Err(SamlError::BadSignature)
        );
        let moved = bare.replacen(
            "</saml2:Conditions>",
            &format!("</saml2:Conditions><saml2:Advice>{genuine}</saml2:Advice>"),
            1,
        );
        assert_eq!(
            verify_assertion(&b64(&moved), IDP_CERT),
            Err(SamlError::AmbiguousId)
        );
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        let xml = signed(&fields("_a7", "alice@example.test"));
        let body = xml
            .trim_start_matches(|c: char| c != '>')
            .trim_start_matches('>');
        let xxe = format!(
            "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{body}"
        );
        assert_eq!(verify_assertion(&b64(&xxe), IDP_CERT), Err(SamlError::Dtd));
        let latin1 = format!("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>{body}");
        assert_eq!(
            verify_assertion(&b64(&latin1), IDP_CERT),
            Err(SamlError::NotUtf8)
        );
    }

    #[test]
    fn junk_is_refused_without_a_server_error() {
        assert_eq!(
            verify_assertion("not base64!", IDP_CERT),
            Err(SamlError::NotBase64)
        );
        assert_eq!(
            verify_assertion(&b64("<a"), IDP_CERT),
            Err(SamlError::Malformed)
        );
        assert_eq!(
            verify_assertion(&b64("<a/>"), IDP_CERT),
            Err(SamlError::NotAnAssertion)
        );
        let big = "A".repeat(MAX_ENCODED_LEN + 4);
        assert_eq!(verify_assertion(&big, IDP_CERT), Err(SamlError::TooLarge));
    }

    #[test]
    fn the_checks_refuse_what_rfc_7522_refuses() {
        let a = verify_assertion(
            &b64(&signed(&fields("_a8", "alice@example.test"))),
            IDP_CERT,
        )
        .unwrap();
        let late = Expected {
            now: NOW + 400,
            ..expected()
        };
        assert_eq!(a.check(&late), Err(SamlError::Expired));
        let early = Expected {
            now: NOW - 100,
            ..expected()
        };
        assert_eq!(a.check(&early), Err(SamlError::IssuedInTheFuture));
        let elsewhere = Expected {
            audiences: &["https://other.example"],
            ..expected()
        };
        assert_eq!(a.check(&elsewhere), Err(SamlError::WrongAudience));
        let recipient = Expected {
            recipients: &["https://other.example/token"],
            ..expected()
        };
        assert_eq!(a.check(&recipient), Err(SamlError::WrongRecipient));
        let issuer = Expected {
            issuer: "https://other-idp.example",
            ..expected()
        };
        assert_eq!(a.check(&issuer), Err(SamlError::UntrustedIssuer));
        let short = Expected {
            max_lifetime: 60,
            ..expected()
        };
        assert_eq!(a.check(&short), Err(SamlError::LivesTooLong));
    }

    #[test]
    fn error_descriptions_are_lower_case_ascii_without_quotes() {
        for e in [
            SamlError::Missing("an issuer"),
            SamlError::BadSignature,
            SamlError::TooLarge,
            SamlError::BadId,
        ] {
            let text = e.to_string();
            assert!(text.is_ascii() && !text.contains('"'), "{text}");
        }
    }
}
