//! A private bpffs instance per test.
//!
//! Each mount of bpffs is its own instance, so a test's pins never meet another test's or the
//! host's. It is mounted in this process's mount namespace, before any `ip netns exec` (which
//! creates a new mount namespace per command, so a bpffs mounted *there* would vanish with the
//! command).

use std::path::Path;

use tempfile::TempDir;

use crate::cmd;

/// A bpffs mounted on a temporary directory; unmounted and removed on drop.
pub struct BpfFs {
    dir: TempDir,
}

impl BpfFs {
    /// Mounts a fresh bpffs.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ipw-bpffs-")
            .tempdir()
            .expect("creating a temporary directory");
        let path = dir.path().to_str().expect("utf-8 temp path");
        cmd::run("mount", &["-t", "bpf", "bpf", path]);
        Self { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for BpfFs {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for BpfFs {
    fn drop(&mut self) {
        // Lazy: pins may still be referenced by a dying process. Unmounting releases the pins,
        // which detaches any program still attached through them.
        let _ = cmd::output("umount", &["-l", self.dir.path().to_str().unwrap_or("")]);
    }
}
