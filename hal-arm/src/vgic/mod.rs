//! The virtual GICv3 of one domain: distributor and redistributor state, SGIs, and the
//! list registers of the virtual CPU interface.
//!
//! Guests see a GICv3 (DESIGN.md §5). Their CPU interface is the hardware's: with
//! HCR_EL2.IMO/FMO set, ICC_* accesses go to the virtual interface, which presents what
//! the hypervisor wrote into the list registers (ICH_LR<n>_EL2). Everything else is this
//! model: the distributor and redistributor frames are unmapped at stage 2, and the world
//! switch hands their trapped accesses (decoded by [`crate::mmio`]) to
//! [`Vgic::distributor_read`] and friends; trapped writes of ICC_SGI1R_EL1 go to
//! [`Vgic::write_sgi`]. The model is the authority for every interrupt that is not in a list
//! register. On each exit [`Vgic::sync_from_list_registers`] folds the guest's
//! acknowledgements and EOIs back in; on each entry [`Vgic::fill_list_registers`] lists the
//! highest-priority deliverable interrupts, evicting lower-priority pending entries when
//! something better waits and asking for an underflow maintenance interrupt when more are
//! pending than fit, so that any number of pending interrupts is delivered in priority order
//! (lower value first, ties by lower INTID).
//!
//! It is pure state: no register access, no locking (the caller holds the domain's lock),
//! no allocation, no panics on any guest input. Unimplemented or wrongly sized accesses read
//! as zero and ignore writes. Register semantics follow the Arm GICv3/v4 architecture
//! specification (IHI 0069), chapter 12 "Programmers' model"; the list register format is
//! ICH_LR<n>_EL2 (IHI 0069 12.4.6, Arm ARM D19.3).
//!
//! Choices: a single security state (GICD_CTLR.DS = 1) with affinity routing always on
//! (ARE = 1); no LPIs, no ITS, no extended SPI/PPI ranges; interrupts reset to Group 1 so a
//! guest that never programs groups still receives them; SGI and PPI enables, and PPI
//! trigger modes, are programmable; GICR_WAKER is kept for the guest driver's handshake but
//! does not gate delivery; SPIs routed with Interrupt_Routing_Mode = 1 go to vCPU 0. vCPU
//! `i` has affinity 0.0.0.`i` ([`vcpu_affinity`]); the caller programs VMPIDR_EL2 with
//! [`vmpidr`].

// The Kani proofs (`crate::proofs`) check the same code over a smaller model: 2 vCPUs, 32
// SPIs, 4 list registers. Every loop and index of the model is bounded by these or by the
// counts a vGIC was created with; at full size CBMC tracks about 6 KiB of fields per vGIC and
// spends minutes on one register write (docs/verification.md).
/// Most vCPUs one domain's vGIC serves.
pub const MAX_VCPUS: usize = if cfg!(kani) { 2 } else { 8 };
/// Most SPIs (INTIDs 32 and up) one domain's vGIC serves.
pub const MAX_SPIS: usize = if cfg!(kani) { 32 } else { 64 };
/// Most list registers the architecture allows (ICH_VTR_EL2.ListRegs + 1 <= 16).
pub const MAX_LIST_REGISTERS: usize = if cfg!(kani) { 4 } else { 16 };
/// SGIs (0-15) and PPIs (16-31): banked per vCPU.
pub const PRIVATE_INTERRUPTS: usize = 32;
/// The first SPI.
pub const FIRST_SPI: u32 = 32;
/// SGIs are INTIDs 0-15.
pub const SGI_COUNT: u32 = 16;
/// The guest's virtual timer PPI (EL1 virtual timer, Arm BSA).
pub const VIRTUAL_TIMER_PPI: u32 = mica_abi::layout::devices::VIRTUAL_TIMER_INTID;
/// The GIC maintenance interrupt PPI at EL2 on QEMU virt.
pub const MAINTENANCE_PPI: u32 = mica_abi::layout::devices::MAINTENANCE_INTID;

