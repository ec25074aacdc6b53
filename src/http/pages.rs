//! The server-rendered pages: login, consent, account and the error page of `/authorize`.
//!
//! maud escapes every interpolated value, so user-controlled text (a `state`, a client name,
//! a username) can only ever appear as text. No external assets: the stylesheet is inline and
//! allowed by its hash in the Content-Security-Policy, which allows nothing else.

use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;
use base64::Engine as _;
use domain::{Cause, RecordedEvent};
use maud::{html, Markup, DOCTYPE};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

const STYLE: &str = r#"
:root{--ink:#1d2433;--muted:#5b6478;--line:#dfe3ea;--bg:#f5f7fa;--accent:#2f5bd3;--danger:#b3261e}
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:28rem;margin:8vh auto;padding:2rem;background:#fff;border:1px solid var(--line);border-radius:12px;box-shadow:0 2px 12px rgba(0,0,0,.04)}
main.wide{max-width:44rem}
header{display:flex;align-items:center;gap:.6rem;margin-bottom:1.5rem;color:var(--muted);font-size:.9rem}
header b{color:var(--ink);letter-spacing:.02em}
h1{font-size:1.35rem;margin:0 0 1rem}
p{margin:.5rem 0 1rem}
label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input[type=text],input[type=password]{width:100%;padding:.6rem .7rem;border:1px solid var(--line);border-radius:8px;font:inherit}
input:focus{outline:2px solid var(--accent);outline-offset:1px}
button{font:inherit;padding:.6rem 1.1rem;border-radius:8px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--ink);border-color:var(--line)}
button.danger{background:#fff;color:var(--danger);border-color:var(--danger)}
.actions{display:flex;gap:.75rem;margin-top:1.5rem}
.error{padding:.7rem .9rem;border-radius:8px;background:#fdecea;color:var(--danger);margin-bottom:1rem}
ul.scopes{list-style:none;padding:0;margin:1rem 0;border:1px solid var(--line);border-radius:8px}
ul.scopes li{padding:.6rem .9rem;border-top:1px solid var(--line)}
ul.scopes li:first-child{border-top:0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em;background:var(--bg);padding:.05rem .3rem;border-radius:4px}
table{width:100%;border-collapse:collapse;margin:1rem 0}
th,td{text-align:left;padding:.55rem .4rem;border-top:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600;font-size:.85rem;border-top:0}
.muted{color:var(--muted);font-size:.9rem}
form.inline{display:inline}
main.full{max-width:76rem;margin:3vh auto}
form.filters{display:grid;grid-template-columns:repeat(4,1fr);gap:.5rem .75rem;align-items:end}
form.filters label{margin:0;font-size:.8rem}
form.filters input{width:100%;padding:.4rem .5rem;border:1px solid var(--line);border-radius:6px;font:inherit;font-size:.9rem}
nav.top{display:flex;gap:1rem;align-items:center;margin-bottom:1rem}
nav.top a{color:var(--accent)}
nav.top form.signout{margin-left:auto}
details.event{border-top:1px solid var(--line);padding:.35rem 0}
details.event summary{cursor:pointer;display:grid;grid-template-columns:4rem 17rem 14rem minmax(0,1fr) minmax(0,13rem);gap:.5rem;font-size:.9rem}
details.event summary>*{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
details.event pre{background:var(--bg);padding:.75rem;border-radius:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font-size:.8rem}
.pager{display:flex;justify-content:space-between;margin-top:1rem}
textarea,select,input[type=number]{width:100%;padding:.5rem .6rem;border:1px solid var(--line);border-radius:8px;font:inherit;font-size:.9rem}
fieldset{border:1px solid var(--line);border-radius:8px;margin:1rem 0;padding:.5rem .9rem}
fieldset label,label:has(input[type=checkbox]){font-weight:400;margin:.3rem 0}
a.button{display:inline-block;padding:.5rem 1rem;border-radius:8px;background:var(--accent);color:#fff;text-decoration:none}
.notice{padding:.7rem .9rem;border-radius:8px;background:#e8f0fe}
pre.secret{background:var(--bg);padding:.75rem;border-radius:8px;font-size:1rem;user-select:all}
.active{color:#137333}
.inactive{color:var(--danger)}
main.full form:not(.filters):not(.inline){max-width:44rem}
"#;

fn style_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE.as_bytes()))
        )
    })
}

