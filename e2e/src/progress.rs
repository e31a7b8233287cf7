//! The status line on stderr while waiting: redrawn in place on a terminal, a plain line every
//! few seconds otherwise (so that CI logs do not fill up).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const TTY_REFRESH: Duration = Duration::from_secs(1);
const LOG_INTERVAL: Duration = Duration::from_secs(5);

pub struct Progress {
    tty: bool,
    last: Option<(Instant, String)>,
}

impl Progress {
    pub fn on_stderr() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    pub fn show(&mut self, line: String) {
        let now = Instant::now();
        let due = match &self.last {
            None => true,
            Some((at, last)) if self.tty => *last != line || now.duration_since(*at) >= TTY_REFRESH,
            Some((at, _)) => now.duration_since(*at) >= LOG_INTERVAL,
        };
        if !due {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        // A progress line that cannot be written is not worth failing the run for.
        let _ = if self.tty {
            write!(stderr, "\r\x1b[K {line}")
        } else {
            writeln!(stderr, " {line}")
        };
        let _ = stderr.flush();
        self.last = Some((now, line));
    }

    /// Ends the line being redrawn, so that what follows starts on a line of its own.
    pub fn finish(&mut self) {
        if self.tty && self.last.is_some() {
            eprintln!();
        }
        self.last = None;
    }
}
