//! Whether the console's interrupt is the one the manifest gave: which interrupt a virtio-mmio
//! transport of QEMU's `virt` board raises.
//!
//! The control domain's device window is whole pages, so on `virt` it holds eight virtio-mmio
//! transports (the page of transport 31 holds 24 to 31), and `mica_rt::virtio::console` takes
//! the first that carries a console. The manifest's `interrupt` belongs to one transport (31
//! in `images/default.toml`). When another virtio device took that transport (a `-device`
//! created before the control console), the console sits on another one whose interrupt the
//! domain was not given: waiting for the manifest's interrupt would never hear a request
//! (issue 15, item 18). [`interrupt_mode`] decides from the transport's address whether the
//! interrupt can be trusted; otherwise the domain polls, and says why.

/// Where `virt` puts its first virtio-mmio transport.
pub const VIRT_VIRTIO_BASE: u64 = 0x0a00_0000;
/// Bytes of one transport's registers.
pub const VIRT_VIRTIO_STRIDE: u64 = 0x200;
/// Transports on `virt`.
pub const VIRT_VIRTIO_COUNT: u64 = 32;
/// The INTID of transport 0 (SPI 16); transport *n* has `VIRT_VIRTIO_FIRST_INTID + n`.
pub const VIRT_VIRTIO_FIRST_INTID: u32 = 48;

/// The GIC INTID of the `virt` virtio-mmio transport at `address`, or `None` if `address` is
/// not one (another board: nothing is known).
pub fn virt_transport_intid(address: u64) -> Option<u32> {
    let offset = address.checked_sub(VIRT_VIRTIO_BASE)?;
    if !offset.is_multiple_of(VIRT_VIRTIO_STRIDE)
        || offset / VIRT_VIRTIO_STRIDE >= VIRT_VIRTIO_COUNT
    {
        return None;
    }
    Some(VIRT_VIRTIO_FIRST_INTID + (offset / VIRT_VIRTIO_STRIDE) as u32)
}

/// How the control domain learns that requests arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InterruptMode {
    /// Sleep until the manifest's interrupt fires.
    Interrupt,
    /// The manifest gives no interrupt (or the domain has no capability for it): poll.
    NoInterrupt,
    /// The console's transport raises `transport_intid`, not the manifest's `manifest_intid`:
    /// poll (waiting for the wrong interrupt would never wake).
    WrongInterrupt {
        /// What the manifest gave.
        manifest_intid: u32,
        /// What the transport the console was found on raises.
        transport_intid: u32,
    },
}

/// Decides for a console found at `address` when the manifest gives `manifest_intid`
/// (0 or `None`: no interrupt).
pub fn interrupt_mode(address: u64, manifest_intid: Option<u32>) -> InterruptMode {
    let Some(manifest_intid) = manifest_intid.filter(|i| *i != 0) else {
        return InterruptMode::NoInterrupt;
    };
    match virt_transport_intid(address) {
        Some(transport_intid) if transport_intid != manifest_intid => {
            InterruptMode::WrongInterrupt {
                manifest_intid,
                transport_intid,
            }
        }
        _ => InterruptMode::Interrupt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_and_their_interrupts() {
        assert_eq!(virt_transport_intid(0x0a00_3e00), Some(79));
        assert_eq!(virt_transport_intid(0x0a00_3c00), Some(78));
        assert_eq!(virt_transport_intid(0x0a00_0000), Some(48));
        assert_eq!(virt_transport_intid(0x0a00_4000), None, "past the last");
        assert_eq!(
            virt_transport_intid(0x0a00_3e10),
            None,
            "not a transport start"
        );
        assert_eq!(virt_transport_intid(0x0900_0000), None);
    }

    #[test]
    fn the_interrupt_is_trusted_only_on_its_own_transport() {
        assert_eq!(
            interrupt_mode(0x0a00_3e00, Some(79)),
            InterruptMode::Interrupt
        );
        assert_eq!(
            interrupt_mode(0x0a00_3c00, Some(79)),
            InterruptMode::WrongInterrupt {
                manifest_intid: 79,
                transport_intid: 78
            }
        );
        assert_eq!(
            interrupt_mode(0x0a00_3c00, None),
            InterruptMode::NoInterrupt
        );
        assert_eq!(
            interrupt_mode(0x0a00_3c00, Some(0)),
            InterruptMode::NoInterrupt
        );
        assert_eq!(
            interrupt_mode(0x1000_0000, Some(40)),
            InterruptMode::Interrupt,
            "another board: the manifest is all there is"
        );
    }
}
