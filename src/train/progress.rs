//! Progress display: an `indicatif` bar on a terminal (epoch, step, losses, ETA), one line
//! per epoch otherwise (logs, CI, pipes).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// The progress of a run measured in steps.
pub struct Progress {
    bar: Option<ProgressBar>,
    tag: String,
}

impl Progress {
    /// Progress over `total` steps, `done` already taken (a resumed run).
    pub fn new(total: u64, done: u64, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { bar: None, tag: String::new() };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_position(done);
        Self { bar: Some(bar), tag: String::new() }
    }

    /// Prefix every line with `tag` (when several runs share one terminal).
    pub fn tagged(mut self, tag: Option<&str>) -> Self {
        self.tag = tag.map(|t| format!("[{t}] ")).unwrap_or_default();
        self
    }

    /// Show the current epoch.
    pub fn set_epoch(&self, epoch: usize, total: usize) {
        if let Some(b) = &self.bar {
            b.set_prefix(format!("epoch {epoch}/{total}"));
        }
    }

    /// One step done, with the losses to show.
    pub fn step(&self, message: String) {
        if let Some(b) = &self.bar {
            b.set_message(message);
            b.inc(1);
        }
    }

    /// A line that stays (above the bar on a terminal, on stderr otherwise).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(format!("{}{text}", self.tag)),
            None => eprintln!("{}{text}", self.tag),
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
