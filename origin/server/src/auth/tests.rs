//! The scope table, the tokens file and the caller's user rules, without a server.

use axum::http::{HeaderMap, HeaderValue, Method};

use super::table::{need, Need, ROUTES};
use super::tokens::{self, Scope};
use super::{allows, Auth, Caller};
use crate::error::ApiError;

fn auth_with(
    entries: &[(&str, Scope, Option<&str>)],
    public_reads: Option<bool>,
) -> (Auth, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for (tok, scope, user) in entries {
        let e = tokens::TokenEntry {
            name: Some(format!("{}-token", scope.as_str())),
            hash: prewarm_shared::Digest::of(tok.as_bytes()),
            scope: *scope,
            user: user.map(str::to_owned),
        };
        text.push_str(&tokens::entry_toml(&e));
    }
    let f = dir.path().join("tokens.toml");
    std::fs::write(&f, text).unwrap();
    (Auth::load(None, Some(f), public_reads).unwrap(), dir)
}

fn bearer(t: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
    );
    h
}

#[test]
fn each_scope_reaches_exactly_its_routes() {
    use Scope::*;
    let cases = [
        (Method::GET, "/v1/blocks/{digest}", [true, true, true, true]),
        (
            Method::HEAD,
            "/v1/manifests/{digest}",
            [true, true, true, true],
        ),
        (Method::GET, "/metrics", [true, true, true, true]),
        (Method::GET, "/v1/warm/stats", [true, true, true, true]),
        (
            Method::PUT,
            "/v1/blocks/{digest}",
            [false, true, false, true],
        ),
        (
            Method::PUT,
            "/v1/runtimes/{name}/tags/{tag}",
            [false, true, false, true],
        ),
        (
            Method::POST,
            "/v1/blocks/missing",
            [false, true, false, true],
        ),
        (Method::POST, "/v1/warm", [false, true, false, true]),
        (Method::POST, "/v1/sandboxes", [false, false, true, true]),
        (
            Method::GET,
            "/v1/sandboxes/{id}/exec",
            [false, false, true, true],
        ),
        (
            Method::PUT,
            "/v1/sandboxes/{id}/files/{*path}",
            [false, false, true, true],
        ),
        (
            Method::POST,
            "/v1/snapshots/{digest}/share",
            [false, false, true, true],
        ),
        (Method::GET, "/v1/ui/state", [false, false, true, true]),
        // Not in the table: admin only.
        (
            Method::DELETE,
            "/v1/blocks/{digest}",
            [false, false, false, true],
        ),
        (
            Method::GET,
            "/v1/some/new/route",
            [false, false, false, true],
        ),
    ];
    for (m, p, want) in cases {
        let n = need(&m, Some(p));
        let got = [Read, Push, Sandbox, Admin].map(|s| allows(s, n));
        assert_eq!(got, want, "{m} {p} needs {n:?}");
    }
    assert_eq!(
        need(&Method::GET, None),
        Need::Public,
        "the fallback's 404 needs nothing"
    );
    assert_eq!(need(&Method::GET, Some("/healthz")), Need::Public);
}

#[test]
fn every_route_naming_a_sandbox_checks_its_owner() {
    for (m, p, n) in ROUTES {
        if p.starts_with("/v1/sandboxes/{id}") {
            assert_eq!(*n, Need::OwnSandbox, "{m} {p}");
        }
        let dup = ROUTES
            .iter()
            .filter(|(m2, p2, _)| m2 == m && p2 == p)
            .count();
        assert_eq!(dup, 1, "{m} {p} is listed {dup} times");
    }
}

#[test]
fn tokens_resolve_by_hash_and_scope() {
    let (auth, _d) = auth_with(
        &[
            ("r-secret", Scope::Read, None),
            ("p-secret", Scope::Push, None),
            ("alice-secret", Scope::Sandbox, Some("alice")),
            ("admin-secret", Scope::Admin, None),
        ],
        None,
    );
    // A tokens file makes reads private by default.
    assert!(matches!(
        auth.resolve(&HeaderMap::new(), Need::Read),
        Err(ApiError::Unauthorized(_))
    ));
    assert!(matches!(
        auth.resolve(&bearer("nope"), Need::Read),
        Err(ApiError::Unauthorized(_))
    ));
    assert!(matches!(
        auth.resolve(&bearer("r-secret"), Need::Read),
        Ok(Caller::Token(_))
    ));
    assert!(matches!(
        auth.resolve(&bearer("r-secret"), Need::Push),
        Err(ApiError::Forbidden(_))
    ));
    assert!(matches!(
        auth.resolve(&bearer("p-secret"), Need::Sandbox),
        Err(ApiError::Forbidden(_))
    ));
    let alice = auth
        .resolve(&bearer("alice-secret"), Need::OwnSandbox)
        .unwrap();
    assert_eq!(alice.confined_to(), Some("alice"));
    assert!(alice.sees("alice") && !alice.sees("bob"));
    let admin = auth.resolve(&bearer("admin-secret"), Need::Admin).unwrap();
    assert!(admin.sees("bob") && admin.confined_to().is_none());
    assert!(matches!(
        auth.resolve(&HeaderMap::new(), Need::Public),
        Ok(Caller::Anonymous)
    ));

    let (public, _d2) = auth_with(&[("x", Scope::Admin, None)], Some(true));
    assert!(matches!(
        public.resolve(&HeaderMap::new(), Need::Read),
        Ok(Caller::Anonymous)
    ));
    assert!(matches!(
        public.resolve(&HeaderMap::new(), Need::Push),
        Err(ApiError::Unauthorized(_))
    ));
}