/// Bytes of the distributor window (one 64 KiB frame).
pub const DISTRIBUTOR_SIZE: u64 = mica_abi::layout::devices::GICD_SIZE;
/// Bytes of one vCPU's redistributor: RD_base then SGI_base, 64 KiB each.
pub const REDISTRIBUTOR_STRIDE: u64 = mica_abi::layout::devices::GICR_STRIDE;
/// Offset of the SGI_base frame within a redistributor.
pub const SGI_FRAME: u64 = 0x1_0000;
/// SPIs every domain's vGIC implements (INTIDs 32-95).
pub const DOMAIN_SPIS: usize = 64;
/// Guest-physical address of the distributor window: where QEMU `virt` puts its GIC
/// distributor, so a guest device tree can reuse the addresses.
pub const DISTRIBUTOR_BASE: u64 = mica_abi::layout::devices::GICD_BASE;
/// Guest-physical address of the redistributor region (QEMU `virt`'s): vCPU `i`'s
/// redistributor at `REDISTRIBUTOR_BASE + i * REDISTRIBUTOR_STRIDE`.
pub const REDISTRIBUTOR_BASE: u64 = mica_abi::layout::devices::GICR_BASE;

mod distributor;
mod list_registers;
mod redistributor;
mod registers;
mod sgi;
#[cfg(test)]
mod tests;

use registers::{aligned, family, lookup, lookup_mut, read_register, write_register, Family};
pub use sgi::{SgiRequest, SysregTrap, EC_SYSREG};

/// Distributor register offsets (IHI 0069 12.9, table 12-25). With ARE = 1 the entries for
/// INTIDs 0-31 of the interrupt families are RAZ/WI: the redistributors hold those.
pub mod gicd {
    /// rw Distributor Control Register.
    pub const CTLR: u64 = 0x0000;
    /// ro Interrupt Controller Type Register.
    pub const TYPER: u64 = 0x0004;
    /// ro Distributor Implementer Identification Register.
    pub const IIDR: u64 = 0x0008;
    /// ro Interrupt Controller Type Register 2 (RAZ here).
    pub const TYPER2: u64 = 0x000C;
    /// rw Interrupt Group Registers, 1 bit per INTID.
    pub const IGROUPR: u64 = 0x0080;
    /// rw Interrupt Set-Enable Registers.
    pub const ISENABLER: u64 = 0x0100;
    /// rw Interrupt Clear-Enable Registers.
    pub const ICENABLER: u64 = 0x0180;
    /// rw Interrupt Set-Pending Registers.
    pub const ISPENDR: u64 = 0x0200;
    /// rw Interrupt Clear-Pending Registers.
    pub const ICPENDR: u64 = 0x0280;
    /// rw Interrupt Set-Active Registers.
    pub const ISACTIVER: u64 = 0x0300;
    /// rw Interrupt Clear-Active Registers.
    pub const ICACTIVER: u64 = 0x0380;
    /// rw Interrupt Priority Registers, 1 byte per INTID, byte-accessible.
    pub const IPRIORITYR: u64 = 0x0400;
    /// rw Interrupt Configuration Registers, 2 bits per INTID (bit 1: edge).
    pub const ICFGR: u64 = 0x0C00;
    /// rw Interrupt Group Modifier Registers (RAZ/WI with DS = 1 here).
    pub const IGRPMODR: u64 = 0x0D00;
    /// rw Interrupt Routing Registers, 64 bits per SPI at IROUTER + 8 * INTID.
    pub const IROUTER: u64 = 0x6000;
    /// ro Peripheral ID2: ArchRev in bits [7:4].
    pub const PIDR2: u64 = 0xFFE8;

    /// GICD_CTLR.EnableGrp0 (bit 0, DS = 1 view).
    pub const CTLR_ENABLE_GRP0: u32 = 1 << 0;
    /// GICD_CTLR.EnableGrp1 (bit 1, DS = 1 view).
    pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
    /// GICD_CTLR.ARE (bit 4): affinity routing, RAO/WI here.
    pub const CTLR_ARE: u32 = 1 << 4;
    /// GICD_CTLR.DS (bit 6): single security state, RAO/WI here.
    pub const CTLR_DS: u32 = 1 << 6;
    /// GICD_CTLR.RWP (bit 31): register write pending, always 0 here.
    pub const CTLR_RWP: u32 = 1 << 31;
    /// GICD_IROUTER.Interrupt_Routing_Mode (bit 31): 1 = any participating PE.
    pub const IROUTER_ANY: u64 = 1 << 31;
}

