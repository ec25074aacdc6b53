//! A browser stand-in for the page flows: keeps cookies, never follows redirects, so each test
//! sees every hop (and can prove that a request was never redirected).

use crate::helpers::TestApp;
use std::collections::HashMap;
use std::time::Duration;

pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// One answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
    pub headers: HashMap<String, Vec<String>>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// A query or fragment parameter of the Location.
    pub fn param(&self, name: &str) -> Option<String> {
        let loc = self.location.as_deref()?;
        let url = url::Url::parse(loc).ok()?;
        let from_query = url
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned());
        from_query.or_else(|| {
            form_urlencoded::parse(url.fragment()?.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    }

    /// The value of a hidden form field.
    pub fn field(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].replace("&amp;", "&"))
    }
}

pub struct Browser {
    pub base: String,
    agent: ureq::Agent,
    pub cookies: HashMap<String, String>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Self {
        Self {
            base: app.base.clone(),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .into(),
            cookies: HashMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, mut res: ureq::http::Response<ureq::Body>) -> Reply {
        let mut headers: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in res.headers() {
            headers
                .entry(k.as_str().to_owned())
                .or_default()
                .push(v.to_str().unwrap_or("").to_owned());
        }
        for c in headers.get("set-cookie").into_iter().flatten() {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if v.is_empty() || c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let location = headers.get("location").and_then(|v| v.first()).map(|l| {
            if l.starts_with('/') {
                format!("{}{l}", self.base)
            } else {
                l.clone()
            }
        });
        Reply {
            status: res.status().as_u16(),
            location,
            body: res.body_mut().read_to_string().unwrap_or_default(),
            headers,
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    pub fn get(&mut self, path_or_url: &str) -> Reply {
        let res = self
            .agent
            .get(&self.url(path_or_url))
            .header("Cookie", &self.cookie_header())
            .call()
            .unwrap();
        self.keep(res)
    }

    pub fn post(&mut self, path_or_url: &str, form: &[(&str, &str)]) -> Reply {
        let res = self
            .agent
            .post(&self.url(path_or_url))
            .header("Cookie", &self.cookie_header())
            .send_form(form.iter().copied())
            .unwrap();
        self.keep(res)
    }

    /// Signs in through the login page.
    pub fn sign_in(&mut self, username: &str, password: &str) -> Reply {
        let page = self.get("/login");
        let csrf = page.field("csrf_token").unwrap();
        self.post(
            "/login",
            &[
                ("csrf_token", &csrf),
                ("username", username),
                ("password", password),
                ("return_to", "/account"),
            ],
        )
    }

    /// GET /authorize with these parameters.
    pub fn authorize(&mut self, params: &[(&str, &str)]) -> Reply {
        let q = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter().copied())
            .finish();
        self.get(&format!("/authorize?{q}"))
    }

    /// Answers the consent page at `consent_url` with `decision`.
    pub fn decide(&mut self, consent_url: &str, decision: &str) -> Reply {
        let page = self.get(consent_url);
        assert_eq!(page.status, 200, "consent page: {}", page.body);
        let request = page.field("request").unwrap();
        let csrf = page.field("csrf_token").unwrap();
        self.post(
            "/consent",
            &[
                ("csrf_token", &csrf),
                ("request", &request),
                ("decision", decision),
            ],
        )
    }

    /// Authorizes with consent (approving when asked); answers the final redirect to the client.
    pub fn approve(&mut self, params: &[(&str, &str)]) -> Reply {
        let r = self.authorize(params);
        assert_eq!(r.status, 302, "authorize: {r:?}");
        let loc = r.location.clone().unwrap();
        if loc.contains("/consent?") {
            self.decide(&loc, "approve")
        } else {
            r
        }
    }
}
