//! Loading, attaching, pinning and detaching the XDP program.

pub use crate::attach::AttachKind;
use std::{fmt, io};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use ipwarden_common::{Stamp, names};

use super::{Capacities, DataplaneError, OBJECT, PinDir, ensure_bpffs, stamp};

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
    // A resize that never reached its swap leaves staged pins nothing uses.
    super::resize::discard(pins)?;
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
    let mut ebpf = load(&dir, &opts.capacities)?;
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

/// Opens the object with the maps pinned under `dir` (reused when they exist) and sized from
/// `capacities` (when they do not).
pub(super) fn load(dir: &std::path::Path, capacities: &Capacities) -> Result<Ebpf, DataplaneError> {
    let mut loader = EbpfLoader::new();
    loader.default_map_pin_directory(dir);
    for (name, size) in capacities.by_name() {
        loader.map_max_entries(name, size);
    }
    loader.load(OBJECT).map_err(|source| DataplaneError::Load {
        source: Box::new(source),
    })
}

/// Maps a program error on `iface` to a [`DataplaneError`] naming the operation.
pub(super) fn program_error(
    iface: &str,
) -> impl Fn(&'static str, aya::programs::ProgramError) -> DataplaneError + '_ {
    move |op, source| DataplaneError::Program {
        op,
        iface: iface.to_owned(),
        source: Box::new(source),
    }
}

/// The XDP entry point of `ebpf`, verified and loaded into the kernel, with the synproxy's
/// program loaded into the slot it tail-calls.
pub(super) fn xdp_program<'a>(
    ebpf: &'a mut Ebpf,
    iface: &str,
) -> Result<&'a mut Xdp, DataplaneError> {
    // Without it the main program's tail call fails and frames go on as if the synproxy were
    // off: a kernel without the cookie helpers loses the synproxy, not its protection.
    if let Err(e) = synack_program(ebpf, iface) {
        tracing::error!(iface, error = %error_chain(&e), "the synproxy's program could not be loaded: SYNs to protected ports go to the listeners");
    }
    let program = loaded_xdp(ebpf, iface)?;
    program
        .load()
        .map_err(|e| program_error(iface)("verifying and loading", e))?;
    Ok(program)
}

/// Loads the synproxy's program and puts it in `SYNPROXY_PROG` (an object without either is a
/// build before the synproxy: nothing to do).
fn synack_program(ebpf: &mut Ebpf, iface: &str) -> Result<(), DataplaneError> {
    let program_err = program_error(iface);
    let Some(program) = ebpf.program_mut(names::SYNACK_PROGRAM) else {
        return Ok(());
    };
    let program: &mut Xdp = program
        .try_into()
        .map_err(|e| program_err("reading program type", e))?;
    program
        .load()
        .map_err(|e| program_err("verifying and loading the synproxy", e))?;
    let fd = program
        .fd()
        .and_then(|fd| fd.try_clone().map_err(Into::into))
        .map_err(|e| program_err("taking the synproxy's fd", e))?;
    let Some(map) = ebpf.map_mut(names::SYNPROXY_PROG) else {
        return Ok(());
    };
    let mut slots = aya::maps::ProgramArray::try_from(map)
        .map_err(|e| DataplaneError::map("opening", names::SYNPROXY_PROG, e))?;
    slots
        .set(0, &fd, 0)
        .map_err(|e| DataplaneError::map("filling", names::SYNPROXY_PROG, e))
}

/// The XDP entry point of `ebpf` (loaded or not).
pub(super) fn loaded_xdp<'a>(
    ebpf: &'a mut Ebpf,
    iface: &str,
) -> Result<&'a mut Xdp, DataplaneError> {
    let program_err = program_error(iface);
    ebpf.program_mut(names::PROGRAM)
        .ok_or_else(|| {
            program_err(
                "finding program ipwarden_xdp",
                aya::programs::ProgramError::NotLoaded,
            )
        })?
        .try_into()
        .map_err(|e| program_err("reading program type", e))
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
