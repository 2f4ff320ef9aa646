//! A progress bar on standard error, drawn only when it is a terminal (quiet when piped or
//! redirected) and at most ten times a second.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const REDRAW_EVERY: Duration = Duration::from_millis(100);
const BAR_WIDTH: u64 = 30;

/// A progress bar for one long operation.
pub struct ProgressBar {
    label: &'static str,
    unit: &'static str,
    enabled: bool,
    drawn: Option<Instant>,
}

impl ProgressBar {
    /// A bar labelled `label` counting pages, shown if standard error is a terminal.
    pub fn new(label: &'static str) -> ProgressBar {
        ProgressBar::counting(label, "pages")
    }

    /// A bar labelled `label` counting `unit`, shown if standard error is a terminal.
    pub fn counting(label: &'static str, unit: &'static str) -> ProgressBar {
        ProgressBar {
            label,
            unit,
            enabled: std::io::stderr().is_terminal(),
            drawn: None,
        }
    }

    /// Shows `done` of `total`.
    pub fn update(&mut self, done: u64, total: u64) {
        if !self.enabled
            || (done < total && self.drawn.is_some_and(|at| at.elapsed() < REDRAW_EVERY))
        {
            return;
        }
        self.drawn = Some(Instant::now());
        let total = total.max(1);
        let filled = (done.min(total) * BAR_WIDTH / total) as usize;
        let bar = "#".repeat(filled) + &".".repeat(BAR_WIDTH as usize - filled);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{} [{bar}] {:>3}% {done}/{total} {}",
            self.label,
            done.min(total) * 100 / total,
            self.unit
        );
        let _ = err.flush();
    }

    /// Ends the line the bar was drawn on.
    pub fn finish(&mut self) {
        if self.enabled && self.drawn.is_some() {
            eprintln!();
        }
    }
}
