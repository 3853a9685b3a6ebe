//! HTTP content coding of blocks and manifests: the `Accept-Encoding` rule and the ETag of an
//! encoded body, decided once here so the origin and its clients cannot disagree.
//!
//! Only `zstd` is ever used, and only when a client names it. The digest always names the
//! identity bytes: an encoded body is a different representation of the same object, so it
//! carries a weak ETag and every object response says `Vary: Accept-Encoding`.

use crate::Digest;

/// The one content coding prewarm speaks (RFC 8878).
pub const ZSTD: &str = "zstd";

/// Whether an `Accept-Encoding` field value (all of its lines joined with `,`) asks for zstd.
///
/// RFC 9110 §12.5.3: a comma-separated list of codings, each with an optional `;q=` weight
/// from 0 to 1; names are case-insensitive. `zstd` with a weight above 0 means yes;
/// `zstd;q=0` means no. `*` is **not** taken as a yes: zstd is sent only to a client that
/// names it, because `*` is what generic tools send without being able to decode zstd, and
/// identity is always an acceptable answer. A member that cannot be parsed is skipped, and
/// a malformed weight on `zstd` counts as no (identity is the safe answer).
pub fn accepts_zstd(field: &str) -> bool {
    let mut yes = false;
    for member in field.split(',') {
        let mut parts = member.split(';');
        let coding = parts.next().unwrap_or("").trim();
        if !coding.eq_ignore_ascii_case(ZSTD) {
            continue;
        }
        let mut weight = Some(1000);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                weight = None;
                continue;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                weight = weight.and(parse_qvalue(value.trim()));
            }
        }
        // The last mention wins, as if the list were a map (clients do not repeat codings).
        yes = weight.is_some_and(|w| w > 0);
    }
    yes
}

/// A `qvalue` (`0`, `0.5`, `1.000`) in thousandths; `None` if malformed (RFC 9110 §12.4.2).
fn parse_qvalue(v: &str) -> Option<u32> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u32>().ok()?;
    match int {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// Whether `encoded` bytes are worth sending in place of `raw` bytes: at least 10 % smaller.
/// Already-compressed data (wheels, images, `.so` with compressed sections) gains too little
/// to pay for the client's decompression.
pub fn worth_encoding(raw: u64, encoded: u64) -> bool {
    encoded.saturating_mul(10) < raw.saturating_mul(9)
}

/// The ETag of an encoded body, `W/"sha256:<hex>"`: weak, because the strong ETag
/// ([`crate::conditional::object_etag`]) names the identity bytes. `If-None-Match` compares
/// weakly, so either form gets a 304.
pub fn encoded_etag(digest: &Digest) -> String {
    format!("W/{}", crate::conditional::object_etag(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_is_accepted_when_named_with_a_positive_weight() {
        for field in [
            "zstd",
            "ZSTD",
            "gzip, zstd",
            " gzip ,\tzstd ",
            "zstd;q=1",
            "zstd; q=0.001",
            "zstd;Q=0.5, gzip;q=1",
            "br;q=1.0, zstd;q=0.8, *;q=0",
            "zstd;q=1.000",
        ] {
            assert!(accepts_zstd(field), "{field:?}");
        }
    }

    #[test]
    fn zstd_is_refused_unless_named_with_a_positive_weight() {
        for field in [
            "",
            "identity",
            "gzip, br",
            "*",
            "*;q=1",
            "zstd;q=0",
            "zstd;q=0.000",
            "zstd;q=0.",
            "gzip, zstd;q=0",
            "zstd, zstd;q=0",
            // Malformed weights are not a yes.
            "zstd;q=2",
            "zstd;q=1.5",
            "zstd;q=0.0001",
            "zstd;q=abc",
            "zstd;q",
            "zstd;q=",
            "zstdx",
            "x-zstd",
        ] {
            assert!(!accepts_zstd(field), "{field:?}");
        }
    }

    #[test]
    fn encoding_must_save_a_tenth() {
        assert!(worth_encoding(1000, 899));
        assert!(!worth_encoding(1000, 900));
        assert!(!worth_encoding(1000, 1010));
        assert!(!worth_encoding(0, 0));
    }

    #[test]
    fn encoded_etag_is_the_weak_digest_tag() {
        let d = Digest::of(b"x");
        assert_eq!(encoded_etag(&d), format!("W/\"sha256:{}\"", d.hex()));
        assert!(crate::conditional::none_match(&encoded_etag(&d), &d));
    }
}
