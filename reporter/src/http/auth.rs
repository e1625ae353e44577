//! Access control: bearer tokens from the config file, each with a principal and a role.
//! Browsers send the token once through the login form and then carry it in an HttpOnly,
//! SameSite=Strict cookie; it never appears in a URL. With no tokens configured every
//! request is an anonymous viewer (and the server only listens on loopback).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{HttpError, Shared};
use crate::config::{token_chars_ok, AuthConfig, Role};

/// The cookie that carries the token for the browser.
pub const COOKIE: &str = "specaudit_token";

/// Hex sha256 of a token, as `token_sha256` holds it.
pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    pub groups: Vec<String>,
}

impl Principal {
    /// Whether this principal may change a spec owned by `owners`.
    pub fn may_edit(&self, owners: &[String]) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Editor => owners.iter().any(|o| *o == self.name || self.groups.contains(o)),
            Role::Viewer => false,
        }
    }
}

/// Who is asking, as handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No tokens are configured: read-only.
    Anonymous,
    User(Arc<Principal>),
}

impl Identity {
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Identity::Anonymous => None,
            Identity::User(p) => Some(p),
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.principal().map(|p| p.name.as_str())
    }
}

/// The configured tokens, by hash.
#[derive(Debug, Default)]
pub struct Auth {
    entries: Vec<(String, Arc<Principal>)>,
}

/// Equal-length comparison that does not stop at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    pub fn from_config(config: &AuthConfig) -> Auth {
        let entries = config
            .tokens
            .iter()
            .map(|t| {
                let hash = match (&t.token, &t.token_sha256) {
                    (Some(token), _) => sha256_hex(token),
                    (None, Some(hash)) => hash.to_ascii_lowercase(),
                    (None, None) => String::new(),
                };
                (hash, Arc::new(Principal { name: t.principal.clone(), role: t.role, groups: t.groups.clone() }))
            })
            .filter(|(hash, _)| !hash.is_empty())
            .collect();
        Auth { entries }
    }

    pub fn enabled(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The principal holding `token`.
    pub fn lookup(&self, token: &str) -> Option<Arc<Principal>> {
        let hash = sha256_hex(token);
        // Compare against every entry so timing does not tell which one matched.
        let mut found = None;
        for (known, principal) in &self.entries {
            if same(known.as_bytes(), hash.as_bytes()) {
                found = Some(principal.clone());
            }
        }
        found
    }
}

/// Where the request's token came from.
enum Presented {
    None,
    Bearer(String),
    Cookie(String),
    Malformed,
}

fn presented(headers: &HeaderMap) -> Presented {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let Ok(text) = value.to_str() else { return Presented::Malformed };
        return match text.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
                Presented::Bearer(token.trim().to_owned())
            }
            _ => Presented::Malformed,
        };
    }
    for value in headers.get_all(header::COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((name, token)) = pair.trim().split_once('=') {
                if name == COOKIE && !token.is_empty() {
                    return Presented::Cookie(token.to_owned());
                }
            }
        }
    }
    Presented::None
}

fn is_page(request: &Request) -> bool {
    !request.uri().path().starts_with("/api/")
}

/// A form post from another site riding on the cookie: refused (SameSite=Strict already
/// keeps modern browsers from sending it; this covers the rest).
fn cross_site(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) else { return false };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else { return true };
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin_host != host
}

/// Resolves the identity of every request but the open ones, or answers 401.
pub async fn authenticate(State(app): State<Shared>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if matches!(path, "/health" | "/metrics" | "/login" | "/logout") {
        return next.run(request).await;
    }
    let page = is_page(&request);
    let unauthorized = |message: &str| {
        if page {
            let body = crate::html::login_page(Some(message));
            let mut response = Html(crate::html::layout("log in", None, &body)).into_response();
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            response
        } else {
            HttpError::new(StatusCode::UNAUTHORIZED, message).into_response()
        }
    };
    let identity = match presented(request.headers()) {
        Presented::Malformed => return unauthorized("the Authorization header must be \"Bearer <token>\""),
        Presented::None if app.auth.enabled() => {
            return unauthorized("authentication required: send \"Authorization: Bearer <token>\" or log in at /login")
        }
        Presented::None => Identity::Anonymous,
        Presented::Bearer(token) | Presented::Cookie(token) if !app.auth.enabled() => {
            let _ = token;
            Identity::Anonymous
        }
        Presented::Bearer(token) => match app.auth.lookup(&token) {
            Some(p) => Identity::User(p),
            None => return unauthorized("the token is not valid for this server"),
        },
        Presented::Cookie(token) => {
            if request.method() != Method::GET && request.method() != Method::HEAD && cross_site(request.headers()) {
                let error = HttpError::new(StatusCode::FORBIDDEN, "cross-site request refused: the Origin does not match this server");
                return if page { error.page() } else { error }.into_response();
            }
            match app.auth.lookup(&token) {
                Some(p) => Identity::User(p),
                None => return unauthorized("the login has expired or the token is no longer valid: log in again"),
            }
        }
    };
    request.extensions_mut().insert(identity);
    next.run(request).await
}

