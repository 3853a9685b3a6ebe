//! `RelPath`: what parses is kept verbatim, has no empty, `.` or `..` component, and every
//! ancestor, parent and join of it is a valid `RelPath` too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prewarm_shared::RelPath;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = s.parse::<RelPath>();
    assert_eq!(
        RelPath::try_from(std::path::Path::new(s)).is_ok(),
        parsed.is_ok()
    );
    let Ok(p) = parsed else {
        return;
    };
    assert_eq!(p.as_str(), s);
    assert_eq!(p.to_string().parse::<RelPath>().as_ref(), Ok(&p));
    assert!(!s.starts_with('/') && !s.contains('\0'));
    for c in p.components() {
        assert!(!matches!(c, "" | "." | ".."), "{s:?} has component {c:?}");
    }
    // A RelPath can only name something inside the root.
    let joined = std::path::Path::new("/root").join(p.as_str());
    assert!(joined.starts_with("/root") && joined != std::path::Path::new("/root"));
    for a in p.ancestors() {
        assert_eq!(a.to_string().parse::<RelPath>().as_ref(), Ok(&a));
        assert!(p.starts_with(&a) && a != p);
    }
    if let Some(parent) = p.parent() {
        assert_eq!(parent.join(p.file_name()).as_ref(), Ok(&p));
    } else {
        assert_eq!(p.file_name(), s);
    }
    let json = serde_json::to_string(&p).unwrap();
    assert_eq!(serde_json::from_str::<RelPath>(&json).unwrap(), p);
});
