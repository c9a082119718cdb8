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

/// Most vCPUs one domain's vGIC serves.
pub const MAX_VCPUS: usize = 8;
/// Most SPIs (INTIDs 32 and up) one domain's vGIC serves.
pub const MAX_SPIS: usize = 64;
/// Most list registers the architecture allows (ICH_VTR_EL2.ListRegs + 1 <= 16).
pub const MAX_LIST_REGISTERS: usize = 16;
/// SGIs (0-15) and PPIs (16-31): banked per vCPU.
pub const PRIVATE_INTERRUPTS: usize = 32;
/// The first SPI.
pub const FIRST_SPI: u32 = 32;
/// SGIs are INTIDs 0-15.
pub const SGI_COUNT: u32 = 16;
/// The guest's virtual timer PPI (EL1 virtual timer, Arm BSA).
pub const VIRTUAL_TIMER_PPI: u32 = 27;
/// The GIC maintenance interrupt PPI at EL2 on QEMU virt.
pub const MAINTENANCE_PPI: u32 = 25;

/// Bytes of the distributor window (one 64 KiB frame).
pub const DISTRIBUTOR_SIZE: u64 = 0x1_0000;
/// Bytes of one vCPU's redistributor: RD_base then SGI_base, 64 KiB each.
pub const REDISTRIBUTOR_STRIDE: u64 = 0x2_0000;
/// Offset of the SGI_base frame within a redistributor.
pub const SGI_FRAME: u64 = 0x1_0000;
/// SPIs every domain's vGIC implements (INTIDs 32-95).
pub const DOMAIN_SPIS: usize = 64;
/// Guest-physical address of the distributor window: where QEMU `virt` puts its GIC
/// distributor, so a guest device tree can reuse the addresses.
pub const DISTRIBUTOR_BASE: u64 = 0x0800_0000;
/// Guest-physical address of the redistributor region (QEMU `virt`'s): vCPU `i`'s
/// redistributor at `REDISTRIBUTOR_BASE + i * REDISTRIBUTOR_STRIDE`.
pub const REDISTRIBUTOR_BASE: u64 = 0x080A_0000;

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
    (vcpu & 0xFF) as u64
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

/// A decoded ICC_SGI1R_EL1 / ICC_SGI0R_EL1 write (IHI 0069 12.2.20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    /// INTID[27:24]: the SGI, 0-15.
    pub intid: u8,
    /// IRM (bit 40): every PE but the sender; the affinity fields are ignored.
    pub all_but_self: bool,
    /// Aff3[55:48], Aff2[39:32], Aff1[23:16] as MPIDR affinity with Aff0 = 0.
    pub affinity: u64,
    /// RS[47:44]: TargetList bit n means Aff0 = 16 * RS + n.
    pub range_selector: u8,
    /// TargetList[15:0].
    pub target_list: u16,
}

impl SgiRequest {
    /// Decodes the 64-bit value the guest wrote.
    pub fn decode(value: u64) -> SgiRequest {
        let aff1 = (value >> 16) & 0xFF;
        let aff2 = (value >> 32) & 0xFF;
        let aff3 = (value >> 48) & 0xFF;
        SgiRequest {
            intid: ((value >> 24) & 0xF) as u8,
            all_but_self: value & (1 << 40) != 0,
            affinity: aff3 << 32 | aff2 << 16 | aff1 << 8,
            range_selector: ((value >> 44) & 0xF) as u8,
            target_list: (value & 0xFFFF) as u16,
        }
    }

    /// Whether the PE with MPIDR affinity `affinity` is named by TargetList (IRM = 0).
    pub fn names(&self, affinity: u64) -> bool {
        let aff0 = affinity & 0xFF;
        if affinity & !0xFF != self.affinity {
            return false;
        }
        let first = u64::from(self.range_selector) * 16;
        match aff0.checked_sub(first) {
            Some(bit) if bit < 16 => self.target_list & (1 << bit) != 0,
            _ => false,
        }
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
    list: [Option<Listed>; MAX_LIST_REGISTERS],
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
        }
    }
}

/// The register families that exist in both the distributor and the SGI frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
    Priority,
    Config,
}

/// The family and the first INTID of the 32-bit register at `offset`, or `None`.
fn family(offset: u64) -> Option<(Family, u32)> {
    let bitmap = |base: u64, f: Family| {
        let index = offset.checked_sub(base)? / 4;
        (index < 32).then_some((f, (index * 32) as u32))
    };
    match offset {
        0x0080..=0x00FF => bitmap(gicd::IGROUPR, Family::Group),
        0x0100..=0x017F => bitmap(gicd::ISENABLER, Family::SetEnable),
        0x0180..=0x01FF => bitmap(gicd::ICENABLER, Family::ClearEnable),
        0x0200..=0x027F => bitmap(gicd::ISPENDR, Family::SetPending),
        0x0280..=0x02FF => bitmap(gicd::ICPENDR, Family::ClearPending),
        0x0300..=0x037F => bitmap(gicd::ISACTIVER, Family::SetActive),
        0x0380..=0x03FF => bitmap(gicd::ICACTIVER, Family::ClearActive),
        0x0400..=0x07FB => Some((Family::Priority, (offset - gicd::IPRIORITYR) as u32)),
        0x0C00..=0x0CFF => Some((Family::Config, ((offset - gicd::ICFGR) / 4 * 16) as u32)),
        _ => None,
    }
}

/// The interrupt `intid` in a run of interrupts whose first has INTID `first`.
fn lookup(irqs: &[Interrupt], first: u32, intid: u32) -> Option<&Interrupt> {
    irqs.get(usize::try_from(intid.checked_sub(first)?).ok()?)
}

fn lookup_mut(irqs: &mut [Interrupt], first: u32, intid: u32) -> Option<&mut Interrupt> {
    irqs.get_mut(usize::try_from(intid.checked_sub(first)?).ok()?)
}

/// Reads the 32-bit register of `family` whose first INTID is `base`, from a run of
/// interrupts starting at INTID `first`. INTIDs outside the run read as zero.
fn read_register(irqs: &[Interrupt], first: u32, family: Family, base: u32) -> u32 {
    let get = |i: u32| base.checked_add(i).and_then(|id| lookup(irqs, first, id));
    let bitmap = |f: fn(&Interrupt) -> bool| {
        (0..32u32).fold(0u32, |acc, i| acc | u32::from(get(i).is_some_and(f)) << i)
    };
    match family {
        Family::Group => bitmap(|irq| irq.group1),
        Family::SetEnable | Family::ClearEnable => bitmap(|irq| irq.enabled),
        Family::SetPending | Family::ClearPending => bitmap(Interrupt::pending),
        Family::SetActive | Family::ClearActive => bitmap(|irq| irq.active),
        Family::Priority => (0..4u32).fold(0, |acc, i| {
            acc | u32::from(get(i).map_or(0, |irq| irq.priority)) << (8 * i)
        }),
        Family::Config => (0..16u32).fold(0, |acc, i| {
            acc | u32::from(get(i).is_some_and(|irq| irq.edge)) << (2 * i + 1)
        }),
    }
}

/// Writes the 32-bit register of `family` whose first INTID is `base`; INTIDs outside the
/// run are ignored. Returns whether any implemented interrupt was addressed.
fn write_register(
    irqs: &mut [Interrupt],
    first: u32,
    family: Family,
    base: u32,
    value: u32,
) -> bool {
    let mut touched = false;
    match family {
        Family::Priority => {
            for i in 0..4u32 {
                if let Some(irq) = base
                    .checked_add(i)
                    .and_then(|id| lookup_mut(irqs, first, id))
                {
                    irq.priority = (value >> (8 * i)) as u8;
                    touched = true;
                }
            }
        }
        Family::Config => {
            for i in 0..16u32 {
                let Some(id) = base.checked_add(i) else {
                    continue;
                };
                // SGI trigger modes are fixed (edge).
                if id < SGI_COUNT {
                    continue;
                }
                if let Some(irq) = lookup_mut(irqs, first, id) {
                    irq.edge = value & (1 << (2 * i + 1)) != 0;
                    touched = true;
                }
            }
        }
        _ => {
            for i in 0..32u32 {
                let one = value & (1 << i) != 0;
                let Some(irq) = base
                    .checked_add(i)
                    .and_then(|id| lookup_mut(irqs, first, id))
                else {
                    continue;
                };
                match family {
                    Family::Group => irq.group1 = one,
                    Family::SetEnable if one => irq.enabled = true,
                    Family::ClearEnable if one => irq.enabled = false,
                    Family::SetPending if one => irq.latch = true,
                    Family::ClearPending if one => irq.latch = false,
                    Family::SetActive if one => irq.active = true,
                    Family::ClearActive if one => irq.active = false,
                    _ => continue,
                }
                touched = true;
            }
        }
    }
    touched
}

/// Whether an access of `size` bytes at `offset` is naturally aligned and of a legal size.
fn aligned(offset: u64, size: u8) -> bool {
    matches!(size, 1 | 2 | 4 | 8) && offset.is_multiple_of(u64::from(size))
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

/// A trapped MSR/MRS (ESR_EL2.EC 0x18), from its ISS (Arm ARM D19.2, "ISS encoding for an
/// exception from MSR, MRS, or System instruction execution in AArch64 state").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysregTrap {
    /// Op0, ISS[21:20].
    pub op0: u8,
    /// Op1, ISS[16:14].
    pub op1: u8,
    /// CRn, ISS[13:10].
    pub crn: u8,
    /// CRm, ISS[4:1].
    pub crm: u8,
    /// Op2, ISS[19:17].
    pub op2: u8,
    /// Rt, ISS[9:5]: the transfer register; 31 is XZR.
    pub rt: u8,
    /// Direction, ISS[0]: an MRS (read) rather than an MSR (write).
    pub read: bool,
}

