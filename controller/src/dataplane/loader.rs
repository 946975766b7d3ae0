//! Loading, attaching, pinning and detaching the XDP program.

use std::{fmt, io};

use aya::{
    EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use ipwarden_common::{capacity, names};

use super::{DataplaneError, OBJECT, PinDir, ensure_bpffs};

/// How to attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttachMode {
    /// Native (driver) mode, falling back to generic (skb) mode with a warning.
    #[default]
    Auto,
    /// Native mode only.
    Driver,
    /// Generic mode only (works on any interface, slower: runs after the skb is built).
    Skb,
}

impl fmt::Display for AttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Driver => "driver",
            Self::Skb => "skb",
        })
    }
}

/// `max_entries` of every sized map, applied when the maps are created (an existing pinned map
/// keeps the size it was created with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacities {
    pub block_v4: u32,
    pub block_v6: u32,
    pub block_net_v4: u32,
    pub block_net_v6: u32,
    pub allow: u32,
    pub src_v4: u32,
    pub src_v6: u32,
    pub buckets: u32,
}

impl Default for Capacities {
    fn default() -> Self {
        Self {
            block_v4: capacity::BLOCK_V4,
            block_v6: capacity::BLOCK_V6,
            block_net_v4: capacity::BLOCK_NET_V4,
            block_net_v6: capacity::BLOCK_NET_V6,
            allow: capacity::ALLOW,
            src_v4: capacity::SRC_V4,
            src_v6: capacity::SRC_V6,
            buckets: capacity::BUCKETS,
        }
    }
}

impl Capacities {
    fn by_name(&self) -> [(&'static str, u32); 10] {
        [
            (names::BLOCK_V4, self.block_v4),
            (names::BLOCK_V6, self.block_v6),
            (names::BLOCK_NET_V4, self.block_net_v4),
            (names::BLOCK_NET_V6, self.block_net_v6),
            (names::ALLOW_V4, self.allow),
            (names::ALLOW_V6, self.allow),
            (names::SRC_V4, self.src_v4),
            (names::SRC_V6, self.src_v6),
            (names::BUCKET_V4, self.buckets),
            (names::BUCKET_V6, self.buckets),
        ]
    }
}

/// What to attach where.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    pub pins: PinDir,
    pub mode: AttachMode,
    pub capacities: Capacities,
}

/// A successful attachment.
#[derive(Clone, Debug)]
pub struct Attached {
    pub pins: PinDir,
    /// The mode the kernel accepted: `Driver` or `Skb`.
    pub kind: AttachKind,
}

/// How an interface came to be enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachKind {
    /// Native XDP in the driver.
    Driver,
    /// Generic XDP (the driver lacks native support).
    Skb,
    /// An attachment a previous daemon left pinned, reused without a gap.
    Adopted,
    /// Not a kernel attachment (the engine's in-memory enforcer, in tests and benchmarks).
    Memory,
}

impl AttachKind {
    /// Stable lower-case name, as `status` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Driver => "driver",
            Self::Skb => "skb",
            Self::Adopted => "adopted",
            Self::Memory => "memory",
        }
    }
}

impl std::fmt::Display for AttachKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether `pins` holds a pinned XDP link.
pub fn is_attached(pins: &PinDir) -> bool {
    pins.link().exists()
}

