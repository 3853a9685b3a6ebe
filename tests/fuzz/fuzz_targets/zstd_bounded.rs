//! The pull path's bounded zstd decoder: never panics, never yields more than its limit, and
//! whatever it accepts is exactly what `zstd::decode_all` makes of the same bytes.
//!
//! Input: a mode byte, a limit byte, a piece-size byte, then the body. In mode 0 the body is
//! decoded as it is (hostile frames); otherwise it is compressed first, so the fuzzer also
//! explores real frames of every size around the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_client::fuzzing::zstd_bounded;

fuzz_target!(|data: &[u8]| {
    let [mode, limit, piece, body @ ..] = data else {
        return;
    };
    // Limits from 0 to ~1 MiB, with the small ones (and exact sizes) most likely.
    let limit = match limit >> 6 {
        0 => u64::from(*limit & 0x3f),
        1 => u64::from(*limit & 0x3f) * 64,
        2 => u64::from(*limit & 0x3f) << 10,
        _ => u64::from(*limit & 0x3f) << 14,
    };
    let piece = match piece {
        0 => usize::MAX,
        n => usize::from(*n),
    };
    if mode % 2 == 0 {
        let got = zstd_bounded(body, limit, piece);
        if let Ok(out) = &got {
            assert!(out.len() as u64 <= limit);
            let reference =
                zstd::decode_all(body).expect("bounded decoder accepted what zstd refuses");
            assert!(
                out == &reference,
                "bounded decoder output differs from zstd::decode_all"
            );
        }
        // Splitting the body differently never changes the outcome (messages may differ).
        assert_eq!(zstd_bounded(body, limit, usize::MAX).ok(), got.ok());
    } else {
        let level = i32::from(mode % 8);
        let encoded = zstd::bulk::compress(body, level).unwrap();
        let got = zstd_bounded(&encoded, limit, piece);
        if body.len() as u64 <= limit {
            assert_eq!(got.as_deref(), Ok(body), "limit {limit}, piece {piece}");
        } else {
            assert!(
                got.is_err(),
                "{} bytes decoded past the limit {limit}",
                body.len()
            );
        }
    }
});
