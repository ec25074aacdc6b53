//! `authledger import`: the OAuth clients of another server, each registered as a client here
//! (`ClientRegistered` with `imported` naming the source and what did not map).
//!
//! Three sources (`docs/import-formats.md`): Ory Hydra's `hydra list clients --format json`
//! (joined with the `client_secret` column of its database to keep bcrypt secrets), a Keycloak
//! realm export, and a CSV export of the League/Symfony bundle's `oauth2_client` table. Each
//! setting with a counterpart here is mapped; the rest is listed per client. A client that
//! could not work as it did (an authentication method or redirect rule this server lacks) is
//! skipped, with the reason.

use super::backend::Backend;
use super::Format;
use crate::service::CreateClient;
use clap::{Args, ValueEnum};
use domain::event::ImportOrigin;
use domain::values::{RedirectUri, Scope};
use serde_json::Value;
use std::path::PathBuf;

/// The server an export comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// Ory Hydra v2: `hydra list clients --format json` (an `items` page, or an array).
    Hydra,
    /// Keycloak: a realm export (`kc.sh export --realm R --file R.json`).
    Keycloak,
    /// league/oauth2-server-bundle: the `oauth2_client` table as CSV with a header row.
    League,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Hydra => "hydra",
            Source::Keycloak => "keycloak",
            Source::League => "league",
        }
    }
}

/// Options of `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The server the file was exported from.
    #[arg(long, value_enum)]
    pub from: Source,
    /// The export file.
    pub file: PathBuf,
    /// Show what would be imported, and what would not map, without registering anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of the report.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// What becomes of one client of the export.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Planned {
    /// Its id in the source.
    pub source_id: String,
    /// The registration, or why it is skipped.
    #[serde(skip)]
    pub create: Result<CreateClient, String>,
    /// What becomes of its secret (`ImportOrigin::secret`).
    pub secret: &'static str,
    /// Settings that did not map, as `name: why`.
    pub unmapped: Vec<String>,
}

/// One line of the report.
#[derive(Debug, serde::Serialize)]
struct Reported {
    source_id: String,
    client_id: Option<String>,
    action: String,
    secret: &'static str,
    /// A secret issued here because the source's was not usable: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    new_secret: Option<String>,
    unmapped: Vec<String>,
}

/// Runs `import`.
pub fn run(args: ImportArgs, data_dir: PathBuf) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", args.file.display()))?;
    let planned = plan(args.from, &text)?;
    let correlation = format!("import-{}", uuid::Uuid::now_v7());
    let mut report = Vec::with_capacity(planned.len());
    let mut failed = 0;
    actix_rt::System::new().block_on(async {
        let backend = if args.dry_run {
            None
        } else {
            Some(Backend::open(&data_dir)?)
        };
        for p in planned {
            let mut line = Reported {
                source_id: p.source_id.clone(),
                client_id: None,
                action: String::new(),
                secret: p.secret,
                new_secret: None,
                unmapped: p.unmapped.clone(),
            };
            match (p.create, &backend) {
                (Err(why), _) => line.action = format!("skipped: {why}"),
                (Ok(req), None) => {
                    line.client_id = req.client_id.clone();
                    line.action = "would import".into();
                }
                (Ok(req), Some(b)) => {
                    line.client_id = req.client_id.clone();
                    match b.create_client_correlated(req, Some(&correlation)).await {
                        Ok(out) => {
                            line.action = "imported".into();
                            if p.secret == "rotated" {
                                line.new_secret = out.client_secret;
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            line.action = format!("failed: {e:#}");
                        }
                    }
                }
            }
            report.push(line);
        }
        anyhow::Ok(())
    })?;
    print_report(args.format, &report)?;
    if failed > 0 {
        anyhow::bail!(
            "{failed} client(s) could not be registered (see the report); fix them, remove the \
             clients already imported from the file (their ids are taken), and import it again"
        );
    }
    Ok(())
}

