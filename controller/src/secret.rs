//! Files holding secrets (API keys, credentials, the verdict key) are used only when nobody
//! but their owner can read them: the one check every reader of such a file makes.

use std::os::unix::fs::PermissionsExt as _;

/// The permission bits of a file's metadata if group or others may read or write it; `None`
/// when only its owner can.
pub fn exposed_mode(meta: &std::fs::Metadata) -> Option<u32> {
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}
