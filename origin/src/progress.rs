//! `prewarm pull`'s progress bars on stderr: the terminal face of [`PullProgress`].

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use prewarm_client::pull::{PullProgress, Stage};

/// One bar per stage, drawn on stderr.
pub(crate) struct Bars {
    current: Mutex<Option<(Stage, ProgressBar)>>,
}

impl Bars {
    /// Bars, only when asked for and stderr is a terminal.
    pub(crate) fn if_wanted(wanted: bool) -> Option<Arc<dyn PullProgress>> {
        if !wanted || !std::io::stderr().is_terminal() {
            return None;
        }
        Some(Arc::new(Bars {
            current: Mutex::new(None),
        }))
    }
}

impl PullProgress for Bars {
    fn report(&self, stage: Stage, done: u64, total: u64) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().map(|(s, _)| *s) != Some(stage) {
            *current = Some((stage, progress_bar(stage)));
        }
        if let Some((_, bar)) = current.as_ref() {
            bar.set_length(total);
            bar.set_position(done);
        }
    }

    fn finish(&self, stage: Stage) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().map(|(s, _)| *s) == Some(stage) {
            if let Some((_, bar)) = current.take() {
                bar.finish_and_clear();
            }
        }
    }
}

/// A bar for `stage` on stderr.
fn progress_bar(stage: Stage) -> ProgressBar {
    let (template, message) = match stage {
        Stage::Download => (
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            "downloading",
        ),
        Stage::Materialise => ("{msg} [{bar:30}] {pos}/{len} entries", "materialising"),
    };
    let style = ProgressStyle::with_template(template)
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    // Drawn from the first report on, which brings the length: never a full bar of 0/0.
    let bar = ProgressBar::hidden()
        .with_style(style)
        .with_message(message);
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar
}
