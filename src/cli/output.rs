//! Printing data as a table, JSON, JSON lines or CSV.

use super::Format;
use crate::service::ClientOutput;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use domain::RecordedEvent;
use serde::Serialize;
use std::io::Write;

/// Writes a line to stdout; a closed pipe (`| head`) ends the process quietly instead of
/// panicking as `println!` would.
pub fn emit(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}") {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

/// `println!` for command output: see [`emit`].
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => { $crate::cli::output::emit(format_args!($($t)*)) };
}

pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
}

fn csv<W: std::io::Write>(out: W, header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    let mut w = SafeCsv::new(out);
    w.header(header)?;
    for r in rows {
        w.write(r)?;
    }
    w.finish()?.flush()?;
    Ok(())
}

/// Prints rows as a table or CSV (the other formats are the caller's).
pub fn rows(format: Format, header: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    match format {
        Format::Csv => csv(std::io::stdout().lock(), header, rows),
        _ => {
            crate::say!("{}", table(header, rows));
            Ok(())
        }
    }
}

fn print_items<T: Serialize>(
    format: Format,
    items: &[T],
    header: &[&str],
    rows: impl Fn(&T) -> Vec<String>,
) -> anyhow::Result<()> {
    match format {
        Format::Json => crate::say!("{}", serde_json::to_string_pretty(items)?),
        Format::Jsonl => {
            for i in items {
                crate::say!("{}", serde_json::to_string(i)?);
            }
        }
        Format::Table => crate::say!("{}", table(header, items.iter().map(rows).collect())),
        Format::Csv => csv(
            std::io::stdout().lock(),
            header,
            items.iter().map(rows).collect(),
        )?,
    }
    Ok(())
}

const CLIENT_HEADER: [&str; 7] = [
    "client_id",
    "name",
    "type",
    "grant_types",
    "scopes",
    "token_format",
    "redirect_uris",
];

fn client_row(c: &ClientOutput) -> Vec<String> {
    vec![
        c.client_id.clone(),
        c.name.clone(),
        if c.public { "public" } else { "confidential" }.into(),
        c.grant_types.join(" "),
        c.scopes.join(" "),
        c.token_format.clone(),
        c.redirect_uris.join(" "),
    ]
}

/// Prints clients.
pub fn clients(format: Format, items: &[ClientOutput]) -> anyhow::Result<()> {
    print_items(format, items, &CLIENT_HEADER, client_row)
}

/// Prints one client; a secret, when present, is printed once and called out.
pub fn client(format: Format, c: &ClientOutput) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Jsonl => crate::say!("{}", serde_json::to_string(c)?),
        Format::Csv => print_items(format, std::slice::from_ref(c), &CLIENT_HEADER, client_row)?,
        Format::Table => {
            let mut rows = vec![
                vec!["client_id".into(), c.client_id.clone()],
                vec!["name".into(), c.name.clone()],
                vec![
                    "type".into(),
                    if c.public { "public" } else { "confidential" }.into(),
                ],
                vec!["grant_types".into(), c.grant_types.join(" ")],
                vec!["scopes".into(), c.scopes.join(" ")],
                vec!["redirect_uris".into(), c.redirect_uris.join("\n")],
                vec!["token_format".into(), c.token_format.clone()],
                vec![
                    "access_token_ttl".into(),
                    format!("{} s", c.access_token_ttl),
                ],
                vec!["can_introspect".into(), c.can_introspect.to_string()],
                vec![
                    "redirect_uri_matching".into(),
                    c.redirect_uri_matching.clone(),
                ],
                vec!["allow_plain_pkce".into(), c.allow_plain_pkce.to_string()],
                vec!["signing_alg".into(), c.signing_alg.clone()],
                vec![
                    "id_token_alg".into(),
                    c.id_token_signed_response_alg.clone(),
                ],
                vec!["subject_type".into(), c.subject_type.clone()],
                vec![
                    "sector_identifier".into(),
                    c.sector_identifier.clone().unwrap_or_default(),
                ],
                vec![
                    "post_logout_redirect_uris".into(),
                    c.post_logout_redirect_uris.join(" "),
                ],
                vec![
                    "backchannel_logout_uri".into(),
                    c.backchannel_logout_uri.clone().unwrap_or_default(),
                ],
                vec![
                    "token_endpoint_auth_method".into(),
                    c.token_endpoint_auth_method.clone(),
                ],
                vec![
                    "jwks".into(),
                    match &c.jwks {
                        Some(j) => {
                            let kids: Vec<&str> = j["keys"]
                                .as_array()
                                .map(|k| k.iter().filter_map(|k| k["kid"].as_str()).collect())
                                .unwrap_or_default();
                            format!(
                                "{} keys {}",
                                j["keys"].as_array().map_or(0, Vec::len),
                                kids.join(" ")
                            )
                        }
                        None => "-".into(),
                    },
                ],
                vec!["trusted_issuers".into(), c.trusted_issuers.join(" ")],
                vec!["registered_at".into(), c.registered_at.clone()],
                vec!["updated_at".into(), c.updated_at.clone()],
            ];
            if let Some(s) = &c.client_secret {
                rows.insert(1, vec!["client_secret".into(), s.clone()]);
            }
            crate::say!("{}", table(&["field", "value"], rows));
            if c.client_secret.is_some() {
                crate::say!("The secret is shown only now; store it safely.");
            }
        }
    }
    Ok(())
}

