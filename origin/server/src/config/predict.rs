//! `[predict]`: which warming policy the node runs, on which clock, and how long usage is kept.

use serde::Deserialize;

/// `[predict]`: predictive warming (docs/PREDICTION.md, "In the origin").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictConfig {
    /// `none`, `keepalive`, `popular`, `user-history`, `hybrid` or `prewarm`. Default `none`:
    /// on the synthetic trace no policy beat the LRU alone by more than 0.1 % of cold starts
    /// at one node, and the predictive ones spend warm work that is never used
    /// (docs/PREDICTION.md), so warming ahead of demand is opted into, not imposed.
    #[serde(default = "default_policy")]
    pub policy: String,
    /// `system` (Unix time, ticked every 60 s) or `manual`: time stands still until
    /// `POST /v1/predict/clock` sets it, for tests that drive a trace through the server as
    /// the simulator does. Never `manual` in production. Default `system`.
    #[serde(default = "default_clock")]
    pub clock: String,
    /// Hours of recorded usage kept (in Redis when configured, else the durable tier) and
    /// replayed into the policy when the origin starts; older hours are deleted. Default 168.
    #[serde(default = "default_retention")]
    pub retention_hours: u64,
    /// Creates recorded per hour per node; more are still seen by the policy but not stored.
    /// Default 5000.
    #[serde(default = "default_max_events")]
    pub max_events_per_hour: usize,
}

impl Default for PredictConfig {
    fn default() -> Self {
        Self {
            policy: default_policy(),
            clock: default_clock(),
            retention_hours: default_retention(),
            max_events_per_hour: default_max_events(),
        }
    }
}

impl PredictConfig {
    /// The policy named by `policy`.
    ///
    /// # Errors
    /// A message naming the accepted policies.
    pub fn policy_kind(&self) -> Result<prewarm_predict::PolicyKind, String> {
        self.policy.parse().map_err(|_| {
            let names: Vec<&str> = prewarm_predict::PolicyKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect();
            format!(
                "predict.policy {:?} is not one of {}",
                self.policy,
                names.join(", ")
            )
        })
    }

    /// Whether the clock is set by `POST /v1/predict/clock`.
    pub fn manual_clock(&self) -> Result<bool, String> {
        match self.clock.as_str() {
            "system" => Ok(false),
            "manual" => Ok(true),
            other => Err(format!(
                "predict.clock {other:?} is not one of system, manual"
            )),
        }
    }

    /// Checks every key.
    pub(super) fn check(&self) -> Result<(), String> {
        self.policy_kind()?;
        self.manual_clock()?;
        if self.retention_hours == 0 || self.max_events_per_hour == 0 {
            return Err("predict: retention_hours and max_events_per_hour must be above 0".into());
        }
        if self.max_events_per_hour > MAX_EVENTS_PER_HOUR {
            return Err(format!(
                "predict.max_events_per_hour is at most {MAX_EVENTS_PER_HOUR} (one record of an hour stays under 1 MiB)"
            ));
        }
        Ok(())
    }
}

/// Most creates one hour's usage record may hold (about 80 bytes each in JSON).
pub const MAX_EVENTS_PER_HOUR: usize = 10_000;

fn default_policy() -> String {
    "none".into()
}
fn default_clock() -> String {
    "system".into()
}
fn default_retention() -> u64 {
    168
}
fn default_max_events() -> usize {
    5000
}
