//! Manifests: parsing and validation never panic; a strictly parsed manifest is its own
//! canonical form; any JSON that validates re-encodes to bytes the strict parser accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::Manifest;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::parse(data) {
        assert_eq!(m.to_canonical_json(), data);
        assert_eq!(m.validate(), Ok(()));
        assert_eq!(m.digest(), prewarm_shared::Digest::of(data));
        let _ = (m.blocks(), m.bytes_total(), m.files().count());
    }
    // The lenient path (any JSON layout) must agree with the strict one after re-encoding.
    let Ok(m) = serde_json::from_slice::<Manifest>(data) else {
        return;
    };
    if m.validate().is_ok() {
        let canonical = m.to_canonical_json();
        assert_eq!(Manifest::parse(&canonical).as_ref(), Ok(&m));
        // Sorting is a no-op on a valid manifest: `new` keeps its order and so its digest.
        let mut again = Manifest::new(m.entries.clone());
        again.parent = m.parent;
        again.meta = m.meta.clone();
        again.lock = m.lock.clone();
        again.pack_key = m.pack_key.clone();
        assert_eq!(again.digest(), m.digest());
    }
});