const EVENT_HEADER: [&str; 10] = [
    "position",
    "recorded_at",
    "type",
    "stream",
    "version",
    "caused_by",
    "request_id",
    "client_id",
    "subject",
    "details",
];

/// Payload fields an export leaves out: keyed hashes of tokens, codes and secrets, password
/// hashes, sealed private keys and nonces. The chain's own hashes stay.
fn hidden_field(name: &str) -> bool {
    (name.ends_with("_hash") && !matches!(name, "prev_hash" | "last_hash" | "head_hash"))
        || matches!(name, "private_key" | "nonce")
}

/// One payload value as a cell: text as it is, lists joined by commas, objects as JSON
/// without the fields [`hidden_field`] names, at any depth.
fn detail_value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(items) => {
            items.iter().map(detail_value).collect::<Vec<_>>().join(",")
        }
        serde_json::Value::Object(_) => without_hidden(v).to_string(),
        other => other.to_string(),
    }
}

/// `v` without the fields [`hidden_field`] names, at any depth.
fn without_hidden(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .filter(|(k, _)| !hidden_field(k))
                .map(|(k, v)| (k.clone(), without_hidden(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(without_hidden).collect())
        }
        other => other.clone(),
    }
}

/// The event's client, its subject (user, username or token subject) and the rest of its
/// payload as `name=value` pairs separated by `; `, without what [`hidden_field`] names.
fn event_details(e: &RecordedEvent) -> (String, String, String) {
    let data = serde_json::to_value(&e.event)
        .ok()
        .and_then(|v| v.get("data").cloned())
        .unwrap_or_default();
    let Some(fields) = data.as_object() else {
        return (String::new(), String::new(), String::new());
    };
    let text = |k: &str| fields.get(k).map(detail_value).unwrap_or_default();
    let client = text("client_id");
    let subject = ["subject", "username", "user_id", "sub"]
        .iter()
        .map(|k| text(k))
        .find(|v| !v.is_empty())
        .unwrap_or_default();
    let details = fields
        .iter()
        .filter(|(k, v)| !hidden_field(k) && !v.is_null() && k.as_str() != "client_id")
        .map(|(k, v)| format!("{k}={}", detail_value(v)))
        .collect::<Vec<_>>()
        .join("; ");
    (client, subject, details)
}

fn event_row(e: &RecordedEvent) -> Vec<String> {
    let cause = match &e.metadata.caused_by {
        domain::Cause::Client(id) => format!("client:{id}"),
        domain::Cause::User(id) => format!("user:{id}"),
        domain::Cause::Admin(id) => format!("admin:{id}"),
        domain::Cause::System => "system".into(),
    };
    let (client, subject, details) = event_details(e);
    vec![
        e.position.to_string(),
        crate::service::rfc3339(e.recorded_at),
        e.event.type_name().into(),
        e.stream.clone(),
        e.version.to_string(),
        cause,
        e.metadata.request_id.clone().unwrap_or_default(),
        client,
        subject,
        details,
    ]
}

/// A cell a spreadsheet will not run as a formula (OWASP "CSV injection"): one that begins
/// with `=`, `+`, `-`, `@`, a tab or a carriage return gets a `'` before it. A lone `-` (the
/// tables' "none") is left alone.
pub fn spreadsheet_safe(cell: String) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if cell != "-" => format!("'{cell}"),
        _ => cell,
    }
}

/// Writes CSV records with every cell made [`spreadsheet_safe`].
pub struct SafeCsv<W: std::io::Write>(csv::Writer<W>);

impl<W: std::io::Write> SafeCsv<W> {
    /// A writer on `out`.
    pub fn new(out: W) -> Self {
        Self(csv::Writer::from_writer(out))
    }

    /// Writes one record.
    pub fn write(&mut self, cells: Vec<String>) -> anyhow::Result<()> {
        self.0
            .write_record(cells.into_iter().map(spreadsheet_safe))?;
        Ok(())
    }

    /// Writes the header row.
    pub fn header(&mut self, header: &[&str]) -> anyhow::Result<()> {
        self.0.write_record(header)?;
        Ok(())
    }

    /// Flushes and gives the writer back.
    pub fn finish(self) -> anyhow::Result<W> {
        self.0.into_inner().map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The CSV header of events, for an export.
pub fn event_header() -> &'static [&'static str] {
    &EVENT_HEADER
}

/// One event as CSV cells (before [`spreadsheet_safe`]).
pub fn event_cells(e: &RecordedEvent) -> Vec<String> {
    event_row(e)
}

/// Prints events.
pub fn events(format: Format, items: &[RecordedEvent]) -> anyhow::Result<()> {
    print_items(format, items, &EVENT_HEADER, event_row)
}

/// Every field of a user, in order: CSV columns and the rows of `user show`.
const USER_FIELDS: [&str; 12] = [
    "user_id",
    "username",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "email",
    "email_verified",
    "locale",
    "registered_at",
    "updated_at",
    "locked",
];

fn user_fields(u: &crate::service::UserOutput) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let p = &u.profile;
    vec![
        u.user_id.clone(),
        u.username.clone(),
        opt(&p.name),
        opt(&p.given_name),
        opt(&p.family_name),
        opt(&p.preferred_username),
        opt(&p.email),
        p.email_verified.to_string(),
        opt(&p.locale),
        u.registered_at.clone(),
        u.updated_at.clone(),
        u.locked.to_string(),
    ]
}

