#![no_std]
// The program is the `ipwarden` binary in main.rs; the library holds what the benchmark
// baselines in src/bin/ share with it.

pub mod frame;
