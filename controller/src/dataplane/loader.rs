//! Loading, attaching, pinning and detaching the XDP program.

pub use crate::attach::AttachKind;
use std::{fmt, io};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use ipwarden_common::{LAYOUT_VERSION, Stamp, capacity, names};

use super::{DataplaneError, OBJECT, PinDir, ensure_bpffs, stamp};

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
    /// No bound (an enforcement point without kernel maps).
    pub fn unlimited() -> Self {
        let n = u32::MAX;
        Self {
            block_v4: n,
            block_v6: n,
            block_net_v4: n,
            block_net_v6: n,
            allow: n,
            src_v4: n,
            src_v6: n,
            buckets: n,
        }
    }

    /// The smaller of each.
    pub fn min(&self, o: &Self) -> Self {
        Self {
            block_v4: self.block_v4.min(o.block_v4),
            block_v6: self.block_v6.min(o.block_v6),
            block_net_v4: self.block_net_v4.min(o.block_net_v4),
            block_net_v6: self.block_net_v6.min(o.block_net_v6),
            allow: self.allow.min(o.allow),
            src_v4: self.src_v4.min(o.src_v4),
            src_v6: self.src_v6.min(o.src_v6),
            buckets: self.buckets.min(o.buckets),
        }
    }

    /// About how much kernel memory maps of these sizes take when full, with `cpus` CPUs: hash
    /// maps preallocate every element at creation (a 48-byte element header, key and value
    /// rounded to 8; per-CPU values once per CPU), trie nodes (a 32-byte header, the prefix
    /// bytes, the value) are allocated as entries go in. An estimate for `config check`, not
    /// the kernel's own accounting.
    pub fn estimated_bytes(&self, cpus: u64) -> u64 {
        let hash = |n: u32, key: u64, value: u64| {
            u64::from(n) * (48 + key.next_multiple_of(8) + value.next_multiple_of(8))
        };
        let per_cpu = |n: u32, key: u64, value: u64| {
            u64::from(n) * (48 + key.next_multiple_of(8) + 8 + value.next_multiple_of(8) * cpus)
        };
        let trie = |n: u32, key: u64, value: u64| u64::from(n) * (32 + key + value);
        let entry = size_of::<ipwarden_common::BlockEntry>() as u64;
        hash(self.block_v4, 4, entry)
            + hash(self.block_v6, 8, entry)
            + trie(self.block_net_v4, 4, entry)
            + trie(self.block_net_v6, 16, entry)
            + trie(self.allow, 4, 4)
            + trie(self.allow, 16, 4)
            + per_cpu(
                self.src_v4,
                4,
                size_of::<ipwarden_common::SrcStats>() as u64,
            )
            + per_cpu(
                self.src_v6,
                8,
                size_of::<ipwarden_common::SrcStatsV6>() as u64,
            )
            + hash(self.buckets, 4, 8)
            + hash(self.buckets, 8, 8)
    }

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
    /// The build id stamped on the pins: [`stamp::this_build`], except in the upgrade test,
    /// which stamps an attachment as another build's.
    pub build: u64,
}

/// A successful attachment.
#[derive(Clone, Debug)]
pub struct Attached {
    pub pins: PinDir,
    /// Whether the bpffs holding the pins was there or mounted by this process.
    pub bpffs: super::Bpffs,
    /// The mode the kernel accepted: `Driver` or `Skb`.
    pub kind: AttachKind,
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
    let bpffs = ensure_bpffs(pins.bpffs())?;
    if is_attached(pins) {
        return Err(DataplaneError::AlreadyAttached {
            iface,
            path: pins.link(),
        });
    }
    // Checked first: a missing interface loads and pins nothing, and is not reported as a
    // failed native attach.
    let name = std::ffi::CString::new(iface.as_str()).map_err(|_| DataplaneError::NoInterface {
        iface: iface.clone(),
    })?;
    // SAFETY: a valid NUL-terminated string.
    if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
        return Err(DataplaneError::NoInterface { iface });
    }
    let dir = pins.dir();
    // Pins left by an earlier attachment carry its entries over; pins this attempt creates are
    // removed if it fails, so a failed attach leaves nothing behind.
    let had_pins = has_map_pins(pins);
    std::fs::create_dir_all(&dir).map_err(|source| DataplaneError::Fs {
        op: "creating pin directory",
        path: dir.clone(),
        source,
    })?;
    let attached = attach_loaded(opts, &iface, bpffs);
    if attached.is_err()
        && !had_pins
        && let Err(e) = remove_pins(pins)
    {
        tracing::warn!(iface, error = %error_chain(&e), "removing the pins of a failed attach");
    }
    attached
}

