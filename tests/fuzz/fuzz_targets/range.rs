//! `Range` decisions: never panic, and a partial range always lies inside the object.
//!
//! Input: 8 bytes of object size (little endian; a small size when the top byte is odd, so
//! both tiny and huge objects are covered), then the header value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::range::{content_range, decide_range, RangeDecision};

fuzz_target!(|data: &[u8]| {
    let Some((size, header)) = data.split_first_chunk::<8>() else {
        return;
    };
    let mut size = u64::from_le_bytes(*size);
    if size >> 63 == 1 {
        size &= 0xffff;
    }
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    match decide_range(Some(header), size) {
        RangeDecision::Partial(r) => {
            assert!(
                r.start < r.end && r.end <= size,
                "{header:?} on {size}: {r:?}"
            );
            let cr = content_range(Some(&r), size);
            assert_eq!(cr, format!("bytes {}-{}/{size}", r.start, r.end - 1));
        }
        RangeDecision::Unsatisfiable => {
            assert_eq!(content_range(None, size), format!("bytes */{size}"));
        }
        RangeDecision::Full => {}
    }
    assert_eq!(decide_range(None, size), RangeDecision::Full);
});
