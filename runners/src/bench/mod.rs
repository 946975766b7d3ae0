//! `cargo xtask bench`: reproducible figures, written to `bench/RESULTS.md` and a plot.
//!
//! The VMs this runs on change CPU speed by up to 2x for seconds at a time, so every figure is
//! taken in interleaved rounds against a baseline measured in the same run, and reported as
//! medians, minima and ratios. Nothing here asserts a timing.

pub mod accuracy;
pub mod controller;
pub mod daemon;
pub mod deployed;
pub mod fleet;
pub mod frames;
pub mod kernel;
pub mod kernel_section;
pub mod listing;
pub mod live;
pub mod live_section;
pub mod more_sections;
pub mod report;
pub mod sources;
pub mod spray_section;
pub mod synproxy_legit;
pub mod synproxy_section;
pub mod verdict;

use std::path::PathBuf;

/// What to run and where to write.
#[derive(Clone, Debug)]
pub struct Options {
    /// Fewer rounds and repetitions (for CI-sized runs, under 10 minutes).
    pub quick: bool,
    /// Output directory (`bench/`).
    pub out: PathBuf,
}

/// Median and minimum of a sample.
pub fn stats(xs: &[f64]) -> (f64, f64) {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.is_empty() {
        f64::NAN
    } else if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (median, v.first().copied().unwrap_or(f64::NAN))
}
