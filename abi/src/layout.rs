//! The shape of a domain's guest-physical address space, shared by the kernel, the HALs, the
//! runtime and the toolstack.
//!
//! Stage 2 translates 39-bit guest-physical addresses on every architecture Mica runs on
//! (aarch64: VTCR_EL2.T0SZ = 25 with a level-1 root; x86_64 NPT: a four-level table limited to
//! the same range), so an address is valid in a domain exactly when it is below
//! [`IPA_LIMIT`]. Every check of a guest-physical range uses this one value. Inside it, every
//! domain's RAM starts at [`RAM_BASE`] and ends with its boot-info page ([`DomainLayout`]).

/// Bits of a guest-physical address.
pub const IPA_BITS: u32 = 39;

/// One past the highest guest-physical address a domain can have mapped.
pub const IPA_LIMIT: u64 = 1 << IPA_BITS;

/// Bytes in a page: the unit of every mapping, frame range and table charge.
pub const PAGE_SIZE: u64 = 4096;

/// Most separately allocated RAM chunks of one domain: its RAM capabilities are in slots 0
/// up to this, mapped one after the other from `sysimage::DOMAIN_RAM_BASE`.
pub const MAX_RAM_CHUNKS: usize = 16;

/// Most physical CPUs the kernel brings up and records (more in the device tree are reported
/// and left off; the scale work lifts this).
pub const MAX_CPUS: usize = 16;

/// First guest-physical address of every domain's RAM.
pub const RAM_BASE: u64 = 0x4000_0000;

/// The MPIDR affinity of a domain's vCPU `index` (Aff3.Aff2.Aff1.Aff0 = 0.0.0.`index`): what
/// its MPIDR_EL1 reads, what PSCI `CPU_ON` and the GIC's routing name it by, and the `reg` of
/// its node in a guest's device tree. Domains have at most 256 vCPUs this way.
pub const fn vcpu_affinity(index: usize) -> u64 {
    (index & 0xFF) as u64
}

/// The vCPU index an MPIDR affinity names ([`vcpu_affinity`] inverted); `None` when a
/// higher affinity level is set.
pub const fn vcpu_of_affinity(mpidr: u64) -> Option<usize> {
    if mpidr & 0xFF_00FF_FF00 != 0 {
        None
    } else {
        Some((mpidr & 0xFF) as usize)
    }
}

/// The devices a domain may be shown below its RAM, at the guest-physical addresses QEMU's
/// `virt` machine uses for its own (so a guest's device tree reads like QEMU's, and a guest
/// written for that machine finds them): the emulated GICv3's frames, the console UART a Linux
/// guest is given, and the virtio-mmio slots. Interrupt numbers are INTIDs.
pub mod devices {
    /// The GIC distributor frame.
    pub const GICD_BASE: u64 = 0x0800_0000;
    /// Bytes of the distributor frame.
    pub const GICD_SIZE: u64 = 0x1_0000;
    /// vCPU `i`'s redistributor is at `GICR_BASE + i * GICR_STRIDE` (RD_base, then SGI_base).
    pub const GICR_BASE: u64 = 0x080A_0000;
    /// Bytes of one vCPU's redistributor.
    pub const GICR_STRIDE: u64 = 0x2_0000;
    /// The GIC maintenance interrupt (a PPI).
    pub const MAINTENANCE_INTID: u32 = 25;
    /// The EL1 virtual timer's interrupt (a PPI, Arm BSA).
    pub const VIRTUAL_TIMER_INTID: u32 = 27;
    /// The EL1 physical timer's (non-secure) interrupt.
    pub const PHYSICAL_TIMER_INTID: u32 = 30;
    /// The secure physical timer's interrupt (described for Linux, never raised).
    pub const SECURE_TIMER_INTID: u32 = 29;
    /// The EL2 (hypervisor) timer's interrupt (described for Linux, never raised).
    pub const HYP_TIMER_INTID: u32 = 26;
    /// A Linux guest's console: an emulated PL011.
    pub const UART_BASE: u64 = 0x0900_0000;
    /// Bytes of the PL011's frame.
    pub const UART_SIZE: u64 = 0x1000;
    /// The PL011's interrupt (SPI 1).
    pub const UART_INTID: u32 = 33;
    /// The first virtio-mmio slot; slot `n` is at `VIRTIO_BASE + n * VIRTIO_SIZE`.
    pub const VIRTIO_BASE: u64 = 0x0A00_0000;
    /// Bytes of one virtio-mmio slot: a device's register window.
    pub const VIRTIO_SIZE: u64 = crate::virtio::WINDOW;
    /// Virtio-mmio slots.
    pub const VIRTIO_SLOTS: u32 = 32;
    /// Slot `n`'s interrupt is `VIRTIO_FIRST_INTID + n` (SPIs 16 and up).
    pub const VIRTIO_FIRST_INTID: u32 = 48;

    /// Where the register window of virtio slot `slot` is, and its interrupt; `None` past the
    /// last slot.
    pub const fn virtio_slot(slot: u32) -> Option<(u64, u32)> {
        if slot >= VIRTIO_SLOTS {
            return None;
        }
        Some((
            VIRTIO_BASE + slot as u64 * VIRTIO_SIZE,
            VIRTIO_FIRST_INTID + slot,
        ))
    }
}