/// The exception class of a trapped MSR/MRS/system instruction.
pub const EC_SYSREG: u8 = crate::esr::class::SYSREG;

impl SysregTrap {
    /// Decodes ESR_EL2, or `None` if its EC is not [`EC_SYSREG`].
    pub fn decode(esr: u64) -> Option<SysregTrap> {
        if (esr >> 26) & 0x3F != u64::from(EC_SYSREG) {
            return None;
        }
        let bits = |lo: u32, width: u32| ((esr >> lo) & ((1 << width) - 1)) as u8;
        Some(SysregTrap {
            op0: bits(20, 2),
            op2: bits(17, 3),
            op1: bits(14, 3),
            crn: bits(10, 4),
            rt: bits(5, 5),
            crm: bits(1, 4),
            read: esr & 1 != 0,
        })
    }

    /// For a write of an SGI generation register, the group its SGIs are generated in
    /// (true: Group 1): ICC_SGI1R_EL1 (S3_0_C12_C11_5) generates Group 1,
    /// ICC_ASGI1R_EL1 (S3_0_C12_C11_6) and ICC_SGI0R_EL1 (S3_0_C12_C11_7) Group 0, as in the
    /// single security state the model presents (GICD_CTLR.DS = 1). `None` for anything else,
    /// reads included (the registers are write-only).
    pub fn sgi_group1(&self) -> Option<bool> {
        if self.read || (self.op0, self.op1, self.crn, self.crm) != (3, 0, 12, 11) {
            return None;
        }
        match self.op2 {
            5 => Some(true),
            6 | 7 => Some(false),
            _ => None,
        }
    }
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
            if cpu.list.iter().flatten().any(|l| l.intid == intid) {
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

    // ---- Distributor -------------------------------------------------------------------

    /// A guest read of `size` bytes at `offset` into the distributor frame.
    pub fn distributor_read(&self, offset: u64, size: u8) -> u64 {
        if !aligned(offset, size) || offset >= DISTRIBUTOR_SIZE {
            return 0;
        }
        if (gicd::IROUTER..gicd::IROUTER + 8 * 1020).contains(&offset) {
            let intid = ((offset - gicd::IROUTER) / 8) as u32;
            let route = self
                .spi_index(intid)
                .and_then(|i| self.route.get(i).copied())
                .unwrap_or(0);
            return match size {
                8 => route,
                4 if offset.is_multiple_of(8) => route & 0xFFFF_FFFF,
                4 => route >> 32,
                _ => 0,
            };
        }
        match size {
            1 => match family(offset) {
                Some((Family::Priority, intid)) => {
                    u64::from(lookup(self.spis(), FIRST_SPI, intid).map_or(0, |irq| irq.priority))
                }
                _ => 0,
            },
            4 => u64::from(self.distributor_read32(offset)),
            _ => 0,
        }
    }

    /// The implemented SPIs.
    fn spis(&self) -> &[Interrupt] {
        self.spi.get(..self.spis).unwrap_or_default()
    }

    fn distributor_read32(&self, offset: u64) -> u32 {
        match offset {
            gicd::CTLR => {
                gicd::CTLR_ARE
                    | gicd::CTLR_DS
                    | if self.enable_group1 {
                        gicd::CTLR_ENABLE_GRP1
                    } else {
                        0
                    }
                    | if self.enable_group0 {
                        gicd::CTLR_ENABLE_GRP0
                    } else {
                        0
                    }
            }
            gicd::TYPER => {
                let lines = ((PRIVATE_INTERRUPTS + self.spis) / 32 - 1) as u32;
                let cpus = (self.vcpus.min(8) - 1) as u32;
                TYPER_ID_BITS | cpus << 5 | lines
            }
            gicd::IIDR => IIDR_VALUE,
            gicd::PIDR2 => PIDR2_VALUE,
            _ => match family(offset) {
                Some((family, base)) => read_register(self.spis(), FIRST_SPI, family, base),
                None => 0,
            },
        }
    }

    /// A guest write of `size` bytes of `value` at `offset` into the distributor frame.
    pub fn distributor_write(&mut self, offset: u64, size: u8, value: u64) -> Kick {
        if !aligned(offset, size) || offset >= DISTRIBUTOR_SIZE {
            return Kick::NONE;
        }
        if (gicd::IROUTER..gicd::IROUTER + 8 * 1020).contains(&offset) {
            let intid = ((offset - gicd::IROUTER) / 8) as u32;
            let Some(index) = self.spi_index(intid) else {
                return Kick::NONE;
            };
            let before = self.spi_kick(index);
            let Some(route) = self.route.get_mut(index) else {
                return Kick::NONE;
            };
            *route = match size {
                8 => value,
                4 if offset.is_multiple_of(8) => (*route & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF),
                4 => (*route & 0xFFFF_FFFF) | value << 32,
                _ => *route,
            } & IROUTER_WRITABLE;
            return before.union(self.spi_kick(index));
        }
        match (size, family(offset)) {
            (1, Some((Family::Priority, intid))) => match self.spi_index(intid) {
                Some(index) => {
                    if let Some(irq) = self.spi.get_mut(index) {
                        // Priority only: no pending or active state changes.
                        irq.priority = value as u8;
                    }
                    self.spi_kick(index)
                }
                None => Kick::NONE,
            },
            (4, Some((family, base))) => {
                let spis = self.spis;
                let irqs = self.spi.get_mut(..spis).unwrap_or_default();
                if !write_register(irqs, FIRST_SPI, family, base, value as u32) {
                    return Kick::NONE;
                }
                self.spi_maybe = u64::MAX;
                // The register covers up to 32 SPIs; refresh every vCPU any of them concern.
                let first = base.saturating_sub(FIRST_SPI) as usize;
                let count = match family {
                    Family::Priority => 4,
                    Family::Config => 16,
                    _ => 32,
                };
                (first..first + count)
                    .filter(|&i| i < spis)
                    .fold(Kick::NONE, |k, i| k.union(self.spi_kick(i)))
            }
            (4, None) if offset == gicd::CTLR => {
                let value = value as u32;
                self.enable_group0 = value & gicd::CTLR_ENABLE_GRP0 != 0;
                self.enable_group1 = value & gicd::CTLR_ENABLE_GRP1 != 0;
                self.all_vcpus()
            }
            _ => Kick::NONE,
        }
    }

    // ---- Redistributors ----------------------------------------------------------------

    /// Splits a redistributor-region offset into (vCPU, SGI frame?, offset in frame).
    fn redistributor_frame(&self, offset: u64) -> Option<(usize, bool, u64)> {
        let vcpu = usize::try_from(offset / REDISTRIBUTOR_STRIDE).ok()?;
        if vcpu >= self.vcpus {
            return None;
        }
        let within = offset % REDISTRIBUTOR_STRIDE;
        Some((vcpu, within >= SGI_FRAME, within % SGI_FRAME))
    }

    fn redistributor_typer(&self, vcpu: usize) -> u64 {
        let mpidr = vcpu_affinity(vcpu);
        // Aff3.Aff2.Aff1.Aff0 packed into 32 bits.
        let affinity = (mpidr & 0x00FF_FFFF) | (mpidr >> 32 & 0xFF) << 24;
        let last = if vcpu + 1 == self.vcpus {
            gicr::TYPER_LAST
        } else {
            0
        };
        affinity << gicr::TYPER_AFFINITY_SHIFT | (vcpu as u64) << gicr::TYPER_PROCESSOR_SHIFT | last
    }

    /// A guest read of `size` bytes at `offset` into the redistributor region (vCPU `i`'s
    /// frames start at `i * REDISTRIBUTOR_STRIDE`).
    pub fn redistributor_read(&self, offset: u64, size: u8) -> u64 {
        if !aligned(offset, size) {
            return 0;
        }
        let Some((vcpu, sgi_frame, offset)) = self.redistributor_frame(offset) else {
            return 0;
        };
        let Some(cpu) = self.cpu.get(vcpu) else {
            return 0;
        };
        if !sgi_frame {
            let typer = self.redistributor_typer(vcpu);
            return match (offset, size) {
                (gicr::TYPER, 8) => typer,
                (gicr::TYPER, 4) => typer & 0xFFFF_FFFF,
                (0x000C, 4) => typer >> 32,
                (gicr::IIDR, 4) => u64::from(IIDR_VALUE),
                (gicr::PIDR2, 4) => u64::from(PIDR2_VALUE),
                (gicr::WAKER, 4) if cpu.asleep => {
                    u64::from(gicr::WAKER_PROCESSOR_SLEEP | gicr::WAKER_CHILDREN_ASLEEP)
                }
                _ => 0,
            };
        }
        match (size, family(offset)) {
            (1, Some((Family::Priority, intid))) => {
                u64::from(lookup(&cpu.private, 0, intid).map_or(0, |irq| irq.priority))
            }
            (4, Some((family, base))) => u64::from(read_register(&cpu.private, 0, family, base)),
            _ => 0,
        }
    }

    /// A guest write of `size` bytes of `value` at `offset` into the redistributor region.
    pub fn redistributor_write(&mut self, offset: u64, size: u8, value: u64) -> Kick {
        if !aligned(offset, size) {
            return Kick::NONE;
        }
        let Some((vcpu, sgi_frame, offset)) = self.redistributor_frame(offset) else {
            return Kick::NONE;
        };
        let Some(cpu) = self.cpu.get_mut(vcpu) else {
            return Kick::NONE;
        };
        if !sgi_frame {
            if (offset, size) == (gicr::WAKER, 4) {
                cpu.asleep = value & u64::from(gicr::WAKER_PROCESSOR_SLEEP) != 0;
                return Kick::one(vcpu);
            }
            return Kick::NONE;
        }
        let touched = match (size, family(offset)) {
            (1, Some((Family::Priority, intid))) => match lookup_mut(&mut cpu.private, 0, intid) {
                Some(irq) => {
                    irq.priority = value as u8;
                    true
                }
                None => false,
            },
            (4, Some((family, base))) => {
                let touched = write_register(&mut cpu.private, 0, family, base, value as u32);
                if touched {
                    cpu.maybe = u32::MAX;
                }
                touched
            }
            _ => false,
        };
        if touched {
            Kick::one(vcpu)
        } else {
            Kick::NONE
        }
    }

    // ---- SGIs and injection ------------------------------------------------------------

    /// A trapped write by vCPU `sender` of ICC_SGI1R_EL1 (`group1`) or ICC_SGI0R_EL1 (not
    /// `group1`): pends the SGI on every targeted vCPU whose copy of it is in that group.
    pub fn write_sgi(&mut self, sender: usize, value: u64, group1: bool) -> Kick {
        let request = SgiRequest::decode(value);
        let mut kick = Kick::NONE;
        for v in 0..self.vcpus {
            let targeted = if request.all_but_self {
                v != sender
            } else {
                request.names(vcpu_affinity(v))
            };
            if !targeted {
                continue;
            }
            if let Some(irq) = self.interrupt_mut(v, u32::from(request.intid)) {
                if irq.group1 == group1 {
                    irq.latch = true;
                    kick = kick.union(Kick::one(v));
                }
            }
        }
        kick
    }

    /// Makes `intid` pending (an edge, or a software request): on `vcpu` for SGIs and PPIs;
    /// `vcpu` is ignored for SPIs, which go where the guest routed them.
    pub fn set_pending(&mut self, intid: u32, vcpu: usize) -> Result<Kick, VgicError> {
        self.check_vcpu(vcpu)?;
        let irq = self
            .interrupt_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        irq.latch = true;
        Ok(self.kick_for(vcpu, intid))
    }

    /// Drives the input line of a level-sensitive PPI or SPI: pending while asserted (e.g.
    /// the virtual timer, PPI 27, from CNTV_CTL_EL0.ISTATUS on each exit).
    pub fn set_level(
        &mut self,
        intid: u32,
        vcpu: usize,
        asserted: bool,
    ) -> Result<Kick, VgicError> {
        self.check_vcpu(vcpu)?;
        if intid < SGI_COUNT {
            return Err(VgicError::NoSuchInterrupt(intid));
        }
        let irq = self
            .interrupt_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        irq.line = asserted;
        Ok(self.kick_for(vcpu, intid))
    }

    /// Links `intid` to physical interrupt `physical` (`None` unlinks): its list register
    /// entries carry HW = 1, so the guest's deactivation deactivates the physical interrupt,
    /// which the caller acknowledged at EL2 with a priority drop only (EOImode = 1).
    pub fn link_hardware(
        &mut self,
        intid: u32,
        vcpu: usize,
        physical: Option<u32>,
    ) -> Result<(), VgicError> {
        self.check_vcpu(vcpu)?;
        if intid < SGI_COUNT {
            return Err(VgicError::NoSuchInterrupt(intid));
        }
        let hardware = match physical {
            None => None,
            Some(p @ 16..=1019) => Some(p as u16),
            Some(p) => return Err(VgicError::BadPhysicalInterrupt(p)),
        };
        let irq = self
            .interrupt_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        irq.hardware = hardware;
        Ok(())
    }

    fn kick_for(&self, vcpu: usize, intid: u32) -> Kick {
        match self.spi_index(intid) {
            Some(index) => self.spi_kick(index),
            None => Kick::one(vcpu),
        }
    }

    /// Whether `vcpu` has an interrupt the guest could take: for deciding whether a vCPU
    /// that trapped on WFI may sleep. Call after [`sync_from_list_registers`](Self::sync_from_list_registers).
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        let Some(cpu) = self.cpu.get(vcpu).filter(|_| vcpu < self.vcpus) else {
            return false;
        };
        self.maybe_interesting(vcpu)
            .any(|(intid, irq)| irq.pending() && self.eligible(vcpu, intid, irq))
            || cpu.list.iter().flatten().any(|l| l.latched)
    }

