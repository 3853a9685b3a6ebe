//! Bounded runtime labels: the first N runtime names seen keep their name, the rest are `other`.

use std::collections::HashSet;
use std::sync::Mutex;

use prewarm_shared::RuntimeRef;

/// The label of every runtime past the first [`RuntimeLabels::new`]'s `max` names.
pub const OTHER_LABEL: &str = "other";
/// The label of a create that named its runtime by digest (a digest is never a label).
pub const DIGEST_LABEL: &str = "digest";

/// Which runtime names are labels of their own. The first `max` names seen get one, for the
/// life of the process: a name's series never moves to `other` and back, which would break
/// `rate()` over it. With a few hundred names on a fleet, the busy ones are seen first in
/// practice; the rest add up in `other`. So every series has at most `max + 2` runtime values.
#[derive(Debug)]
pub struct RuntimeLabels {
    max: usize,
    named: Mutex<HashSet<String>>,
}

impl RuntimeLabels {
    /// Runtime names labelled by default before the rest become `other`.
    pub const DEFAULT_MAX: usize = 50;

    pub fn new(max: usize) -> Self {
        Self {
            max,
            named: Mutex::default(),
        }
    }

    /// The label of `runtime`: its name (without the tag), `other`, or `digest`. With `learn`
    /// false a name not labelled yet is `other` (a failed create's name may not even exist,
    /// and must not take a label from a real runtime).
    pub fn of(&self, runtime: &RuntimeRef, learn: bool) -> String {
        let name = match runtime {
            RuntimeRef::Tagged(name, _) => name.as_str(),
            RuntimeRef::Digest(_) => return DIGEST_LABEL.to_owned(),
        };
        let mut named = self.named.lock().unwrap_or_else(|p| p.into_inner());
        if named.contains(name) {
            return name.to_owned();
        }
        if learn && named.len() < self.max && name != OTHER_LABEL && name != DIGEST_LABEL {
            named.insert(name.to_owned());
            return name.to_owned();
        }
        OTHER_LABEL.to_owned()
    }
}