fn print_report(format: Format, report: &[Reported]) -> anyhow::Result<()> {
    match format {
        Format::Json => crate::say!("{}", serde_json::to_string_pretty(report)?),
        Format::Jsonl => {
            for r in report {
                crate::say!("{}", serde_json::to_string(r)?);
            }
        }
        Format::Table | Format::Csv => {
            let header = [
                "source_id",
                "client_id",
                "action",
                "secret",
                "new_secret",
                "unmapped",
            ];
            let rows = report
                .iter()
                .map(|r| {
                    vec![
                        r.source_id.clone(),
                        r.client_id.clone().unwrap_or_default(),
                        r.action.clone(),
                        r.secret.to_owned(),
                        r.new_secret.clone().unwrap_or_default(),
                        r.unmapped.join("\n"),
                    ]
                })
                .collect();
            super::output::rows(format, &header, rows)?;
        }
    }
    let rotated = report.iter().filter(|r| r.new_secret.is_some()).count();
    if rotated > 0 {
        eprintln!(
            "{rotated} client(s) got a new secret (their old one could not be carried over): \
             it is shown once, above; hand it to each client's owner"
        );
    }
    Ok(())
}

/// Plans the import of an export's text.
pub fn plan(source: Source, text: &str) -> anyhow::Result<Vec<Planned>> {
    match source {
        Source::Hydra => hydra(text),
        Source::Keycloak => keycloak(text),
        Source::League => league(text),
    }
}

/// What is known of a client while it is mapped.
struct Draft {
    source: Source,
    source_id: String,
    req: CreateClient,
    secret: &'static str,
    unmapped: Vec<String>,
    skip: Option<String>,
}

impl Draft {
    fn new(source: Source, source_id: &str) -> Self {
        Self {
            source,
            source_id: source_id.to_owned(),
            req: CreateClient {
                client_id: Some(source_id.to_owned()),
                ..CreateClient::default()
            },
            secret: "none",
            unmapped: Vec::new(),
            skip: None,
        }
    }

    fn unmapped(&mut self, name: &str, why: &str) {
        self.unmapped.push(format!("{name}: {why}"));
    }

    fn skip(&mut self, why: impl Into<String>) {
        self.skip.get_or_insert(why.into());
    }

    /// Keeps each redirect URI this server accepts; lists the others.
    fn redirect_uris<'a>(
        &mut self,
        name: &str,
        uris: impl IntoIterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut kept = Vec::new();
        for uri in uris {
            if uri.contains('*') {
                self.unmapped(name, &format!("{uri} has a wildcard; redirect URIs match exactly here (RFC 9700 4.1.3): register each URI"));
            } else {
                match RedirectUri::parse(uri) {
                    Ok(_) => kept.push(uri.to_owned()),
                    Err(e) => self.unmapped(name, &format!("{uri} is refused here: {}", e.0)),
                }
            }
        }
        kept
    }

    /// Keeps each scope that is a valid scope token.
    fn scopes<'a>(&mut self, scopes: impl IntoIterator<Item = &'a str>) {
        for s in scopes {
            if s.is_empty() {
                continue;
            }
            match Scope::parse(s) {
                Ok(_) if s == domain::client::ADMIN_SCOPE => {
                    self.unmapped("scope admin", "reserved for this server's administrators")
                }
                Ok(_) => {
                    if !self.req.scopes.iter().any(|k| k == s) {
                        self.req.scopes.push(s.to_owned());
                    }
                }
                Err(e) => self.unmapped(&format!("scope {s}"), &e.0),
            }
        }
    }

    /// The secret the source kept: a bcrypt hash stays verifiable, plaintext is hashed here,
    /// anything else means a new secret.
    fn secret(&mut self, stored: Option<&str>) {
        match stored.map(str::trim).filter(|s| !s.is_empty()) {
            Some(h) if h.starts_with("$2a$") || h.starts_with("$2b$") || h.starts_with("$2y$") => {
                match domain::values::SecretHash::imported_bcrypt(h) {
                    Ok(_) => {
                        self.req.client_secret_bcrypt = Some(h.to_owned());
                        self.secret = "bcrypt";
                    }
                    Err(_) => {
                        let cost = h.get(4..6).and_then(|c| c.parse::<u8>().ok());
                        match cost {
                            Some(c) if c > domain::values::MAX_BCRYPT_COST => self.rotate(
                                "client_secret",
                                &format!(
                                    "a bcrypt hash of cost {c}, dearer than the {} this server checks at each authentication",
                                    domain::values::MAX_BCRYPT_COST
                                ),
                            ),
                            _ => self.rotate("client_secret", "a malformed bcrypt hash"),
                        }
                    }
                }
            }
            Some(h) if h.starts_with('$') => {
                let scheme = h.split('$').nth(1).unwrap_or_default();
                self.rotate(
                    "client_secret",
                    &format!("a {scheme} hash, which this server cannot verify"),
                );
            }
            Some("**********") => self.rotate("secret", "masked in the export (a partial export)"),
            Some(plain) => {
                self.req.client_secret = Some(plain.to_owned());
                self.secret = "plaintext";
                if plain.len() < crate::service::MIN_SECRET_LEN {
                    self.unmapped(
                        "client_secret",
                        &format!(
                            "kept, but shorter than the {} characters this server asks of new secrets: rotate it",
                            crate::service::MIN_SECRET_LEN
                        ),
                    );
                }
            }
            None => self.rotate("client_secret", "not in the export"),
        }
    }

    fn rotate(&mut self, name: &str, why: &str) {
        self.secret = "rotated";
        self.unmapped(name, &format!("{why}: a new secret is issued"));
    }

    fn done(mut self) -> Planned {
        // Within what a registration records (service::check_origin): 200 notes of 500 bytes.
        self.unmapped.truncate(200);
        for note in &mut self.unmapped {
            if note.len() > 500 {
                let mut end = 497;
                while !note.is_char_boundary(end) {
                    end -= 1;
                }
                note.truncate(end);
                note.push_str("...");
            }
        }
        let origin = ImportOrigin {
            source: self.source.as_str().to_owned(),
            source_id: self.source_id.clone(),
            secret: self.secret.to_owned(),
            unmapped: self.unmapped.clone(),
        };
        if self.req.name.trim().is_empty() {
            self.req.name = self.source_id.clone();
        }
        self.req.name = self.req.name.chars().take(200).collect();
        self.req.imported = Some(origin);
        Planned {
            source_id: self.source_id,
            create: match self.skip {
                Some(why) => Err(why),
                None => Ok(self.req),
            },
            secret: self.secret,
            unmapped: self.unmapped,
        }
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// A Go duration as Hydra prints it (`1h0m0s`, `15m0s`, `90s`), in whole seconds.
fn go_duration(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return None,
        };
        total += number.parse::<f64>().ok()? * unit;
        number.clear();
    }
    (number.is_empty() && total >= 1.0).then_some(total as u64)
}