/// Whether `pins` holds any map pin.
fn has_map_pins(pins: &PinDir) -> bool {
    names::MAPS.iter().any(|name| pins.map(name).exists())
}

/// Removes every map pin under `pins` and its directory (and `<bpffs>/ipwarden` when it is
/// empty); how many pins it removed.
fn remove_pins(pins: &PinDir) -> Result<usize, DataplaneError> {
    let mut removed = 0;
    for name in names::MAPS {
        let path = pins.map(name);
        match std::fs::remove_file(&path) {
            Ok(()) => removed += 1,
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
    match std::fs::remove_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(DataplaneError::Fs {
                op: "removing pin directory",
                path: dir,
                source,
            });
        }
    }
    // The shared `<bpffs>/ipwarden` directory goes when the last interface does.
    let _ = std::fs::remove_dir(pins.bpffs().join("ipwarden"));
    Ok(removed)
}

/// [`attach`] once the pin directory exists.
fn attach_loaded(
    opts: &AttachOptions,
    iface: &str,
    bpffs: super::Bpffs,
) -> Result<Attached, DataplaneError> {
    let pins = &opts.pins;
    let dir = pins.dir();
    let mut ebpf = load(opts)?;
    let program = xdp_program(&mut ebpf, iface)?;
    let program_err = program_error(iface);

    let (link_id, kind) = match opts.mode {
        AttachMode::Driver => (
            attach_in(program, iface, XdpMode::Driver)?,
            AttachKind::Driver,
        ),
        AttachMode::Skb => (attach_in(program, iface, XdpMode::Skb)?, AttachKind::Skb),
        AttachMode::Auto => match attach_in(program, iface, XdpMode::Driver) {
            Ok(id) => (id, AttachKind::Driver),
            Err(err) => {
                tracing::warn!(
                    iface,
                    error = %error_chain(&err),
                    "native XDP not available, falling back to generic (skb) mode"
                );
                (attach_in(program, iface, XdpMode::Skb)?, AttachKind::Skb)
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
    stamp::write(pins, &Stamp::new(opts.build, env!("CARGO_PKG_VERSION")))?;
    tracing::info!(iface, mode = kind.name(), pins = %dir.display(), "XDP program attached");
    Ok(Attached {
        pins: pins.clone(),
        bpffs,
        kind,
    })
}

/// Opens the object with the maps pinned under `opts.pins` (reused when they exist) and sized
/// from `opts.capacities` (when they do not).
fn load(opts: &AttachOptions) -> Result<Ebpf, DataplaneError> {
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(opts.pins.dir());
    for (name, size) in opts.capacities.by_name() {
        loader.map_max_entries(name, size);
    }
    loader.load(OBJECT).map_err(|source| DataplaneError::Load {
        source: Box::new(source),
    })
}

/// Maps a program error on `iface` to a [`DataplaneError`] naming the operation.
fn program_error(
    iface: &str,
) -> impl Fn(&'static str, aya::programs::ProgramError) -> DataplaneError + '_ {
    move |op, source| DataplaneError::Program {
        op,
        iface: iface.to_owned(),
        source: Box::new(source),
    }
}

/// The XDP entry point of `ebpf`, verified and loaded into the kernel.
fn xdp_program<'a>(ebpf: &'a mut Ebpf, iface: &str) -> Result<&'a mut Xdp, DataplaneError> {
    let program_err = program_error(iface);
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
    Ok(program)
}

/// What [`adopt`] did with an existing attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// The attached program is this build's: kept as it is.
    Kept,
    /// Another build's program was replaced on the same link, with the same maps.
    Replaced {
        /// The stamp found (`None`: pins from a release before stamps).
        from: Option<Stamp>,
        /// Kernel program ids before and after the swap.
        old_program: u32,
        new_program: u32,
    },
}

/// Takes over the attachment pinned under `opts.pins`: keeps the program when the pins say it is
/// this build's, otherwise swaps this build's program in on the existing link with
/// `BPF_LINK_UPDATE`, which replaces the program atomically: every frame meets either the old
/// program or the new one, both enforcing the same maps.
///
/// Pins of a newer layout are refused: their maps cannot be read with this build's types. Pins of
/// an older layout would be migrated into new maps before the swap; layout 1 is the only layout
/// so far, so there is nothing to migrate yet (pins without a stamp are layout 1, and `open`
/// checks every raw map's sizes besides).
pub fn adopt(opts: &AttachOptions) -> Result<Adoption, DataplaneError> {
    let pins = &opts.pins;
    let iface = pins.iface().to_owned();
    let found = stamp::read(pins)?;
    let layout = found.map_or(1, |s| s.layout);
    if layout > LAYOUT_VERSION {
        return Err(DataplaneError::NewerLayout {
            iface,
            path: pins.dir(),
            found: layout,
            supported: LAYOUT_VERSION,
            version: found
                .map(|s| s.version_str().to_owned())
                .unwrap_or_default(),
        });
    }
    if found.is_some_and(|s| s.build == opts.build) {
        return Ok(Adoption::Kept);
    }
    if OBJECT.is_empty() {
        return Err(DataplaneError::ObjectMissing);
    }
    let link_err = |op, source| DataplaneError::Link {
        op,
        path: pins.link(),
        source,
    };
    let link: FdLink = PinnedLink::from_pin(pins.link())
        .map_err(|e| link_err("opening pinned link", io::Error::other(e)))?
        .into();
    let old_program = link
        .info()
        .map_err(|e| link_err("reading link info of", io::Error::other(e)))?
        .program_id();
    let link = XdpLink::try_from(link)
        .map_err(|e| link_err("reading the XDP link of", io::Error::other(e)))?;

    let mut ebpf = load(opts)?;
    let program = xdp_program(&mut ebpf, &iface)?;
    let program_err = program_error(&iface);
    let id = program
        .attach_to_link(link)
        .map_err(|e| program_err("replacing the program on the pinned link", e))?;
    // The pin keeps the link; ours is only an fd, closed with `ebpf`.
    let link = program
        .take_link(id)
        .map_err(|e| program_err("taking the XDP link", e))?;
    let link = FdLink::try_from(link)
        .map_err(|e| link_err("converting the link of", io::Error::other(e)))?;
    let new_program = link
        .info()
        .map_err(|e| link_err("reading link info of", io::Error::other(e)))?
        .program_id();
    stamp::write(pins, &Stamp::new(opts.build, env!("CARGO_PKG_VERSION")))?;
    tracing::warn!(
        iface,
        from_build = %found.map(|s| format!("{:016x}", s.build)).unwrap_or_else(|| "unstamped".into()),
        from_version = found.map(|s| s.version_str().to_owned()).unwrap_or_default(),
        to_build = %format!("{:016x}", opts.build),
        old_program,
        new_program,
        "replaced the attached XDP program of another build on its link (atomic swap, maps kept)"
    );
    Ok(Adoption::Replaced {
        from: found,
        old_program,
        new_program,
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
        // No program, but maps may be pinned (an attachment whose link went away, a release
        // that left them after a failed attach): they are removed all the same.
        if !has_map_pins(pins) {
            return Err(DataplaneError::NotAttached {
                iface: pins.iface().to_owned(),
                path: pins.dir(),
            });
        }
        let n = remove_pins(pins)?;
        tracing::info!(
            iface = pins.iface(),
            pins = n,
            "no program was attached; removed the pinned maps left behind"
        );
        return Ok(());
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
    remove_pins(pins)?;
    tracing::info!(iface = pins.iface(), "XDP program detached");
    Ok(())
}