/// Redistributor register offsets (IHI 0069 12.10): RD_base frame, then the SGI_base frame
/// at [`SGI_FRAME`](super::SGI_FRAME), whose interrupt registers sit at the same offsets as
/// the distributor's ([`gicd`](super::gicd)) and cover INTIDs 0-31.
pub mod gicr {
    /// rw Redistributor Control Register (RAZ/WI here: no LPIs, RWP always 0).
    pub const CTLR: u64 = 0x0000;
    /// ro Implementer Identification Register.
    pub const IIDR: u64 = 0x0004;
    /// ro Redistributor Type Register, 64 bits.
    pub const TYPER: u64 = 0x0008;
    /// rw Redistributor Wake Register.
    pub const WAKER: u64 = 0x0014;
    /// ro Peripheral ID2 (RD_base frame).
    pub const PIDR2: u64 = 0xFFE8;

    /// GICR_TYPER.Last (bit 4): the last redistributor of the region.
    pub const TYPER_LAST: u64 = 1 << 4;
    /// GICR_TYPER.Processor_Number, bits [23:8].
    pub const TYPER_PROCESSOR_SHIFT: u32 = 8;
    /// GICR_TYPER.Affinity_Value, bits [63:32] as Aff3.Aff2.Aff1.Aff0.
    pub const TYPER_AFFINITY_SHIFT: u32 = 32;
    /// GICR_WAKER.ProcessorSleep (bit 1).
    pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
    /// GICR_WAKER.ChildrenAsleep (bit 2).
    pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
}

/// ICH_LR<n>_EL2 fields (IHI 0069 12.4.6).
pub mod lr {
    /// State[63:62] = 0b01: pending.
    pub const PENDING: u64 = 1 << 62;
    /// State[63:62] = 0b10: active.
    pub const ACTIVE: u64 = 1 << 63;
    /// Both state bits.
    pub const STATE_MASK: u64 = 0b11 << 62;
    /// HW (bit 61): the virtual interrupt is linked to physical interrupt pINTID.
    pub const HW: u64 = 1 << 61;
    /// Group (bit 60): Group 1 (else Group 0, signalled as a virtual FIQ).
    pub const GROUP1: u64 = 1 << 60;
    /// Priority[55:48].
    pub const PRIORITY_SHIFT: u32 = 48;
    /// pINTID[44:32] when HW = 1.
    pub const PINTID_SHIFT: u32 = 32;
    /// EOI (bit 41) when HW = 0: deactivation raises an EOI maintenance interrupt.
    pub const EOI: u64 = 1 << 41;
    /// vINTID[31:0].
    pub const VINTID_MASK: u64 = 0xFFFF_FFFF;
}

/// ICH_HCR_EL2 bits the caller sets from a [`FillOutcome`] (IHI 0069 12.4.3).
pub mod hcr {
    /// En (bit 0): the virtual CPU interface is enabled.
    pub const EN: u64 = 1 << 0;
    /// UIE (bit 1): maintenance interrupt when at most one list register is valid.
    pub const UIE: u64 = 1 << 1;
}

/// GICD_IIDR / GICR_IIDR: ProductID 0x4D ('M') [31:24], Implementer 0x43B [11:0].
const IIDR_VALUE: u32 = 0x4D00_043B;
/// GICD_PIDR2 / GICR_PIDR2: ArchRev 3 (GICv3) in [7:4], JEDEC-assigned, JEP106 ID bits.
const PIDR2_VALUE: u32 = 0x3B;
/// GICD_TYPER.IDbits [23:19]: 10 INTID bits (INTIDs below 1024).
const TYPER_ID_BITS: u32 = 9 << 19;
/// The IROUTER bits a write keeps: IRM and Aff2.Aff1.Aff0 (GICD_TYPER.A3V = 0).
const IROUTER_WRITABLE: u64 = gicd::IROUTER_ANY | 0x00FF_FFFF;
/// Priority after reset.
const RESET_PRIORITY: u8 = 0;

