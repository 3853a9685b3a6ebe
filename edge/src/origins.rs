//! Which origin to ask first, and which to leave for last: region preference and a short memory
//! of failures.
//!
//! Content addressing is what makes several origins safe: every block and manifest is hashed
//! against the digest in its URL whichever origin sent it, so trying another origin can never
//! let wrong bytes through. Only a tag can differ between origins; see [`crate::flow`].

use std::cell::RefCell;

use crate::config::OriginSpec;
use crate::error::EdgeError;

/// Where the request arrived, as the platform reports it (`request.cf`). Both are `None` where
/// the platform says nothing (tests, or a runtime without `cf`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place<'a> {
    /// The data centre's IATA code, e.g. `FRA` (`cf.colo`).
    pub colo: Option<&'a str>,
    /// The continent code, e.g. `EU` (`cf.continent`).
    pub continent: Option<&'a str>,
}

impl Place<'_> {
    fn matches(&self, region: &str) -> bool {
        [self.colo, self.continent]
            .into_iter()
            .flatten()
            .any(|here| here.trim().eq_ignore_ascii_case(region.trim()))
    }
}

/// Failed origins and until when they are tried last (milliseconds since the epoch). It lives
/// as long as the isolate: each isolate learns on its own, which is all a stateless worker can
/// do without a shared store, and is enough to stop paying a dead origin's timeout on every
/// request.
#[derive(Debug, Default)]
pub struct Memory {
    down: RefCell<Vec<(String, u64)>>,
}

impl Memory {
    /// Remembers that `url` failed: it goes to the back of the order until `until_ms`.
    pub fn mark_down(&self, url: &str, until_ms: u64) {
        let mut down = self.down.borrow_mut();
        down.retain(|(u, _)| u != url);
        down.push((url.to_string(), until_ms));
    }

    /// Forgets a failure once the origin has answered again.
    pub fn mark_up(&self, url: &str) {
        self.down.borrow_mut().retain(|(u, _)| u != url);
    }

    fn is_down(&self, url: &str, now_ms: u64) -> bool {
        self.down
            .borrow()
            .iter()
            .any(|(u, until)| u == url && *until > now_ms)
    }
}

/// The order in which to try the origins: the first one whose region matches `place` (else
/// the first configured), then the others in configured order; origins that failed recently
/// move behind all the others, in the same relative order. Nothing is ever dropped: when every
/// origin is marked down, they are all still tried.
pub fn order<'a>(
    origins: &'a [OriginSpec],
    place: Place<'_>,
    memory: &Memory,
    now_ms: u64,
) -> Vec<&'a OriginSpec> {
    let preferred = origins
        .iter()
        .position(|o| o.region.as_deref().is_some_and(|r| place.matches(r)))
        .unwrap_or(0);
    let mut out: Vec<&OriginSpec> = Vec::with_capacity(origins.len());
    out.extend(origins.get(preferred));
    out.extend(
        origins
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != preferred)
            .map(|(_, o)| o),
    );
    // A stable sort: healthy origins first, each group in the order built above.
    out.sort_by_key(|o| memory.is_down(&o.url, now_ms));
    out
}

/// Whether another origin might do better: it could not be reached, it timed out, it answered
/// 5xx, or its body broke off. A 404, a 4xx, an oversized or wrong body are answers about the
/// object, not about the origin's health, and are returned as they are.
pub fn fails_over(err: &EdgeError) -> bool {
    match err {
        EdgeError::OriginUnreachable(_)
        | EdgeError::OriginTimeout { .. }
        | EdgeError::ReadFailed(_) => true,
        EdgeError::UpstreamStatus { status } => *status >= 500,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, region: Option<&str>) -> OriginSpec {
        OriginSpec {
            url: url.into(),
            region: region.map(Into::into),
        }
    }

    fn urls(list: Vec<&OriginSpec>) -> Vec<&str> {
        list.into_iter().map(|o| o.url.as_str()).collect()
    }

    #[test]
    fn region_first_else_configured_order() {
        let origins = [
            spec("a", Some("NA")),
            spec("b", Some("eu")),
            spec("c", Some("FRA")),
        ];
        let memory = Memory::default();
        let nowhere = Place::default();
        assert_eq!(urls(order(&origins, nowhere, &memory, 0)), ["a", "b", "c"]);
        let frankfurt = Place {
            colo: Some("FRA"),
            continent: Some("EU"),
        };
        // The first origin that matches, by colo or continent, in configured order.
        assert_eq!(
            urls(order(&origins, frankfurt, &memory, 0)),
            ["b", "a", "c"]
        );
        let tokyo = Place {
            colo: Some("NRT"),
            continent: Some("AS"),
        };
        assert_eq!(urls(order(&origins, tokyo, &memory, 0)), ["a", "b", "c"]);
    }

    #[test]
    fn failed_origins_go_last_for_a_while() {
        let origins = [spec("a", None), spec("b", None), spec("c", None)];
        let memory = Memory::default();
        memory.mark_down("a", 1_000);
        assert_eq!(
            urls(order(&origins, Place::default(), &memory, 10)),
            ["b", "c", "a"]
        );
        memory.mark_down("b", 1_000);
        assert_eq!(
            urls(order(&origins, Place::default(), &memory, 10)),
            ["c", "a", "b"]
        );
        // Expired, or answered again: back in configured order.
        assert_eq!(
            urls(order(&origins, Place::default(), &memory, 1_000)),
            ["a", "b", "c"]
        );
        memory.mark_up("a");
        assert_eq!(
            urls(order(&origins, Place::default(), &memory, 10)),
            ["a", "c", "b"]
        );
    }

    #[test]
    fn what_fails_over() {
        assert!(fails_over(&EdgeError::OriginTimeout { ms: 1 }));
        assert!(fails_over(&EdgeError::UpstreamStatus { status: 503 }));
        assert!(!fails_over(&EdgeError::UpstreamStatus { status: 401 }));
        assert!(!fails_over(&EdgeError::NotFound { what: "x".into() }));
    }
}
