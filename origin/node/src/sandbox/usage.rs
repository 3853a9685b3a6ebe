//! Every sandbox create as an event (user, runtime, hot or not): what usage recording and the predictor hear.

use prewarm_shared::{Digest, RuntimeRef};
use tokio::sync::broadcast;

use crate::metrics::Outcome;

/// One sandbox create that succeeded.
#[derive(Debug, Clone)]
pub struct Created {
    /// The sandbox's user, as the service knows it.
    pub user_id: String,
    /// The runtime as asked for (a tag reference or a digest).
    pub runtime: RuntimeRef,
    pub digest: Digest,
    /// Hot (warm at once), cold (started its warm) or joined (a warm already under way).
    pub outcome: Outcome,
}

/// Creates kept for a slow listener before the oldest are dropped (it is told how many).
pub const CREATES_BUFFER: usize = 4096;

/// The sender side: cheap to clone; sending with no listener is a no-op.
pub(crate) fn channel() -> broadcast::Sender<Created> {
    broadcast::channel(CREATES_BUFFER).0
}
