//! Routing: method and path to the read endpoint they name, plus the origin path and cache key.

use prewarm_shared::{Digest, RuntimeName, Tag};

use crate::error::EdgeError;

/// The two content-addressed object kinds the edge serves and verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Block,
    Manifest,
}

impl Kind {
    /// Singular noun for messages (`block sha256:…`).
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Block => "block",
            Kind::Manifest => "manifest",
        }
    }
}

/// Appended to an object's cache key for its zstd representation.
pub const ENCODED_KEY_SUFFIX: &str = "?prewarm-coding=zstd";

/// One read endpoint, with its parameters already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`: the edge itself answers; it does not probe the origin.
    Health,
    /// `/v1/blocks/{digest}` or `/v1/manifests/{digest}`.
    Object { kind: Kind, digest: Digest },
    /// `/v1/runtimes/{name}/tags/{tag}`.
    Tag { name: RuntimeName, tag: Tag },
}

/// A routed request: which endpoint, and whether the client wants headers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routed {
    pub route: Route,
    pub head: bool,
}

/// Routes a request. Any method but GET and HEAD is a write and is refused with 405, whatever
/// the path: the edge never forwards writes to the origin.
pub fn route(method: &str, path: &str) -> Result<Routed, EdgeError> {
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        other => {
            return Err(EdgeError::MethodNotAllowed {
                method: other.chars().take(16).collect(),
            })
        }
    };
    let no_route = || EdgeError::NoRoute {
        path: path.chars().take(200).collect(),
    };
    let segments: Vec<String> = path
        .strip_prefix('/')
        .ok_or_else(no_route)?
        .split('/')
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = match segments.as_slice() {
        ["healthz"] => Route::Health,
        ["v1", "blocks", digest] => Route::Object {
            kind: Kind::Block,
            digest: digest.parse()?,
        },
        ["v1", "manifests", digest] => Route::Object {
            kind: Kind::Manifest,
            digest: digest.parse()?,
        },
        ["v1", "runtimes", name, "tags", tag] => Route::Tag {
            name: name.parse()?,
            tag: tag.parse()?,
        },
        _ => return Err(no_route()),
    };
    Ok(Routed { route, head })
}

impl Route {
    /// The canonical path of this endpoint, the same at the origin and in the cache key, so a
    /// percent-encoded or otherwise odd spelling of a URL never makes a second cache entry.
    pub fn canonical_path(&self) -> String {
        match self {
            Route::Health => "/healthz".to_string(),
            Route::Object {
                kind: Kind::Block,
                digest,
            } => format!("/v1/blocks/{digest}"),
            Route::Object {
                kind: Kind::Manifest,
                digest,
            } => format!("/v1/manifests/{digest}"),
            Route::Tag { name, tag } => format!("/v1/runtimes/{name}/tags/{tag}"),
        }
    }

    /// The URL fetched from the origin.
    pub fn origin_url(&self, origin: &str) -> String {
        format!("{origin}{}", self.canonical_path())
    }

    /// The Cache API key: the worker's own scheme and host plus the canonical path, with no
    /// query string and no request headers, so every client shares one entry per object.
    pub fn cache_key(&self, self_origin: &str) -> String {
        format!(
            "{}{}",
            self_origin.trim_end_matches('/'),
            self.canonical_path()
        )
    }

    /// The Cache API key of an object's zstd representation: [`Route::cache_key`] plus
    /// [`ENCODED_KEY_SUFFIX`]. No client request maps to it, because client keys are built from
    /// the canonical path and never carry the request's query string.
    pub fn encoded_cache_key(&self, self_origin: &str) -> String {
        format!("{}{ENCODED_KEY_SUFFIX}", self.cache_key(self_origin))
    }

    /// What the route names, for messages (`block sha256:…`, `tag python:3.12`).
    pub fn describe(&self) -> String {
        match self {
            Route::Health => "health".to_string(),
            Route::Object { kind, digest } => format!("{} {digest}", kind.noun()),
            Route::Tag { name, tag } => format!("tag {name}:{tag}"),
        }
    }
}

/// Decodes `%XX` escapes in one path segment; a malformed escape is kept literally and then
/// fails the strict digest or name parse.
fn percent_decode(segment: &str) -> String {
    if !segment.contains('%') {
        return segment.to_string();
    }
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> Digest {
        Digest::of(b"block")
    }

    #[test]
    fn routes_reads() {
        let d = digest();
        let r = route("GET", &format!("/v1/blocks/{d}")).unwrap();
        assert_eq!(
            r.route,
            Route::Object {
                kind: Kind::Block,
                digest: d
            }
        );
        assert!(!r.head);
        let r = route("HEAD", &format!("/v1/manifests/{d}")).unwrap();
        assert_eq!(
            r.route,
            Route::Object {
                kind: Kind::Manifest,
                digest: d
            }
        );
        assert!(r.head);
        let r = route("GET", "/v1/runtimes/python-data/tags/v1.2").unwrap();
        assert_eq!(
            r.route.canonical_path(),
            "/v1/runtimes/python-data/tags/v1.2"
        );
        assert_eq!(route("GET", "/healthz").unwrap().route, Route::Health);
    }

    #[test]
    fn writes_are_405_everywhere() {
        let d = digest();
        for (m, p) in [
            ("PUT", format!("/v1/blocks/{d}")),
            ("POST", "/v1/blocks/missing".to_string()),
            ("DELETE", "/v1/runtimes/a/tags/b".to_string()),
            ("PATCH", "/nowhere".to_string()),
        ] {
            let err = route(m, &p).unwrap_err();
            assert_eq!(err.status(), 405, "{m} {p}");
        }
    }

    #[test]
    fn bad_paths_and_parameters() {
        assert_eq!(route("GET", "/v1/blocks").unwrap_err().status(), 404);
        assert_eq!(
            route("GET", "/v1/blocks/missing/x").unwrap_err().status(),
            404
        );
        assert_eq!(route("GET", "healthz").unwrap_err().status(), 404);
        assert_eq!(route("GET", "/healthz/").unwrap_err().status(), 404);
        let err = route("GET", "/v1/blocks/sha256:ABC").unwrap_err();
        assert_eq!((err.status(), err.code()), (400, "bad_digest"));
        let err = route("GET", "/v1/runtimes/Bad!/tags/x").unwrap_err();
        assert_eq!((err.status(), err.code()), (400, "bad_name"));
    }

    #[test]
    fn encoded_spellings_share_one_cache_key() {
        let d = digest();
        let plain = route("GET", &format!("/v1/blocks/{d}")).unwrap().route;
        let encoded = format!("/v1/blocks/sha256%3A{}", d.hex());
        let encoded = route("GET", &encoded).unwrap().route;
        assert_eq!(
            plain.cache_key("https://edge.example/"),
            encoded.cache_key("https://edge.example")
        );
        assert_eq!(
            plain.origin_url("http://127.0.0.1:9"),
            format!("http://127.0.0.1:9/v1/blocks/{d}")
        );
        assert_eq!(
            plain.encoded_cache_key("https://edge.example"),
            format!("https://edge.example/v1/blocks/{d}?prewarm-coding=zstd")
        );
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
        assert_eq!(percent_decode("%41%62"), "Ab");
    }
}