/// The Content-Security-Policy of every page: nothing but the inline stylesheet, no framing.
pub fn content_security_policy() -> String {
    format!(
        "default-src 'none'; style-src {}; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        style_hash()
    )
}

fn layout(title: &str, wide: bool, body: Markup) -> Markup {
    page_layout(title, wide.then_some("wide"), body)
}

fn full_layout(title: &str, body: Markup) -> Markup {
    page_layout(title, Some("full"), body)
}

fn page_layout(title: &str, class: Option<&str>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · authledger" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                main class=[class] {
                    header { b { "authledger" } span { "·" } span { (title) } }
                    (body)
                }
            }
        }
    }
}

/// An HTML answer with the pages' security headers.
pub fn page(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, content_security_policy()))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(markup.into_string())
}

/// A redirect that no cache keeps (it may carry a code, a token or a sealed request).
pub fn redirect(status: StatusCode, location: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((actix_web::http::header::LOCATION, location))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .finish()
}

/// The error page of `/authorize` for requests that must not be redirected (RFC 6749
/// §4.1.2.1), and of the other pages.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> HttpResponse {
    page(
        status,
        layout(
            title,
            false,
            html! {
                h1 { (title) }
                p.error { (message) }
                p.muted { "The application that sent you here may be misconfigured. You can close this page." }
            },
        ),
    )
}

/// What the login page shows.
pub struct LoginPage<'a> {
    /// Where to go after signing in.
    pub return_to: &'a str,
    /// CSRF token.
    pub csrf: &'a str,
    /// Username to prefill.
    pub username: &'a str,
    /// Error to show.
    pub error: Option<&'a str>,
}

/// The login page.
pub fn login(p: &LoginPage<'_>) -> Markup {
    layout(
        "Sign in",
        false,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = p.error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="csrf_token" value=(p.csrf);
                input type="hidden" name="return_to" value=(p.return_to);
                label for="username" { "Username" }
                input type="text" id="username" name="username" value=(p.username)
                    autocomplete="username" autofocus required maxlength="64";
                label for="password" { "Password" }
                input type="password" id="password" name="password"
                    autocomplete="current-password" required;
                div.actions { button type="submit" { "Sign in" } }
            }
        },
    )
}

/// A human description of a scope.
pub fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "Confirm who you are".into(),
        "profile" => "Read your basic profile".into(),
        "email" => "Read your email address".into(),
        "offline_access" => "Keep access while you are away".into(),
        "read" => "Read your data".into(),
        "write" => "Change your data".into(),
        "admin" => "Administer this server".into(),
        other => format!("Access to “{other}”"),
    }
}

/// What a consent page says an application asks for.
fn asked_scopes(scopes: &[String]) -> Markup {
    html! {
        @if scopes.is_empty() {
            p { "It asks for no particular permission." }
        } @else {
            p { "It asks to:" }
            ul.scopes {
                @for s in scopes {
                    li { (describe_scope(s)) br; span.muted { code { (s) } } }
                }
            }
        }
    }
}

/// What the consent page shows.
pub struct ConsentPage<'a> {
    /// The signed-in user's name.
    pub username: &'a str,
    /// The client's display name.
    pub client_name: &'a str,
    /// The client's id.
    pub client_id: &'a str,
    /// Where the answer goes.
    pub redirect_host: &'a str,
    /// Requested scopes.
    pub scopes: &'a [String],
    /// The sealed pending request.
    pub request: &'a str,
    /// CSRF token.
    pub csrf: &'a str,
}

