//! `meta.json` and `lock.json`: parsing and validation never panic, and what is accepted
//! re-encodes to JSON that is accepted again as the same value.
//!
//! Input: meta.json bytes, then optionally a 0xFF byte and lock.json bytes (0xFF never occurs
//! in UTF-8, so the split is unambiguous).
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::{LockFile, Meta};

fuzz_target!(|data: &[u8]| {
    let (meta_bytes, lock_bytes) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(meta) = Meta::parse(meta_bytes) else {
        return;
    };
    assert_eq!(meta.validate(), Ok(()));
    let again = Meta::parse(&serde_json::to_vec(&meta).unwrap()).expect("re-encoded meta");
    assert_eq!(again, meta);
    // Validation is what keeps a layer name from becoming a path outside layers/.
    for l in &meta.layers {
        assert!(!l.is_empty() && !l.starts_with('.') && !l.contains('/'));
    }
    assert!(meta.prefix.starts_with('/') && !meta.prefix.split('/').any(|c| c == ".."));
    let Some(lock_bytes) = lock_bytes else {
        return;
    };
    let Ok(lock) = LockFile::parse(lock_bytes, &meta) else {
        return;
    };
    for p in &lock.packages {
        if let Some(l) = &p.layer {
            assert!(meta.layers.contains(l));
        }
    }
    let again =
        LockFile::parse(&serde_json::to_vec(&lock).unwrap(), &meta).expect("re-encoded lock");
    assert_eq!(again, lock);
});
