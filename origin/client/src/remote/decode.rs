//! Reading a response's content coding, and decoding zstd with a hard bound on what comes out.

use bytes::{Bytes, BytesMut};
use prewarm_shared::encoding::ZSTD;
use zstd::stream::raw::{DParameter, Decoder, InBuffer, Operation, OutBuffer};

/// Largest zstd window a body may ask the decoder to allocate: 16 MiB, twice the largest block.
/// zstd's default allows 128 MiB per decoder, which a hostile frame header could claim.
const WINDOW_LOG_MAX: u32 = 24;
/// Decoded bytes produced per call into zstd (its recommended output size).
const OUT_STEP: usize = 128 << 10;

/// How a body is coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Coding {
    Identity,
    Zstd,
}

/// The response's `Content-Encoding`: absent or `identity`, or exactly `zstd`. Anything else
/// (another coding, several, a value that is not text) is an error naming it.
pub(super) fn coding(headers: &reqwest::header::HeaderMap) -> Result<Coding, String> {
    let values: Vec<_> = headers
        .get_all(reqwest::header::CONTENT_ENCODING)
        .iter()
        .collect();
    let unsupported = || {
        let all: Vec<_> = values
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        format!(
            "unsupported Content-Encoding {:?} (only zstd or identity)",
            all.join(", ")
        )
    };
    match values.as_slice() {
        [] => Ok(Coding::Identity),
        [one] => match one.to_str().map(str::trim) {
            Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("identity") => Ok(Coding::Identity),
            Ok(v) if v.eq_ignore_ascii_case(ZSTD) => Ok(Coding::Zstd),
            _ => Err(unsupported()),
        },
        _ => Err(unsupported()),
    }
}

/// A streaming zstd decoder that refuses to produce more than `limit` bytes: a body that
/// expands past what the object may be (a zstd bomb) is an error once it crosses the limit,
/// never an allocation of what it claims.
pub(super) struct Bounded {
    decoder: Decoder<'static>,
    out: BytesMut,
    limit: u64,
    /// At a frame boundary: the body may end here.
    frame_done: bool,
}

impl Bounded {
    pub(super) fn new(limit: u64) -> Result<Self, String> {
        let mut decoder = Decoder::new().map_err(|e| format!("zstd decoder: {e}"))?;
        decoder
            .set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(|e| format!("zstd decoder: {e}"))?;
        Ok(Self {
            decoder,
            out: BytesMut::new(),
            limit,
            frame_done: true,
        })
    }

    /// Decodes one piece of the body.
    pub(super) fn write(&mut self, piece: &[u8]) -> Result<(), String> {
        let mut input = InBuffer::around(piece);
        let mut step = vec![0u8; OUT_STEP];
        loop {
            let mut output = OutBuffer::around(&mut step[..]);
            let hint = self
                .decoder
                .run(&mut input, &mut output)
                .map_err(|e| format!("not a valid zstd body: {e}"))?;
            let n = output.pos();
            if (self.out.len() + n) as u64 > self.limit {
                return Err(format!(
                    "zstd body decodes to more than {} bytes (zstd bomb?); refused",
                    self.limit
                ));
            }
            self.out.extend_from_slice(&step[..n]);
            self.frame_done = hint == 0;
            // Done with this piece once all of it is read and zstd has nothing more to flush.
            if input.pos() == piece.len() && n < step.len() {
                return Ok(());
            }
        }
    }

    /// The decoded bytes, if the body ended at the end of a frame.
    pub(super) fn finish(self) -> Result<Bytes, String> {
        if !self.frame_done {
            return Err("zstd body ends in the middle of a frame".into());
        }
        Ok(self.out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue, CONTENT_ENCODING};

    use super::*;

    fn decode(body: &[u8], limit: u64, piece: usize) -> Result<Bytes, String> {
        let mut d = Bounded::new(limit)?;
        for p in body.chunks(piece) {
            d.write(p)?;
        }
        d.finish()
    }

    #[test]
    fn round_trips_in_any_piece_size() {
        let raw: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let encoded = zstd::bulk::compress(&raw, 1).unwrap();
        for piece in [1, 7, 4096, encoded.len()] {
            assert_eq!(decode(&encoded, raw.len() as u64, piece).unwrap(), raw);
        }
    }

    #[test]
    fn a_body_that_expands_past_the_limit_is_refused() {
        // 64 MiB of zeros is a few kilobytes of zstd: a bomb against an 8 MiB block limit.
        let zeros = std::io::Read::take(std::io::repeat(0), 64 << 20);
        let bomb = zstd::stream::encode_all(zeros, 19).unwrap();
        assert!(bomb.len() < 64 << 10);
        let err = decode(&bomb, 8 << 20, 16 << 10).unwrap_err();
        assert!(err.contains("more than 8388608 bytes"), "{err}");
        // One byte more than allowed is already too much.
        let exact = zstd::bulk::compress(&[7u8; 1000], 1).unwrap();
        assert_eq!(decode(&exact, 1000, 100).unwrap().len(), 1000);
        assert!(decode(&exact, 999, 100).is_err());
    }

    #[test]
    fn truncated_or_garbage_bodies_are_refused() {
        let encoded = zstd::bulk::compress(&[1u8; 10_000], 1).unwrap();
        let err = decode(&encoded[..encoded.len() - 1], 1 << 20, 64).unwrap_err();
        assert!(err.contains("middle of a frame"), "{err}");
        assert!(decode(b"not zstd at all", 1 << 20, 64).is_err());
    }

    #[test]
    fn content_codings() {
        let with = |values: &[&'static str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(CONTENT_ENCODING, HeaderValue::from_static(v));
            }
            coding(&h)
        };
        assert_eq!(with(&[]), Ok(Coding::Identity));
        assert_eq!(with(&["identity"]), Ok(Coding::Identity));
        assert_eq!(with(&["zstd"]), Ok(Coding::Zstd));
        assert_eq!(with(&["ZSTD "]), Ok(Coding::Zstd));
        let err = with(&["br"]).unwrap_err();
        assert!(err.contains("\"br\""), "{err}");
        assert!(with(&["zstd, gzip"]).is_err());
        assert!(with(&["zstd", "zstd"]).is_err());
    }
}
