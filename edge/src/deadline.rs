//! Racing work against a deadline without an async runtime (the Workers platform supplies timers).

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

/// Runs `work` until it finishes or `deadline` fires, whichever is first; `None` means the
/// deadline won and `work` was dropped.
///
/// # Cancel safety
/// Dropping `work` drops whatever it was awaiting. On Workers an abandoned subrequest is
/// cancelled by the runtime when the request ends; nothing half-done is ever cached, because
/// caching happens only after the work completes.
pub async fn race<F: Future, D: Future<Output = ()>>(work: F, deadline: D) -> Option<F::Output> {
    let mut work = pin!(work);
    let mut deadline = pin!(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::future::{pending, ready};
    use std::task::{Context, Waker};

    /// Polls a future that needs no wakeups to completion (test fakes never pend for real).
    pub(crate) fn run<F: Future>(fut: F) -> F::Output {
        let mut fut = pin!(fut);
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..1000 {
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
        panic!("future did not finish: a fake pended forever");
    }

    #[test]
    fn work_wins_ties_and_deadline_cuts_hangs() {
        assert_eq!(run(race(ready(7), ready(()))), Some(7));
        assert_eq!(run(race(ready(7), pending())), Some(7));
        assert_eq!(run(race(pending::<u8>(), ready(()))), None);
    }
}