/// The columns of the `user list` table (every field would not fit a terminal).
const USER_HEADER: [&str; 7] = [
    "user_id",
    "username",
    "name",
    "email",
    "email_verified",
    "locale",
    "updated_at",
];

fn user_row(u: &crate::service::UserOutput) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let p = &u.profile;
    vec![
        u.user_id.clone(),
        u.username.clone(),
        opt(&p.name),
        opt(&p.email),
        p.email_verified.to_string(),
        opt(&p.locale),
        u.updated_at.clone(),
    ]
}

/// Prints users.
pub fn users(format: Format, items: &[crate::service::UserOutput]) -> anyhow::Result<()> {
    match format {
        Format::Csv => print_items(format, items, &USER_FIELDS, user_fields),
        _ => print_items(format, items, &USER_HEADER, user_row),
    }
}

/// Prints one user: every field, one per row (`-` for an absent claim).
pub fn user(format: Format, u: &crate::service::UserOutput) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Jsonl => crate::say!("{}", serde_json::to_string(u)?),
        Format::Csv => print_items(format, std::slice::from_ref(u), &USER_FIELDS, user_fields)?,
        Format::Table => {
            let rows = USER_FIELDS
                .iter()
                .zip(user_fields(u))
                .map(|(k, v)| {
                    let v = if v.is_empty() { "-".into() } else { v };
                    vec![(*k).to_owned(), v]
                })
                .collect();
            crate::say!("{}", table(&["field", "value"], rows));
        }
    }
    Ok(())
}

const KEY_HEADER: [&str; 7] = [
    "kid",
    "algorithm",
    "status",
    "origin",
    "active_from",
    "last_token_expires_at",
    "retired_at",
];

fn key_row(k: &crate::service::KeyOutput) -> Vec<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    vec![
        k.kid.clone(),
        k.algorithm.clone(),
        k.status.clone(),
        k.origin.clone(),
        opt(&k.active_from),
        opt(&k.last_token_expires_at),
        opt(&k.retired_at),
    ]
}

/// Prints signing keys.
pub fn keys(format: Format, items: &[crate::service::KeyOutput]) -> anyhow::Result<()> {
    print_items(format, items, &KEY_HEADER, key_row)
}

/// Prints events one at a time, as a stream: a line per event (table), JSON lines, or CSV
/// with its header first.
pub struct EventLines {
    format: Format,
    header_done: bool,
}

impl EventLines {
    /// A printer in `format` (`json` prints JSON lines: a stream has no closing bracket).
    pub fn new(format: Format) -> Self {
        Self {
            format,
            header_done: false,
        }
    }

    /// Prints one event.
    pub fn print(&mut self, e: &RecordedEvent) -> anyhow::Result<()> {
        match self.format {
            Format::Json | Format::Jsonl => crate::say!("{}", serde_json::to_string(e)?),
            Format::Csv => {
                let mut w = SafeCsv::new(Vec::new());
                if !self.header_done {
                    w.header(&EVENT_HEADER)?;
                    self.header_done = true;
                }
                w.write(event_row(e))?;
                let bytes = w.finish()?;
                crate::say!("{}", String::from_utf8_lossy(&bytes).trim_end());
            }
            Format::Table => crate::say!("{}", event_row(e).join("  ")),
        }
        Ok(())
    }
}

/// Prints a client as it was at a past moment, and its tokens active then.
pub fn client_as_of(format: Format, c: &crate::service::ClientAsOf) -> anyhow::Result<()> {
    match format {
        Format::Json | Format::Jsonl => crate::say!("{}", serde_json::to_string_pretty(c)?),
        _ => {
            crate::say!("as of {} (log position {})", c.as_of, c.position);
            match &c.client {
                Some(client) => self::client(format, client)?,
                None => crate::say!("the client was not registered then (or already deleted)"),
            }
            crate::say!("{} access tokens active then", c.active_tokens.len());
            if !c.active_tokens.is_empty() {
                let rows = c
                    .active_tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.jti.clone(),
                            t.sub.clone(),
                            t.scope.clone(),
                            t.grant_type.clone(),
                            t.issued_at.clone(),
                            t.expires_at.clone(),
                        ]
                    })
                    .collect();
                crate::say!(
                    "{}",
                    table(
                        &[
                            "jti",
                            "sub",
                            "scope",
                            "grant_type",
                            "issued_at",
                            "expires_at"
                        ],
                        rows
                    )
                );
            }
        }
    }
    Ok(())
}