/// The MPIDR affinity (Aff3[39:32] Aff2[23:16] Aff1[15:8] Aff0[7:0]) of vCPU `vcpu`.
pub fn vcpu_affinity(vcpu: usize) -> u64 {
    mica_abi::layout::vcpu_affinity(vcpu)
}

/// The VMPIDR_EL2 value for vCPU `vcpu`: its affinity with bit 31 (RES1) set.
pub fn vmpidr(vcpu: usize) -> u64 {
    1 << 31 | vcpu_affinity(vcpu)
}

/// The set of vCPUs whose deliverable interrupts may have changed: each needs a refill of its
/// list registers before it next runs, so the caller wakes it if it is blocked in WFI and
/// interrupts its physical CPU if it is running elsewhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Kick(u32);

impl Kick {
    /// No vCPU.
    pub const NONE: Kick = Kick(0);

    fn one(vcpu: usize) -> Kick {
        match u32::try_from(vcpu) {
            Ok(v) if v < 32 => Kick(1 << v),
            _ => Kick::NONE,
        }
    }

    fn union(self, other: Kick) -> Kick {
        Kick(self.0 | other.0)
    }

    /// One bit per vCPU index.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether `vcpu` is in the set.
    pub fn contains(self, vcpu: usize) -> bool {
        vcpu < 32 && self.0 & (1 << vcpu) != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The vCPU indices in the set, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..32).filter(move |&v| self.0 & (1 << v) != 0)
    }
}

/// Why a request to the model was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VgicError {
    /// vCPU count outside 1..=[`MAX_VCPUS`].
    BadVcpuCount(usize),
    /// SPI count above [`MAX_SPIS`].
    BadSpiCount(usize),
    /// No such vCPU in this domain.
    NoSuchVcpu(usize),
    /// The INTID is not implemented (or is an SGI where an SGI makes no sense).
    NoSuchInterrupt(u32),
    /// A physical INTID that cannot back a hardware-linked virtual interrupt.
    BadPhysicalInterrupt(u32),
}

/// What [`Vgic::fill_list_registers`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FillOutcome {
    /// Bit n set: list register n holds an interrupt of the model.
    pub valid: u32,
    /// More interrupts are deliverable than fit: set ICH_HCR_EL2.UIE so the guest exits
    /// when the list registers drain, then sync and fill again.
    pub underflow: bool,
}

impl FillOutcome {
    /// The ICH_HCR_EL2 value to run the vCPU with: En, plus UIE when needed.
    pub fn ich_hcr(&self) -> u64 {
        hcr::EN | if self.underflow { hcr::UIE } else { 0 }
    }
}

/// One interrupt's state (IHI 0069 4.1.2, "Interrupt states"), banked per vCPU for INTIDs
/// 0-31.
#[derive(Clone, Copy, Debug, Default)]
struct Interrupt {
    priority: u8,
    enabled: bool,
    group1: bool,
    /// Edge-triggered (ICFGR bit 1), else level-sensitive.
    edge: bool,
    /// The pending latch: an edge, an ISPENDR write or an SGI. Cleared by ICPENDR and when
    /// the pending state moves into a list register.
    latch: bool,
    /// The input line of a level-sensitive interrupt, driven by the caller.
    line: bool,
    active: bool,
    /// Some vCPU's list register holds it.
    listed: bool,
    /// The physical INTID of a hardware-linked interrupt.
    hardware: Option<u16>,
}

impl Interrupt {
    const fn reset(edge: bool) -> Interrupt {
        Interrupt {
            priority: RESET_PRIORITY,
            enabled: false,
            group1: true,
            edge,
            latch: false,
            line: false,
            active: false,
            listed: false,
            hardware: None,
        }
    }

    /// Pending in the model: the latch, or an asserted level line.
    fn pending(&self) -> bool {
        self.latch || (!self.edge && self.line)
    }
}

