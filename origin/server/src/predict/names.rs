//! The policy's ids: runtimes numbered in order of first use (capped), users by a hash of their id (no table).

use std::collections::HashMap;

use prewarm_predict::{RuntimeId, UserId};
use prewarm_shared::Digest;

/// Runtimes the predictor tracks at most; creates of others are still recorded but not
/// predicted (a bound on memory whatever clients name).
pub(super) const MAX_RUNTIMES: usize = 4096;

/// Runtime references (as asked for: `name:tag` or a digest) ↔ the policy's ids, in order of
/// first use, as the simulator numbers a trace's runtimes.
#[derive(Debug, Default)]
pub(super) struct Runtimes {
    names: Vec<String>,
    ids: HashMap<String, RuntimeId>,
}

impl Runtimes {
    /// The id of `name`, adding it if new and under [`MAX_RUNTIMES`].
    pub(super) fn id(&mut self, name: &str) -> Option<RuntimeId> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        if self.names.len() >= MAX_RUNTIMES {
            return None;
        }
        let id = RuntimeId(self.names.len() as u32);
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        Some(id)
    }

    pub(super) fn name(&self, id: RuntimeId) -> &str {
        &self.names[id.0 as usize]
    }
}

/// The hex form of a user id's SHA-256, first 16 characters: what usage records store
/// (never the id itself).
pub(super) fn user_hash(user: &str) -> String {
    Digest::of(user.as_bytes()).hex()[..16].to_owned()
}

/// The policy's id of a user, from [`user_hash`]: no table grows with users. Two users whose
/// hashes share 32 bits share a history (about one pair in 100 000 users).
pub(super) fn user_id(hash: &str) -> UserId {
    UserId(u32::from_str_radix(&hash[..8], 16).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_number_in_first_use_order_and_stop_at_the_cap() {
        let mut r = Runtimes::default();
        assert_eq!(r.id("a:v1"), Some(RuntimeId(0)));
        assert_eq!(r.id("b:v1"), Some(RuntimeId(1)));
        assert_eq!(r.id("a:v1"), Some(RuntimeId(0)));
        assert_eq!(r.name(RuntimeId(1)), "b:v1");
        for i in 2..MAX_RUNTIMES {
            assert!(r.id(&format!("r{i}")).is_some());
        }
        assert_eq!(r.id("one-too-many"), None);
        assert_eq!(r.id("a:v1"), Some(RuntimeId(0)), "known ones still resolve");
    }

    #[test]
    fn users_are_hashed_not_stored() {
        let h = user_hash("alice@example.com");
        assert_eq!(h.len(), 16);
        assert!(!h.contains("alice"));
        assert_eq!(user_id(&h), user_id(&user_hash("alice@example.com")));
        assert_ne!(user_id(&h), user_id(&user_hash("bob")));
    }
}
