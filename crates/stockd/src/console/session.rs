//! Console sessions: an API token is exchanged once for a random session id
//! in an HttpOnly, SameSite=Strict cookie; the session carries the token's
//! role and a CSRF token that every POST must echo. Sessions live in memory
//! (a restart signs everyone out). When the API runs open (loopback without
//! tokens) the sign-in page hands out an admin session without asking.

use super::html::{self, esc};
use super::Console;
use crate::auth::{Auth, Role};
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, LOCATION, ORIGIN, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "stockd_session";
/// How long a session lasts without being renewed.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most (the oldest go first).
const SESSIONS_MAX: usize = 10_000;

/// A signed-in person, as handlers see them.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The token's name ("anonymous" when the API runs open).
    pub caller: String,
    pub role: Role,
    /// Must come back with every POST.
    pub csrf: String,
}

impl Viewer {
    /// Checks a POST: the CSRF token first, then the role. A refusal is
    /// answered with an HTML page; `None` lets the action go ahead.
    pub fn refusal(&self, csrf: Option<&str>, needs: Role) -> Option<Response> {
        let presented = csrf.unwrap_or("");
        let equal: bool = presented.as_bytes().ct_eq(self.csrf.as_bytes()).into();
        if presented.is_empty() || !equal {
            return Some(html::error_page(
                StatusCode::FORBIDDEN,
                Some(self),
                "The form's security token is missing or stale. Reload the page and try again.",
            ));
        }
        if self.role < needs {
            return Some(html::error_page(
                StatusCode::FORBIDDEN,
                Some(self),
                &format!(
                    "This needs the {} role; you are signed in as {}.",
                    needs.as_str(),
                    self.role.as_str()
                ),
            ));
        }
        None
    }
}

struct Session {
    viewer: Viewer,
    expires: Instant,
}

/// The sessions of this process.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // Without an OS random source no session can be made safely.
    if getrandom::fill(&mut buf).is_err() {
        return String::new();
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Starts a session; `None` when no random id could be drawn.
    pub fn start(&self, caller: String, role: Role) -> Option<String> {
        let id = random_hex(32);
        let csrf = random_hex(32);
        if id.is_empty() || csrf.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| s.expires > now);
        if map.len() >= SESSIONS_MAX {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            id.clone(),
            Session {
                viewer: Viewer { caller, role, csrf },
                expires: now + SESSION_TTL,
            },
        );
        Some(id)
    }

    /// The viewer of a live session (renewing it).
    pub fn get(&self, id: &str) -> Option<Viewer> {
        let now = Instant::now();
        let mut map = self.lock();
        let session = map.get_mut(id)?;
        if session.expires <= now {
            map.remove(id);
            return None;
        }
        session.expires = now + SESSION_TTL;
        Some(session.viewer.clone())
    }

    /// Whether a session is live (without renewing it).
    pub fn alive(&self, id: &str) -> bool {
        self.lock()
            .get(id)
            .is_some_and(|s| s.expires > Instant::now())
    }

    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The session id in the request's cookies.
pub(super) fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value.to_string())
}

/// Where to go back to after signing in: a path on this site only.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.to_string(),
        _ => "/".to_string(),
    }
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn with_cookie(mut response: Response, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    response
}

fn session_cookie(id: &str) -> String {
    format!(
        "{COOKIE_NAME}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        SESSION_TTL.as_secs()
    )
}

/// Without a live session: back to the sign-in page, then here.
fn to_sign_in(parts: &Parts) -> Response {
    let here = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let target = format!("/signin?next={}", html::url_part(&here));
    redirect(&target)
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let viewer = session_id(&parts.headers)
            .and_then(|id| console.sessions.get(&id))
            .ok_or_else(|| to_sign_in(parts))?;
        tracing::Span::current().record("caller", viewer.caller.as_str());
        Ok(viewer)
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

fn sign_in_page(next: &str, problem: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(p) = problem {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(p)));
    }
    body.push_str(&format!(
        "<form class=\"card signin\" method=\"post\" action=\"/signin\">\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\
         <label for=\"token\">API token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button>Sign in</button>\
         <p class=\"hint\">Use a token from the server's <code>[[auth.tokens]]</code>. A read token can look; an admin token can also change rules and retry or discard updates.</p>\
         </form>",
        esc(next)
    ));
    html::page("Sign in", "", None, None, &body)
}

/// `GET /signin`: the form, or straight in when the API runs open.
pub async fn sign_in_form(
    State(console): State<Console>,
    axum::extract::Query(query): axum::extract::Query<NextQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if matches!(*console.app.auth, Auth::Open) {
        return match console.sessions.start("anonymous".into(), Role::Admin) {
            Some(id) => with_cookie(redirect(&next), &session_cookie(&id)),
            None => html::error_page(StatusCode::SERVICE_UNAVAILABLE, None, "no random source"),
        };
    }
    html::html_response(StatusCode::OK, sign_in_page(&next, None))
}

#[derive(Deserialize)]
pub struct SignInForm {
    token: Option<String>,
    next: Option<String>,
}

/// The role a token grants (the highest that authorizes), with its name.
fn token_role(auth: &Auth, token: &str) -> Option<(String, Role)> {
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", token.trim())).ok()?,
    );
    [Role::Admin, Role::Ingest, Role::Read]
        .into_iter()
        .find_map(|role| auth.authorize(&headers, role).ok().map(|name| (name, role)))
}

/// False when the browser says the form came from another site (`Origin`
/// names a different host than `Host`): no signing in from elsewhere.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
}

/// `POST /signin`: exchanges a token for a session.
pub async fn sign_in(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    if !same_origin(&headers) {
        return html::error_page(
            StatusCode::FORBIDDEN,
            None,
            "Sign in from this console's own page.",
        );
    }
    let next = safe_next(form.next.as_deref());
    let token = form.token.unwrap_or_default();
    let Some((caller, role)) = token_role(&console.app.auth, &token) else {
        return html::html_response(
            StatusCode::UNAUTHORIZED,
            sign_in_page(&next, Some("That token is not valid.")),
        );
    };
    match console.sessions.start(caller, role) {
        Some(id) => with_cookie(redirect(&next), &session_cookie(&id)),
        None => html::error_page(StatusCode::SERVICE_UNAVAILABLE, None, "no random source"),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// `POST /signout`.
pub async fn sign_out(
    State(console): State<Console>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = viewer.refusal(form.csrf.as_deref(), Role::Read) {
        return refused;
    }
    if let Some(id) = session_id(&headers) {
        console.sessions.end(&id);
    }
    with_cookie(
        redirect("/signin"),
        &format!("{COOKIE_NAME}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/stock/A")), "/stock/A");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn sessions_start_renew_and_end() {
        let sessions = Sessions::default();
        let id = sessions.start("ops".into(), Role::Admin).unwrap();
        assert_eq!(id.len(), 64);
        let viewer = sessions.get(&id).unwrap();
        assert_eq!(viewer.role, Role::Admin);
        assert!(viewer
            .refusal(Some(&viewer.csrf.clone()), Role::Admin)
            .is_none());
        assert!(viewer.refusal(Some("wrong"), Role::Read).is_some());
        assert!(viewer.refusal(None, Role::Read).is_some());
        sessions.end(&id);
        assert!(sessions.get(&id).is_none());
        let reader = sessions.start("r".into(), Role::Read).unwrap();
        let r = sessions.get(&reader).unwrap();
        assert!(r.refusal(Some(&r.csrf.clone()), Role::Admin).is_some());
    }

    #[test]
    fn sign_in_only_from_this_site() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; stockd_session=abc; b=2"),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
    }
}
