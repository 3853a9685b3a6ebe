//! Conditional requests: `If-None-Match` against the ETag of a content-addressed object,
//! decided once here so the origin and the edge cannot disagree.

use crate::Digest;

/// The ETag of an object, `"sha256:<hex>"`, the same as the origin's: the digest names the
/// bytes, so it is a strong validator that never needs recomputing.
pub fn object_etag(digest: &Digest) -> String {
    format!("\"{digest}\"")
}

/// Whether an `If-None-Match` field value matches the object named by `digest`, which makes
/// the answer a `304 Not Modified` once the object is known to exist.
///
/// The rules are RFC 9110 §13.1.2: `*` matches any existing object, and each entity tag in the
/// comma-separated list is compared *weakly*, so `W/"sha256:…"` matches as well as
/// `"sha256:…"`. Comparison is exact (case-sensitive), as for any opaque tag. Parsing stops at
/// the first malformed member, and what remains does not match: a full `200` is always a safe
/// answer to a field the edge cannot read.
pub fn none_match(field: &str, digest: &Digest) -> bool {
    let want = digest.to_string();
    let mut rest = field;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let after = if let Some(after) = rest.strip_prefix('*') {
            // The origin also accepts `*` inside a list; the edge answers the same way.
            return member_ends(after);
        } else {
            let tagged = rest.strip_prefix("W/").unwrap_or(rest);
            let Some(quoted) = tagged.strip_prefix('"') else {
                return false;
            };
            let Some(end) = quoted.find('"') else {
                return false;
            };
            if quoted[..end] == *want {
                return true;
            }
            &quoted[end + 1..]
        };
        if !member_ends(after) {
            return false;
        }
        rest = after;
    }
}

/// After one list member only optional whitespace and then a comma or the end may follow.
fn member_ends(after: &str) -> bool {
    let after = after.trim_start_matches([' ', '\t']);
    after.is_empty() || after.starts_with(',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_the_quoted_digest() {
        let d = Digest::of(b"x");
        assert_eq!(object_etag(&d), format!("\"sha256:{}\"", d.hex()));
    }

    #[test]
    fn matching_fields() {
        let d = Digest::of(b"x");
        let tag = object_etag(&d);
        for field in [
            tag.clone(),
            format!("W/{tag}"),
            format!("\"sha256:{}\", {tag}", Digest::of(b"y").hex()),
            format!("\"a\",W/\"b\" ,\t{tag},\"c\""),
            format!(" {tag} "),
            "*".to_string(),
            " * ".to_string(),
            "\"a\", *".to_string(),
            format!(",,{tag}"),
        ] {
            assert!(none_match(&field, &d), "{field}");
        }
    }

    #[test]
    fn non_matching_and_malformed_fields() {
        let d = Digest::of(b"x");
        let hex = d.hex();
        for field in [
            String::new(),
            "   ".to_string(),
            format!("\"sha256:{}\"", Digest::of(b"y").hex()),
            // Unquoted, wrong case, a prefix only, or a weak marker in the wrong case.
            format!("sha256:{hex}"),
            format!("\"SHA256:{hex}\""),
            format!("\"sha256:{}\"", &hex[..10]),
            format!("w/\"sha256:{hex}\""),
            // Garbage before the match stops the parse.
            format!("\"a\" junk, \"sha256:{hex}\""),
            format!("\"unterminated, \"sha256:{hex}"),
            "**".to_string(),
            "*x".to_string(),
        ] {
            assert!(!none_match(&field, &d), "{field}");
        }
    }
}
