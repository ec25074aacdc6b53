//! `authledger client create|update|list|show|rotate-secret|delete`.

use super::backend::Backend;
use super::{output, Format};
use crate::service::{ChangeClient, CreateClient};
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Client commands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Register a client; prints its secret once.
    Create(CreateArgs),
    /// Change a client.
    Update(UpdateArgs),
    /// List clients.
    List(FormatArg),
    /// Show one client (as it is, or as it was at --as-of with the tokens active then).
    Show(ShowArgs),
    /// Give a client a new secret (the old one stops working); prints it once.
    RotateSecret(IdArgs),
    /// Delete a client; its tokens stop being active.
    Delete(IdArgs),
}

/// The output format.
#[derive(Debug, Args)]
pub struct FormatArg {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// A client id and the output format.
#[derive(Debug, Args)]
pub struct IdArgs {
    /// The client id.
    pub id: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `client show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The client id.
    pub id: String,
    /// Show the client as it was at this moment (RFC 3339 or Unix seconds), with the access
    /// tokens active then; built from the log into a view (see `replay --as-of`).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `client create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Redirect URI (repeatable).
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// Grant type (repeatable; default client_credentials, or authorization_code with --public).
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    /// Scope (repeatable, or several space-separated).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// A public client (no secret).
    #[arg(long)]
    pub public: bool,
    /// Client id (default: generated).
    #[arg(long)]
    pub id: Option<String>,
    /// Client secret, at least 32 characters (default: 256 random bits).
    #[arg(long)]
    pub secret: Option<String>,
    /// Access token format.
    #[arg(long, value_parser = ["jwt", "opaque"])]
    pub token_format: Option<String>,
    /// Access token lifetime in seconds (default 3600).
    #[arg(long)]
    pub access_token_ttl: Option<u32>,
    /// Allow introspecting tokens of every client.
    #[arg(long)]
    pub can_introspect: bool,
    /// Register it as an administrator: the only kind of client that may be given the
    /// `admin` scope (the admin API's). Recorded in the log.
    #[arg(long)]
    pub admin: bool,
    /// Redirect URI matching: exact (default; a loopback URI matches any port) or extended
    /// (extra query parameters allowed, never response parameters).
    #[arg(long, value_parser = ["exact", "extended"])]
    pub redirect_uri_matching: Option<String>,
    /// Allow the PKCE plain method (weaker than S256; for clients that cannot hash).
    #[arg(long)]
    pub allow_plain_pkce: bool,
    /// Signing and authentication settings.
    #[command(flatten)]
    pub keys: KeyOptions,
    /// An issuer whose jwt-bearer assertions the client may present (repeatable; default:
    /// the client's own id).
    #[arg(long = "trusted-issuer")]
    pub trusted_issuers: Vec<String>,
    /// OAuth extension settings.
    #[command(flatten)]
    pub extensions: ExtensionOptions,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Options of `client create` and `client update` about keys and authentication.
#[derive(Debug, Args)]
pub struct KeyOptions {
    /// Signing algorithm of its JWT access tokens (default: the server's).
    #[arg(long, value_parser = ["RS256", "ES256", "EdDSA"])]
    pub signing_alg: Option<String>,
    /// How it authenticates: client_secret_basic, client_secret_post, private_key_jwt (no
    /// secret; needs --jwks) or none (public clients). Default: by secret, Basic or post.
    #[arg(long, value_parser = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"])]
    pub token_endpoint_auth_method: Option<String>,
    /// Its public keys: a JWKS document, as @FILE or inline JSON (for private_key_jwt and the
    /// jwt-bearer grant).
    #[arg(long, value_parser = parse_jwks)]
    pub jwks: Option<serde_json::Value>,
    /// Signing algorithm of its OpenID Connect id_tokens (default: RS256, which every
    /// relying party supports).
    #[arg(long, value_parser = ["RS256", "ES256", "EdDSA"])]
    pub id_token_alg: Option<String>,
    /// Where an OpenID Connect logout may send the browser afterwards (repeatable; matched
    /// exactly; on update, replaces the list).
    #[arg(long = "post-logout-redirect-uri")]
    pub post_logout_redirect_uris: Vec<String>,
    /// Where back-channel logout notices are POSTed when a user's session ends (https, or
    /// http on a loopback address; on update, "" removes it).
    #[arg(long)]
    pub backchannel_logout_uri: Option<String>,
    /// How the client sees users' `sub`: public (the user's id, default) or pairwise (an
    /// identifier of its own per sector, OpenID Connect Core 8.1).
    #[arg(long, value_parser = ["public", "pairwise"])]
    pub subject_type: Option<String>,
    /// The sector of a pairwise client: a host name (default: the host of its redirect URIs).
    #[arg(long)]
    pub sector_identifier: Option<String>,
}

/// Options of `client create` and `client update` for the OAuth extensions.
#[derive(Debug, Args)]
pub struct ExtensionOptions {
    /// A resource (absolute URI) the client may ask tokens for with the resource parameter
    /// (RFC 8707; repeatable; on update, replaces the list).
    #[arg(long = "resource")]
    pub resources: Vec<String>,
    /// The client must push its authorization requests to /par first (RFC 9126).
    #[arg(long = "require-par", num_args = 0..=1, default_missing_value = "true")]
    pub require_par: Option<bool>,
    /// The client's access tokens must be bound to a DPoP key (RFC 9449).
    #[arg(long = "dpop-bound", num_args = 0..=1, default_missing_value = "true")]
    pub dpop_bound: Option<bool>,
    /// Token exchange (RFC 8693): a client whose tokens this one may exchange (repeatable).
    #[arg(long = "exchange-subject-client")]
    pub exchange_subject_clients: Vec<String>,
    /// Token exchange: an audience it may ask for (repeatable).
    #[arg(long = "exchange-audience")]
    pub exchange_audiences: Vec<String>,
    /// Token exchange: the most scope an exchanged token may hold (repeatable).
    #[arg(long = "exchange-scope")]
    pub exchange_scopes: Vec<String>,
    /// SAML bearer grant (RFC 7522): the trusted IdP's issuer.
    #[arg(long, requires_all = ["saml_certificate", "saml_audience"])]
    pub saml_issuer: Option<String>,
    /// The trusted SAML IdP's signing certificate: @FILE or the PEM itself.
    #[arg(long, value_parser = parse_text, requires = "saml_issuer")]
    pub saml_certificate: Option<String>,
    /// The audience the IdP's assertions must name (this server, as the IdP knows it).
    #[arg(long, requires = "saml_issuer")]
    pub saml_audience: Option<String>,
}

impl ExtensionOptions {
    fn exchange(&self) -> anyhow::Result<Option<domain::event::ExchangePolicy>> {
        if self.exchange_subject_clients.is_empty()
            && self.exchange_audiences.is_empty()
            && self.exchange_scopes.is_empty()
        {
            return Ok(None);
        }
        let parse = |e: domain::values::InvalidValue| anyhow::anyhow!(e.0);
        Ok(Some(domain::event::ExchangePolicy {
            subject_clients: self
                .exchange_subject_clients
                .iter()
                .map(|c| domain::values::ClientId::parse(c).map_err(parse))
                .collect::<Result<_, _>>()?,
            audiences: self.exchange_audiences.clone(),
            scopes: self
                .exchange_scopes
                .iter()
                .map(|s| domain::values::Scope::parse(s).map_err(parse))
                .collect::<Result<_, _>>()?,
        }))
    }