/// Where things are in the guest-physical space of a domain the kernel builds from the system
/// image, given its RAM size: the RAM at [`RAM_BASE`], its last page the boot-info page, the
/// rest usable by the domain's image, and the registers vCPU 0 starts with. The kernel builds
/// domains by it, the system-image parser and the toolstack's builder check images against it,
/// so the boot-info page can never be written over an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainLayout {
    /// RAM in bytes (a multiple of [`PAGE_SIZE`], at least two pages for a usable layout).
    pub ram_bytes: u64,
}

impl DomainLayout {
    /// The layout of a domain with `ram_bytes` of RAM.
    pub const fn new(ram_bytes: u64) -> DomainLayout {
        DomainLayout { ram_bytes }
    }

    /// The boot-info page: the last page of RAM.
    pub const fn boot_page(&self) -> u64 {
        // Saturating: a parser asks about sizes it has not checked yet (found by Kani).
        RAM_BASE.saturating_add(self.ram_bytes.saturating_sub(PAGE_SIZE))
    }

    /// One past the last byte the domain's image may use: the boot-info page's address.
    pub const fn usable_end(&self) -> u64 {
        self.boot_page()
    }

    /// Bytes of usable RAM: all of it but the boot-info page.
    pub const fn usable_bytes(&self) -> u64 {
        self.ram_bytes.saturating_sub(PAGE_SIZE)
    }

    /// Whether `[ipa, ipa + size)` lies in the usable RAM, below the boot-info page.
    pub const fn holds(&self, ipa: u64, size: u64) -> bool {
        match ipa.checked_add(size) {
            Some(end) => ipa >= RAM_BASE && end <= self.usable_end(),
            None => false,
        }
    }

    /// x0-x3 of vCPU 0 at its first instruction: the manifest's `arg`, the RAM base, the size
    /// of usable RAM, and the boot-info page.
    pub const fn entry_regs(&self, arg: u64) -> [u64; 4] {
        [arg, RAM_BASE, self.usable_bytes(), self.boot_page()]
    }

    /// x0-x3 of a Linux domain's vCPU 0 at the Image's first instruction (the arm64 boot
    /// protocol): the device tree's address, then zeros.
    pub const fn linux_entry_regs(dtb: u64) -> [u64; 4] {
        [dtb, 0, 0, 0]
    }

    /// One past the last byte of RAM (`u64::MAX` for a size that would wrap, which no check
    /// then accepts).
    pub const fn ram_end(&self) -> u64 {
        RAM_BASE.saturating_add(self.ram_bytes)
    }

    /// Whether `[ipa, ipa + size)` is a place to map a region shared by another domain: above
    /// the RAM (below it are the devices the kernel emulates) and inside the guest-physical
    /// space.
    pub const fn holds_shared_window(&self, ipa: u64, size: u64) -> bool {
        match ipa.checked_add(size) {
            Some(end) => ipa >= self.ram_end() && end <= IPA_LIMIT,
            None => false,
        }
    }

    /// Whether `[ipa, ipa + size)` is a place for a passed-through device's registers (seen at
    /// their physical address): clear of the RAM and inside the guest-physical space.
    pub const fn holds_device_window(&self, ipa: u64, size: u64) -> bool {
        match ipa.checked_add(size) {
            Some(end) => (end <= RAM_BASE || ipa >= self.ram_end()) && end <= IPA_LIMIT,
            None => false,
        }
    }

    /// The least RAM, in bytes, that holds an image ending at `end` and the boot-info page.
    pub const fn least_ram_for(end: u64) -> u64 {
        end.saturating_sub(RAM_BASE).next_multiple_of(PAGE_SIZE) + PAGE_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_page_is_the_last_page_and_no_image_may_reach_it() {
        let l = DomainLayout::new(64 * 1024);
        assert_eq!(l.boot_page(), RAM_BASE + 60 * 1024);
        assert!(l.holds(RAM_BASE, 60 * 1024));
        assert!(
            !l.holds(RAM_BASE, 60 * 1024 + 1),
            "one byte into the boot page"
        );
        assert!(!l.holds(RAM_BASE - 4096, 4096), "below RAM");
        assert!(!l.holds(u64::MAX - 10, 100), "wraps");
        assert_eq!(
            l.entry_regs(7),
            [7, RAM_BASE, 60 * 1024, RAM_BASE + 60 * 1024]
        );
        assert_eq!(DomainLayout::least_ram_for(RAM_BASE + 60 * 1024), 64 * 1024);
        // Shared windows go above the RAM, device windows anywhere clear of it.
        assert!(l.holds_shared_window(RAM_BASE + 64 * 1024, 4096));
        assert!(
            !l.holds_shared_window(RAM_BASE - 4096, 4096),
            "below RAM: emulated devices"
        );
        assert!(!l.holds_shared_window(IPA_LIMIT - 4096, 8192));
        assert!(l.holds_device_window(0x0901_0000, 4096));
        assert!(
            !l.holds_device_window(RAM_BASE + 60 * 1024, 8192),
            "overlaps RAM"
        );
        assert!(!l.holds_device_window(u64::MAX, 2));
        // Sizes nobody checked yet (a parser asks before it looks at the domain) never wrap.
        let huge = DomainLayout::new(u64::MAX);
        assert_eq!(huge.ram_end(), u64::MAX);
        assert!(!huge.holds_shared_window(IPA_LIMIT - 4096, 4096));
        assert_eq!(
            DomainLayout::least_ram_for(RAM_BASE + 60 * 1024 + 1),
            68 * 1024
        );
    }
}
