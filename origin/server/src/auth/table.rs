//! The one table of what each route needs: public, a scope, or a sandbox of the caller's own.

use axum::http::Method;

/// What a route asks of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Anyone, even with auth on: health, readiness, the `/ui` page's static assets.
    Public,
    /// A `read` token, or none while reads are public: content addressed by its hash, and
    /// `/metrics` (no user ids in it).
    Read,
    /// A token of any scope whenever tokens are configured, even while reads are public: the
    /// node's warm and snapshot stats (which runtimes it holds, how many sandboxes).
    Status,
    /// A `push` token: uploads and warm requests.
    Push,
    /// A `sandbox` token (acts as its user) or `admin` (acts for the user the request names).
    Sandbox,
    /// As [`Need::Sandbox`], and the `{id}` in the path must be a sandbox of the caller's user:
    /// another user's is 404, as if absent (`crate::sandbox::owner` enforces it).
    OwnSandbox,
    /// An `admin` token. Also what a route missing from this table needs, so a new route is
    /// closed until it is listed here.
    Admin,
}

use Need::*;

/// Every route, by method and matched path (`HEAD` as `GET`).
#[rustfmt::skip]
pub const ROUTES: &[(&str, &str, Need)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/ui", Public),
    ("GET", "/ui/", Public),
    ("GET", "/ui/app.js", Public),
    ("GET", "/ui/style.css", Public),
    // The API's description: no data in it.
    ("GET", "/openapi.json", Public),
    ("GET", "/metrics", Read),
    ("GET", "/v1/blocks/{digest}", Read),
    ("GET", "/v1/manifests/{digest}", Read),
    ("GET", "/v1/runtimes/{name}/tags/{tag}", Read),
    ("GET", "/v1/warm/stats", Status),
    ("GET", "/v1/snapshots/stats", Status),
    ("PUT", "/v1/blocks/{digest}", Push),
    ("PUT", "/v1/manifests/{digest}", Push),
    ("PUT", "/v1/runtimes/{name}/tags/{tag}", Push),
    ("DELETE", "/v1/runtimes/{name}/tags/{tag}", Push),
    ("POST", "/v1/blocks/missing", Push),
    ("POST", "/v1/warm", Push),
    // The page's state: admin sees every sandbox, a sandbox token only its user's.
    ("GET", "/v1/ui/state", Sandbox),
    ("POST", "/v1/sandboxes", Sandbox),
    ("GET", "/v1/sandboxes", Sandbox),
    ("GET", "/v1/snapshots", Sandbox),
    ("GET", "/v1/snapshots/{digest}", Sandbox),
    ("DELETE", "/v1/snapshots/{digest}", Sandbox),
    ("POST", "/v1/snapshots/{digest}/share", Sandbox),
    ("GET", "/v1/sandboxes/{id}", OwnSandbox),
    ("DELETE", "/v1/sandboxes/{id}", OwnSandbox),
    ("GET", "/v1/sandboxes/{id}/events", OwnSandbox),
    ("GET", "/v1/sandboxes/{id}/exec", OwnSandbox),
    ("POST", "/v1/sandboxes/{id}/exec", OwnSandbox),
    ("GET", "/v1/sandboxes/{id}/run", OwnSandbox),
    ("POST", "/v1/sandboxes/{id}/run", OwnSandbox),
    ("GET", "/v1/sandboxes/{id}/files", OwnSandbox),
    ("GET", "/v1/sandboxes/{id}/files/{*path}", OwnSandbox),
    ("PUT", "/v1/sandboxes/{id}/files/{*path}", OwnSandbox),
    ("DELETE", "/v1/sandboxes/{id}/files/{*path}", OwnSandbox),
    ("POST", "/v1/sandboxes/{id}/files:upload", OwnSandbox),
    ("POST", "/v1/sandboxes/{id}/snapshot", OwnSandbox),
    ("POST", "/v1/sandboxes/{id}/fork", OwnSandbox),
    ("POST", "/v1/sandboxes/{id}/pause", OwnSandbox),
    ("POST", "/v1/sandboxes/{id}/resume", OwnSandbox),
    // A user showed up: a sandbox token hints its own user only (the handler checks).
    ("POST", "/v1/users/{id}/hint", Sandbox),
    // The predictor's plans and decisions, and its test clock: the operator's.
    ("GET", "/v1/predictions", Admin),
    ("POST", "/v1/predict/clock", Admin),
];

/// What `method path` needs. `path` is the route as matched (`None`: no route matched, the
/// fallback's 404, which needs nothing). A method the table does not list for a route needs
/// [`Need::Admin`].
pub fn need(method: &Method, path: Option<&str>) -> Need {
    let Some(path) = path else {
        return Public;
    };
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or(Admin, |(_, _, n)| *n)
}
