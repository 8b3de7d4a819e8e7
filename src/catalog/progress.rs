//! Progress of a long download or hash on stderr, so a user knows a pull is alive and how long it takes.
//!
//! On a terminal it is one line redrawn in place (bytes, percent, MB/s), at most ten times a second. When
//! stderr is a file or a pipe (CI logs), redrawing would leave hundreds of lines, so it prints a plain
//! line at 25 %, 50 % and 75 % and one when done. Hand-written to avoid a dependency.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a terminal line is redrawn at most.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// Width of the `[####----]` bar in characters.
const BAR_WIDTH: u64 = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Hidden,
    Terminal,
    Lines,
}

/// A progress reporter for one stream of bytes.
pub(crate) struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last_draw: Option<Instant>,
    /// Next quarter (1..=3) to announce in line mode.
    next_quarter: u64,
    mode: Mode,
    finished: bool,
}

impl Progress {
    /// A reporter for `label`, expecting `total` bytes if known; silent when `quiet`.
    pub(crate) fn new(label: impl Into<String>, total: Option<u64>, quiet: bool) -> Progress {
        let mode = if quiet {
            Mode::Hidden
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Lines
        };
        Progress {
            label: label.into(),
            total: total.filter(|&t| t > 0),
            done: 0,
            start: Instant::now(),
            last_draw: None,
            next_quarter: 1,
            mode,
            finished: false,
        }
    }

    /// `done` bytes so far.
    pub(crate) fn update(&mut self, done: u64) {
        self.done = done;
        match self.mode {
            Mode::Hidden => {}
            Mode::Terminal => {
                let due = self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW_EVERY);
                if due {
                    self.draw_terminal();
                }
            }
            Mode::Lines => {
                let Some(total) = self.total else { return };
                while self.next_quarter <= 3
                    && done.saturating_mul(4) >= total.saturating_mul(self.next_quarter)
                {
                    eprintln!("{}: {}% ({})", self.label, self.next_quarter * 25, self.amounts());
                    self.next_quarter += 1;
                }
            }
        }
    }

    /// The stream ended; print the final state once.
    pub(crate) fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        match self.mode {
            Mode::Hidden => {}
            Mode::Terminal => {
                self.draw_terminal();
                eprintln!();
            }
            Mode::Lines => eprintln!("{}: done ({})", self.label, self.amounts()),
        }
    }

    fn draw_terminal(&mut self) {
        self.last_draw = Some(Instant::now());
        let bar = match self.total {
            Some(total) => {
                let filled = (self.done.min(total) * BAR_WIDTH).checked_div(total).unwrap_or(0);
                let pct = (self.done.min(total) * 100).checked_div(total).unwrap_or(0);
                format!(
                    "[{}{}] {pct:>3}% ",
                    "#".repeat(filled as usize),
                    "-".repeat((BAR_WIDTH - filled) as usize)
                )
            }
            None => String::new(),
        };
        let mut err = std::io::stderr().lock();
        // `\r` back to the line start, `ESC[K` clears what a longer previous line left.
        let _ = write!(err, "\r{} {bar}{}\x1b[K", self.label, self.amounts());
        let _ = err.flush();
    }

    /// "45.2 MB / 92.9 MB, 12.3 MB/s"
    fn amounts(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { self.done as f64 / secs } else { 0.0 };
        let of = match self.total {
            Some(t) => format!(" / {}", format_bytes(t)),
            None => String::new(),
        };
        format!("{}{of}, {}/s", format_bytes(self.done), format_bytes(rate as u64))
    }
}

/// A byte count for people, in decimal units: `512 B`, `1.5 kB`, `98.4 MB`, `2.53 GB`.
pub fn format_bytes(n: u64) -> String {
    let x = n as f64;
    if n < 1_000 {
        format!("{n} B")
    } else if n < 1_000_000 {
        format!("{:.1} kB", x / 1e3)
    } else if n < 1_000_000_000 {
        format!("{:.1} MB", x / 1e6)
    } else {
        format!("{:.2} GB", x / 1e9)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_formatted_in_decimal_units() {
        assert_eq!(format_bytes(0), "0 B");
        assert_eq!(format_bytes(999), "999 B");
        assert_eq!(format_bytes(1_500), "1.5 kB");
        assert_eq!(format_bytes(98_362_432), "98.4 MB");
        assert_eq!(format_bytes(2_530_000_000), "2.53 GB");
    }

    #[test]
    fn line_mode_announces_each_quarter_once() {
        let mut p = Progress::new("x", Some(100), false);
        p.mode = Mode::Lines;
        p.update(30);
        assert_eq!(p.next_quarter, 2);
        p.update(30);
        assert_eq!(p.next_quarter, 2);
        p.update(100);
        assert_eq!(p.next_quarter, 4);
    }
}