/// Grant types both servers have.
const GRANTS: [&str; 7] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:jwt-bearer",
    "urn:ietf:params:oauth:grant-type:device_code",
];

fn hydra(text: &str) -> anyhow::Result<Vec<Planned>> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("not Hydra's client list (JSON): {e}"))?;
    let items = match &doc {
        Value::Array(a) => a.clone(),
        Value::Object(o) => match o.get("items") {
            Some(Value::Array(a)) => a.clone(),
            _ => anyhow::bail!(
                "not Hydra's client list: expected an array of clients or an object with items \
                 (hydra list clients --format json)"
            ),
        },
        _ => anyhow::bail!("not Hydra's client list: expected a JSON array or object"),
    };
    if doc.get("is_last_page") == Some(&Value::Bool(false)) {
        eprintln!(
            "warning: this is one page of Hydra's list (is_last_page is false): export the next \
             ones with --page-token and import them too"
        );
    }
    Ok(items.iter().map(hydra_client).collect())
}

fn hydra_client(c: &Value) -> Planned {
    let id = text(c, "client_id").unwrap_or_default();
    let mut d = Draft::new(Source::Hydra, id);
    d.req.name = text(c, "client_name").unwrap_or(id).to_owned();
    let method = text(c, "token_endpoint_auth_method").unwrap_or("client_secret_basic");
    let jwks = c.get("jwks").filter(|j| {
        j.get("keys")
            .and_then(Value::as_array)
            .is_some_and(|k| !k.is_empty())
    });
    match method {
        "none" => d.req.public = true,
        "client_secret_basic" | "client_secret_post" => {
            d.req.token_endpoint_auth_method = Some(method.to_owned());
            d.secret(text(c, "client_secret"));
        }
        "private_key_jwt" => match jwks {
            Some(j) => {
                d.req.token_endpoint_auth_method = Some(method.to_owned());
                d.req.jwks = Some(j.clone());
            }
            None => d.skip("private_key_jwt with keys only at a jwks_uri; this server takes inline keys (client create --jwks)"),
        },
        other => d.skip(format!("token_endpoint_auth_method {other} is not supported here")),
    }
    let grants: Vec<&str> = strings(c.get("grant_types").unwrap_or(&Value::Null));
    for g in &grants {
        if GRANTS.contains(g) {
            d.req.grant_types.push((*g).to_owned());
        } else {
            d.unmapped("grant_types", &format!("{g} is not supported here"));
        }
    }
    if d.req.grant_types.is_empty() {
        d.req.grant_types.push("authorization_code".into());
    }
    if d.req.public && d.req.grant_types.iter().any(|g| g == "client_credentials") {
        d.req.grant_types.retain(|g| g != "client_credentials");
        d.unmapped(
            "grant_types",
            "client_credentials needs a confidential client here",
        );
    }
    const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    if d.req.jwks.is_none() && d.req.grant_types.iter().any(|g| g == JWT_BEARER) {
        d.req.grant_types.retain(|g| g != JWT_BEARER);
        d.unmapped(
            "grant_types",
            "jwt-bearer needs the assertion issuer's keys here (client update --jwks); Hydra keeps \
             them as trust relationships, which are not exported with clients",
        );
    }
    if d.req.grant_types.is_empty() {
        d.skip("no grant it had is supported here");
    }
    for rt in strings(c.get("response_types").unwrap_or(&Value::Null)) {
        if rt.split(' ').count() > 1 && rt.contains("code") {
            d.unmapped(
                "response_types",
                &format!(
                    "{rt}: the hybrid flow is not supported here (code, token and id_token are)"
                ),
            );
        }
    }
    d.req.redirect_uris = d.redirect_uris(
        "redirect_uris",
        strings(c.get("redirect_uris").unwrap_or(&Value::Null)),
    );
    let needs_redirect = d
        .req
        .grant_types
        .iter()
        .any(|g| g == "authorization_code" || g == "implicit");
    if needs_redirect && d.req.redirect_uris.is_empty() {
        d.skip("its grants need a redirect URI and none could be kept");
    }
    d.scopes(text(c, "scope").unwrap_or_default().split(' '));
    for aud in strings(c.get("audience").unwrap_or(&Value::Null)) {
        d.req.resources.push(aud.to_owned());
    }
    if !d.req.resources.is_empty() {
        d.unmapped("audience", "kept as the client's resources: it asks tokens for them with resource= (RFC 8707), not audience=");
    }
    // Hydra's access tokens are opaque unless its strategy says jwt.
    d.req.token_format = Some(match text(c, "access_token_strategy") {
        Some("jwt") => "jwt".into(),
        _ => "opaque".into(),
    });
    let lifespans: Vec<u64> = [
        "authorization_code_grant_access_token_lifespan",
        "client_credentials_grant_access_token_lifespan",
        "implicit_grant_access_token_lifespan",
        "jwt_bearer_grant_access_token_lifespan",
        "password_grant_access_token_lifespan",
        "refresh_token_grant_access_token_lifespan",
        "device_authorization_grant_access_token_lifespan",
    ]
    .iter()
    .filter_map(|k| text(c, k).and_then(go_duration))
    .collect();
    if let Some(max) = lifespans.iter().max() {
        d.req.access_token_ttl = Some((*max).min(86_400) as u32);
        if lifespans.iter().any(|l| l != max) {
            d.unmapped(
                "*_access_token_lifespan",
                "one access token lifetime per client here: the longest is kept",
            );
        }
    }
    for k in [
        "authorization_code_grant_refresh_token_lifespan",
        "refresh_token_grant_refresh_token_lifespan",
    ] {
        if text(c, k).is_some() {
            d.unmapped(
                k,
                "server-wide here (serve --refresh-token-ttl-secs); not per client",
            );
        }
    }
    for k in [
        "authorization_code_grant_id_token_lifespan",
        "implicit_grant_id_token_lifespan",
        "refresh_token_grant_id_token_lifespan",
    ] {
        if text(c, k).is_some() {
            d.unmapped(k, "id_token lifetimes are not set per client here");
        }
    }
    d.req.post_logout_redirect_uris = d.redirect_uris(
        "post_logout_redirect_uris",
        strings(c.get("post_logout_redirect_uris").unwrap_or(&Value::Null)),
    );
    if let Some(u) = text(c, "backchannel_logout_uri") {
        d.req.backchannel_logout_uri = Some(u.to_owned());
    }
    if text(c, "subject_type") == Some("pairwise") {
        d.req.subject_type = Some("pairwise".into());
        if let Some(sector) = text(c, "sector_identifier_uri") {
            match url::Url::parse(sector)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
            {
                Some(host) => d.req.sector_identifier = Some(host),
                None => d.unmapped("sector_identifier_uri", "not a URL with a host"),
            }
        }
    }
    if let Some(alg) = text(c, "id_token_signed_response_alg") {
        match alg {
            "RS256" | "ES256" | "EdDSA" => d.req.id_token_signed_response_alg = Some(alg.into()),
            other => d.unmapped(
                "id_token_signed_response_alg",
                &format!("{other} is not offered here"),
            ),
        }
    }
    if c.get("skip_consent") == Some(&Value::Bool(true)) {
        d.unmapped("skip_consent", "every user approves a client once here");
    }
    if !strings(c.get("allowed_cors_origins").unwrap_or(&Value::Null)).is_empty() {
        d.unmapped(
            "allowed_cors_origins",
            "no CORS here: browsers cannot call /token from another origin",
        );
    }
    for k in [
        "frontchannel_logout_uri",
        "jwks_uri",
        "request_object_signing_alg",
        "sector_identifier_uri",
        "userinfo_signed_response_alg",
    ] {
        match (k, text(c, k)) {
            (_, None) | ("userinfo_signed_response_alg", Some("none")) => {}
            ("sector_identifier_uri", Some(_)) if d.req.sector_identifier.is_some() => {}
            ("jwks_uri", Some(_)) if d.req.jwks.is_some() => {
                d.unmapped(k, "not fetched here: the inline jwks is kept")
            }
            (_, Some(_)) => d.unmapped(k, "not supported here"),
        }
    }
    if !strings(c.get("request_uris").unwrap_or(&Value::Null)).is_empty() {
        d.unmapped(
            "request_uris",
            "request objects by reference are not supported here",
        );
    }
    if c.get("metadata")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty())
    {
        d.unmapped("metadata", "free-form metadata is not kept");
    }
    for k in ["owner", "client_uri", "logo_uri", "policy_uri", "tos_uri"] {
        if text(c, k).is_some() {
            d.unmapped(k, "not kept");
        }
    }
    if !strings(c.get("contacts").unwrap_or(&Value::Null)).is_empty() {
        d.unmapped("contacts", "not kept");
    }
    d.done()
}

