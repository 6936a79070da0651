//! Progress of a long scan: a bar on a terminal, log lines otherwise.

use std::time::{Duration, Instant};

use schemas::Resource;

/// A progress bar on a terminal; otherwise a log line every 5 s.
pub(super) enum Progress {
    Bar(indicatif::ProgressBar),
    Lines { last: Instant },
}

impl Progress {
    pub(super) fn new(resource: Resource) -> Progress {
        use std::io::IsTerminal;
        if !std::io::stderr().is_terminal() {
            return Progress::Lines {
                last: Instant::now(),
            };
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} objects, {per_sec}, ETA {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar.set_prefix(resource.as_str());
        Progress::Bar(bar)
    }

    /// Moves the bar to `objects`; whether a log line is due instead.
    pub(super) fn due(&mut self, objects: u64, total: Option<u64>) -> bool {
        match self {
            Progress::Bar(bar) => {
                if let Some(total) = total {
                    bar.set_length(total.max(objects));
                }
                bar.set_position(objects);
                false
            }
            Progress::Lines { last } => {
                let due = last.elapsed() >= Duration::from_secs(5);
                if due {
                    *last = Instant::now();
                }
                due
            }
        }
    }

    pub(super) fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish();
        }
    }
}
