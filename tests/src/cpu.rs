//! Running work on one CPU.
//!
//! The data plane's counters are per CPU, and what it keeps per source (the latest IPv6 address
//! of a /64) is only ordered within one CPU. A veth delivers a frame on the CPU that sent it, so
//! a test that asserts such an order sends from one CPU; the live benchmark keeps its generator
//! off the receiver's CPU the same way.

use anyhow::Context as _;
use nix::{
    sched::{CpuSet, sched_getaffinity, sched_setaffinity},
    unistd::Pid,
};

/// Runs `f` with the calling thread, and every thread it spawns meanwhile (they inherit the
/// mask), allowed only on `cpu`; the previous mask is restored afterwards, also on panic.
pub fn on_cpu<T>(cpu: usize, f: impl FnOnce() -> T) -> anyhow::Result<T> {
    let previous = sched_getaffinity(Pid::from_raw(0)).context("reading the CPU mask")?;
    let mut only = CpuSet::new();
    only.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    sched_setaffinity(Pid::from_raw(0), &only).with_context(|| format!("pinning to CPU {cpu}"))?;
    let _restore = Restore(previous);
    Ok(f())
}

struct Restore(CpuSet);

impl Drop for Restore {
    fn drop(&mut self) {
        // Failing to widen the mask again only costs parallelism: nothing to report.
        let _ = sched_setaffinity(Pid::from_raw(0), &self.0);
    }
}