/// Keycloak's own clients in every realm: not the realm's applications.
const KEYCLOAK_BUILT_IN: [&str; 6] = [
    "account",
    "account-console",
    "admin-cli",
    "broker",
    "realm-management",
    "security-admin-console",
];

/// Keycloak client scopes that are its own mappers, not scopes a client asks for.
const KEYCLOAK_INTERNAL_SCOPES: [&str; 8] = [
    "web-origins",
    "roles",
    "acr",
    "basic",
    "role_list",
    "microprofile-jwt",
    "organization",
    "service_account",
];

fn keycloak(text: &str) -> anyhow::Result<Vec<Planned>> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("not a Keycloak realm export (JSON): {e}"))?;
    let Some(clients) = doc.get("clients").and_then(Value::as_array) else {
        anyhow::bail!(
            "not a Keycloak realm export: no clients array (export with kc.sh export --realm R \
             --file R.json)"
        );
    };
    let realm_lifespan = doc
        .get("accessTokenLifespan")
        .and_then(Value::as_u64)
        .and_then(|t| u32::try_from(t).ok());
    Ok(clients
        .iter()
        .map(|c| keycloak_client(c, realm_lifespan))
        .collect())
}

fn keycloak_client(c: &Value, realm_lifespan: Option<u32>) -> Planned {
    let id = text(c, "clientId").unwrap_or_default();
    let mut d = Draft::new(Source::Keycloak, id);
    let attr = |k: &str| c.get("attributes").and_then(|a| text(a, k));
    let flag = |k: &str| c.get(k).and_then(Value::as_bool).unwrap_or(false);
    d.req.name = match text(c, "name") {
        // Keycloak's message keys (${client_account}) are not names.
        Some(n) if !n.starts_with("${") => n.to_owned(),
        _ => id.to_owned(),
    };
    if KEYCLOAK_BUILT_IN.contains(&id) {
        d.skip("one of Keycloak's own clients");
        return d.done();
    }
    if text(c, "protocol").is_some_and(|p| p != "openid-connect") {
        d.skip("not an OpenID Connect client (SAML)");
    }
    if c.get("enabled") == Some(&Value::Bool(false)) {
        d.skip("disabled in Keycloak");
    }
    if flag("bearerOnly") {
        d.skip(
            "bearer-only: a resource server, which gets no tokens (protect it with the extractor)",
        );
    }
    if flag("publicClient") {
        d.req.public = true;
    } else {
        match text(c, "clientAuthenticatorType").unwrap_or("client-secret") {
            "client-secret" => d.secret(text(c, "secret")),
            "client-jwt" => d.skip(
                "signed-JWT authentication with keys Keycloak keeps as a certificate or jwks.url; \
                 register it here with client create --auth-method private_key_jwt --jwks",
            ),
            other => d.skip(format!(
                "client authenticator {other} is not supported here"
            )),
        }
    }
    let mut grants = Vec::new();
    if flag("standardFlowEnabled") {
        grants.push("authorization_code");
        if attr("use.refresh.tokens") != Some("false") {
            grants.push("refresh_token");
        }
    }
    if flag("implicitFlowEnabled") {
        grants.push("implicit");
    }
    if flag("directAccessGrantsEnabled") {
        grants.push("password");
        if attr("use.refresh.tokens") != Some("false") && !grants.contains(&"refresh_token") {
            grants.push("refresh_token");
        }
    }
    if flag("serviceAccountsEnabled") {
        grants.push("client_credentials");
    }
    if attr("oauth2.device.authorization.grant.enabled") == Some("true") {
        grants.push("urn:ietf:params:oauth:grant-type:device_code");
    }
    if attr("standard.token.exchange.enabled") == Some("true") {
        d.unmapped(
            "standard.token.exchange.enabled",
            "token exchange needs a policy here (client update --exchange-subject-client)",
        );
    }
    if grants.is_empty() {
        d.skip("no flow enabled");
    }
    d.req.grant_types = grants.iter().map(|g| (*g).to_owned()).collect();
    let redirects = strings(c.get("redirectUris").unwrap_or(&Value::Null));
    d.req.redirect_uris = d.redirect_uris("redirectUris", redirects);
    if (flag("standardFlowEnabled") || flag("implicitFlowEnabled"))
        && d.req.redirect_uris.is_empty()
    {
        d.skip("its flows need a redirect URI and none could be kept (wildcards do not map)");
    }
    if grants.contains(&"authorization_code") || grants.contains(&"implicit") {
        d.scopes(["openid"]);
    }
    let mut scopes: Vec<&str> = strings(c.get("defaultClientScopes").unwrap_or(&Value::Null));
    let optional = strings(c.get("optionalClientScopes").unwrap_or(&Value::Null));
    if !optional.is_empty() {
        d.unmapped("optionalClientScopes", "kept as scopes; a request without scope gets all of a client's scopes here, optional ones too");
    }
    scopes.extend(optional);
    let (internal, usable): (Vec<&str>, Vec<&str>) = scopes
        .into_iter()
        .partition(|s| KEYCLOAK_INTERNAL_SCOPES.contains(s));
    d.scopes(usable);
    if !internal.is_empty() {
        d.unmapped(
            "client scopes",
            &format!(
                "{} are Keycloak mappers, not scopes here",
                internal.join(", ")
            ),
        );
    }
    match attr("access.token.lifespan")
        .and_then(|t| t.parse::<u32>().ok())
        .or(realm_lifespan)
    {
        Some(t) => d.req.access_token_ttl = Some(t.clamp(1, 86_400)),
        None => d.unmapped(
            "access.token.lifespan",
            "set neither for the client nor the realm, so Keycloak's 300 s applied; 3600 s here",
        ),
    }
    if attr("dpop.bound.access.tokens") == Some("true") {
        d.req.dpop_bound_access_tokens = true;
    }
    if attr("require.pushed.authorization.requests") == Some("true") {
        d.req.require_pushed_authorization_requests = true;
    }
    if attr("tls.client.certificate.bound.access.tokens") == Some("true") {
        d.unmapped(
            "tls.client.certificate.bound.access.tokens",
            "certificate-bound tokens (RFC 8705) are not supported here; DPoP is",
        );
    }
    match attr("pkce.code.challenge.method") {
        Some("plain") => d.req.allow_plain_pkce = true,
        Some("S256") if !d.req.public => d.unmapped(
            "pkce.code.challenge.method",
            "PKCE is required of public clients here, optional for confidential ones",
        ),
        _ => {}
    }
    if let Some(uris) = attr("post.logout.redirect.uris") {
        let list: Vec<&str> = uris
            .split("##")
            .filter(|u| !u.is_empty() && *u != "+")
            .collect();
        let mut kept = d.redirect_uris("post.logout.redirect.uris", list);
        if uris.split("##").any(|u| u == "+") {
            kept.extend(d.req.redirect_uris.iter().cloned());
        }
        d.req.post_logout_redirect_uris = kept;
    }
    if let Some(u) = attr("backchannel.logout.url") {
        d.req.backchannel_logout_uri = Some(u.to_owned());
    }
    for (k, to) in [
        ("access.token.signed.response.alg", 0),
        ("id.token.signed.response.alg", 1),
    ] {
        match attr(k) {
            None => {}
            Some(alg @ ("RS256" | "ES256" | "EdDSA")) => {
                let alg = Some(alg.to_owned());
                if to == 0 {
                    d.req.signing_alg = alg;
                } else {
                    d.req.id_token_signed_response_alg = alg;
                }
            }
            Some(other) => d.unmapped(k, &format!("{other} is not offered here")),
        }
    }
    if attr("use.jwks.url") == Some("true") || attr("jwks.url").is_some() {
        d.unmapped("jwks.url", "keys are not fetched from URLs here");
    }
    if attr("frontchannel.logout.url").is_some() {
        d.unmapped(
            "frontchannel.logout.url",
            "front-channel logout is not supported here",
        );
    }
    if strings(c.get("webOrigins").unwrap_or(&Value::Null))
        .iter()
        .any(|o| !o.is_empty())
    {
        d.unmapped(
            "webOrigins",
            "no CORS here: browsers cannot call /token from another origin",
        );
    }
    if c.get("protocolMappers")
        .and_then(Value::as_array)
        .is_some_and(|m| !m.is_empty())
    {
        d.unmapped("protocolMappers", "claim mappers are not supported here");
    }
    if flag("consentRequired") {
        d.unmapped(
            "consentRequired",
            "every user approves a client once here, whatever the setting",
        );
    }
    for k in ["rootUrl", "baseUrl", "adminUrl", "description"] {
        if text(c, k).is_some() {
            d.unmapped(k, "not kept");
        }
    }
    d.done()
}

