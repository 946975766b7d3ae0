//! Where the pins of one interface live, and making sure bpffs is there.

use std::{
    ffi::CString,
    io,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
};

use super::DataplaneError;

/// Where bpffs is normally mounted.
pub const DEFAULT_BPFFS: &str = "/sys/fs/bpf";

/// `statfs(2)` magic of bpffs (`BPF_FS_MAGIC` in linux/magic.h).
const BPF_FS_MAGIC: libc::__fsword_t = 0xcafe_4a11;

/// The pin directory of one interface: `<bpffs>/ipwarden/<iface>/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinDir {
    bpffs: PathBuf,
    iface: String,
}

impl PinDir {
    /// Pins for `iface` under the bpffs mounted at `bpffs`.
    pub fn new(bpffs: impl Into<PathBuf>, iface: impl Into<String>) -> Self {
        Self {
            bpffs: bpffs.into(),
            iface: iface.into(),
        }
    }

    /// The bpffs mount point.
    pub fn bpffs(&self) -> &Path {
        &self.bpffs
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The directory holding this interface's pins.
    pub fn dir(&self) -> PathBuf {
        self.bpffs.join("ipwarden").join(&self.iface)
    }

    /// The pin of one map.
    pub fn map(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    /// The pin of the XDP link.
    pub fn link(&self) -> PathBuf {
        self.dir().join("link")
    }
}

fn is_bpffs(path: &Path) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: an all-zero statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `st` is writable.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_type == BPF_FS_MAGIC)
}

/// Mounts bpffs at `path` unless it already is a bpffs mount.
pub fn ensure_bpffs(path: &Path) -> Result<(), DataplaneError> {
    let mount_err = |source| DataplaneError::MountBpffs {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(mount_err)?;
    if is_bpffs(path).map_err(mount_err)? {
        return Ok(());
    }
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| mount_err(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: all pointers are valid NUL-terminated strings; bpffs takes no data.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c_path.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(mount_err(io::Error::last_os_error()));
    }
    tracing::info!(path = %path.display(), "mounted bpffs");
    Ok(())
}
