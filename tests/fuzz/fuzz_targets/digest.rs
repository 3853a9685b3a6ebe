//! `Digest`'s one text form: whatever parses displays as exactly its input and parses back equal.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::Digest;

fuzz_target!(|data: &[u8]| {
    // Any 32 bytes are a digest: display → parse is the identity.
    if let Ok(raw) = <[u8; 32]>::try_from(data.get(..32).unwrap_or_default()) {
        let d = Digest::from_bytes(raw);
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
    }
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = s.parse::<Digest>() else {
        return;
    };
    // Strict: one object, one name. The accepted string is the display form, byte for byte.
    assert_eq!(d.to_string(), s);
    assert_eq!(d.to_string().parse::<Digest>(), Ok(d));
    assert_eq!(format!("sha256:{}", d.hex()), s);
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
});