fn league(text: &str) -> anyhow::Result<Vec<Planned>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    let column = |name: &str| header.iter().position(|h| h == name);
    let id_col = column("identifier").ok_or_else(|| {
        anyhow::anyhow!(
            "not an oauth2_client table export: no identifier column (export it with a header \
             row: \\copy oauth2_client TO 'clients.csv' WITH (FORMAT csv, HEADER))"
        )
    })?;
    let mut planned = Vec::new();
    for row in reader.records() {
        let row = row?;
        let get = |name: &str| {
            column(name)
                .and_then(|i| row.get(i))
                .map(str::trim)
                .filter(|v| !v.is_empty() && *v != "\\N" && *v != "NULL")
        };
        let id = row.get(id_col).unwrap_or_default().trim();
        let mut d = Draft::new(Source::League, id);
        d.req.name = get("name").unwrap_or(id).to_owned();
        let yes = |v: Option<&str>| matches!(v, Some("1" | "t" | "true" | "TRUE" | "y"));
        if column("active").is_some() && !yes(get("active")) {
            d.skip("inactive in the source");
        }
        match get("secret") {
            None => d.req.public = true,
            Some(s) => d.secret(Some(s)),
        }
        let grants: Vec<&str> = get("grants")
            .map(|g| g.split(' ').collect())
            .unwrap_or_default();
        if grants.is_empty() {
            d.unmapped("grants", "empty, which allowed every grant there: authorization_code and refresh_token kept (add others with client update)");
            d.req.grant_types = vec!["authorization_code".into(), "refresh_token".into()];
        }
        for g in grants.iter().filter(|g| !g.is_empty()) {
            if GRANTS.contains(g) {
                d.req.grant_types.push((*g).to_owned());
            } else {
                d.unmapped("grants", &format!("{g} is not supported here"));
            }
        }
        let redirects: Vec<&str> = get("redirect_uris")
            .map(|r| r.split(' ').collect())
            .unwrap_or_default();
        d.req.redirect_uris = d.redirect_uris(
            "redirect_uris",
            redirects.into_iter().filter(|r| !r.is_empty()),
        );
        if d.req
            .grant_types
            .iter()
            .any(|g| g == "authorization_code" || g == "implicit")
            && d.req.redirect_uris.is_empty()
        {
            d.skip("its grants need a redirect URI and none could be kept");
        }
        if d.req.public && d.req.grant_types.iter().any(|g| g == "client_credentials") {
            d.req.grant_types.retain(|g| g != "client_credentials");
            d.unmapped(
                "grants",
                "client_credentials needs a confidential client here",
            );
        }
        match get("scopes") {
            Some(s) => d.scopes(s.split(' ')),
            None => d.unmapped("scopes", "empty, which allowed every scope there: none kept (add them with client update --scope)"),
        }
        d.req.allow_plain_pkce = yes(get("allow_plain_text_pkce"));
        d.req.token_format = Some("jwt".into());
        planned.push(d.done());
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/fixtures/import/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn go_durations_read_as_hydra_prints_them() {
        assert_eq!(go_duration("1h0m0s"), Some(3600));
        assert_eq!(go_duration("15m0s"), Some(900));
        assert_eq!(go_duration("90s"), Some(90));
        assert_eq!(go_duration("1.5h"), Some(5400));
        assert_eq!(go_duration("500ms"), None);
        assert_eq!(go_duration("1d"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn a_client_that_cannot_work_here_is_skipped_with_its_reason() {
        let p = hydra_client(&serde_json::json!({
            "client_id": "x", "token_endpoint_auth_method": "client_secret_jwt",
            "grant_types": ["client_credentials"],
        }));
        assert!(p.create.unwrap_err().contains("client_secret_jwt"));
        let p = hydra_client(&serde_json::json!({
            "client_id": "y", "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"], "redirect_uris": ["https://a.example/*"],
        }));
        assert!(p.create.unwrap_err().contains("redirect URI"));
        assert!(
            p.unmapped.iter().any(|u| u.contains("wildcard")),
            "{:?}",
            p.unmapped
        );
    }

    #[test]
    fn hydra_clients_map_their_settings_and_list_the_rest() {
        let planned = plan(Source::Hydra, &fixture("hydra-clients.json")).unwrap();
        assert_eq!(planned.len(), 4);
        let web = planned[0].create.as_ref().unwrap();
        assert_eq!(
            web.client_id.as_deref(),
            Some("6f1c9a7e-3b1d-4e0a-9a57-2c4f0d8b1e63")
        );
        assert_eq!(web.name, "Acme Web");
        assert_eq!(planned[0].secret, "bcrypt");
        assert!(web
            .client_secret_bcrypt
            .as_deref()
            .unwrap()
            .starts_with("$2a$10$"));
        assert_eq!(web.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(web.scopes, ["openid", "offline_access", "profile"]);
        assert_eq!(web.access_token_ttl, Some(900));
        assert_eq!(web.token_format.as_deref(), Some("opaque"));
        assert_eq!(
            web.post_logout_redirect_uris,
            ["https://app.example.com/logged-out"]
        );
        let origin = web.imported.as_ref().unwrap();
        assert_eq!(
            (origin.source.as_str(), origin.secret.as_str()),
            ("hydra", "bcrypt")
        );
        let desktop = planned[1].create.as_ref().unwrap();
        assert!(desktop.public);
        assert_eq!(planned[1].secret, "none");
        let billing = planned[2].create.as_ref().unwrap();
        assert_eq!(
            billing.token_endpoint_auth_method.as_deref(),
            Some("private_key_jwt")
        );
        assert!(billing.jwks.is_some());
        assert_eq!(billing.resources, ["https://api.example.com/"]);
        assert_eq!(billing.access_token_ttl, Some(1800));
        // pbkdf2 cannot be verified here: a new secret, and every unsupported setting named.
        assert_eq!(planned[3].secret, "rotated");
        let unmapped = planned[3].unmapped.join("\n");
        for name in [
            "client_secret: a pbkdf2-sha256 hash",
            "allowed_cors_origins",
            "frontchannel_logout_uri",
            "metadata",
        ] {
            assert!(unmapped.contains(name), "{name} not in {unmapped}");
        }
    }
}