/// GET /login
pub async fn login_form(identity: Option<Extension<Identity>>) -> Html<String> {
    let who = identity.as_ref().and_then(|Extension(i)| i.name().map(str::to_owned));
    Html(crate::html::layout("log in", who.as_deref(), &crate::html::login_page(None)))
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

fn cookie(app: &Shared, value: &str, max_age: u64) -> String {
    let secure = if app.config.server.secure_cookies { "; Secure" } else { "" };
    format!("{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}")
}

/// POST /login: checks the token once and keeps it in the cookie.
pub async fn login(State(app): State<Shared>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let problem = |status: StatusCode, message: &str| {
        let mut response = Html(crate::html::layout("log in", None, &crate::html::login_page(Some(message)))).into_response();
        *response.status_mut() = status;
        response
    };
    if cross_site(&headers) {
        return problem(StatusCode::FORBIDDEN, "cross-site login refused");
    }
    if !app.auth.enabled() {
        return problem(StatusCode::BAD_REQUEST, "this server has no tokens configured (auth.tokens): everyone may read, nobody may edit");
    }
    let token = form.token.trim();
    if !token_chars_ok(token) || app.auth.lookup(token).is_none() {
        return problem(StatusCode::UNAUTHORIZED, "the token is not valid for this server");
    }
    let mut response = Redirect::to("/").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = header::HeaderValue::from_str(&cookie(&app, token, 12 * 3600)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// POST /logout: forgets the cookie.
pub async fn logout(State(app): State<Shared>) -> Response {
    let mut response = Redirect::to("/login").into_response();
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = header::HeaderValue::from_str(&cookie(&app, "", 0)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn auth() -> Auth {
        let token = |principal: &str, role, token: &str, groups: &[&str]| TokenConfig {
            principal: principal.into(),
            role,
            token: Some(token.into()),
            token_sha256: None,
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        Auth::from_config(&AuthConfig {
            tokens: vec![
                token("vera", Role::Viewer, "viewer-token-0123456789", &[]),
                token("eddie", Role::Editor, "editor-token-0123456789", &["team-compute"]),
                TokenConfig {
                    principal: "ada".into(),
                    role: Role::Admin,
                    token: None,
                    token_sha256: Some(sha256_hex("admin-token-0123456789").to_uppercase()),
                    groups: vec![],
                },
            ],
        })
    }

    #[test]
    fn tokens_map_to_principals() {
        let auth = auth();
        assert_eq!(auth.lookup("viewer-token-0123456789").unwrap().name, "vera");
        assert_eq!(auth.lookup("admin-token-0123456789").unwrap().role, Role::Admin);
        assert!(auth.lookup("viewer-token-012345678").is_none());
    }

    #[test]
    fn editors_edit_what_they_own() {
        let auth = auth();
        let owners = vec!["team-compute".to_owned()];
        assert!(auth.lookup("editor-token-0123456789").unwrap().may_edit(&owners));
        assert!(!auth.lookup("editor-token-0123456789").unwrap().may_edit(&["team-storage".to_owned()]));
        assert!(!auth.lookup("viewer-token-0123456789").unwrap().may_edit(&["vera".to_owned()]));
        assert!(auth.lookup("admin-token-0123456789").unwrap().may_edit(&[]));
    }

    #[test]
    fn tokens_are_read_from_the_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; specaudit_token=tok-1".parse().unwrap());
        assert!(matches!(presented(&headers), Presented::Cookie(t) if t == "tok-1"));
        headers.insert(header::AUTHORIZATION, "Bearer tok-2".parse().unwrap());
        assert!(matches!(presented(&headers), Presented::Bearer(t) if t == "tok-2"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(matches!(presented(&headers), Presented::Malformed));
    }

    #[test]
    fn cross_site_posts_are_spotted() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(!cross_site(&headers));
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(cross_site(&headers));
    }
}
