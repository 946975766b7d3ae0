//! Taking over an attachment a previous daemon left pinned: keep it, swap this build's program in,
//! resize its maps, or both, always on the same link, so that no frame meets an interface
//! without a filter.

use std::io;

use aya::programs::{
    links::{FdLink, PinnedLink},
    xdp::XdpLink,
};
use ipwarden_common::{LAYOUT_VERSION, Stamp};

use super::{
    DataplaneError, OBJECT, PinDir,
    loader::{AttachOptions, load, loaded_xdp, program_error, xdp_program},
    resize::{self, Resized},
    stamp,
};

/// What [`adopt`] did with an existing attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Adoption {
    /// The attached program is this build's and its maps have the configured sizes: kept as
    /// it is.
    Kept,
    /// The program on the link was replaced: by this build's (another build's was attached),
    /// or by a program on maps of the configured sizes (`resized` is not empty), or both.
    Replaced {
        /// The stamp found (`None`: pins from a release before stamps).
        from: Option<Stamp>,
        /// Whether the program found was this build's (only maps were resized).
        same_build: bool,
        /// Kernel program ids before and after the swap.
        old_program: u32,
        new_program: u32,
        /// The maps that now have another size, and what was carried over.
        resized: Vec<Resized>,
    },
}

/// Takes over the attachment pinned under `opts.pins`. The program is kept when the pins say it
/// is this build's and every sized map has the configured size. Otherwise this build's program
/// is swapped in on the existing link with `BPF_LINK_UPDATE`, which replaces the program
/// atomically: every frame meets either the old program or the new one.
///
/// A map whose size differs from `opts.capacities` is created anew beside the pinned ones,
/// filled with what the old one enforces (block and allow entries; counters start empty), and
/// used by the new program; its pin then replaces the old one (see [`resize`]). The maps keep
/// enforcing throughout: the old program reads the old maps until the swap, the new program the
/// new maps after it.
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
    resize::recover(pins)?;
    let differing = resize::differing(pins, &opts.capacities)?;
    let same_build = found.is_some_and(|s| s.build == opts.build);
    if same_build && differing.is_empty() {
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

    // The new program may come with block index maps of its own (empty where the pins had
    // none, as a release before the index leaves them, or resized): the authority the last
    // daemon gave its index must not carry over to them, or the new program would skip the
    // hash for a blocked source its empty index does not hold and pass it until the daemon's
    // resync. Withdrawn before the swap; the resync at start gives it back (`vouch_for_index`).
    // So do the marks of tracked sources (see `tracked`): a build before them left entries
    // without marks, and the start marks them again (`mark_tracked`).
    let mut old = super::Dataplane::open(pins)?;
    old.withdraw_authority()?;
    old.withdraw_tracked_marks()?;
    drop(old);
    // New maps go to a staging directory; until the swap, nothing uses them.
    let staged = if differing.is_empty() {
        None
    } else {
        Some(resize::stage(pins, &differing)?)
    };
    // Creating the maps (the object's load) and filling them happen before the program is
    // verified and swapped; a failure of any step leaves the old program on the old maps.
    let dir = staged.as_ref().map_or_else(|| pins.dir(), PinDir::dir);
    let swapped = load(&dir, &opts.capacities).and_then(|mut ebpf| {
        let resized = match &staged {
            Some(staged) => resize::fill(pins, staged, &differing)?,
            None => Vec::new(),
        };
        let program = xdp_program(&mut ebpf, &iface)?;
        let id = program
            .attach_to_link(link)
            .map_err(|e| program_error(&iface)("replacing the program on the pinned link", e))?;
        Ok((ebpf, id, resized))
    });
    let (mut ebpf, id, resized) = match swapped {
        Ok(swapped) => swapped,
        Err(e) => {
            if staged.is_some() {
                // The old program still runs on the old maps: the staged ones go.
                resize::discard(pins)?;
            }
            return Err(e);
        }
    };
    // From here the program reads the staged maps: their pins must take the old ones' places
    // (an interruption is finished by the next start's `resize::recover`).
    if staged.is_some() {
        resize::finish(pins)?;
    }
    // The pin keeps the link; ours is only an fd, closed with `ebpf`.
    let program = loaded_xdp(&mut ebpf, &iface)?;
    let link = program
        .take_link(id)
        .map_err(|e| program_error(&iface)("taking the XDP link", e))?;
    let link = FdLink::try_from(link)
        .map_err(|e| link_err("converting the link of", io::Error::other(e)))?;
    let new_program = link
        .info()
        .map_err(|e| link_err("reading link info of", io::Error::other(e)))?
        .program_id();
    stamp::write(pins, &Stamp::new(opts.build, env!("CARGO_PKG_VERSION")))?;
    for r in &resized {
        tracing::warn!(
            iface,
            map = r.map,
            from = r.from,
            to = r.to,
            carried_over = r.carried,
            left_out = r.left_out,
            "resized a pinned map on the running attachment (new map swapped in with the program, no gap)"
        );
    }
    if !same_build {
        tracing::warn!(
            iface,
            from_build = %found.map(|s| format!("{:016x}", s.build)).unwrap_or_else(|| "unstamped".into()),
            from_version = found.map(|s| s.version_str().to_owned()).unwrap_or_default(),
            to_build = %format!("{:016x}", opts.build),
            old_program,
            new_program,
            "replaced the attached XDP program of another build on its link (atomic swap, maps kept)"
        );
    }
    Ok(Adoption::Replaced {
        from: found,
        same_build,
        old_program,
        new_program,
        resized,
    })
}
