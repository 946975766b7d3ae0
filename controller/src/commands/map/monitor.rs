//! `ipwarden map monitor on|off`.

use ipwarden::cli::{Switch, Target};

pub fn run(state: Switch, target: &Target) -> anyhow::Result<()> {
    let on = state == Switch::On;
    crate::commands::pins::open(target)?.set_monitor(on)?;
    println!(
        "monitor mode {} on {}",
        if on {
            "on: would-be drops pass and are counted"
        } else {
            "off: blocked sources are dropped"
        },
        target.iface
    );
    Ok(())
}
