//! Progress display: an `indicatif` bar on a terminal (epoch, step, losses, ETA), and the
//! lines that stay (one per epoch) handed to the caller's [`Log`], which decides where they go
//! (the command line prints them to stderr; the library itself prints nothing).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;

/// Where a long-running library call reports its lines (stages, epochs).
#[derive(Clone)]
pub struct Log(Arc<dyn Fn(&str) + Send + Sync>);

impl Log {
    /// Report each line through `f`.
    pub fn new(f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        Log(Arc::new(f))
    }

    /// Drop every line.
    pub fn none() -> Self {
        Log::new(|_| {})
    }

    /// Report one line.
    pub fn line(&self, text: &str) {
        (self.0)(text)
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}

/// The progress of a run measured in steps.
pub struct Progress {
    bar: Option<ProgressBar>,
    tag: String,
    log: Log,
}

impl Progress {
    /// Progress over `total` steps, `done` already taken (a resumed run); a bar unless
    /// `quiet` or stderr is not a terminal; lines go to `log`.
    pub fn new(total: u64, done: u64, quiet: bool, log: Log) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { bar: None, tag: String::new(), log };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} steps {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_position(done);
        Self { bar: Some(bar), tag: String::new(), log }
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

    /// A line that stays (above the bar on a terminal, through the log otherwise).
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(b) => b.println(format!("{}{text}", self.tag)),
            None => self.log.line(&format!("{}{text}", self.tag)),
        }
    }

    /// Remove the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
