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
pub(crate) struct Bounded {
    decoder: Decoder<'static>,
    out: BytesMut,
    /// Scratch space zstd decodes into, reused across pieces.
    step: Box<[u8]>,
    limit: u64,
    /// At a frame boundary: the body may end here.
    frame_done: bool,
    /// Some body byte was read. An empty body holds no frame, so it is not a zstd body
    /// (RFC 8878: one or more frames); the origin never sends one.
    started: bool,
}

impl Bounded {
    pub(crate) fn new(limit: u64) -> Result<Self, String> {
        let mut decoder = Decoder::new().map_err(|e| format!("zstd decoder: {e}"))?;
        decoder
            .set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX))
            .map_err(|e| format!("zstd decoder: {e}"))?;
        Ok(Self {
            decoder,
            out: BytesMut::new(),
            step: vec![0u8; OUT_STEP].into_boxed_slice(),
            limit,
            frame_done: true,
            started: false,
        })
    }

    /// Decodes one piece of the body.
    ///
    /// zstd's hint (its return value) says whether a frame just ended, but only on a call that
    /// made progress: asked again with nothing to read after a frame's last block filled the
    /// output exactly, it answers for the *next* frame ("give me a header") and would make a
    /// complete body look cut off. So the frame state changes only when bytes moved.
    pub(crate) fn write(&mut self, piece: &[u8]) -> Result<(), String> {
        let mut input = InBuffer::around(piece);
        loop {
            let read_before = input.pos();
            let mut output = OutBuffer::around(&mut self.step[..]);
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
            self.out.extend_from_slice(&self.step[..n]);
            if n > 0 || input.pos() > read_before {
                self.frame_done = hint == 0;
            }
            self.started |= input.pos() > read_before;
            // Done with this piece once all of it is read and zstd has nothing more to flush
            // (it fills the output whenever it holds more).
            if input.pos() == piece.len() && n < self.step.len() {
                return Ok(());
            }
        }
    }

    /// The decoded bytes, if the body ended at the end of a frame.
    pub(crate) fn finish(self) -> Result<Bytes, String> {
        if !self.started {
            return Err("zstd body is empty (no frame)".into());
        }
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

    /// Bytes of one kind: zeros, text that compresses very well (JSON schemas), random, or
    /// runs of each in turn, the mix a real runtime's blocks have.
    fn content(kind: u8, len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut random = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let schema = br#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"name":{"type":"string"}}},"#;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            match kind {
                0 => out.resize(len, 0),
                1 => out.extend_from_slice(schema),
                2 => out.extend_from_slice(&random().to_le_bytes()),
                _ => {
                    let run = 1 + (random() % 8192) as usize;
                    match random() % 3 {
                        0 => out.resize(out.len() + run, 0),
                        1 => out.extend(schema.iter().cycle().take(run)),
                        _ => out.extend((0..run).map(|_| random() as u8)),
                    }
                }
            }
        }
        out.truncate(len);
        out
    }

    /// The reported failure: a block that compresses very well and whose size is a multiple of
    /// zstd's 128 KiB block fills the decoder's output exactly on its last block. A pull said
    /// "ends in the middle of a frame" for 4 MiB of zeros and 4 MiB of JSON schemas.
    #[test]
    fn compressible_blocks_that_end_on_a_zstd_block_boundary() {
        for kind in [0, 1] {
            let raw = content(kind, 4 << 20, 7);
            let encoded = zstd::bulk::compress(&raw, 1).unwrap();
            for piece in [encoded.len(), 16 << 10, 1000, 3] {
                let got = decode(&encoded, raw.len() as u64, piece)
                    .unwrap_or_else(|e| panic!("kind {kind}, pieces of {piece}: {e}"));
                assert!(got == raw, "kind {kind}, pieces of {piece}: wrong bytes");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Every size class (empty, tiny, around zstd's 128 KiB block, up to the 8 MiB block
        /// limit) in every kind of content, at the origin's compression levels, in any split
        /// of the body into pieces, decodes to exactly the original within an exact limit.
        #[test]
        fn any_block_round_trips(
            class in proptest::sample::select(vec![
                0usize, 1, 100, 4 << 10, 64 << 10, 128 << 10, 256 << 10, 1 << 20, 4 << 20, 8 << 20,
            ]),
            jitter in -2i64..=2,
            kind in 0u8..4,
            seed in proptest::prelude::any::<u64>(),
            level in proptest::sample::select(vec![1, 3]),
            piece in proptest::sample::select(vec![1usize, 7, 1000, 16 << 10, 64 << 10, usize::MAX]),
        ) {
            let len = (class as i64 + jitter).max(0) as usize;
            let raw = content(kind, len, seed);
            let encoded = zstd::bulk::compress(&raw, level).unwrap();
            // Keep single-byte pieces for small bodies: a decoder call per byte is slow here.
            let piece = piece.max(encoded.len() / 4096).max(1);
            let got = decode(&encoded, raw.len() as u64, piece);
            proptest::prop_assert!(got.as_deref() == Ok(&raw[..]), "len {len} kind {kind} level {level} piece {piece}: {:?}", got.err());
            if !raw.is_empty() {
                proptest::prop_assert!(decode(&encoded, raw.len() as u64 - 1, piece).is_err());
            }
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

    /// Found by the `zstd_bounded` fuzzer: an empty body decoded to zero bytes, where zstd
    /// itself (and RFC 8878) says it is no frame at all. Whatever the limit, it is refused.
    #[test]
    fn an_empty_body_is_not_a_zstd_body() {
        for limit in [0, 1 << 20] {
            let err = decode(b"", limit, 5).unwrap_err();
            assert!(err.contains("empty"), "{err}");
            assert!(zstd::decode_all(&b""[..]).is_err());
        }
        // A frame of nothing is not an empty body: it decodes to zero bytes.
        let empty_frame = zstd::bulk::compress(b"", 1).unwrap();
        assert_eq!(decode(&empty_frame, 0, 5).unwrap().len(), 0);
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
