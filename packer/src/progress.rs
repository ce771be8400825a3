//! How the library reports progress without drawing it: the binary draws bars, tests count.

/// Progress of a long phase, in bytes. The binary draws bars; the library only counts.
pub trait Progress: Sync {
    fn start(&self, phase: &str, total_bytes: u64);
    fn advance(&self, bytes: u64);
    fn finish(&self);
    /// A line of what the far end is doing (a node's `update_fetch` output), shown as it comes.
    fn note(&self, _line: &str) {}
}

/// Progress that goes nowhere (tests, `--json` without a terminal).
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}
