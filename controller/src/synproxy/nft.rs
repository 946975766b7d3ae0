//! The nftables side: a table of ipwarden's own whose `synproxy` rule completes the handshakes
//! whose cookie SYN-ACK the program sent, and the conntrack setting that rule needs.
//!
//! The client's ACK comes with no connection conntrack knows (the SYN never reached the stack),
//! so with `nf_conntrack_tcp_loose = 0` it is `invalid`, and the rule hands it to SYNPROXY:
//! it checks the cookie, sends the listener the SYN the client sent us (its options decoded from
//! the cookie and the timestamp echo), and from then on translates sequence numbers and
//! timestamps between the two. The table outlives the daemon, as the program's pins do: the
//! program keeps answering SYNs while the daemon restarts.

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// The table's name (family `inet`: IPv4 and IPv6).
pub const TABLE: &str = "ipwarden_synproxy";

/// What the table holds for `ports`, with the MSS and window scale SYNPROXY itself would
/// advertise (only used when a SYN reaches the rule untracked, which the program prevents; kept
/// equal to the program's so the two never disagree).
pub fn table(ports: &[u16], mss: u16, wscale: u8) -> String {
    let ports = ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let wscale = if wscale > 14 {
        String::new()
    } else {
        format!(" wscale {wscale}")
    };
    // Replaced whole in one transaction: `add` makes sure it exists, `delete` empties it.
    format!(
        "add table inet {TABLE}\n\
         delete table inet {TABLE}\n\
         table inet {TABLE} {{\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter - 10; policy accept;\n\
         \t\ttcp dport {{ {ports} }} ct state invalid,untracked synproxy mss {mss}{wscale} timestamp sack-perm\n\
         \t}}\n\
         }}\n"
    )
}

/// How long one `nft` run may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `nft -f -` with `script` on its input.
fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft: {e} (install nftables)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let deadline = Instant::now() + NFT_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.by_ref().take(4096).read_to_string(&mut err);
                }
                return Err(format!(
                    "nft failed ({status}): {}",
                    err.trim().replace('\n', " ")
                ));
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("nft did not finish in {NFT_TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("waiting for nft: {e}")),
        }
    }
}

/// Installs (or replaces) the table, then sets `nf_conntrack_tcp_loose = 0` (conntrack is loaded
/// by the table's `ct` expression): without it conntrack would pick the ACK up as a connection
/// in the middle and the listener would reset it.
pub fn install(ports: &[u16], mss: u16, wscale: u8) -> Result<(), String> {
    nft(&table(ports, mss, wscale))?;
    let loose = "/proc/sys/net/netfilter/nf_conntrack_tcp_loose";
    std::fs::write(loose, "0").map_err(|e| format!("setting {loose} to 0: {e}"))
}

/// Whether the table is in place with the `synproxy` rule (for `status`).
pub fn present() -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("synproxy")
        })
}

/// Removes the table if it exists (the synproxy is off, or the program is detached).
pub fn remove() -> Result<(), String> {
    nft(&format!(
        "add table inet {TABLE}\ndelete table inet {TABLE}\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_the_ports_and_the_listeners_options() {
        let t = table(&[80, 443], 1460, 10);
        assert!(t.contains("tcp dport { 80, 443 } ct state invalid,untracked synproxy mss 1460 wscale 10 timestamp sack-perm"), "{t}");
        assert!(t.starts_with("add table inet ipwarden_synproxy\ndelete table"));
        assert!(!table(&[80], 1460, 255).contains("wscale"));
    }
}