/// A list register the model filled.
#[derive(Clone, Copy, Debug)]
struct Listed {
    intid: u32,
    /// Its pending state came from the latch (restore the latch if the guest did not take it).
    latched: bool,
}

#[derive(Clone, Copy, Debug)]
struct VcpuInterface {
    private: [Interrupt; PRIVATE_INTERRUPTS],
    /// Bit n: private interrupt n may be pending or active (see [`Vgic::spi_maybe`]).
    maybe: u32,
    /// GICR_WAKER.ProcessorSleep.
    asleep: bool,
    /// What the model put in each list register (changed only by `Vgic::record`).
    list: [Option<Listed>; MAX_LIST_REGISTERS],
    /// Bit n: `list[n]` holds an entry, so the loops on every entry and exit visit only
    /// those (kept by `Vgic::record`).
    occupied: u16,
}

impl VcpuInterface {
    const fn new() -> VcpuInterface {
        let mut private = [Interrupt::reset(false); PRIVATE_INTERRUPTS];
        // SGIs are always edge-triggered (GICR_ICFGR0 reads 0xAAAA_AAAA).
        let mut sgi = 0;
        while sgi < SGI_COUNT as usize {
            private[sgi].edge = true;
            sgi += 1;
        }
        VcpuInterface {
            private,
            maybe: 0,
            asleep: true,
            list: [None; MAX_LIST_REGISTERS],
            occupied: 0,
        }
    }
}

/// The candidate order: active interrupts first, then lower priority value, then lower INTID.
type Rank = (bool, u8, u32);

/// Where a guest access to the emulated GIC landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// At this offset into the distributor frame.
    Distributor(u64),
    /// At this offset into the redistributor region.
    Redistributor(u64),
}

/// The positions of the set bits of `word`, lowest first.
fn bits(mut word: u64) -> impl Iterator<Item = u32> {
    core::iter::from_fn(move || {
        (word != 0).then(|| {
            let n = word.trailing_zeros();
            word &= word - 1;
            n
        })
    })
}

/// ICH_ELRSR_EL2 computed from saved list register values: bit n set when LR n holds no
/// interrupt (State = 0b00).
pub fn empty_list_registers(lrs: &[u64]) -> u32 {
    lrs.iter()
        .take(MAX_LIST_REGISTERS)
        .enumerate()
        .fold(0, |acc, (n, value)| {
            acc | u32::from(value & lr::STATE_MASK == 0) << n
        })
}

/// Whether the EL1 virtual timer's interrupt output is asserted, from a saved CNTV_CTL_EL0
/// (ENABLE bit 0, IMASK bit 1, ISTATUS bit 2), CNTV_CVAL_EL0 and the current virtual count:
/// enabled, not masked, and either the condition was met when it was saved or the compare
/// value has been reached since.
pub fn virtual_timer_asserted(ctl: u64, cval: u64, now: u64) -> bool {
    let enabled = ctl & 1 != 0;
    let masked = ctl & 2 != 0;
    let met = ctl & 4 != 0 || now >= cval;
    enabled && !masked && met
}

/// One domain's virtual GICv3.
#[derive(Clone, Debug)]
pub struct Vgic {
    vcpus: usize,
    spis: usize,
    enable_group0: bool,
    enable_group1: bool,
    cpu: [VcpuInterface; MAX_VCPUS],
    spi: [Interrupt; MAX_SPIS],
    /// Bit n: SPI n may be pending or active. Set whenever an interrupt is reached for
    /// writing, cleared by [`Vgic::prune`] once it is neither: the scans on every guest
    /// entry ([`Vgic::fill_list_registers`], [`Vgic::has_deliverable`]) look only at set bits
    /// (they were a third of a null hypercall's instructions when they read all 96).
    spi_maybe: u64,
    /// GICD_IROUTER<n> per SPI (IRM and affinity).
    route: [u64; MAX_SPIS],
}

