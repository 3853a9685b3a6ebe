//! The predictor's clock: Unix seconds, or a manual clock a test sets (never both).

use std::sync::atomic::{AtomicU64, Ordering};

use prewarm_predict::Secs;

/// Where "now" comes from.
#[derive(Debug)]
pub enum Clock {
    /// Unix time.
    System,
    /// Stands still until [`Clock::set`]: `predict.clock = "manual"`, for tests.
    Manual(AtomicU64),
}

impl Clock {
    pub fn manual() -> Self {
        Clock::Manual(AtomicU64::new(0))
    }

    pub fn is_manual(&self) -> bool {
        matches!(self, Clock::Manual(_))
    }

    /// Seconds now.
    pub fn now(&self) -> Secs {
        match self {
            Clock::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock to `t`. Refuses a system clock and going backwards (policies
    /// expect calls in clock order).
    pub fn set(&self, t: Secs) -> Result<(), String> {
        match self {
            Clock::System => {
                Err("the predictor runs on the system clock (predict.clock = \"system\")".into())
            }
            Clock::Manual(now) => {
                let cur = now.load(Ordering::SeqCst);
                if t < cur {
                    return Err(format!("the clock is at {cur}: it cannot go back to {t}"));
                }
                now.store(t, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}
