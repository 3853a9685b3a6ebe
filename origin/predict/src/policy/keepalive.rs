//! `keepalive`: keep a runtime warm for a fixed time after its last use, then let it go (Lambda ~10 min, Azure ~20 min).

use std::collections::HashMap;

use super::{Plan, Predictor, Usage};
use crate::{RuntimeId, Secs};

/// Fixed keep-alive: releases a runtime `ttl` seconds after its last use.
#[derive(Debug)]
pub struct KeepAlive {
    ttl: Secs,
    last_use: HashMap<RuntimeId, Secs>,
}

impl KeepAlive {
    /// Lambda's ~10 minutes.
    pub const DEFAULT_TTL: Secs = 600;

    pub fn new(ttl: Secs) -> Self {
        Self {
            ttl,
            last_use: HashMap::new(),
        }
    }
}

impl Predictor for KeepAlive {
    fn name(&self) -> &'static str {
        "keepalive"
    }

    fn observe(&mut self, u: &Usage) {
        self.last_use.insert(u.runtime, u.t);
    }

    fn tick(&mut self, now: Secs) -> Plan {
        let ttl = self.ttl;
        let mut release: Vec<RuntimeId> = self
            .last_use
            .iter()
            .filter(|(_, t)| now >= **t + ttl)
            .map(|(r, _)| *r)
            .collect();
        release.sort();
        for r in &release {
            self.last_use.remove(r);
        }
        Plan {
            warm: Vec::new(),
            release,
        }
    }
}
