//! `Range: bytes=…` semantics for content-addressed GETs, shared so origin and edge answer alike.

use std::ops::Range;

/// What a server does with a request's `Range` header for an object of a known size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeDecision {
    /// No usable range: send the whole object with 200.
    Full,
    /// Send these bytes with 206 and `Content-Range: bytes start-(end-1)/size`.
    Partial(Range<u64>),
    /// 416 with `Content-Range: bytes */size`: well-formed but outside the object.
    Unsatisfiable,
}

/// Decides one `bytes=a-b`, `bytes=a-` or `bytes=-n` range against `size`.
///
/// Multiple ranges, other units and malformed specs give [`RangeDecision::Full`], as RFC 9110
/// allows a server to ignore `Range`: a client always gets correct bytes, maybe more of them.
pub fn decide_range(header: Option<&str>, size: u64) -> RangeDecision {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeDecision::Full;
    };
    if spec.contains(',') {
        return RangeDecision::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeDecision::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = match (a.is_empty(), b.is_empty()) {
        (true, true) => return RangeDecision::Full,
        (true, false) => {
            let Some(n) = parse(b) else {
                return RangeDecision::Full;
            };
            if n == 0 {
                return RangeDecision::Unsatisfiable;
            }
            size.saturating_sub(n)..size
        }
        (false, _) => {
            let Some(start) = parse(a) else {
                return RangeDecision::Full;
            };
            let end = if b.is_empty() {
                size
            } else {
                let Some(last) = parse(b) else {
                    return RangeDecision::Full;
                };
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

/// The `Content-Range` value for a 206 (`Some(range)`) or a 416 (`None`).
pub fn content_range(range: Option<&Range<u64>>, size: u64) -> String {
    match range {
        Some(r) => format!("bytes {}-{}/{size}", r.start, r.end - 1),
        None => format!("bytes */{size}"),
    }
}

#[cfg(test)]
mod tests {
    use super::RangeDecision::*;
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(decide_range(None, 10), Full);
        assert_eq!(decide_range(Some("bytes=0-0"), 10), Partial(0..1));
        assert_eq!(decide_range(Some("bytes=2-"), 10), Partial(2..10));
        assert_eq!(decide_range(Some("bytes=-3"), 10), Partial(7..10));
        assert_eq!(decide_range(Some("bytes=-30"), 10), Partial(0..10));
        assert_eq!(decide_range(Some("bytes=5-100"), 10), Partial(5..10));
        assert_eq!(decide_range(Some(" bytes= 1 - 2 "), 10), Partial(1..3));
        assert_eq!(decide_range(Some("bytes=10-"), 10), Unsatisfiable);
        assert_eq!(decide_range(Some("bytes=-0"), 10), Unsatisfiable);
        assert_eq!(decide_range(Some("bytes=0-"), 0), Unsatisfiable);
        assert_eq!(decide_range(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(decide_range(Some("items=0-1"), 10), Full);
        assert_eq!(decide_range(Some("bytes=5-2"), 10), Full);
        assert_eq!(decide_range(Some("bytes=x-2"), 10), Full);
        assert_eq!(decide_range(Some("bytes=-"), 10), Full);
        assert_eq!(
            decide_range(Some("bytes=0-18446744073709551615"), 10),
            Partial(0..10)
        );
    }

    #[test]
    fn content_range_values() {
        assert_eq!(content_range(Some(&(2..5)), 10), "bytes 2-4/10");
        assert_eq!(content_range(None, 10), "bytes */10");
    }
}
