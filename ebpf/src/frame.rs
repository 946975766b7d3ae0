//! [`Frame`] over the packet an XDP program sees, so the shared parser runs in the kernel.

use aya_ebpf::programs::XdpContext;
use ipwarden_common::Frame;

/// The bytes between `data` and `data_end`.
pub struct XdpFrame<'a>(pub &'a XdpContext);

impl XdpFrame<'_> {
    /// Frame length, for the byte counters.
    #[inline(always)]
    pub fn bytes(&self) -> u64 {
        (self.0.data_end() - self.0.data()) as u64
    }
}

impl Frame for XdpFrame<'_> {
    #[inline(always)]
    fn load<const N: usize>(&self, offset: usize) -> Option<[u8; N]> {
        let start = self.0.data();
        let end = self.0.data_end();
        // The comparison must be pointer + offset against data_end: that is the form the verifier
        // turns into a proven range for the packet pointer.
        if start + offset + N > end {
            return None;
        }
        // SAFETY: the bytes [start + offset, start + offset + N) lie inside the packet, checked
        // above; packet data has no alignment guarantee, hence read_unaligned.
        Some(unsafe { core::ptr::read_unaligned((start + offset) as *const [u8; N]) })
    }
}