    // ---- List registers ----------------------------------------------------------------

    /// The ICH_LR<n>_EL2 value for `intid` with the given state.
    fn encode(intid: u32, irq: &Interrupt, pending: bool, latched: bool) -> u64 {
        let mut value = u64::from(intid) | u64::from(irq.priority) << lr::PRIORITY_SHIFT;
        if pending {
            value |= lr::PENDING;
        }
        if irq.active {
            value |= lr::ACTIVE;
        }
        if irq.group1 {
            value |= lr::GROUP1;
        }
        match irq.hardware {
            Some(physical) => value |= lr::HW | u64::from(physical) << lr::PINTID_SHIFT,
            // A level interrupt listed from its line: ask to be told of its deactivation so
            // the caller can resample the line. Kept while the entry is only active too: a
            // refill between the guest's acknowledgement and its EOI must not lose it.
            None if !irq.edge && !latched => value |= lr::EOI,
            None => {}
        }
        value
    }

    /// Restores the latch a list register took if the guest never saw it.
    fn unlist(&mut self, vcpu: usize, slot: usize, restore_latch: bool) {
        let Some(cpu) = self.cpu.get_mut(vcpu) else {
            return;
        };
        let Some(listed) = cpu.list.get_mut(slot).and_then(Option::take) else {
            return;
        };
        if let Some(irq) = self.interrupt_mut(vcpu, listed.intid) {
            irq.listed = false;
            if restore_latch && listed.latched {
                irq.latch = true;
            }
        }
    }

    /// Takes the pending state of `intid` for a list register: (pending, from the latch).
    fn take_pending(&mut self, vcpu: usize, intid: u32) -> (bool, bool) {
        let Some(irq) = self.interrupt(vcpu, intid).copied() else {
            return (false, false);
        };
        // A hardware-linked interrupt is never listed pending and active: its pending state
        // stays with the physical distributor meanwhile.
        let pending = irq.pending()
            && self.eligible(vcpu, intid, &irq)
            && !(irq.active && irq.hardware.is_some());
        let latched = pending && irq.latch;
        if latched {
            if let Some(irq) = self.interrupt_mut(vcpu, intid) {
                irq.latch = false;
            }
        }
        (pending, latched)
    }

    /// The best interrupt for `vcpu` that is not in a list register and must be: active, or
    /// pending and eligible.
    fn best_candidate(&self, vcpu: usize) -> Option<(Rank, u32)> {
        self.maybe_interesting(vcpu)
            // The cheap tests first: most interrupts are neither active nor pending, and the
            // routing test decodes an SPI's IROUTER.
            .filter(|(intid, irq)| {
                (irq.active || irq.pending())
                    && !irq.listed
                    && self.routed_here(vcpu, *intid)
                    && (irq.active || self.eligible(vcpu, *intid, irq))
            })
            .map(|(intid, irq)| ((!irq.active, irq.priority, intid), intid))
            .min()
    }

    /// Fills `vcpu`'s list registers before it runs. `lrs` holds the ICH_LR<n>_EL2 values
    /// (as many as ICH_VTR_EL2.ListRegs + 1 says; at most 16 are used) and is rewritten in
    /// place; `elrsr` is ICH_ELRSR_EL2 (bit n: LR n holds no valid interrupt). List
    /// registers the model filled earlier are refreshed from the model; the others are used
    /// only if empty. Write every LR back, then ICH_HCR_EL2 = [`FillOutcome::ich_hcr`].
    pub fn fill_list_registers(
        &mut self,
        vcpu: usize,
        lrs: &mut [u64],
        elrsr: u32,
    ) -> Result<FillOutcome, VgicError> {
        self.check_vcpu(vcpu)?;
        let count = lrs.len().min(MAX_LIST_REGISTERS);
        self.prune(vcpu);

        // 1. Refresh what the model already listed.
        for slot in 0..count {
            let Some(listed) = self
                .cpu
                .get(vcpu)
                .and_then(|c| c.list.get(slot).copied().flatten())
            else {
                continue;
            };
            if listed.latched {
                // Filled before without a sync in between: the guest has not run.
                if let Some(irq) = self.interrupt_mut(vcpu, listed.intid) {
                    irq.latch = true;
                }
            }
            let (pending, latched) = self.take_pending(vcpu, listed.intid);
            let Some(irq) = self.interrupt(vcpu, listed.intid).copied() else {
                continue;
            };
            if let Some(entry) = lrs.get_mut(slot) {
                if pending || irq.active {
                    *entry = Self::encode(listed.intid, &irq, pending, latched);
                    if let Some(record) = self.cpu.get_mut(vcpu).and_then(|c| c.list.get_mut(slot))
                    {
                        *record = Some(Listed {
                            intid: listed.intid,
                            latched,
                        });
                    }
                } else {
                    *entry = 0;
                    self.unlist(vcpu, slot, false);
                }
            }
        }

        // 2. List the best remaining candidates, evicting worse pending-only entries.
        let mut underflow = false;
        for _ in 0..count + PRIVATE_INTERRUPTS + MAX_SPIS {
            let Some((rank, intid)) = self.best_candidate(vcpu) else {
                break;
            };
            let slot = match self.free_slot(vcpu, lrs, count, elrsr) {
                Some(slot) => slot,
                None => match self.eviction_victim(vcpu, rank) {
                    Some(slot) => {
                        self.unlist(vcpu, slot, true);
                        if let Some(entry) = lrs.get_mut(slot) {
                            *entry = 0;
                        }
                        slot
                    }
                    None => {
                        underflow = true;
                        break;
                    }
                },
            };
            let (pending, latched) = self.take_pending(vcpu, intid);
            let Some(irq) = self.interrupt_mut(vcpu, intid) else {
                break;
            };
            irq.listed = true;
            let irq = *irq;
            if let Some(entry) = lrs.get_mut(slot) {
                *entry = Self::encode(intid, &irq, pending, latched);
            }
            if let Some(record) = self.cpu.get_mut(vcpu).and_then(|c| c.list.get_mut(slot)) {
                *record = Some(Listed { intid, latched });
            }
        }

        let valid = self.cpu.get(vcpu).map_or(0, |c| {
            (0..count).fold(0u32, |acc, n| {
                acc | u32::from(c.list.get(n).is_some_and(Option::is_some)) << n
            })
        });
        Ok(FillOutcome { valid, underflow })
    }

