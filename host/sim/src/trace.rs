//! The event trace: what a failing seed prints.

use std::collections::VecDeque;

use crate::Ms;

/// How many events a violation shows when the whole trace is not kept.
const LAST: usize = 80;

/// The last events (or all of them).
#[derive(Debug, Default)]
pub(crate) struct Trace {
    keep_all: bool,
    lines: VecDeque<String>,
}

impl Trace {
    pub(crate) fn new(keep_all: bool) -> Self {
        Self {
            keep_all,
            lines: VecDeque::new(),
        }
    }

    /// Record one event of `who` (a node, `dcs`, `fault`, `client`, `check`).
    pub(crate) fn push(&mut self, at: Ms, who: &str, text: impl AsRef<str>) {
        if !self.keep_all && self.lines.len() == LAST {
            self.lines.pop_front();
        }
        self.lines.push_back(format!(
            "{:>8.1}s {who:<6} {}",
            at as f64 / 1000.0,
            text.as_ref()
        ));
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}
