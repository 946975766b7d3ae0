//! Programs that drive ipwarden on the namespace test bed of `ipwarden-tests`, as root:
//! `ipwarden-bench` (behind `cargo xtask bench`) and `ipwarden-demo` (behind `cargo xtask
//! demo`). This library holds the benchmark's scenarios and report, which only the bench binary
//! uses; the topology, traffic and daemon helpers come from `ipwarden-tests`.

pub mod bench;
pub mod fleet_demo;
