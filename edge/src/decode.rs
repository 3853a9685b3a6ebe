//! Decoding the origin's zstd bodies in Wasm, with a hard bound on what comes out.
//!
//! The decoder is `ruzstd`, pure Rust, because the `zstd` crate wraps the C library and does not
//! build for `wasm32-unknown-unknown`. Nothing decoded here is trusted: the caller hashes the
//! output against the URL digest before it is cached or served.

use std::io::Read;

use ruzstd::decoding::StreamingDecoder;

/// Why a zstd body was refused.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// It decodes to more than the object may be: a zstd bomb, or the wrong object.
    #[error("the body decodes to more than {limit} bytes")]
    TooLarge { limit: u64 },
    /// It is not zstd, or is truncated, or asks for a window larger than the object may be.
    #[error("the body is not a valid zstd stream")]
    Invalid(#[source] std::io::Error),
}

/// Decodes a zstd body (one or more frames) into at most `limit` bytes.
///
/// The output is read through a `take(remaining + 1)`, so a bomb stops one byte past the limit
/// instead of allocating what it claims. Each frame's window is capped at `limit` as well: a
/// valid frame never needs a window larger than the object, and a hostile header could
/// otherwise ask for ruzstd's default of 128 MiB up front.
pub fn zstd_bounded(encoded: &[u8], limit: u64) -> Result<Vec<u8>, DecodeError> {
    let invalid = |e: std::io::Error| DecodeError::Invalid(e);
    if encoded.is_empty() {
        return Err(invalid(std::io::Error::other("empty body")));
    }
    let mut input = encoded;
    let mut out = Vec::new();
    while !input.is_empty() {
        let decoder = StreamingDecoder::new_with_max_window_size(&mut input, limit.max(1 << 10))
            .map_err(|e| invalid(std::io::Error::other(e)))?;
        let remaining = limit.saturating_sub(out.len() as u64);
        decoder
            .take(remaining.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(invalid)?;
        if out.len() as u64 > limit {
            return Err(DecodeError::TooLarge { limit });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_frames_from_the_c_library() {
        let raw: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for level in [1, 3, 19] {
            let encoded = zstd::bulk::compress(&raw, level).unwrap();
            assert_eq!(zstd_bounded(&encoded, raw.len() as u64).unwrap(), raw);
        }
        // A streamed frame (no content size, checksum on) and two concatenated frames.
        let mut streamed = Vec::new();
        let mut enc = zstd::stream::Encoder::new(&mut streamed, 3).unwrap();
        enc.include_checksum(true).unwrap();
        std::io::Write::write_all(&mut enc, &raw).unwrap();
        enc.finish().unwrap();
        assert_eq!(zstd_bounded(&streamed, 1 << 23).unwrap(), raw);
        let mut two = zstd::bulk::compress(&raw[..1000], 1).unwrap();
        two.extend(zstd::bulk::compress(&raw[1000..], 1).unwrap());
        assert_eq!(zstd_bounded(&two, raw.len() as u64).unwrap(), raw);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        // 64 MiB of zeros is a few kilobytes of zstd: a bomb against an 8 MiB block limit.
        let zeros = std::io::Read::take(std::io::repeat(0), 64 << 20);
        let bomb = zstd::stream::encode_all(zeros, 19).unwrap();
        assert!(bomb.len() < 64 << 10);
        let err = zstd_bounded(&bomb, 8 << 20).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { limit } if limit == 8 << 20));
        // Exactly the limit is fine; one byte more is not, even across frames.
        let exact = zstd::bulk::compress(&[7u8; 1000], 1).unwrap();
        assert_eq!(zstd_bounded(&exact, 1000).unwrap().len(), 1000);
        assert!(matches!(
            zstd_bounded(&exact, 999),
            Err(DecodeError::TooLarge { .. })
        ));
        let twice = [exact.clone(), exact].concat();
        assert!(matches!(
            zstd_bounded(&twice, 1999),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn garbage_truncation_and_huge_windows_are_invalid() {
        let encoded = zstd::bulk::compress(&[1u8; 10_000], 1).unwrap();
        for bad in [
            &encoded[..encoded.len() - 1],
            b"not zstd at all".as_slice(),
            b"",
        ] {
            assert!(
                matches!(zstd_bounded(bad, 1 << 20), Err(DecodeError::Invalid(_))),
                "{bad:?}"
            );
        }
        // A frame after a good one must be good too.
        let trailing = [encoded.as_slice(), b"junk"].concat();
        assert!(matches!(
            zstd_bounded(&trailing, 1 << 20),
            Err(DecodeError::Invalid(_))
        ));
        // A frame whose window is larger than the object may be is refused from its header.
        let big = vec![3u8; 4 << 20];
        let mut wide = Vec::new();
        let mut enc = zstd::stream::Encoder::new(&mut wide, 19).unwrap();
        enc.window_log(23).unwrap();
        std::io::Write::write_all(&mut enc, &big).unwrap();
        enc.finish().unwrap();
        assert!(matches!(
            zstd_bounded(&wide, 1 << 20),
            Err(DecodeError::Invalid(_))
        ));
    }
}
