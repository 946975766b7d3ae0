//! Helpers shared by the unit tests.

/// A small deterministic generator (xorshift64): each call gives a number below its argument.
/// Randomized tests use it so that a failure repeats exactly.
pub fn below(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed;
    move |below| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % below
    }
}