impl Vgic {
    /// A vGIC in its reset state for `vcpus` vCPUs and `spis` SPIs (rounded up to a multiple
    /// of 32, as GICD_TYPER.ITLinesNumber counts in 32s).
    pub fn new(vcpus: usize, spis: usize) -> Result<Vgic, VgicError> {
        if vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(VgicError::BadVcpuCount(vcpus));
        }
        if spis > MAX_SPIS {
            return Err(VgicError::BadSpiCount(spis));
        }
        let spis = spis.div_ceil(32) * 32;
        if spis > MAX_SPIS {
            return Err(VgicError::BadSpiCount(spis));
        }
        Ok(Vgic {
            vcpus,
            spis,
            enable_group0: false,
            enable_group1: false,
            cpu: [VcpuInterface::new(); MAX_VCPUS],
            spi: [Interrupt::reset(false); MAX_SPIS],
            spi_maybe: 0,
            route: [0; MAX_SPIS],
        })
    }

    /// vCPUs served.
    pub fn vcpu_count(&self) -> usize {
        self.vcpus
    }

    /// SPIs implemented: INTIDs 32 to 32 + this - 1.
    pub fn spi_count(&self) -> usize {
        self.spis
    }

    /// Bytes of the redistributor region: one [`REDISTRIBUTOR_STRIDE`] per vCPU.
    pub fn redistributor_region_size(&self) -> u64 {
        self.vcpus as u64 * REDISTRIBUTOR_STRIDE
    }

    /// A vGIC in its reset state for one vCPU and no SPIs, as a constant: a `static` copy
    /// of it lets a caller build a vGIC in place (e.g. on the heap) without a large value
    /// on the stack, then [`reset_clamped`](Self::reset_clamped) it to size.
    pub const RESET: Vgic = Vgic {
        vcpus: 1,
        spis: 0,
        enable_group0: false,
        enable_group1: false,
        cpu: [VcpuInterface::new(); MAX_VCPUS],
        spi: [Interrupt::reset(false); MAX_SPIS],
        spi_maybe: 0,
        route: [0; MAX_SPIS],
    };

    /// A vGIC for `vcpus` vCPUs and `spis` SPIs, each clamped to what the model supports
    /// (at least one vCPU): for callers that must not fail.
    pub fn clamped(vcpus: usize, spis: usize) -> Vgic {
        let mut gic = Vgic::RESET;
        gic.reset_clamped(vcpus, spis);
        gic
    }

    /// Returns the vGIC to its reset state, in place, for `vcpus` vCPUs and `spis` SPIs
    /// clamped as in [`clamped`](Self::clamped).
    pub fn reset_clamped(&mut self, vcpus: usize, spis: usize) {
        self.vcpus = vcpus.clamp(1, MAX_VCPUS);
        self.spis = (spis.min(MAX_SPIS).div_ceil(32) * 32).min(MAX_SPIS);
        self.enable_group0 = false;
        self.enable_group1 = false;
        for cpu in self.cpu.iter_mut() {
            *cpu = VcpuInterface::new();
        }
        for irq in self.spi.iter_mut() {
            *irq = Interrupt::reset(false);
        }
        self.spi_maybe = 0;
        self.route.fill(0);
    }

    /// Serves `vcpus` vCPUs if that is more than it does (clamped to the model's limit),
    /// keeping all state: a domain created at run time gets its vCPUs one by one, and its
    /// redistributor region (and the `GICR_TYPER.Last` its guest's driver stops at) grows
    /// with them.
    pub fn grow(&mut self, vcpus: usize) {
        self.vcpus = self.vcpus.max(vcpus.min(MAX_VCPUS));
    }

    /// Which emulated frame `[ipa, ipa + size)` lies in, with its offset there: the
    /// distributor window at [`DISTRIBUTOR_BASE`] or the redistributor region at
    /// [`REDISTRIBUTOR_BASE`] (one [`REDISTRIBUTOR_STRIDE`] per vCPU). `None` if the access
    /// is outside both or straddles an end.
    pub fn window(&self, ipa: u64, size: u8) -> Option<Window> {
        let end = ipa.checked_add(u64::from(size))?;
        let within = |base: u64, len: u64| {
            (ipa >= base && end <= base.checked_add(len)?).then(|| ipa - base)
        };
        if let Some(offset) = within(DISTRIBUTOR_BASE, DISTRIBUTOR_SIZE) {
            return Some(Window::Distributor(offset));
        }
        within(REDISTRIBUTOR_BASE, self.redistributor_region_size()).map(Window::Redistributor)
    }

    /// Whether any emulated frame contains `ipa`.
    pub fn contains(&self, ipa: u64) -> bool {
        self.window(ipa, 1).is_some()
    }

    /// A guest load of `size` bytes at guest-physical `ipa`, or `None` outside the windows.
    pub fn mmio_read(&self, ipa: u64, size: u8) -> Option<u64> {
        Some(match self.window(ipa, size)? {
            Window::Distributor(offset) => self.distributor_read(offset, size),
            Window::Redistributor(offset) => self.redistributor_read(offset, size),
        })
    }

    /// A guest store of `size` bytes of `value` at guest-physical `ipa`, or `None` outside
    /// the windows.
    pub fn mmio_write(&mut self, ipa: u64, size: u8, value: u64) -> Option<Kick> {
        Some(match self.window(ipa, size)? {
            Window::Distributor(offset) => self.distributor_write(offset, size, value),
            Window::Redistributor(offset) => self.redistributor_write(offset, size, value),
        })
    }

    fn all_vcpus(&self) -> Kick {
        Kick((1u32 << self.vcpus) - 1)
    }

    fn check_vcpu(&self, vcpu: usize) -> Result<(), VgicError> {
        if vcpu < self.vcpus {
            Ok(())
        } else {
            Err(VgicError::NoSuchVcpu(vcpu))
        }
    }

    fn spi_index(&self, intid: u32) -> Option<usize> {
        let index = usize::try_from(intid.checked_sub(FIRST_SPI)?).ok()?;
        (index < self.spis).then_some(index)
    }

    /// The interrupt `intid` as seen by `vcpu` (its banked copy for INTIDs 0-31).
    fn interrupt(&self, vcpu: usize, intid: u32) -> Option<&Interrupt> {
        if intid < FIRST_SPI {
            self.cpu.get(vcpu)?.private.get(intid as usize)
        } else {
            self.spi.get(self.spi_index(intid)?)
        }
    }

    /// Every write to an interrupt's state goes through here (or marks the whole register's
    /// worth, for guest register writes), so the `maybe` bits never miss one that may be
    /// pending or active.
    fn interrupt_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut Interrupt> {
        if intid < FIRST_SPI {
            let cpu = self.cpu.get_mut(vcpu)?;
            cpu.maybe |= 1 << intid;
            cpu.private.get_mut(intid as usize)
        } else {
            let index = self.spi_index(intid)?;
            self.spi_maybe |= 1u64.checked_shl(index as u32).unwrap_or(0);
            self.spi.get_mut(index)
        }
    }

    /// Clears the `maybe` bits of interrupts that are neither pending nor active.
    fn prune(&mut self, vcpu: usize) {
        let idle = |irq: Option<&Interrupt>| irq.is_none_or(|irq| !irq.pending() && !irq.active);
        if let Some(cpu) = self.cpu.get_mut(vcpu) {
            for n in bits(u64::from(cpu.maybe)) {
                if idle(cpu.private.get(n as usize)) {
                    cpu.maybe &= !(1 << n);
                }
            }
        }
        for n in bits(self.spi_maybe) {
            if idle(self.spi.get(n as usize)) {
                self.spi_maybe &= !(1 << n);
            }
        }
    }

    /// The interrupts of `vcpu` whose `maybe` bit is set (private ones first), with their
    /// state: the only ones that can be pending or active.
    fn maybe_interesting(&self, vcpu: usize) -> impl Iterator<Item = (u32, &Interrupt)> + '_ {
        let cpu = self.cpu.get(vcpu);
        let private = bits(cpu.map_or(0, |c| u64::from(c.maybe)))
            .filter_map(move |n| Some((n, cpu?.private.get(n as usize)?)));
        let spis = bits(self.spi_maybe)
            .filter(|&n| (n as usize) < self.spis)
            .filter_map(|n| Some((FIRST_SPI + n, self.spi.get(n as usize)?)));
        private.chain(spis)
    }

    /// The vCPU an SPI is routed to, if any vCPU matches its IROUTER.
    fn spi_target(&self, index: usize) -> Option<usize> {
        let route = *self.route.get(index)?;
        if route & gicd::IROUTER_ANY != 0 {
            return Some(0);
        }
        (0..self.vcpus).find(|&v| vcpu_affinity(v) == route & 0x00FF_FFFF)
    }

    /// The vCPUs an SPI concerns: its route target and any vCPU holding it in a list register.
    fn spi_kick(&self, index: usize) -> Kick {
        let intid = FIRST_SPI + index as u32;
        let mut kick = self.spi_target(index).map_or(Kick::NONE, Kick::one);
        for (v, cpu) in self.cpu.iter().enumerate().take(self.vcpus) {
            if cpu.occupied != 0 && cpu.list.iter().flatten().any(|l| l.intid == intid) {
                kick = kick.union(Kick::one(v));
            }
        }
        kick
    }

    fn group_enabled(&self, group1: bool) -> bool {
        if group1 {
            self.enable_group1
        } else {
            self.enable_group0
        }
    }

    /// Whether `intid` belongs to `vcpu`: banked, or an SPI routed to it.
    fn routed_here(&self, vcpu: usize, intid: u32) -> bool {
        intid < FIRST_SPI
            || self
                .spi_index(intid)
                .is_some_and(|i| self.spi_target(i) == Some(vcpu))
    }

    /// Whether `intid` may be signalled to `vcpu` now, pending state aside.
    fn eligible(&self, vcpu: usize, intid: u32, irq: &Interrupt) -> bool {
        irq.enabled && self.group_enabled(irq.group1) && self.routed_here(vcpu, intid)
    }
}