    fn saml(&self) -> Option<domain::event::SamlIdp> {
        Some(domain::event::SamlIdp {
            issuer: self.saml_issuer.clone()?,
            certificate_pem: self.saml_certificate.clone()?,
            audience: self.saml_audience.clone()?,
        })
    }
}

/// Reads `@FILE` or the text itself.
fn parse_text(arg: &str) -> Result<String, String> {
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}")),
        None => Ok(arg.to_owned()),
    }
}

/// Options of `client update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The client id.
    pub id: String,
    /// Redirect URI to add (repeatable).
    #[arg(long = "add-redirect-uri")]
    pub add_redirect_uris: Vec<String>,
    /// Redirect URI to remove (repeatable).
    #[arg(long = "remove-redirect-uri")]
    pub remove_redirect_uris: Vec<String>,
    /// New scopes, replacing the old (repeatable).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// New grant types, replacing the old (repeatable).
    #[arg(long = "grant-type")]
    pub grant_types: Vec<String>,
    /// New access token format.
    #[arg(long, value_parser = ["jwt", "opaque"])]
    pub token_format: Option<String>,
    /// New access token lifetime in seconds.
    #[arg(long)]
    pub access_token_ttl: Option<u32>,
    /// Allow or forbid introspecting tokens of every client.
    #[arg(long)]
    pub can_introspect: Option<bool>,
    /// New redirect URI matching rule.
    #[arg(long, value_parser = ["exact", "extended"])]
    pub redirect_uri_matching: Option<String>,
    /// Allow or forbid the PKCE plain method.
    #[arg(long)]
    pub allow_plain_pkce: Option<bool>,
    /// Signing and authentication settings.
    #[command(flatten)]
    pub keys: KeyOptions,
    /// Trusted assertion issuers, replacing the old (repeatable).
    #[arg(long = "trusted-issuer")]
    pub trusted_issuers: Vec<String>,
    /// OAuth extension settings.
    #[command(flatten)]
    pub extensions: ExtensionOptions,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// Reads `--jwks`: `@FILE` or the JSON itself.
