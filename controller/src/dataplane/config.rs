//! The `CONFIG` map: one `DataplaneConfig` holding the generation (which invalidates the
//! program's cached verdicts), monitor mode, the `V6_FINE` flag and the block index's
//! authority (see `ipwarden_common::index`).

use aya::maps::lpm_trie::Key;
use ipnet::IpNet;
use ipwarden_common::{DataplaneConfig, names};

use super::{Dataplane, DataplaneError};
use crate::net;

impl Dataplane {
    /// Runs a change to the block set or the allowlist, then gives the data plane a new
    /// generation, whatever the change's outcome: the program recomputes every verdict it cached
    /// before (see `ipwarden_common::verdict`). The generation is 59 random bits rather than a
    /// count, so that two processes changing the maps at once cannot both write the same "next"
    /// value.
    ///
    /// `net` is the entry changed: an IPv6 entry longer than /64 sets
    /// `DataplaneConfig::V6_FINE` when added and makes us re-read the IPv6 tries when removed
    /// (rare: every other change keeps the flag as it is, so bulk loads stay cheap). Two
    /// processes changing such entries at the same instant could leave the flag stale; in normal
    /// operation the daemon is the only writer.
    pub(super) fn changing<T>(
        &mut self,
        net: IpNet,
        adds: bool,
        change: impl FnOnce(&mut Self) -> Result<T, DataplaneError>,
    ) -> Result<T, DataplaneError> {
        let vouched = self.withdraw_authority()?;
        let out = change(self);
        let fine = match net.trunc() {
            IpNet::V6(n) if n.prefix_len() > net::V6_SOURCE_PREFIX => {
                if adds {
                    Some(true)
                } else {
                    Some(self.v6_fine()?)
                }
            }
            _ => None,
        };
        // The change kept the index's rule if it held before and the change went through.
        self.new_generation(fine, vouched && out.is_ok())?;
        out
    }

    /// Withdraws the block index's authority for a change (the program asks the hash for every
    /// key meanwhile); whether it was given, so that the change may give it back.
    pub(super) fn withdraw_authority(&mut self) -> Result<bool, DataplaneError> {
        let mut cfg = self.read_config()?;
        if !cfg.index_authoritative() {
            return Ok(false);
        }
        cfg.authority = 0;
        self.write_config(cfg)?;
        Ok(true)
    }

    /// Gives the block index its authority (see `ipwarden_common::index`), with a new
    /// generation. Only for maps whose every exact key this build placed: after a resync (which
    /// empties the index and puts every entry again), or on maps only this build has written.
    pub fn vouch_for_index(&mut self) -> Result<(), DataplaneError> {
        if self.index.v4.is_none() || self.index.v6.is_none() {
            return Ok(());
        }
        self.new_generation(None, true)
    }

    /// Whether the block index has its authority now.
    pub fn index_vouched(&self) -> Result<bool, DataplaneError> {
        Ok(self.read_config()?.index_authoritative())
    }

    pub(super) fn read_config(&self) -> Result<DataplaneConfig, DataplaneError> {
        self.config
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::CONFIG, e))
    }

    /// Whether any IPv6 block or allow entry is longer than /64 (see
    /// `DataplaneConfig::V6_FINE`). Reads the two IPv6 tries' keys.
    fn v6_fine(&self) -> Result<bool, DataplaneError> {
        let longer = |k: &Key<[u8; 16]>| u32::from(net::V6_SOURCE_PREFIX) < k.prefix_len();
        for k in self.block_net_v6.keys() {
            let k = k.map_err(|e| DataplaneError::map("reading keys", names::BLOCK_NET_V6, e))?;
            if longer(&k) {
                return Ok(true);
            }
        }
        for k in self.allow_v6.keys() {
            let k = k.map_err(|e| DataplaneError::map("reading keys", names::ALLOW_V6, e))?;
            if longer(&k) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Writes a fresh generation, the `V6_FINE` flag when `fine` says what it must be, and the
    /// index's authority when `vouch` (else none).
    pub(super) fn new_generation(
        &mut self,
        fine: Option<bool>,
        vouch: bool,
    ) -> Result<(), DataplaneError> {
        let mut cfg = self.read_config()?;
        match fine {
            Some(true) => cfg.flags |= DataplaneConfig::V6_FINE,
            Some(false) => cfg.flags &= !DataplaneConfig::V6_FINE,
            None => {}
        }
        let mut fresh = cfg.generation;
        // A generation whose low half is 0 could not carry the authority.
        while fresh == cfg.generation || fresh as u32 == 0 {
            let mut bytes = [0u8; 8];
            // SAFETY: the buffer is valid for its length; getrandom(2) writes at most that much.
            let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
            if n != bytes.len() as isize {
                return Err(DataplaneError::Syscall {
                    op: "getrandom",
                    map: names::CONFIG,
                    source: std::io::Error::last_os_error(),
                });
            }
            fresh = u64::from_ne_bytes(bytes) >> 5;
        }
        cfg.generation = fresh;
        cfg.authority = if vouch { fresh as u32 } else { 0 };
        self.write_config(cfg)
    }

    /// The data plane's current generation (changes with every block-set or allowlist change).
    pub fn generation(&self) -> Result<u64, DataplaneError> {
        let cfg = self
            .config
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::CONFIG, e))?;
        Ok(cfg.generation)
    }

    /// Whether monitor (dry-run) mode is on.
    pub fn monitor(&self) -> Result<bool, DataplaneError> {
        let cfg = self
            .config
            .get(&0, 0)
            .map_err(|e| DataplaneError::map("reading", names::CONFIG, e))?;
        Ok(cfg.monitor())
    }

    /// Switches monitor mode: when on, would-be drops are counted as `monitored` and passed.
    pub fn set_monitor(&mut self, on: bool) -> Result<(), DataplaneError> {
        self.set_flag(DataplaneConfig::MONITOR, on)
    }

    /// Sets or clears one `DataplaneConfig` flag, keeping the rest of the config.
    pub(super) fn set_flag(&mut self, flag: u32, on: bool) -> Result<(), DataplaneError> {
        let mut cfg = self.read_config()?;
        if on {
            cfg.flags |= flag;
        } else {
            cfg.flags &= !flag;
        }
        self.write_config(cfg)
    }

    fn write_config(&mut self, cfg: DataplaneConfig) -> Result<(), DataplaneError> {
        self.config
            .set(0, cfg, 0)
            .map_err(|e| DataplaneError::map("writing", names::CONFIG, e))
    }
}
