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

/// How the pins' bpffs came to be there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bpffs {
    /// Already mounted: it outlives this process.
    Found,
    /// Mounted by this process. `private` says whether this process's mount namespace is another
    /// than PID 1's (`None`: cannot tell). In a private namespace (`ip netns exec` makes one per
    /// command) the mount, and with it every pin and the XDP attachment, ends with the last
    /// process of the namespace.
    Mounted { private: Option<bool> },
}

impl Bpffs {
    /// Whether enforcement may end with this process: the mount is ours and not (known to be)
    /// in the host's mount namespace.
    pub fn ends_with_process(self) -> bool {
        matches!(self, Self::Mounted { private } if private != Some(false))
    }
}

/// Whether this process's mount namespace differs from PID 1's; `None` when either link cannot
/// be read (e.g. a hidden /proc/1).
fn private_mount_namespace() -> Option<bool> {
    let mine = std::fs::read_link("/proc/self/ns/mnt").ok()?;
    let init = std::fs::read_link("/proc/1/ns/mnt").ok()?;
    Some(mine != init)
}

/// Mounts bpffs at `path` unless it already is a bpffs mount.
pub fn ensure_bpffs(path: &Path) -> Result<Bpffs, DataplaneError> {
    let mount_err = |source| DataplaneError::MountBpffs {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(mount_err)?;
    if is_bpffs(path).map_err(mount_err)? {
        return Ok(Bpffs::Found);
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
    let private = private_mount_namespace();
    let mounted = Bpffs::Mounted { private };
    if mounted.ends_with_process() {
        tracing::error!(
            path = %path.display(),
            "mounted bpffs inside a private mount namespace: the pins and the XDP attachment end with this process, enforcement will NOT survive it (run in the host's mount namespace, e.g. `nsenter --net=/run/netns/NAME`, not `ip netns exec`)"
        );
    } else {
        tracing::info!(path = %path.display(), "mounted bpffs");
    }
    Ok(mounted)
}