fn parse_jwks(arg: &str) -> Result<serde_json::Value, String> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?,
        None => arg.to_owned(),
    };
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

/// Runs a client command.
pub fn run(cmd: ClientCommand, data_dir: PathBuf) -> anyhow::Result<()> {
    actix_rt::System::new().block_on(async move {
        let backend = Backend::open(&data_dir)?;
        match cmd {
            ClientCommand::Create(a) => {
                let out = backend
                    .create_client(CreateClient {
                        name: a.name,
                        client_id: a.id,
                        client_secret: a.secret,
                        public: a.public,
                        redirect_uris: a.redirect_uris,
                        grant_types: a.grant_types,
                        scopes: a.scopes,
                        token_format: a.token_format,
                        access_token_ttl: a.access_token_ttl,
                        can_introspect: a.can_introspect,
                        admin: a.admin,
                        redirect_uri_matching: a.redirect_uri_matching,
                        allow_plain_pkce: a.allow_plain_pkce,
                        signing_alg: a.keys.signing_alg,
                        token_endpoint_auth_method: a.keys.token_endpoint_auth_method,
                        jwks: a.keys.jwks,
                        trusted_issuers: a.trusted_issuers,
                        id_token_signed_response_alg: a.keys.id_token_alg,
                        post_logout_redirect_uris: a.keys.post_logout_redirect_uris,
                        backchannel_logout_uri: a.keys.backchannel_logout_uri,
                        subject_type: a.keys.subject_type,
                        sector_identifier: a.keys.sector_identifier,
                        resources: a.extensions.resources.clone(),
                        require_pushed_authorization_requests: a
                            .extensions
                            .require_par
                            .unwrap_or(false),
                        dpop_bound_access_tokens: a.extensions.dpop_bound.unwrap_or(false),
                        token_exchange: a.extensions.exchange()?,
                        saml_idp: a.extensions.saml(),
                        dynamic: None,
                        imported: None,
                        client_secret_bcrypt: None,
                    })
                    .await?;
                output::client(a.format, &out)
            }
            ClientCommand::Update(a) => {
                let out = backend
                    .update_client(
                        &a.id,
                        ChangeClient {
                            add_redirect_uris: a.add_redirect_uris,
                            remove_redirect_uris: a.remove_redirect_uris,
                            scopes: (!a.scopes.is_empty()).then_some(a.scopes),
                            grant_types: (!a.grant_types.is_empty()).then_some(a.grant_types),
                            token_format: a.token_format,
                            access_token_ttl: a.access_token_ttl,
                            can_introspect: a.can_introspect,
                            redirect_uri_matching: a.redirect_uri_matching,
                            allow_plain_pkce: a.allow_plain_pkce,
                            signing_alg: a.keys.signing_alg,
                            token_endpoint_auth_method: a.keys.token_endpoint_auth_method,
                            jwks: a.keys.jwks,
                            trusted_issuers: (!a.trusted_issuers.is_empty())
                                .then_some(a.trusted_issuers),
                            id_token_signed_response_alg: a.keys.id_token_alg,
                            post_logout_redirect_uris: (!a
                                .keys
                                .post_logout_redirect_uris
                                .is_empty())
                            .then_some(a.keys.post_logout_redirect_uris),
                            backchannel_logout_uri: a.keys.backchannel_logout_uri,
                            subject_type: a.keys.subject_type,
                            sector_identifier: a.keys.sector_identifier,
                            resources: (!a.extensions.resources.is_empty())
                                .then(|| a.extensions.resources.clone()),
                            require_pushed_authorization_requests: a.extensions.require_par,
                            dpop_bound_access_tokens: a.extensions.dpop_bound,
                            token_exchange: a.extensions.exchange()?,
                            saml_idp: a.extensions.saml(),
                        },
                    )
                    .await?;
                output::client(a.format, &out)
            }
            ClientCommand::List(a) => output::clients(a.format, &backend.list_clients()?),
            ClientCommand::Show(a) => match &a.as_of {
                None => output::client(a.format, &backend.show_client(&a.id)?),
                Some(t) => output::client_as_of(
                    a.format,
                    &backend.client_as_of(&a.id, t, a.format != Format::Table)?,
                ),
            },
            ClientCommand::RotateSecret(a) => {
                output::client(a.format, &backend.rotate_secret(&a.id).await?)
            }
            ClientCommand::Delete(a) => {
                backend.delete_client(&a.id).await?;
                if a.format == Format::Json {
                    crate::say!("{}", serde_json::json!({ "deleted": a.id }));
                } else {
                    crate::say!("deleted client {}", a.id);
                }
                Ok(())
            }
        }
    })
}
