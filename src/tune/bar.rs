//! The progress bar `tune`'s stages draw on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// A progress bar on stderr (redrawn on a terminal; a line per quarter otherwise).
pub(super) struct Bar {
    label: &'static str,
    total: usize,
    quiet: bool,
    terminal: bool,
    quarter: usize,
    last: Option<Instant>,
    start: Instant,
}

impl Bar {
    pub(super) fn new(label: &'static str, total: usize, quiet: bool) -> Bar {
        let terminal = std::io::stderr().is_terminal();
        Bar { label, total: total.max(1), quiet, terminal, quarter: 1, last: None, start: Instant::now() }
    }

    pub(super) fn set_total(&mut self, total: usize) {
        self.total = total.max(1);
    }

    pub(super) fn update(&mut self, done: usize, detail: &str) {
        if self.quiet {
            return;
        }
        let pct = (done.min(self.total) * 100) / self.total;
        if self.terminal {
            if self.last.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) && done < self.total {
                return;
            }
            self.last = Some(Instant::now());
            let filled = pct * 24 / 100;
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r{} [{}{}] {pct:>3}% {:.0} s, {detail}\x1b[K",
                self.label,
                "#".repeat(filled),
                "-".repeat(24 - filled),
                self.start.elapsed().as_secs_f64()
            );
            let _ = err.flush();
        } else {
            while self.quarter <= 3 && pct >= 25 * self.quarter {
                eprintln!(
                    "{}: {}% ({:.0} s, {detail})",
                    self.label,
                    25 * self.quarter,
                    self.start.elapsed().as_secs_f64()
                );
                self.quarter += 1;
            }
        }
    }

    pub(super) fn finish(&mut self, summary: &str) {
        if self.quiet {
            return;
        }
        if self.terminal {
            eprintln!();
        }
        eprintln!("{}: done in {:.1} s: {summary}", self.label, self.start.elapsed().as_secs_f64());
    }
}