/// The consent page.
pub fn consent(p: &ConsentPage<'_>) -> Markup {
    layout(
        "Authorize",
        false,
        html! {
            h1 { (p.client_name) " wants access to your account" }
            p.muted { "Signed in as " b { (p.username) } ". Application id " code { (p.client_id) } "." }
            (asked_scopes(p.scopes))
            p.muted { "You will be sent back to " b { (p.redirect_host) } "." }
            form method="post" action="/consent" {
                input type="hidden" name="csrf_token" value=(p.csrf);
                input type="hidden" name="request" value=(p.request);
                div.actions {
                    button type="submit" name="decision" value="approve" { "Approve" }
                    button.secondary type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        },
    )
}

/// The page that asks a signed-in user to confirm a logout an application asked for.
pub fn confirm_logout(client_name: Option<&str>, request: &str, csrf: &str) -> Markup {
    layout(
        "Sign out",
        false,
        html! {
            h1 { "Sign out?" }
            @match client_name {
                Some(name) => p { b { (name) } " asks to sign you out of this server." },
                None => p { "An application asks to sign you out of this server." },
            }
            p.muted { "Applications you signed in to with this session are told you signed out." }
            form method="post" action="/end_session/confirm" {
                input type="hidden" name="csrf_token" value=(csrf);
                input type="hidden" name="request" value=(request);
                div.actions {
                    button type="submit" name="decision" value="logout" { "Sign out" }
                    button.secondary type="submit" name="decision" value="stay" { "Stay signed in" }
                }
            }
        },
    )
}

/// The page after a logout that names no place to go.
pub fn signed_out() -> Markup {
    layout(
        "Signed out",
        false,
        html! {
            h1 { "You are signed out" }
            p { "You can close this page." }
            p.muted { a href="/login" { "Sign in again" } }
        },
    )
}

/// The device flow's verification page (RFC 8628 §3.3): where the user types the code the
/// device shows.
pub fn device_entry(csrf: &str, user_code: &str, error: Option<&str>) -> Markup {
    layout(
        "Connect a device",
        false,
        html! {
            h1 { "Connect a device" }
            p { "Enter the code your device shows." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/device" {
                input type="hidden" name="csrf_token" value=(csrf);
                label for="user_code" { "Code" }
                input type="text" id="user_code" name="user_code" value=(user_code)
                    autocomplete="off" autocapitalize="characters" autofocus required
                    maxlength="16" placeholder="XXXX-XXXX";
                div.actions { button type="submit" { "Continue" } }
            }
        },
    )
}

/// What the device consent page shows.
pub struct DeviceConsentPage<'a> {
    /// The signed-in user's name.
    pub username: &'a str,
    /// The client's display name.
    pub client_name: &'a str,
    /// The client's id.
    pub client_id: &'a str,
    /// The user code, shown again so the user can compare it with the device's.
    pub user_code: &'a str,
    /// Requested scopes.
    pub scopes: &'a [String],
    /// The sealed pending answer.
    pub request: &'a str,
    /// CSRF token.
    pub csrf: &'a str,
}

/// The device consent page: the same questions as the code flow's, and the code to compare
/// (RFC 8628 §5.4: the user must be sure it is their own device asking).
pub fn device_consent(p: &DeviceConsentPage<'_>) -> Markup {
    layout(
        "Authorize a device",
        false,
        html! {
            h1 { (p.client_name) " wants access to your account" }
            p.muted { "Signed in as " b { (p.username) } ". Application id " code { (p.client_id) } "." }
            p { "Make sure your device shows the code " b { code { (p.user_code) } } ". If you did not start this on a device of yours, deny." }
            (asked_scopes(p.scopes))
            form method="post" action="/device/decide" {
                input type="hidden" name="csrf_token" value=(p.csrf);
                input type="hidden" name="request" value=(p.request);
                div.actions {
                    button type="submit" name="decision" value="approve" { "Approve" }
                    button.secondary type="submit" name="decision" value="deny" { "Deny" }
                }
            }
        },
    )
}

/// The page after a device request was answered.
pub fn device_done(approved: bool) -> Markup {
    layout(
        "Device",
        false,
        html! {
            @if approved {
                h1 { "Device connected" }
                p { "You can go back to your device; it will continue on its own." }
            } @else {
                h1 { "Request denied" }
                p { "The device was not given access. You can close this page." }
            }
        },
    )
}

/// The page after a logout the user declined.
pub fn still_signed_in() -> Markup {
    layout(
        "Still signed in",
        false,
        html! {
            h1 { "You are still signed in" }
            p { "Nothing changed. You can close this page." }
        },
    )
}

/// One authorized application on the account page.
pub struct AuthorizedApp {
    /// Client id.
    pub client_id: String,
    /// Display name.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// When (UTC, to the minute).
    pub granted_at: String,
}

/// The account page.
pub fn account(username: &str, apps: &[AuthorizedApp], csrf: &str, notice: Option<&str>) -> Markup {
    layout(
        "Your account",
        true,
        html! {
            h1 { "Applications you authorized" }
            p.muted { "Signed in as " b { (username) } "." }
            @if let Some(n) = notice { p.muted role="status" { (n) } }
            @if apps.is_empty() {
                p { "You have not authorized any application." }
            } @else {
                table {
                    thead { tr { th { "Application" } th { "Access" } th { "Since" } th {} } }
                    tbody {
                        @for a in apps {
                            tr {
                                td { (a.name) br; code { (a.client_id) } }
                                td { (a.scopes.join(" ")) }
                                td.muted { (a.granted_at) }
                                td {
                                    form.inline method="post" action="/account/revoke" {
                                        input type="hidden" name="csrf_token" value=(csrf);
                                        input type="hidden" name="client_id" value=(a.client_id);
                                        button.danger type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            form method="post" action="/logout" {
                input type="hidden" name="csrf_token" value=(csrf);
                button.secondary type="submit" { "Sign out" }
            }
        },
    )
}

/// The viewer's sign-in page: the admin client's id and secret.
pub fn admin_login(csrf: &str, client_id: &str, error: Option<&str>) -> Markup {
    layout(
        "Audit viewer",
        false,
        html! {
            h1 { "Sign in to the audit viewer" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            p.muted { "Use the admin credential (" code { "admin.json" } " in the data directory) or another client that holds the " code { "admin" } " scope." }
            form method="post" action="/admin/login" {
                input type="hidden" name="csrf_token" value=(csrf);
                label for="client_id" { "Client id" }
                input type="text" id="client_id" name="client_id" value=(client_id) autocomplete="username" required;
                label for="client_secret" { "Client secret" }
                input type="password" id="client_secret" name="client_secret" autocomplete="current-password" required;
                div.actions { button type="submit" { "Sign in" } }
            }
        },
    )
}

fn admin_nav(csrf: &str) -> Markup {
    html! {
        nav.top {
            a href="/admin" { "Events" }
            a href="/admin/clients" { "Clients" }
            a href="/admin/users" { "Users" }
            a href="/admin/tokens" { "Tokens" }
            a href="/admin/keys" { "Keys" }
            form.inline.signout method="post" action="/admin/logout" {
                input type="hidden" name="csrf_token" value=(csrf);
                button.secondary type="submit" { "Sign out" }
            }
        }
    }
}

fn event_list(events: &[RecordedEvent]) -> Markup {
    html! {
        @if events.is_empty() { p.muted { "No events match." } }
        @for e in events {
            @let cause = match &e.metadata.caused_by {
                Cause::Client(id) => format!("client {id}"),
                Cause::User(id) => format!("user {id}"),
                Cause::Admin(id) => format!("admin {id}"),
                Cause::System => "system".to_owned(),
            };
            details.event data-position=(e.position) {
                summary {
                    span { "#" (e.position) }
                    span { (crate::service::rfc3339(e.recorded_at)) }
                    b { (e.event.type_name()) }
                    span { @if let Some(c) = e.event.client_id() {
                        a href={ "/admin/clients/" (c.as_str()) } { (c.as_str()) }
                    } @else { (e.stream) } }
                    span.muted { (cause) }
                }
                @if let domain::Event::AccessTokenIssued(t) = &e.event {
                    p { a href={ "/admin/tokens/" (t.jti) } { "Inspect this token" } }
                }
                pre { (serde_json::to_string_pretty(e).unwrap_or_default()) }
            }
        }
    }
}

fn older_link(base: &str, cursor: Option<u64>, keep: &[(String, String)]) -> Markup {
    html! {
        div.pager {
            a href=(base) { "Newest" }
            @if let Some(c) = cursor {
                @let mut q = form_urlencoded::Serializer::new(String::new());
                @let q = {
                    for (k, v) in keep.iter().filter(|(k, _)| k != "before") { q.append_pair(k, v); }
                    q.append_pair("before", &c.to_string());
                    q.finish()
                };
                a rel="next" href={ (base) "?" (q) } { "Older →" }
            }
        }
    }
}

/// A console page: the admin navigation, then `body`.
pub fn console(title: &str, csrf: &str, body: Markup) -> Markup {
    full_layout(
        title,
        html! {
            (admin_nav(csrf))
            (body)
        },
    )
}

/// The viewer's events page.
pub fn admin_events(
    csrf: &str,
    given: &[(String, String)],
    page: Result<&crate::service::AuditOutput, &str>,
) -> Markup {
    let value = |name: &str| {
        given
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let field = |name: &'static str, label: &'static str, hint: &'static str| {
        html! {
            div {
                label for=(name) { (label) }
                input type="text" id=(name) name=(name) value=(value(name)) placeholder=(hint);
            }
        }
    };
    full_layout(
        "Audit trail",
        html! {
            (admin_nav(csrf))
            h1 { "Audit trail" }
            form.filters method="get" action="/admin" {
                (field("client", "Client", "client id"))
                (field("subject", "Subject", "user id or subject"))
                (field("type", "Types", "AccessTokenIssued,TokenRevoked"))
                (field("request_id", "Request id", "X-Request-Id"))
                (field("correlation_id", "Correlation id", ""))
                (field("since", "Since", "2026-11-23T00:00:00Z"))
                (field("until", "Until", "RFC 3339 or Unix seconds"))
                div { button type="submit" { "Filter" } }
            }
            @match page {
                Ok(p) => {
                    p.muted { (p.events.len()) " events shown; the log's head is at position " (p.head_position) "." }
                    (event_list(&p.events))
                    (older_link("/admin", p.next_cursor, given))
                }
                Err(e) => { p.error role="alert" { (e) } }
            }
        },
    )
}

/// A client's page in the viewer: its configuration now and its history.
pub fn admin_client(
    csrf: &str,
    id: &str,
    current: Option<&crate::service::ClientOutput>,
    history: Result<&crate::service::AuditOutput, &str>,
) -> Markup {
    full_layout(
        "Client",
        html! {
            (admin_nav(csrf))
            h1 { "Client " code { (id) } }
            @match current {
                Some(c) => {
                    table {
                        tr { th { "Name" } td { (c.name) } }
                        tr { th { "Public" } td { (c.public) } }
                        tr { th { "Grant types" } td { (c.grant_types.join(" ")) } }
                        tr { th { "Scopes" } td { (c.scopes.join(" ")) } }
                        tr { th { "Redirect URIs" } td { (c.redirect_uris.join(" ")) } }
                        tr { th { "Token format" } td { (c.token_format) } }
                        tr { th { "Registered" } td { (c.registered_at) } }
                        tr { th { "Updated" } td { (c.updated_at) } }
                    }
                    div.actions {
                        a.button href={ "/admin/clients/" (c.client_id) "/edit" } { "Edit" }
                        @if !c.public && c.token_endpoint_auth_method != "private_key_jwt" {
                            form.inline method="post" action={ "/admin/clients/" (c.client_id) "/rotate-secret" } {
                                input type="hidden" name="csrf_token" value=(csrf);
                                button.secondary type="submit" { "Rotate secret" }
                            }
                        }
                        a href={ "/admin/clients/" (c.client_id) "/delete" } { "Delete…" }
                    }
                }
                None => { p.muted { "No such client now (never registered, or deleted); its history stays." } }
            }
            h2 { "History" }
            @match history {
                Ok(p) => {
                    (event_list(&p.events))
                    (older_link(&format!("/admin/clients/{id}"), p.next_cursor, &[]))
                }
                Err(e) => { p.error role="alert" { (e) } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_controlled_values_are_escaped() {
        let html = login(&LoginPage {
            return_to: "/authorize?state=<script>alert(1)</script>",
            csrf: "t",
            username: "\"><img src=x>",
            error: Some("<b>bad</b>"),
        })
        .into_string();
        assert!(!html.contains("<script>alert(1)"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("\"><img"));
        assert!(!html.contains("<b>bad</b>"));
    }

    #[test]
    fn the_policy_allows_exactly_the_inline_stylesheet() {
        let csp = content_security_policy();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("'sha256-") && !csp.contains("unsafe-inline"));
    }
}