    /// A list register the model may use: not the model's, and empty.
    fn free_slot(&self, vcpu: usize, lrs: &[u64], count: usize, elrsr: u32) -> Option<usize> {
        let cpu = self.cpu.get(vcpu)?;
        (0..count).find(|&n| {
            cpu.list.get(n).is_some_and(Option::is_none)
                && (elrsr & (1 << n) != 0 || lrs.get(n).is_some_and(|v| v & lr::STATE_MASK == 0))
        })
    }

    /// The worst pending-only list register, if it ranks below `rank`.
    fn eviction_victim(&self, vcpu: usize, rank: Rank) -> Option<usize> {
        let cpu = self.cpu.get(vcpu)?;
        cpu.list
            .iter()
            .enumerate()
            .filter_map(|(slot, listed)| {
                let listed = (*listed)?;
                let irq = self.interrupt(vcpu, listed.intid)?;
                (!irq.active).then_some(((!irq.active, irq.priority, listed.intid), slot))
            })
            .max()
            .filter(|(worst, _)| *worst > rank)
            .map(|(_, slot)| slot)
    }

    /// Folds `vcpu`'s list registers back into the model after it ran: `lrs` are the
    /// ICH_LR<n>_EL2 values read at exit. An entry the guest acknowledged is active; one it
    /// deactivated (state invalid) is inactive and its register free; one still pending
    /// stays pending.
    pub fn sync_from_list_registers(&mut self, vcpu: usize, lrs: &[u64]) -> Result<(), VgicError> {
        self.check_vcpu(vcpu)?;
        for slot in 0..MAX_LIST_REGISTERS {
            let Some(listed) = self
                .cpu
                .get(vcpu)
                .and_then(|c| c.list.get(slot).copied().flatten())
            else {
                continue;
            };
            let value = lrs.get(slot).copied().unwrap_or(0);
            if value & lr::VINTID_MASK != u64::from(listed.intid) {
                // Not what the model wrote: the guest never saw it.
                self.unlist(vcpu, slot, true);
                continue;
            }
            if value & lr::STATE_MASK == 0 {
                // Deactivated: inactive, and the register is free.
                if let Some(irq) = self.interrupt_mut(vcpu, listed.intid) {
                    irq.active = false;
                }
                self.unlist(vcpu, slot, false);
                continue;
            }
            let pending = value & lr::PENDING != 0;
            if let Some(irq) = self.interrupt_mut(vcpu, listed.intid) {
                irq.active = value & lr::ACTIVE != 0;
                if pending && listed.latched {
                    irq.latch = true;
                }
            }
            if let Some(record) = self.cpu.get_mut(vcpu).and_then(|c| c.list.get_mut(slot)) {
                *record = Some(Listed {
                    intid: listed.intid,
                    latched: false,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRP1: u32 = gicd::CTLR_ENABLE_GRP1;

    fn sgi_frame(vcpu: usize, offset: u64) -> u64 {
        vcpu as u64 * REDISTRIBUTOR_STRIDE + SGI_FRAME + offset
    }

    fn rd_frame(vcpu: usize, offset: u64) -> u64 {
        vcpu as u64 * REDISTRIBUTOR_STRIDE + offset
    }

    /// A vGIC after the distributor and redistributor steps of Linux's GICv3 driver
    /// (gic_dist_init, gic_cpu_init): everything Group 1, priority 0xA0, SPIs level and
    /// routed to vCPU 0, nothing enabled, distributor enabled.
    fn linux_booted(vcpus: usize, spis: usize) -> Vgic {
        let mut gic = Vgic::new(vcpus, spis).unwrap();
        let _ = gic.distributor_write(gicd::CTLR, 4, 0);
        assert_eq!(
            gic.distributor_read(gicd::CTLR, 4) as u32 & gicd::CTLR_RWP,
            0
        );
        let lines = (gic.distributor_read(gicd::TYPER, 4) & 0x1F) as u32;
        let intids = 32 * (lines + 1);
        for base in (32..intids).step_by(32) {
            let reg = u64::from(base / 32) * 4;
            let _ = gic.distributor_write(gicd::IGROUPR + reg, 4, 0xFFFF_FFFF);
            let _ = gic.distributor_write(gicd::ICACTIVER + reg, 4, 0xFFFF_FFFF);
            let _ = gic.distributor_write(gicd::ICENABLER + reg, 4, 0xFFFF_FFFF);
        }
        for base in (32..intids).step_by(16) {
            let _ = gic.distributor_write(gicd::ICFGR + u64::from(base / 16) * 4, 4, 0);
        }
        for base in (32..intids).step_by(4) {
            let _ = gic.distributor_write(gicd::IPRIORITYR + u64::from(base), 4, 0xA0A0_A0A0);
        }
        for intid in 32..intids {
            let _ =
                gic.distributor_write(gicd::IROUTER + 8 * u64::from(intid), 8, vcpu_affinity(0));
        }
        let _ = gic.distributor_write(gicd::CTLR, 4, 0x13);
        for v in 0..vcpus {
            let _ = gic.redistributor_write(rd_frame(v, gicr::WAKER), 4, 0);
            let _ = gic.redistributor_write(sgi_frame(v, gicd::ICACTIVER), 4, 0xFFFF_FFFF);
            let _ = gic.redistributor_write(sgi_frame(v, gicd::ICENABLER), 4, 0xFFFF_0000);
            let _ = gic.redistributor_write(sgi_frame(v, gicd::ISENABLER), 4, 0x0000_FFFF);
            let _ = gic.redistributor_write(sgi_frame(v, gicd::IGROUPR), 4, 0xFFFF_FFFF);
            for reg in 0..8 {
                let _ = gic.redistributor_write(
                    sgi_frame(v, gicd::IPRIORITYR + 4 * reg),
                    4,
                    0xA0A0_A0A0,
                );
            }
        }
        gic
    }

    fn enable(gic: &mut Vgic, vcpu: usize, intid: u32) {
        let bit = 1u64 << (intid % 32);
        let kick = if intid < FIRST_SPI {
            gic.redistributor_write(sgi_frame(vcpu, gicd::ISENABLER), 4, bit)
        } else {
            gic.distributor_write(gicd::ISENABLER + u64::from(intid / 32) * 4, 4, bit)
        };
        assert!(!kick.is_empty());
    }

    fn set_priority(gic: &mut Vgic, vcpu: usize, intid: u32, priority: u8) {
        if intid < FIRST_SPI {
            let _ = gic.redistributor_write(
                sgi_frame(vcpu, gicd::IPRIORITYR + u64::from(intid)),
                1,
                priority.into(),
            );
        } else {
            let _ = gic.distributor_write(gicd::IPRIORITYR + u64::from(intid), 1, priority.into());
        }
    }

    fn lr_intid(value: u64) -> u32 {
        (value & lr::VINTID_MASK) as u32
    }

    fn lr_priority(value: u64) -> u8 {
        (value >> lr::PRIORITY_SHIFT) as u8
    }

    /// The virtual CPU interface: acknowledges the highest-priority pending list register
    /// (ties: lowest INTID), which becomes active, then (if `eoi`) deactivates it.
    fn guest_takes_one(lrs: &mut [u64], eoi: bool) -> Option<u32> {
        let (slot, _) = lrs
            .iter()
            .enumerate()
            .filter(|(_, v)| *v & lr::PENDING != 0 && *v & lr::ACTIVE == 0)
            .map(|(n, v)| (n, (lr_priority(*v), lr_intid(*v))))
            .min_by_key(|(_, key)| *key)?;
        let intid = lr_intid(lrs[slot]);
        lrs[slot] = (lrs[slot] & !lr::STATE_MASK) | lr::ACTIVE;
        if eoi {
            lrs[slot] &= !lr::STATE_MASK;
        }
        Some(intid)
    }

    fn elrsr(lrs: &[u64]) -> u32 {
        lrs.iter().enumerate().fold(0, |acc, (n, v)| {
            acc | u32::from(v & lr::STATE_MASK == 0) << n
        })
    }

    fn fill(gic: &mut Vgic, vcpu: usize, lrs: &mut [u64]) -> FillOutcome {
        let empty = elrsr(lrs);
        gic.fill_list_registers(vcpu, lrs, empty).unwrap()
    }

    /// Runs fill / guest / sync cycles on `vcpu` until nothing is left; returns the INTIDs
    /// in the order the guest took them.
    fn deliver_all(gic: &mut Vgic, vcpu: usize, lrs: &mut [u64]) -> Vec<u32> {
        let mut taken = Vec::new();
        for _ in 0..1000 {
            let outcome = fill(gic, vcpu, lrs);
            let Some(intid) = guest_takes_one(lrs, true) else {
                assert!(!outcome.underflow);
                break;
            };
            taken.push(intid);
            gic.sync_from_list_registers(vcpu, lrs).unwrap();
        }
        taken
    }

    #[test]
    fn linux_init_reads_identification_and_topology() {
        let gic = linux_booted(2, 64);
        let typer = gic.distributor_read(gicd::TYPER, 4);
        assert_eq!(typer & 0x1F, 2, "ITLinesNumber: 96 INTIDs");
        assert_eq!((typer >> 19) & 0x1F, 9, "IDbits: 10");
        assert_eq!(typer & (1 << 17), 0, "no LPIs");
        assert_eq!(typer & (1 << 16), 0, "no MBIS");
        assert_eq!(gic.distributor_read(gicd::PIDR2, 4) & 0xF0, 0x30);
        assert_eq!(gic.distributor_read(gicd::IIDR, 4), u64::from(IIDR_VALUE));
        let ctlr = gic.distributor_read(gicd::CTLR, 4) as u32;
        assert_eq!(
            ctlr,
            gicd::CTLR_ARE | gicd::CTLR_DS | gicd::CTLR_ENABLE_GRP1 | gicd::CTLR_ENABLE_GRP0
        );

        // Linux's redistributor walk: PIDR2, then TYPER as 64 bits, until Last.
        let mut frame = 0;
        let mut seen = Vec::new();
        loop {
            assert_eq!(gic.redistributor_read(frame + gicr::PIDR2, 4) & 0xF0, 0x30);
            let typer = gic.redistributor_read(frame + gicr::TYPER, 8);
            seen.push(((typer >> 32), (typer >> 8) & 0xFFFF));
            assert_eq!(
                gic.redistributor_read(frame + gicr::TYPER, 4),
                typer & 0xFFFF_FFFF
            );
            assert_eq!(
                gic.redistributor_read(frame + gicr::TYPER + 4, 4),
                typer >> 32
            );
            if typer & gicr::TYPER_LAST != 0 {
                break;
            }
            frame += REDISTRIBUTOR_STRIDE;
        }
        assert_eq!(seen, vec![(0, 0), (1, 1)]);
        assert_eq!(gic.redistributor_region_size(), 2 * REDISTRIBUTOR_STRIDE);
        assert_eq!(
            gic.redistributor_read(2 * REDISTRIBUTOR_STRIDE + gicr::PIDR2, 4),
            0
        );
        assert_eq!(vmpidr(1), 0x8000_0001);
    }

    #[test]
    fn waker_children_asleep_mirrors_processor_sleep() {
        let mut gic = Vgic::new(1, 32).unwrap();
        let sleeping = u64::from(gicr::WAKER_PROCESSOR_SLEEP | gicr::WAKER_CHILDREN_ASLEEP);
        assert_eq!(gic.redistributor_read(gicr::WAKER, 4), sleeping);
        let _ = gic.redistributor_write(gicr::WAKER, 4, 0);
        assert_eq!(gic.redistributor_read(gicr::WAKER, 4), 0);
        let _ = gic.redistributor_write(gicr::WAKER, 4, u64::from(gicr::WAKER_PROCESSOR_SLEEP));
        assert_eq!(gic.redistributor_read(gicr::WAKER, 4), sleeping);
        assert_eq!(gic.redistributor_read(gicr::CTLR, 4), 0, "RWP reads 0");
    }

    #[test]
    fn set_and_clear_families_for_spis_and_private_interrupts() {
        let families = [
            (gicd::ISENABLER, gicd::ICENABLER),
            (gicd::ISPENDR, gicd::ICPENDR),
            (gicd::ISACTIVER, gicd::ICACTIVER),
        ];
        for (set, clear) in families {
            let mut gic = Vgic::new(2, 64).unwrap();
            // SPIs 33 and 40 in register 1.
            let _ = gic.distributor_write(set + 4, 4, 1 << 1 | 1 << 8);
            assert_eq!(gic.distributor_read(set + 4, 4), 1 << 1 | 1 << 8);
            check_consistency(&gic);
            assert_eq!(gic.distributor_read(clear + 4, 4), 1 << 1 | 1 << 8);
            // Zero bits change nothing.
            let _ = gic.distributor_write(set + 4, 4, 0);
            let _ = gic.distributor_write(clear + 4, 4, 0);
            assert_eq!(gic.distributor_read(set + 4, 4), 1 << 1 | 1 << 8);
            let _ = gic.distributor_write(clear + 4, 4, 1 << 1);
            assert_eq!(gic.distributor_read(set + 4, 4), 1 << 8);
            // Register 0 (INTIDs 0-31) is RAZ/WI in the distributor with ARE = 1, and
            // register 3 is past the 64 SPIs.
            let _ = gic.distributor_write(set, 4, 0xFFFF_FFFF);
            let _ = gic.distributor_write(set + 12, 4, 0xFFFF_FFFF);
            assert_eq!(gic.distributor_read(set, 4), 0);
            assert_eq!(gic.distributor_read(set + 12, 4), 0);
            // Banked per vCPU in the SGI frame.
            let _ = gic.redistributor_write(sgi_frame(1, set), 4, 1 << 27 | 1 << 3);
            check_consistency(&gic);
            assert_eq!(
                gic.redistributor_read(sgi_frame(1, set), 4),
                1 << 27 | 1 << 3
            );
            assert_eq!(gic.redistributor_read(sgi_frame(0, set), 4), 0);
            let _ = gic.redistributor_write(sgi_frame(1, clear), 4, 1 << 3);
            assert_eq!(gic.redistributor_read(sgi_frame(1, clear), 4), 1 << 27);
            // Only register 0 exists in the SGI frame.
            assert_eq!(gic.redistributor_read(sgi_frame(1, set + 4), 4), 0);
        }
    }

    #[test]
    fn groups_and_configuration() {
        let mut gic = Vgic::new(1, 32).unwrap();
        assert_eq!(
            gic.distributor_read(gicd::IGROUPR + 4, 4),
            0xFFFF_FFFF,
            "reset: Group 1"
        );
        let _ = gic.distributor_write(gicd::IGROUPR + 4, 4, 0xFFFF_FFFE);
        assert_eq!(gic.distributor_read(gicd::IGROUPR + 4, 4), 0xFFFF_FFFE);
        // SGIs are edge and read-only; PPIs and SPIs are programmable.
        assert_eq!(
            gic.redistributor_read(sgi_frame(0, gicd::ICFGR), 4),
            0xAAAA_AAAA
        );
        let _ = gic.redistributor_write(sgi_frame(0, gicd::ICFGR), 4, 0);
        assert_eq!(
            gic.redistributor_read(sgi_frame(0, gicd::ICFGR), 4),
            0xAAAA_AAAA
        );
        assert_eq!(gic.redistributor_read(sgi_frame(0, gicd::ICFGR + 4), 4), 0);
        let _ = gic.redistributor_write(sgi_frame(0, gicd::ICFGR + 4), 4, 0x2 << 22);
        assert_eq!(
            gic.redistributor_read(sgi_frame(0, gicd::ICFGR + 4), 4),
            0x2 << 22
        );
        // SPI 33 (ICFGR2, field 1) edge; the RES0 bit 0 of each field stays clear.
        let _ = gic.distributor_write(gicd::ICFGR + 8, 4, 0xF << 2);
        assert_eq!(
            gic.distributor_read(gicd::ICFGR + 8, 4),
            0x2 << 2 | 0x2 << 4
        );
        assert_eq!(
            gic.distributor_read(gicd::ICFGR, 4),
            0,
            "SGIs: RAZ in the distributor"
        );
        assert_eq!(gic.distributor_read(gicd::IGRPMODR + 4, 4), 0);
    }

    #[test]
    fn priorities_by_byte_and_by_word() {
        let mut gic = Vgic::new(1, 32).unwrap();
        let _ = gic.distributor_write(gicd::IPRIORITYR + 32, 4, 0x4030_2010);
        assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 33, 1), 0x20);
        assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 35, 1), 0x40);
        let _ = gic.distributor_write(gicd::IPRIORITYR + 34, 1, 0xEE);
        assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 32, 4), 0x40EE_2010);
        // Halfword and unaligned accesses are RAZ/WI.
        let _ = gic.distributor_write(gicd::IPRIORITYR + 32, 2, 0xFFFF);
        assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 32, 2), 0);
        let _ = gic.distributor_write(gicd::IPRIORITYR + 33, 4, 0xFFFF_FFFF);
        assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 32, 4), 0x40EE_2010);
        // INTIDs 0-31 are RAZ/WI in the distributor, banked in the SGI frame.
        let _ = gic.distributor_write(gicd::IPRIORITYR, 4, 0xFFFF_FFFF);
        assert_eq!(gic.distributor_read(gicd::IPRIORITYR, 4), 0);
        let _ = gic.redistributor_write(sgi_frame(0, gicd::IPRIORITYR + 24), 4, 0x8070_6050);
        let _ = gic.redistributor_write(sgi_frame(0, gicd::IPRIORITYR + 27), 1, 0x10);
        assert_eq!(
            gic.redistributor_read(sgi_frame(0, gicd::IPRIORITYR + 24), 4),
            0x1070_6050
        );
        assert_eq!(
            gic.redistributor_read(sgi_frame(0, gicd::IPRIORITYR + 26), 1),
            0x70
        );
        // Beyond the SPIs.
        assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 64, 4), 0);
    }

    #[test]
    fn spis_go_where_irouter_says() {
        let mut gic = linux_booted(3, 64);
        enable(&mut gic, 0, 50);
        // Route SPI 50 to vCPU 2 with a 64-bit write; read back in both widths.
        let kick = gic.distributor_write(gicd::IROUTER + 8 * 50, 8, vcpu_affinity(2));
        assert!(
            kick.contains(0) && kick.contains(2),
            "old and new targets: {kick:?}"
        );
        assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 50, 8), 2);
        assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 50, 4), 2);
        assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 50 + 4, 4), 0);
        assert_eq!(gic.set_pending(50, 0).unwrap().bits(), 1 << 2);
        let mut lrs = [0u64; 4];
        assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 0);
        assert_eq!(gic.fill_list_registers(2, &mut lrs, 0xF).unwrap().valid, 1);
        assert_eq!(lr_intid(lrs[0]), 50);
        assert_eq!(lrs[0] & lr::STATE_MASK, lr::PENDING);
        assert!(gic.has_deliverable(2));
        assert!(!gic.has_deliverable(0));

        // An affinity no vCPU has: pending, but delivered nowhere until rerouted.
        let _ = gic.distributor_write(gicd::IROUTER + 8 * 51, 8, 0x0000_0100);
        enable(&mut gic, 0, 51);
        let _ = gic.set_pending(51, 0).unwrap();
        assert!(!gic.has_deliverable(0));
        assert!(!gic.has_deliverable(1));
        let mut lrs = [0u64; 4];
        assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 0);
        assert_eq!(gic.fill_list_registers(1, &mut lrs, 0xF).unwrap().valid, 0);
        // Interrupt_Routing_Mode = 1: any vCPU, here vCPU 0. Aff3 and RES0 bits are dropped.
        let any = 0xFF_0000_0000 | gicd::IROUTER_ANY;
        let _ = gic.distributor_write(gicd::IROUTER + 8 * 51, 8, any);
        assert_eq!(
            gic.distributor_read(gicd::IROUTER + 8 * 51, 8),
            gicd::IROUTER_ANY
        );
        assert!(gic.has_deliverable(0));
        assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 1);
        assert_eq!(lr_intid(lrs[0]), 51);
        // 32-bit halves.
        let _ = gic.distributor_write(gicd::IROUTER + 8 * 52, 4, 1);
        let _ = gic.distributor_write(gicd::IROUTER + 8 * 52 + 4, 4, 0xFF);
        assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 52, 8), 1);
        // IROUTER of an SGI/PPI or past the SPIs: RAZ/WI.
        let _ = gic.distributor_write(gicd::IROUTER + 8 * 5, 8, 1);
        assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 5, 8), 0);
        assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 96, 8), 0);
    }

    #[test]
    fn sgi1r_decodes_targets_affinity_and_irm() {
        let request = SgiRequest::decode(0x00AB_1002_0503_0006);
        assert_eq!(
            request,
            SgiRequest {
                intid: 5,
                all_but_self: false,
                affinity: 0xAB_0002_0300,
                range_selector: 1,
                target_list: 6,
            }
        );
        assert!(request.names(0xAB_0002_0311));
        assert!(request.names(0xAB_0002_0312));
        assert!(!request.names(0xAB_0002_0310));
        assert!(!request.names(0xAB_0002_0301));
        assert!(!request.names(0x0002_0311));

        let mut gic = linux_booted(4, 32);
        // INTID 3 to vCPUs 1 and 3 (TargetList 0b1010, Aff1-3 = 0, RS = 0).
        let kick = gic.write_sgi(0, 3 << 24 | 0b1010, true);
        assert_eq!(kick.iter().collect::<Vec<_>>(), vec![1, 3]);
        for v in 0..4 {
            let pending = gic.redistributor_read(sgi_frame(v, gicd::ISPENDR), 4);
            assert_eq!(pending, if v % 2 == 1 { 1 << 3 } else { 0 });
        }
        // IRM: everyone but the sender.
        let kick = gic.write_sgi(2, 1 << 40 | 7 << 24, true);
        assert_eq!(kick.bits(), 0b1011);
        // Another Aff1, or an RS past our vCPUs: nobody.
        assert!(gic.write_sgi(0, 1 << 16 | 1 << 24 | 1, true).is_empty());
        assert!(gic.write_sgi(0, 1 << 44 | 1, true).is_empty());
        // SGI0R reaches only SGIs configured as Group 0.
        assert!(gic.write_sgi(0, 9 << 24 | 0b10, false).is_empty());
        let _ = gic.redistributor_write(sgi_frame(1, gicd::IGROUPR), 4, !(1u64 << 9) & 0xFFFF_FFFF);
        let _ = gic.distributor_write(gicd::CTLR, 4, 0x3);
        assert_eq!(gic.write_sgi(0, 9 << 24 | 0b10, false).bits(), 0b10);
        let mut lrs = [0u64; 4];
        let _ = gic.fill_list_registers(1, &mut lrs, 0xF).unwrap();
        let sgi9 = lrs.iter().find(|v| lr_intid(**v) == 9).copied().unwrap();
        assert_eq!(
            sgi9 & lr::GROUP1,
            0,
            "Group 0 is signalled as a virtual FIQ"
        );
    }

    #[test]
    fn list_register_encoding() {
        let mut gic = linux_booted(1, 32);
        enable(&mut gic, 0, 40);
        set_priority(&mut gic, 0, 40, 0x80);
        let _ = gic.set_pending(40, 0).unwrap();
        let mut lrs = [0u64; 4];
        let outcome = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
        assert_eq!(
            outcome,
            FillOutcome {
                valid: 1,
                underflow: false
            }
        );
        assert_eq!(outcome.ich_hcr(), hcr::EN);
        assert_eq!(lrs[0], lr::PENDING | lr::GROUP1 | 0x80 << 48 | 40);
        assert_eq!(lrs[0], 0x5080_0000_0000_0028);

        // Hardware-linked: HW and pINTID, no EOI bit.
        let mut gic = linux_booted(1, 32);
        enable(&mut gic, 0, VIRTUAL_TIMER_PPI);
        gic.link_hardware(VIRTUAL_TIMER_PPI, 0, Some(27)).unwrap();
        let _ = gic.set_pending(VIRTUAL_TIMER_PPI, 0).unwrap();
        let mut lrs = [0u64; 4];
        let _ = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
        assert_eq!(
            lrs[0],
            lr::PENDING | lr::HW | lr::GROUP1 | 0xA0 << 48 | 27 << 32 | 27
        );
        assert_eq!(
            gic.link_hardware(VIRTUAL_TIMER_PPI, 0, Some(1020)),
            Err(VgicError::BadPhysicalInterrupt(1020))
        );
        assert_eq!(
            gic.link_hardware(3, 0, Some(40)),
            Err(VgicError::NoSuchInterrupt(3))
        );
    }

    #[test]
    fn ten_pending_through_four_list_registers_arrive_once_in_priority_order() {
        let mut gic = linux_booted(2, 64);
        let interrupts: [(u32, u8); 10] = [
            (40, 0xA0),
            (33, 0x20),
            (27, 0xA0),
            (1, 0x60),
            (90, 0x20),
            (45, 0xF0),
            (20, 0x60),
            (60, 0x00),
            (34, 0xA0),
            (5, 0xF0),
        ];
        for (intid, priority) in interrupts {
            enable(&mut gic, 0, intid);
            set_priority(&mut gic, 0, intid, priority);
            let kick = gic.set_pending(intid, 0).unwrap();
            assert!(kick.contains(0));
        }
        let mut lrs = [0u64; 4];
        let first = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
        assert!(first.underflow, "10 pending, 4 list registers");
        assert_eq!(first.ich_hcr(), hcr::EN | hcr::UIE);
        assert_eq!(first.valid, 0xF);
        let listed: Vec<u32> = lrs.iter().map(|v| lr_intid(*v)).collect();
        assert_eq!(listed, vec![60, 33, 90, 1]);
        gic.sync_from_list_registers(0, &lrs).unwrap();

        let taken = deliver_all(&mut gic, 0, &mut lrs);
        let mut expected = interrupts;
        expected.sort_by_key(|&(intid, priority)| (priority, intid));
        let expected: Vec<u32> = expected.iter().map(|&(intid, _)| intid).collect();
        assert_eq!(taken, expected);
        assert!(!gic.has_deliverable(0));
        assert_eq!(
            gic.fill_list_registers(0, &mut lrs, 0xF).unwrap(),
            FillOutcome::default()
        );
    }

    #[test]
    fn the_guest_may_take_several_per_run() {
        let mut gic = linux_booted(1, 64);
        for intid in 32..52 {
            enable(&mut gic, 0, intid);
            set_priority(&mut gic, 0, intid, (60 - intid) as u8);
            let _ = gic.set_pending(intid, 0).unwrap();
        }
        let mut lrs = [0u64; 4];
        let mut taken = Vec::new();
        for _ in 0..100 {
            let outcome = fill(&mut gic, 0, &mut lrs);
            // The guest drains list registers until the underflow maintenance interrupt.
            let mut took = false;
            while lrs.iter().filter(|v| *v & lr::STATE_MASK != 0).count()
                > usize::from(outcome.underflow)
            {
                match guest_takes_one(&mut lrs, true) {
                    Some(intid) => {
                        taken.push(intid);
                        took = true;
                    }
                    None => break,
                }
            }
            gic.sync_from_list_registers(0, &lrs).unwrap();
            if !took {
                break;
            }
        }
        assert_eq!(taken, (32..52).rev().collect::<Vec<_>>());
    }

    #[test]
    fn a_better_interrupt_evicts_a_listed_pending_one() {
        let mut gic = linux_booted(1, 64);
        for intid in 40..44 {
            enable(&mut gic, 0, intid);
            set_priority(&mut gic, 0, intid, 0xC0);
            let _ = gic.set_pending(intid, 0).unwrap();
        }
        let mut lrs = [0u64; 4];
        assert!(!gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().underflow);
        // The guest acknowledges 40 and keeps it active; then 50 arrives at a higher priority.
        assert_eq!(guest_takes_one(&mut lrs, false), Some(40));
        gic.sync_from_list_registers(0, &lrs).unwrap();
        enable(&mut gic, 0, 50);
        set_priority(&mut gic, 0, 50, 0x10);
        let _ = gic.set_pending(50, 0).unwrap();
        let outcome = fill(&mut gic, 0, &mut lrs);
        assert!(outcome.underflow, "43 was evicted and waits");
        let mut listed: Vec<u32> = lrs.iter().map(|v| lr_intid(*v)).collect();
        listed.sort_unstable();
        assert_eq!(listed, vec![40, 41, 42, 50]);
        let active = lrs.iter().find(|v| lr_intid(**v) == 40).unwrap();
        assert_eq!(active & lr::STATE_MASK, lr::ACTIVE, "the active one stays");
        assert_eq!(
            gic.distributor_read(gicd::ISPENDR + 4, 4) & (1 << 11),
            1 << 11,
            "43 still pending"
        );
        // Finish 40, then everything else arrives in order, 43 last.
        let slot = lrs.iter().position(|v| lr_intid(*v) == 40).unwrap();
        lrs[slot] = 0;
        gic.sync_from_list_registers(0, &lrs).unwrap();
        assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![50, 41, 42, 43]);
    }

    #[test]
    fn a_disabled_interrupt_waits_until_enabled() {
        let mut gic = linux_booted(1, 32);
        let _ = gic.set_pending(44, 0).unwrap();
        let mut lrs = [0u64; 4];
        assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 0);
        assert!(!gic.has_deliverable(0));
        enable(&mut gic, 0, 44);
        assert!(gic.has_deliverable(0));
        // Listed, then disabled before the guest runs: withdrawn, still pending.
        assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 1);
        let _ = gic.distributor_write(gicd::ICENABLER + 4, 4, 1 << 12);
        assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 0);
        assert_eq!(lrs, [0; 4]);
        assert_eq!(gic.distributor_read(gicd::ISPENDR + 4, 4), 1 << 12);
        // Same when it was listed and the guest ran without taking it.
        enable(&mut gic, 0, 44);
        assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 1);
        gic.sync_from_list_registers(0, &lrs).unwrap();
        let _ = gic.distributor_write(gicd::ICENABLER + 4, 4, 1 << 12);
        assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 0);
        // A disabled distributor group delivers nothing either.
        enable(&mut gic, 0, 44);
        let _ = gic.distributor_write(gicd::CTLR, 4, 0);
        assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 0);
        let _ = gic.distributor_write(gicd::CTLR, 4, u64::from(GRP1));
        assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![44]);
    }

    #[test]
    fn clearing_pending_withdraws_a_listed_interrupt() {
        let mut gic = linux_booted(1, 32);
        enable(&mut gic, 0, 2);
        let _ = gic.write_sgi(0, 2 << 24 | 1, true);
        let mut lrs = [0u64; 4];
        assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 1);
        gic.sync_from_list_registers(0, &lrs).unwrap();
        assert_eq!(
            gic.redistributor_read(sgi_frame(0, gicd::ISPENDR), 4),
            1 << 2
        );
        let _ = gic.redistributor_write(sgi_frame(0, gicd::ICPENDR), 4, 1 << 2);
        assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 0);
        assert!(deliver_all(&mut gic, 0, &mut lrs).is_empty());
    }

    #[test]
    fn an_edge_while_active_makes_it_pending_and_active() {
        let mut gic = linux_booted(1, 64);
        enable(&mut gic, 0, 70);
        let _ = gic.distributor_write(gicd::ICFGR + 4 * (70 / 16), 4, 0x2 << (2 * (70 % 16)));
        let _ = gic.set_pending(70, 0).unwrap();
        let mut lrs = [0u64; 4];
        let _ = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
        assert_eq!(guest_takes_one(&mut lrs, false), Some(70));
        gic.sync_from_list_registers(0, &lrs).unwrap();
        assert_eq!(gic.distributor_read(gicd::ISACTIVER + 8, 4), 1 << 6);
        let _ = gic.set_pending(70, 0).unwrap();
        let _ = fill(&mut gic, 0, &mut lrs);
        assert_eq!(
            lrs[0] & lr::STATE_MASK,
            lr::STATE_MASK,
            "pending and active"
        );
        // EOI of the first leaves the second pending; then it is taken once more.
        lrs[0] = (lrs[0] & !lr::STATE_MASK) | lr::PENDING;
        gic.sync_from_list_registers(0, &lrs).unwrap();
        assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![70]);
    }

    #[test]
    fn filling_twice_without_running_loses_nothing() {
        let mut gic = linux_booted(1, 32);
        enable(&mut gic, 0, 36);
        let _ = gic.set_pending(36, 0).unwrap();
        let mut lrs = [0u64; 4];
        let _ = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
        let again = fill(&mut gic, 0, &mut lrs);
        assert_eq!(again.valid, 1);
        assert_eq!(lrs[0] & lr::STATE_MASK, lr::PENDING);
        assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![36]);
    }

    #[test]
    fn a_level_interrupt_is_pending_while_its_line_is_asserted() {
        let mut gic = linux_booted(1, 32);
        enable(&mut gic, 0, VIRTUAL_TIMER_PPI);
        let _ = gic.set_level(VIRTUAL_TIMER_PPI, 0, true).unwrap();
        let mut lrs = [0u64; 4];
        let _ = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
        assert_eq!(
            lrs[0] & (lr::EOI | lr::PENDING),
            lr::EOI | lr::PENDING,
            "resample on EOI"
        );
        assert_eq!(guest_takes_one(&mut lrs, true), Some(VIRTUAL_TIMER_PPI));
        gic.sync_from_list_registers(0, &lrs).unwrap();
        // Still asserted: listed again, and still asking to be told of the EOI.
        let _ = fill(&mut gic, 0, &mut lrs);
        assert_eq!(lrs[0] & lr::EOI, lr::EOI, "EOI request kept across refills");
        assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 1);
        // The line drops before the guest takes it: withdrawn.
        gic.sync_from_list_registers(0, &lrs).unwrap();
        let _ = gic.set_level(VIRTUAL_TIMER_PPI, 0, false).unwrap();
        assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 0);
        assert!(!gic.has_deliverable(0));
        // ISPENDR on a level interrupt latches until ICPENDR or acknowledgement.
        let _ = gic.redistributor_write(sgi_frame(0, gicd::ISPENDR), 4, 1 << VIRTUAL_TIMER_PPI);
        assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![VIRTUAL_TIMER_PPI]);
        assert_eq!(
            gic.set_level(3, 0, true),
            Err(VgicError::NoSuchInterrupt(3))
        );
    }

    #[test]
    fn requests_outside_the_domain_are_refused() {
        assert_eq!(Vgic::new(0, 32).err(), Some(VgicError::BadVcpuCount(0)));
        assert_eq!(Vgic::new(9, 32).err(), Some(VgicError::BadVcpuCount(9)));
        assert_eq!(Vgic::new(1, 65).err(), Some(VgicError::BadSpiCount(65)));
        let mut gic = Vgic::new(2, 20).unwrap();
        assert_eq!(gic.spi_count(), 32);
        assert_eq!(gic.vcpu_count(), 2);
        assert_eq!(gic.set_pending(64, 0), Err(VgicError::NoSuchInterrupt(64)));
        assert_eq!(gic.set_pending(5, 2), Err(VgicError::NoSuchVcpu(2)));
        let mut lrs = [0u64; 4];
        assert_eq!(
            gic.fill_list_registers(2, &mut lrs, 0xF),
            Err(VgicError::NoSuchVcpu(2))
        );
        assert_eq!(
            gic.sync_from_list_registers(7, &lrs),
            Err(VgicError::NoSuchVcpu(7))
        );
        assert!(!gic.has_deliverable(5));
    }

    #[test]
    fn list_registers_the_model_does_not_own_are_left_alone() {
        let mut gic = linux_booted(1, 32);
        for intid in 32..40 {
            enable(&mut gic, 0, intid);
            let _ = gic.set_pending(intid, 0).unwrap();
        }
        let foreign = lr::PENDING | lr::GROUP1 | 1000;
        let mut lrs = [0, foreign, 0, 0];
        let outcome = gic.fill_list_registers(0, &mut lrs, 0b1101).unwrap();
        assert_eq!(outcome.valid, 0b1101);
        assert_eq!(lrs[1], foreign);
        // More list registers than the architecture allows: only 16 are used.
        let mut many = [0u64; 20];
        let mut gic = linux_booted(1, 64);
        for intid in 32..96 {
            enable(&mut gic, 0, intid);
            let _ = gic.set_pending(intid, 0).unwrap();
        }
        let outcome = gic.fill_list_registers(0, &mut many, u32::MAX).unwrap();
        assert_eq!(outcome.valid, 0xFFFF);
        assert!(outcome.underflow);
        assert_eq!(many[16..], [0; 4]);
    }

    /// Checks the model's bookkeeping: no interrupt held by two list registers, and the
    /// listed flags agree with the records.
    fn check_consistency(gic: &Vgic) {
        let mut held = Vec::new();
        for (v, cpu) in gic.cpu.iter().enumerate().take(gic.vcpus) {
            for listed in cpu.list.iter().flatten() {
                let key = if listed.intid < FIRST_SPI {
                    (v, listed.intid)
                } else {
                    (usize::MAX, listed.intid)
                };
                assert!(!held.contains(&key), "{key:?} listed twice");
                held.push(key);
                assert!(gic.interrupt(v, listed.intid).unwrap().listed);
            }
            for (intid, irq) in cpu.private.iter().enumerate() {
                assert_eq!(irq.listed, held.contains(&(v, intid as u32)));
            }
        }
        for (index, irq) in gic.spis().iter().enumerate() {
            assert_eq!(
                irq.listed,
                held.contains(&(usize::MAX, FIRST_SPI + index as u32))
            );
        }
        // The scans only look at `maybe` bits: none may miss a pending or active interrupt.
        for (v, cpu) in gic.cpu.iter().enumerate().take(gic.vcpus) {
            for (intid, irq) in cpu.private.iter().enumerate() {
                if irq.pending() || irq.active {
                    assert!(
                        cpu.maybe & (1 << intid) != 0,
                        "vCPU {v} INTID {intid} unmarked"
                    );
                }
            }
        }
        for (index, irq) in gic.spis().iter().enumerate() {
            if irq.pending() || irq.active {
                assert!(gic.spi_maybe & (1 << index) != 0, "SPI {index} unmarked");
            }
        }
    }

    /// One step of a random driver: an MMIO access, an injection or an SGI, or a run of
    /// the guest on a vCPU.
    fn step(gic: &mut Vgic, lrs: &mut [[u64; 4]; 3], op: (u8, u32, u8, u64)) {
        let (kind, offset, size, value) = op;
        let size = [1, 2, 4, 8, 3][usize::from(size % 5)];
        let vcpu = usize::from(kind >> 4) % 4;
        match kind % 8 {
            0 => {
                let _ = gic.distributor_read(u64::from(offset % 0x1_0010), size);
            }
            1 => {
                let _ = gic.distributor_write(u64::from(offset % 0x1_0010), size, value);
            }
            2 => {
                let _ = gic.redistributor_read(u64::from(offset) % 0x8_0000, size);
            }
            3 => {
                let _ = gic.redistributor_write(u64::from(offset) % 0x8_0000, size, value);
            }
            4 => {
                let _ = gic.set_pending(offset % 128, vcpu);
                let _ = gic.set_level(offset % 128, vcpu, value & 1 != 0);
            }
            5 => {
                let _ = gic.write_sgi(vcpu, value, offset & 1 == 0);
                let _ = gic.link_hardware(offset % 128, vcpu, Some((value % 1100) as u32));
            }
            _ => {
                let Some(regs) = lrs.get_mut(vcpu) else {
                    let _ = gic.fill_list_registers(vcpu, &mut [0; 4], 0);
                    return;
                };
                let empty = elrsr(regs);
                let _ = gic.fill_list_registers(vcpu, regs, empty);
                check_consistency(gic);
                let _ = guest_takes_one(regs, value & 1 == 0);
                if value & 2 == 0 {
                    // Scribble: the guest cannot, but the model must not care.
                    regs[(value >> 8) as usize % 4] = value;
                }
                let _ = gic.sync_from_list_registers(vcpu, regs);
                let _ = gic.has_deliverable(vcpu);
            }
        }
        check_consistency(gic);
    }

    #[test]
    fn random_mmio_and_list_register_traffic_never_panics() {
        bolero::check!()
            .with_type::<Vec<(u8, u32, u8, u64)>>()
            .with_iterations(3_000)
            .for_each(|ops| {
                let mut gic = linux_booted(3, 64);
                let mut lrs = [[0u64; 4]; 3];
                for op in ops {
                    step(&mut gic, &mut lrs, *op);
                    check_consistency(&gic);
                }
            });
    }

    #[test]
    fn clamped_construction_and_in_place_reset() {
        let gic = Vgic::clamped(0, 1000);
        assert_eq!((gic.vcpu_count(), gic.spi_count()), (1, MAX_SPIS));
        let mut gic = Vgic::clamped(2, DOMAIN_SPIS);
        assert_eq!((gic.vcpu_count(), gic.spi_count()), (2, 64));
        let _ = gic.distributor_write(gicd::CTLR, 4, u64::from(GRP1));
        let _ = gic.write_sgi(0, 1 << 1 | 3 << 24, true);
        assert!(gic.has_deliverable(1) || gic.distributor_read(gicd::CTLR, 4) != 0);
        gic.reset_clamped(3, 33);
        assert_eq!((gic.vcpu_count(), gic.spi_count()), (3, 64));
        assert_eq!(gic.distributor_read(gicd::CTLR, 4) as u32 & GRP1, 0);
        for v in 0..3 {
            assert!(!gic.has_deliverable(v));
            assert_eq!(gic.redistributor_read(sgi_frame(v, gicd::ISPENDR), 4), 0);
        }
        check_consistency(&gic);
    }

    #[test]
    fn windows_sit_where_qemu_virt_puts_its_gic() {
        let mut gic = Vgic::new(2, 64).unwrap();
        assert_eq!(gic.window(0x0800_0000, 4), Some(Window::Distributor(0)));
        assert_eq!(
            gic.window(0x0800_FFFC, 4),
            Some(Window::Distributor(0xFFFC))
        );
        assert_eq!(gic.window(0x0800_FFFC, 8), None, "straddles the end");
        assert_eq!(gic.window(0x0801_0000, 4), None);
        assert_eq!(gic.window(0x07FF_FFFC, 4), None);
        assert_eq!(gic.window(0x080A_0000, 8), Some(Window::Redistributor(0)));
        assert_eq!(
            gic.window(0x080D_FFFC, 4),
            Some(Window::Redistributor(0x3_FFFC))
        );
        assert_eq!(gic.window(0x080E_0000, 4), None, "no third vCPU");
        assert_eq!(gic.window(u64::MAX - 1, 4), None);
        assert!(gic.contains(0x080B_0080) && !gic.contains(0x4000_0000));
        // Reads and writes go to the right frame.
        assert_eq!(gic.mmio_read(DISTRIBUTOR_BASE + gicd::PIDR2, 4), Some(0x3B));
        let typer1 = gic.mmio_read(REDISTRIBUTOR_BASE + REDISTRIBUTOR_STRIDE + gicr::TYPER, 8);
        assert_eq!(typer1, Some(1 << 32 | 1 << 8 | gicr::TYPER_LAST));
        assert_eq!(gic.mmio_read(0x4000_0000, 4), None);
        assert_eq!(gic.mmio_write(0x4000_0000, 4, 0), None);
        let kick = gic.mmio_write(
            REDISTRIBUTOR_BASE + REDISTRIBUTOR_STRIDE + SGI_FRAME + gicd::ISENABLER,
            4,
            1 << 27,
        );
        assert_eq!(kick, Some(Kick::one(1)));
        assert_eq!(
            gic.redistributor_read(sgi_frame(1, gicd::ISENABLER), 4),
            1 << 27
        );
    }

    #[test]
    fn sysreg_traps_decode_and_name_the_sgi_registers() {
        // msr ICC_SGI1R_EL1, x3: Op0 3, Op2 5, Op1 0, CRn 12, Rt 3, CRm 11, write.
        let iss = 3 << 20 | 5 << 17 | 12 << 10 | 3 << 5 | 11 << 1;
        let esr = u64::from(EC_SYSREG) << 26 | 1 << 25 | iss;
        let trap = SysregTrap::decode(esr).unwrap();
        assert_eq!(
            trap,
            SysregTrap {
                op0: 3,
                op1: 0,
                crn: 12,
                crm: 11,
                op2: 5,
                rt: 3,
                read: false
            }
        );
        assert_eq!(trap.sgi_group1(), Some(true));
        let with_op2 = |op2: u64| SysregTrap::decode(esr & !(7 << 17) | op2 << 17).unwrap();
        assert_eq!(with_op2(6).sgi_group1(), Some(false), "ICC_ASGI1R_EL1");
        assert_eq!(with_op2(7).sgi_group1(), Some(false), "ICC_SGI0R_EL1");
        assert_eq!(with_op2(0).sgi_group1(), None);
        assert_eq!(
            SysregTrap::decode(esr | 1).unwrap().sgi_group1(),
            None,
            "a read"
        );
        // msr ICC_PMR_EL1 (S3_0_C4_C6_0) is not an SGI register.
        let pmr = u64::from(EC_SYSREG) << 26 | 3 << 20 | 4 << 10 | 6 << 1;
        assert_eq!(SysregTrap::decode(pmr).unwrap().sgi_group1(), None);
        assert_eq!(SysregTrap::decode(0x24 << 26), None);
    }

    #[test]
    fn empty_list_registers_and_the_timer_line() {
        let lrs = [0, lr::PENDING | 27, lr::ACTIVE | 3, lr::HW | 5];
        assert_eq!(empty_list_registers(&lrs), 0b1001);
        assert_eq!(empty_list_registers(&[]), 0);
        // ENABLE, not masked, condition met.
        assert!(virtual_timer_asserted(0b101, 100, 0));
        assert!(
            virtual_timer_asserted(0b001, 100, 100),
            "expired since it was saved"
        );
        assert!(!virtual_timer_asserted(0b001, 100, 99));
        assert!(!virtual_timer_asserted(0b111, 100, 200), "masked");
        assert!(!virtual_timer_asserted(0b100, 100, 200), "disabled");
    }

    #[test]
    fn every_distributor_and_redistributor_offset_is_safe() {
        let mut gic = Vgic::new(2, 64).unwrap();
        for offset in (0..DISTRIBUTOR_SIZE + 16).step_by(1) {
            for size in [1, 2, 4, 8] {
                let _ = gic.distributor_read(offset, size);
                let _ = gic.redistributor_read(offset * 2 + 1, size);
            }
        }
        for offset in (0..DISTRIBUTOR_SIZE).step_by(4) {
            let _ = gic.distributor_write(offset, 4, u64::MAX);
            let _ = gic.redistributor_write(offset, 4, u64::MAX);
            let _ = gic.redistributor_write(offset + SGI_FRAME, 4, u64::MAX);
        }
        let _ = gic.distributor_read(u64::MAX, 8);
        let _ = gic.redistributor_write(u64::MAX - 7, 8, 0);
        check_consistency(&gic);
    }
}
