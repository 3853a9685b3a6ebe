//! `Range: bytes=…` parsing for one range; anything else is served whole, as RFC 9110 allows.

use std::ops::Range;

/// What to do with a request's `Range` header for an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeDecision {
    /// No usable range: send the whole object with 200.
    Full,
    /// Send these bytes with 206.
    Partial(Range<u64>),
    /// 416: syntactically fine but outside the object.
    Unsatisfiable,
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n`. Multiple ranges or other units → `Full`.
pub(super) fn decide(header: Option<&str>, size: u64) -> RangeDecision {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return RangeDecision::Full };
    if spec.contains(',') {
        return RangeDecision::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return RangeDecision::Full };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = match (a.is_empty(), b.is_empty()) {
        (true, true) => return RangeDecision::Full,
        (true, false) => {
            let Some(n) = parse(b) else { return RangeDecision::Full };
            if n == 0 {
                return RangeDecision::Unsatisfiable;
            }
            size.saturating_sub(n)..size
        }
        (false, _) => {
            let Some(start) = parse(a) else { return RangeDecision::Full };
            let end = if b.is_empty() {
                size
            } else {
                let Some(last) = parse(b) else { return RangeDecision::Full };
                if last < start {
                    return RangeDecision::Full;
                }
                last.saturating_add(1).min(size)
            };
            if start >= size {
                return RangeDecision::Unsatisfiable;
            }
            start..end
        }
    };
    if range.start >= range.end {
        return RangeDecision::Unsatisfiable;
    }
    RangeDecision::Partial(range)
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::*;
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(decide(None, 10), Full);
        assert_eq!(decide(Some("bytes=0-0"), 10), Partial(0..1));
        assert_eq!(decide(Some("bytes=2-"), 10), Partial(2..10));
        assert_eq!(decide(Some("bytes=-3"), 10), Partial(7..10));
        assert_eq!(decide(Some("bytes=-30"), 10), Partial(0..10));
        assert_eq!(decide(Some("bytes=5-100"), 10), Partial(5..10));
        assert_eq!(decide(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(decide(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(decide(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(decide(Some("items=0-1"), 10), Full);
        assert_eq!(decide(Some("bytes=5-2"), 10), Full);
        assert_eq!(decide(Some("bytes=x-2"), 10), Full);
        assert_eq!(decide(Some("bytes=0-"), 0), Unsatisfiable);
    }
}
