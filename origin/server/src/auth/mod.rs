//! Who is calling and what they may do: bearer tokens with a scope (and a user for `sandbox`), checked once per request against the route table.
//!
//! - [`tokens`]: the tokens file (hashes, never plaintext), the legacy `--token-file` (one
//!   admin token) and issuing new tokens.
//! - [`table`]: what each route needs, in one list.
//! - [`authorize`]: the middleware. It resolves the caller, refuses what its scope does not
//!   allow (401 without a valid token, 403 with one of the wrong scope) and leaves a
//!   [`Caller`] in the request for handlers that act for a user.
//!
//! With no token configured at all, everything is open (a [`Caller::Open`] acts for whoever
//! the body names), as before tokens existed.

pub mod table;
#[cfg(test)]
mod tests;
pub mod tokens;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub use table::Need;
pub use tokens::{Grant, Scope, TokenSet, TokensError};

use crate::error::ApiError;
use crate::AppState;

/// The origin's tokens and its read policy, shared by every request; the token sets can be
/// swapped whole by [`Auth::reload`] (SIGHUP).
#[derive(Debug)]
pub struct Auth {
    token_file: Option<PathBuf>,
    tokens_file: Option<PathBuf>,
    /// Reads need no token. Default: true unless a tokens file is configured.
    public_reads: bool,
    tokens: RwLock<Arc<TokenSet>>,
}

impl Auth {
    /// No tokens: every route open.
    pub fn open() -> Self {
        Self::with(None, None, true, TokenSet::default())
    }

    /// Loads the legacy token file and the tokens file. `public_reads: None` means reads are
    /// public unless a tokens file is configured.
    pub fn load(
        token_file: Option<PathBuf>,
        tokens_file: Option<PathBuf>,
        public_reads: Option<bool>,
    ) -> Result<Self, TokensError> {
        let set = TokenSet::load(token_file.as_deref(), tokens_file.as_deref())?;
        let public_reads = public_reads.unwrap_or(tokens_file.is_none());
        Ok(Self::with(token_file, tokens_file, public_reads, set))
    }

    fn with(
        token_file: Option<PathBuf>,
        tokens_file: Option<PathBuf>,
        public_reads: bool,
        set: TokenSet,
    ) -> Self {
        Self {
            token_file,
            tokens_file,
            public_reads,
            tokens: RwLock::new(Arc::new(set)),
        }
    }

    /// Whether any token source is configured; without one, everything is open.
    pub fn enabled(&self) -> bool {
        self.token_file.is_some() || self.tokens_file.is_some()
    }

    /// Reads both files again and swaps the tokens in whole. On an error the old tokens stay.
    /// Returns how many tokens are now valid.
    pub fn reload(&self) -> Result<usize, TokensError> {
        let set = TokenSet::load(self.token_file.as_deref(), self.tokens_file.as_deref())?;
        let n = set.len();
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(n)
    }

    fn current(&self) -> Arc<TokenSet> {
        self.tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The caller of a request that needs `need`, or why it may not go on.
    pub fn resolve(&self, headers: &HeaderMap, need: Need) -> Result<Caller, ApiError> {
        if !self.enabled() {
            return Ok(Caller::Open);
        }
        if need == Need::Public || (need == Need::Read && self.public_reads) {
            return Ok(Caller::Anonymous);
        }
        let presented = bearer(headers)?;
        let set = self.current();
        let grant = set
            .find(presented)
            .ok_or(ApiError::Unauthorized("the bearer token is not valid"))?;
        if !allows(grant.scope, need) {
            return Err(ApiError::Forbidden(format!(
                "token {} has scope {}, and this route needs {}",
                grant.name,
                grant.scope.as_str(),
                needed_scope(need)
            )));
        }
        Ok(Caller::Token(Arc::new(grant.clone())))
    }
}

/// Whether a token of `scope` may use a route that needs `need`.
pub fn allows(scope: Scope, need: Need) -> bool {
    match need {
        Need::Public | Need::Read | Need::Status => true,
        Need::Push => matches!(scope, Scope::Push | Scope::Admin),
        Need::Sandbox | Need::OwnSandbox => matches!(scope, Scope::Sandbox | Scope::Admin),
        Need::Admin => scope == Scope::Admin,
    }
}

fn needed_scope(need: Need) -> &'static str {
    match need {
        Need::Public | Need::Read | Need::Status => "read",
        Need::Push => "push (or admin)",
        Need::Sandbox | Need::OwnSandbox => "sandbox (or admin)",
        Need::Admin => "admin",
    }
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    let h = headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "this route needs `Authorization: Bearer <token>`",
        ))?;
    h.to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ApiError::Unauthorized(
            "Authorization header must be `Bearer <token>`",
        ))
}

/// Who a request comes from, as handlers that act for a user see it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// No tokens configured: acts for whoever the request names.
    Open,
    /// A route that needed no token (public, or a read while reads are public).
    Anonymous,
    Token(Arc<Grant>),
}

impl Caller {
    /// The one user this caller is confined to: a `sandbox` token's.
    pub fn confined_to(&self) -> Option<&str> {
        match self {
            Caller::Token(g) if g.scope == Scope::Sandbox => g.user.as_deref(),
            _ => None,
        }
    }

    /// Whether this caller may see what belongs to `owner`: open and admin see everything,
    /// a sandbox token its own user's only, anyone else nothing.
    pub fn sees(&self, owner: &str) -> bool {
        match self {
            Caller::Open => true,
            Caller::Anonymous => false,
            Caller::Token(g) => match g.scope {
                Scope::Admin => true,
                Scope::Sandbox => g.user.as_deref() == Some(owner),
                Scope::Read | Scope::Push => false,
            },
        }
    }

    /// The user a request acts for, given the `user_id` (or `owner`) it names.
    ///
    /// A sandbox token acts as its own user: naming no one, or that user, is the same;
    /// naming another is 403 (the token decides the user, never the body). Open and admin
    /// callers act for whoever is named (`None`: no one named).
    pub fn acting_as(&self, named: Option<&str>, field: &str) -> Result<Option<String>, ApiError> {
        if let Some(me) = self.confined_to() {
            return match named {
                None => Ok(Some(me.to_owned())),
                Some(n) if n == me => Ok(Some(me.to_owned())),
                Some(n) => Err(ApiError::Forbidden(format!(
                    "{field} {n:?} is not this token's user: a sandbox token acts only as its own \
                     user (leave {field} out)"
                ))),
            };
        }
        match self {
            Caller::Open => Ok(named.map(str::to_owned)),
            Caller::Token(g) if g.scope == Scope::Admin => Ok(named.map(str::to_owned)),
            _ => Err(ApiError::Forbidden(
                "this route needs a sandbox or admin token".into(),
            )),
        }
    }

    /// [`Caller::acting_as`] where someone must be named: 400 naming `field` otherwise.
    pub fn user(&self, named: Option<&str>, field: &str) -> Result<String, ApiError> {
        self.acting_as(named, field)?.ok_or_else(|| {
            ApiError::bad_request(
                crate::error::ErrorCode::BadRequest,
                format!("{field} is required (an admin token acts for the user it names)"),
            )
        })
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, ApiError> {
        // `authorize` runs on every route; without it, act as no one rather than as anyone.
        Ok(parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller::Anonymous))
    }
}

/// The middleware on every route: looks the route up in [`table`], resolves the caller and
/// refuses it before the body is read, or passes it on with a [`Caller`] and its [`Need`].
pub(crate) async fn authorize(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let need = table::need(req.method(), path.as_deref());
    match state.auth.resolve(req.headers(), need) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            req.extensions_mut().insert(need);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}