#[test]
fn no_tokens_means_open_and_the_legacy_file_is_an_admin_with_public_reads() {
    let open = Auth::open();
    assert!(matches!(
        open.resolve(&HeaderMap::new(), Need::Admin),
        Ok(Caller::Open)
    ));

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "legacy-secret\n").unwrap();
    let legacy = Auth::load(Some(f), None, None).unwrap();
    assert!(matches!(
        legacy.resolve(&HeaderMap::new(), Need::Read),
        Ok(Caller::Anonymous)
    ));
    assert!(matches!(
        legacy.resolve(&HeaderMap::new(), Need::Push),
        Err(ApiError::Unauthorized(_))
    ));
    let c = legacy
        .resolve(&bearer("legacy-secret"), Need::Admin)
        .unwrap();
    assert!(c.sees("anyone"));
}

#[test]
fn a_sandbox_token_decides_the_user() {
    let (auth, _d) = auth_with(
        &[
            ("a", Scope::Sandbox, Some("alice")),
            ("z", Scope::Admin, None),
        ],
        None,
    );
    let alice = auth.resolve(&bearer("a"), Need::Sandbox).unwrap();
    assert_eq!(
        alice.acting_as(None, "user_id").unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        alice
            .acting_as(Some("alice"), "user_id")
            .unwrap()
            .as_deref(),
        Some("alice")
    );
    let e = alice.acting_as(Some("bob"), "user_id").unwrap_err();
    assert!(
        matches!(e, ApiError::Forbidden(_)) && e.to_string().contains("bob"),
        "{e}"
    );
    let admin = auth.resolve(&bearer("z"), Need::Sandbox).unwrap();
    assert_eq!(
        admin.acting_as(Some("bob"), "user_id").unwrap().as_deref(),
        Some("bob")
    );
    let e = admin.user(None, "owner").unwrap_err();
    assert!(e.to_string().contains("owner is required"), "{e}");
    assert!(!Caller::Anonymous.sees("alice"));
}

#[test]
fn the_tokens_file_refuses_what_it_cannot_mean() {
    let h = prewarm_shared::Digest::of(b"t");
    let bad = [
        (format!("[[token]]\nhash = \"{h}\"\nscope = \"sandbox\"\n"), "needs a user"),
        (format!("[[token]]\nhash = \"{h}\"\nscope = \"push\"\nuser = \"a\"\n"), "only for sandbox"),
        (format!("[[token]]\nhash = \"{h}\"\nscope = \"root\"\n"), "unknown variant"),
        ("[[token]]\ntoken = \"plaintext\"\nscope = \"admin\"\n".to_string(), "unknown field"),
        ("[[token]]\nhash = \"abc\"\nscope = \"admin\"\n".to_string(), "hash"),
        (
            format!("[[token]]\nhash = \"{h}\"\nscope = \"admin\"\n[[token]]\nname = \"b\"\nhash = \"{h}\"\nscope = \"read\"\n"),
            "appears twice",
        ),
    ];
    for (text, want) in bad {
        let e = tokens::parse(&text).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
    }
    assert!(tokens::parse("").unwrap().is_empty());
}

#[test]
fn issued_tokens_are_random_and_only_their_hash_is_written() {
    let (t1, e1) = tokens::issue(Scope::Sandbox, Some("alice".into()), Some("a".into())).unwrap();
    let (t2, _) = tokens::issue(Scope::Sandbox, Some("alice".into()), None).unwrap();
    assert_ne!(t1, t2);
    assert!(t1.starts_with(tokens::TOKEN_PREFIX) && t1.len() == tokens::TOKEN_PREFIX.len() + 64);
    let toml = tokens::entry_toml(&e1);
    assert!(!toml.contains(&t1[tokens::TOKEN_PREFIX.len()..]), "{toml}");
    let set = tokens::parse(&toml).unwrap();
    let g = set.find(&t1).expect("the issued token is valid");
    assert_eq!(
        (g.scope, g.user.as_deref(), g.name.as_str()),
        (Scope::Sandbox, Some("alice"), "a")
    );
    assert!(set.find(&t2).is_none());
    assert!(tokens::issue(Scope::Sandbox, None, None).is_err());
    assert!(tokens::issue(Scope::Admin, Some("x".into()), None).is_err());
}

#[test]
fn reload_swaps_tokens_and_keeps_them_when_the_file_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tokens.toml");
    let entry = |t: &str| {
        tokens::entry_toml(&tokens::TokenEntry {
            name: None,
            hash: prewarm_shared::Digest::of(t.as_bytes()),
            scope: Scope::Admin,
            user: None,
        })
    };
    std::fs::write(&f, entry("one")).unwrap();
    let auth = Auth::load(None, Some(f.clone()), None).unwrap();
    assert!(auth.resolve(&bearer("one"), Need::Admin).is_ok());
    std::fs::write(&f, entry("two")).unwrap();
    assert_eq!(auth.reload().unwrap(), 1);
    assert!(auth.resolve(&bearer("one"), Need::Admin).is_err());
    assert!(auth.resolve(&bearer("two"), Need::Admin).is_ok());
    std::fs::write(&f, "[[token]]\nscope = \"admin\"\n").unwrap();
    assert!(auth.reload().is_err());
    assert!(
        auth.resolve(&bearer("two"), Need::Admin).is_ok(),
        "a broken file keeps the old tokens"
    );
}
