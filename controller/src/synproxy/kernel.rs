//! What the SYN-ACKs must advertise to match the listener, read from the running kernel the way
//! it computes them itself, and what the synproxy needs of the kernel.

use std::path::Path;

/// Reads one sysctl's text (`net/ipv4/tcp_rmem`), `None` when absent.
fn sysctl(name: &str) -> Option<String> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The receive window scale a listener's new connection gets (`tcp_select_initial_window`):
/// `ilog2(max(tcp_rmem[2], rmem_max)) - 15`, clamped to 0..=14; above 14 (255) when window
/// scaling is off. A listener that clamps its window (`TCP_WINDOW_CLAMP`) gets less: the
/// configuration's `wscale` overrides this.
pub fn listener_wscale() -> u8 {
    if sysctl("net/ipv4/tcp_window_scaling").as_deref() == Some("0") {
        return u8::MAX;
    }
    let tcp_rmem_max = sysctl("net/ipv4/tcp_rmem")
        .and_then(|s| s.split_whitespace().nth(2)?.parse::<u64>().ok())
        .unwrap_or(6 << 20);
    let rmem_max = sysctl("net/core/rmem_max")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    wscale_for(tcp_rmem_max.max(rmem_max))
}

/// The scale for a receive space of `space` bytes (at most 65 535 << 14, the largest window).
pub fn wscale_for(space: u64) -> u8 {
    let space = space.clamp(1, 65_535 << 14);
    (space.ilog2() as i64 - 15).clamp(0, 14) as u8
}

/// The smallest MTU among `ifaces` (1500 when none can be read).
pub fn smallest_mtu(ifaces: &[String]) -> u32 {
    ifaces
        .iter()
        .filter_map(|i| {
            std::fs::read_to_string(format!("/sys/class/net/{i}/mtu"))
                .ok()?
                .trim()
                .parse::<u32>()
                .ok()
        })
        .min()
        .unwrap_or(1500)
}

/// The TTL / hop limit of SYN-ACKs: the host's default.
pub fn default_ttl() -> u8 {
    sysctl("net/ipv4/ip_default_ttl")
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

/// Whether the running kernel has the cookie helpers (Linux 6.0: `bpf_tcp_raw_gen_syncookie_*`).
pub fn has_cookie_helpers() -> Result<(), String> {
    let release = sysctl("kernel/osrelease").unwrap_or_default();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if (major, minor) >= (6, 0) {
        Ok(())
    } else {
        Err(format!(
            "kernel {release} has no bpf_tcp_raw_gen_syncookie helpers (Linux 6.0 or later)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_the_kernels() {
        // Debian's default tcp_rmem max (6 MiB): 7; this machine's 32 MiB: 10; tiny: 0.
        assert_eq!(wscale_for(6 << 20), 7);
        assert_eq!(wscale_for(32 << 20), 10);
        assert_eq!(wscale_for(65_535), 0);
        assert_eq!(wscale_for(u64::MAX), 14);
    }
}