#[cfg(any(test, kani))]
impl Vgic {
    /// The model's bookkeeping, which every operation keeps (checked after every step by the
    /// tests, proved for bounded write sequences by Kani in `crate::proofs`): no interrupt is
    /// held by two list registers, an interrupt's `listed` flag says exactly whether one holds
    /// it, and every pending or active interrupt has its `maybe` bit, so the scans that look
    /// only at those bits miss none. `Err` says what broke.
    pub(crate) fn consistency(&self) -> Result<(), &'static str> {
        let mut spis_held = 0u64;
        for (v, cpu) in self.cpu.iter().enumerate().take(self.vcpus) {
            let occupied = cpu
                .list
                .iter()
                .enumerate()
                .fold(0u16, |acc, (n, l)| acc | u16::from(l.is_some()) << n);
            if occupied != cpu.occupied {
                return Err("the occupied bits disagree with the list records");
            }
            let mut private_held = 0u32;
            for listed in cpu.list.iter().flatten() {
                if listed.intid < FIRST_SPI {
                    let bit = 1u32 << listed.intid;
                    if private_held & bit != 0 {
                        return Err("a private interrupt is listed twice");
                    }
                    private_held |= bit;
                } else {
                    let bit = 1u64.checked_shl(listed.intid - FIRST_SPI).unwrap_or(0);
                    if bit == 0 || spis_held & bit != 0 {
                        return Err("an SPI is listed twice or does not exist");
                    }
                    spis_held |= bit;
                }
                if !self
                    .interrupt(v, listed.intid)
                    .is_some_and(|irq| irq.listed)
                {
                    return Err("a listed interrupt does not say so");
                }
            }
            for (intid, irq) in cpu.private.iter().enumerate() {
                if irq.listed != (private_held & (1 << intid) != 0) {
                    return Err("a private interrupt's listed flag disagrees with the records");
                }
                if (irq.pending() || irq.active) && cpu.maybe & (1 << intid) == 0 {
                    return Err("a pending or active private interrupt has no maybe bit");
                }
            }
        }
        for (index, irq) in self.spis().iter().enumerate() {
            if irq.listed != (spis_held & (1 << index) != 0) {
                return Err("an SPI's listed flag disagrees with the records");
            }
            if (irq.pending() || irq.active) && self.spi_maybe & (1 << index) == 0 {
                return Err("a pending or active SPI has no maybe bit");
            }
        }
        Ok(())
    }
}