/// Loads the program, attaches it to `opts.pins.iface()` and pins maps and link, so the program
/// stays attached after this process exits and other processes can reopen the maps.
///
/// Existing map pins in the directory (left by a previous attachment whose link is gone) are
/// reused, so their block and allow entries carry over.
pub fn attach(opts: &AttachOptions) -> Result<Attached, DataplaneError> {
    if OBJECT.is_empty() {
        return Err(DataplaneError::ObjectMissing);
    }
    let pins = &opts.pins;
    let iface = pins.iface().to_owned();
    ensure_bpffs(pins.bpffs())?;
    if is_attached(pins) {
        return Err(DataplaneError::AlreadyAttached {
            iface,
            path: pins.link(),
        });
    }
    let dir = pins.dir();
    std::fs::create_dir_all(&dir).map_err(|source| DataplaneError::Fs {
        op: "creating pin directory",
        path: dir.clone(),
        source,
    })?;

    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(&dir);
    for (name, size) in opts.capacities.by_name() {
        loader.map_max_entries(name, size);
    }
    let mut ebpf = loader.load(OBJECT).map_err(|source| DataplaneError::Load {
        source: Box::new(source),
    })?;

    let program_err = |op, source| DataplaneError::Program {
        op,
        iface: iface.clone(),
        source: Box::new(source),
    };
    let program: &mut Xdp = ebpf
        .program_mut(names::PROGRAM)
        .ok_or_else(|| {
            program_err(
                "finding program ipwarden_xdp",
                aya::programs::ProgramError::NotLoaded,
            )
        })?
        .try_into()
        .map_err(|e| program_err("reading program type", e))?;
    program
        .load()
        .map_err(|e| program_err("verifying and loading", e))?;

    let (link_id, kind) = match opts.mode {
        AttachMode::Driver => (
            attach_in(program, &iface, XdpMode::Driver)?,
            AttachKind::Driver,
        ),
        AttachMode::Skb => (attach_in(program, &iface, XdpMode::Skb)?, AttachKind::Skb),
        AttachMode::Auto => match attach_in(program, &iface, XdpMode::Driver) {
            Ok(id) => (id, AttachKind::Driver),
            Err(err) => {
                tracing::warn!(
                    iface,
                    error = %error_chain(&err),
                    "native XDP not available, falling back to generic (skb) mode"
                );
                (attach_in(program, &iface, XdpMode::Skb)?, AttachKind::Skb)
            }
        },
    };
    let link = program
        .take_link(link_id)
        .map_err(|e| program_err("taking the XDP link", e))?;
    let link = FdLink::try_from(link).map_err(|e| DataplaneError::Link {
        op: "converting to a bpf_link (kernel >= 5.9 needed)",
        path: pins.link(),
        source: io::Error::other(e),
    })?;
    // Dropping `ebpf` after this closes our fds; the pinned link and maps keep everything alive.
    link.pin(pins.link()).map_err(|e| DataplaneError::Link {
        op: "pinning link at",
        path: pins.link(),
        source: io::Error::other(e),
    })?;
    tracing::info!(iface, mode = kind.name(), pins = %dir.display(), "XDP program attached");
    Ok(Attached {
        pins: pins.clone(),
        kind,
    })
}

fn attach_in(
    program: &mut Xdp,
    iface: &str,
    mode: XdpMode,
) -> Result<aya::programs::xdp::XdpLinkId, DataplaneError> {
    program
        .attach(iface, mode)
        .map_err(|source| DataplaneError::Attach {
            iface: iface.to_owned(),
            mode: if mode == XdpMode::Skb {
                "skb"
            } else {
                "driver"
            },
            source: Box::new(source),
        })
}

/// An error with its sources, on one line (for logs and `status`).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Detaches the program from the interface and removes its pins (link and maps).
pub fn detach(pins: &PinDir) -> Result<(), DataplaneError> {
    let link_path = pins.link();
    if !is_attached(pins) {
        return Err(DataplaneError::NotAttached {
            iface: pins.iface().to_owned(),
            path: pins.dir(),
        });
    }
    let link = PinnedLink::from_pin(&link_path).map_err(|e| DataplaneError::Link {
        op: "opening pinned link",
        path: link_path.clone(),
        source: io::Error::other(e),
    })?;
    // Unpinning drops the bpffs reference; dropping the returned fd drops ours, and with the
    // last reference gone the kernel detaches the program.
    let fd_link = link.unpin().map_err(|source| DataplaneError::Link {
        op: "unpinning link",
        path: link_path,
        source,
    })?;
    drop(fd_link);
    for name in names::MAPS {
        let path = pins.map(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DataplaneError::Fs {
                    op: "removing map pin",
                    path,
                    source,
                });
            }
        }
    }
    let dir = pins.dir();
    std::fs::remove_dir(&dir).map_err(|source| DataplaneError::Fs {
        op: "removing pin directory",
        path: dir,
        source,
    })?;
    // The shared `<bpffs>/ipwarden` directory goes when the last interface does.
    let _ = std::fs::remove_dir(pins.bpffs().join("ipwarden"));
    tracing::info!(iface = pins.iface(), "XDP program detached");
    Ok(())
}
