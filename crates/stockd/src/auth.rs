//! Bearer-token authentication and role checks of the HTTP API.
//!
//! Roles are ordered `read < ingest < admin`; a handler states the role it
//! needs by taking an `Authorized<R>` argument, so no route can forget it.
//! Tokens are compared in constant time. With no tokens configured the API
//! runs open, which `Auth::for_listen` allows on loopback addresses only.

use crate::api::AppState;
use crate::config::Secret;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use serde::Deserialize;
use std::marker::PhantomData;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// GET endpoints.
    Read,
    /// Events and variant upserts.
    Ingest,
    /// Locations and quarantine discards.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Ingest => "ingest",
            Role::Admin => "admin",
        }
    }
}

/// One configured API token.
#[derive(Debug, Clone)]
pub struct ApiToken {
    pub name: String,
    pub role: Role,
    pub secret: Secret,
}

/// How requests are authenticated.
#[derive(Debug)]
pub enum Auth {
    /// No tokens configured, bound to loopback: every caller is admin.
    Open,
    Tokens(Vec<ApiToken>),
}

/// Why the server refuses to start with this auth configuration.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to listen on {0} without API tokens: configure [[auth.tokens]] \
     or listen on a loopback address such as 127.0.0.1"
)]
pub struct OpenOnPublicAddress(pub SocketAddr);

impl Auth {
    /// Running open is allowed only when nobody but this machine can connect.
    pub fn for_listen(
        listen: SocketAddr,
        tokens: Vec<ApiToken>,
    ) -> Result<Auth, OpenOnPublicAddress> {
        if !tokens.is_empty() {
            return Ok(Auth::Tokens(tokens));
        }
        if !listen.ip().is_loopback() {
            return Err(OpenOnPublicAddress(listen));
        }
        tracing::warn!(
            %listen,
            "no API tokens configured: the API is open to every process on this machine"
        );
        Ok(Auth::Open)
    }

    /// The caller's name when its token grants `required`.
    pub fn authorize(&self, headers: &HeaderMap, required: Role) -> Result<String, ApiError> {
        let tokens = match self {
            Auth::Open => return Ok("anonymous".to_string()),
            Auth::Tokens(tokens) => tokens,
        };
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or(ApiError::Unauthorized)?;
        let token = find_token(tokens, presented).ok_or(ApiError::Unauthorized)?;
        if token.role < required {
            return Err(ApiError::Forbidden { required });
        }
        Ok(token.name.clone())
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares against every token without stopping early, so the time taken
/// does not tell which token (or how much of one) matched.
fn find_token<'a>(tokens: &'a [ApiToken], presented: &str) -> Option<&'a ApiToken> {
    let mut found = None;
    for token in tokens {
        let equal: bool = token
            .secret
            .expose()
            .as_bytes()
            .ct_eq(presented.as_bytes())
            .into();
        if equal && found.is_none() {
            found = Some(token);
        }
    }
    found
}

/// The role a handler requires, as a type.
pub trait Access {
    const ROLE: Role;
}

pub struct Read;
pub struct Ingest;
pub struct Admin;

impl Access for Read {
    const ROLE: Role = Role::Read;
}
impl Access for Ingest {
    const ROLE: Role = Role::Ingest;
}
impl Access for Admin {
    const ROLE: Role = Role::Admin;
}

/// Proof that the request's token grants role `A`; extracting it checks.
pub struct Authorized<A> {
    /// The token's configured name ("anonymous" when the API runs open).
    pub caller: String,
    _access: PhantomData<A>,
}

impl<A: Access + Send + Sync> FromRequestParts<AppState> for Authorized<A> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = state.auth.authorize(&parts.headers, A::ROLE)?;
        tracing::Span::current().record("caller", caller.as_str());
        Ok(Authorized {
            caller,
            _access: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn token(name: &str, role: Role, secret: &str) -> ApiToken {
        ApiToken {
            name: name.into(),
            role,
            secret: Secret::new(secret),
        }
    }

    fn check(auth: &Auth, header: Option<&str>, required: Role, expect: Result<&str, &str>) {
        let mut headers = HeaderMap::new();
        if let Some(h) = header {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(h).unwrap());
        }
        let got = auth
            .authorize(&headers, required)
            .map_err(|e| e.code().to_string());
        assert_eq!(
            got.as_deref().map_err(String::as_str),
            expect,
            "{header:?} {required:?}"
        );
    }

    #[test]
    fn roles_are_ordered() {
        let auth = Auth::Tokens(vec![
            token("reader", Role::Read, "r-token"),
            token("erp", Role::Ingest, "i-token"),
            token("ops", Role::Admin, "a-token"),
        ]);
        check(&auth, None, Role::Read, Err("unauthorized"));
        check(&auth, Some("Bearer nope"), Role::Read, Err("unauthorized"));
        check(
            &auth,
            Some("Basic r-token"),
            Role::Read,
            Err("unauthorized"),
        );
        check(&auth, Some("Bearer r-token"), Role::Read, Ok("reader"));
        check(
            &auth,
            Some("bearer r-token"),
            Role::Ingest,
            Err("forbidden"),
        );
        check(&auth, Some("Bearer i-token"), Role::Ingest, Ok("erp"));
        check(&auth, Some("Bearer i-token"), Role::Admin, Err("forbidden"));
        check(&auth, Some("Bearer a-token"), Role::Admin, Ok("ops"));
        check(&auth, Some("Bearer a-token"), Role::Read, Ok("ops"));
        check(
            &auth,
            Some("Bearer a-toke"),
            Role::Read,
            Err("unauthorized"),
        );
    }

    #[test]
    fn open_only_on_loopback() {
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let v6_loopback: SocketAddr = "[::1]:8080".parse().unwrap();
        assert!(Auth::for_listen(public, vec![]).is_err());
        assert!(matches!(Auth::for_listen(loopback, vec![]), Ok(Auth::Open)));
        assert!(matches!(
            Auth::for_listen(v6_loopback, vec![]),
            Ok(Auth::Open)
        ));
        let tokens = vec![token("ops", Role::Admin, "x")];
        assert!(matches!(
            Auth::for_listen(public, tokens),
            Ok(Auth::Tokens(_))
        ));
    }
}
