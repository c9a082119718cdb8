//! The physical GICv3: distributor, this CPU's redistributor and the system-register
//! CPU interface (Arm IHI 0069, "GIC architecture specification v3/v4").
//!
//! Mica runs the GIC with affinity routing (ARE) in the single security state that QEMU's
//! `virt` machine and most boards running a hypervisor at EL2 present, all interrupts in
//! Group 1, and EOImode = 1 so that priority drop (EOIR) and deactivation (DIR) are
//! separate: a later issue hands interrupts to guests with hardware deactivation.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicUsize, Ordering};

use super::sysreg::{isb, read_sysreg, write_sysreg};

// Distributor registers (GICD_*), offsets from the distributor base.
/// GICD_CTLR.
const GICD_CTLR: usize = 0x0000;
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
const GICD_CTLR_ENABLE_GRP0: u32 = 1 << 0;
/// GICD_TYPER: ITLinesNumber in [4:0].
const GICD_TYPER: usize = 0x0004;
/// GICD_IGROUPR<n>.
const GICD_IGROUPR: usize = 0x0080;
/// GICD_ICENABLER<n>.
const GICD_ICENABLER: usize = 0x0180;
/// GICD_IPRIORITYR<n>, one byte per interrupt.
const GICD_IPRIORITYR: usize = 0x0400;

// Redistributor registers: RD_base frame, then the SGI_base frame 64 KiB above.
/// GICR_TYPER (64-bit): Affinity in [63:32], Last in bit 4, VLPIS in bit 1.
const GICR_TYPER: usize = 0x0008;
/// GICR_WAKER: ProcessorSleep bit 1, ChildrenAsleep bit 2.
const GICR_WAKER: usize = 0x0014;
const SGI_BASE: usize = 0x1_0000;
/// GICR_IGROUPR0 (SGI frame).
const GICR_IGROUPR0: usize = SGI_BASE + 0x0080;
/// GICR_ISENABLER0 (SGI frame).
const GICR_ISENABLER0: usize = SGI_BASE + 0x0100;
/// GICR_ICENABLER0 (SGI frame).
const GICR_ICENABLER0: usize = SGI_BASE + 0x0180;
/// GICR_IPRIORITYR<n> (SGI frame).
const GICR_IPRIORITYR: usize = SGI_BASE + 0x0400;

/// Priority given to every interrupt Mica itself takes.
const DEFAULT_PRIORITY: u8 = 0xA0;
/// INTIDs 1020-1023 are special (spurious).
pub const SPURIOUS: u32 = 1020;

static DIST: AtomicUsize = AtomicUsize::new(0);
/// Per-CPU redistributor RD_base, indexed by logical CPU.
static REDIST: [AtomicUsize; super::cpu::MAX_CPUS] =
    [const { AtomicUsize::new(0) }; super::cpu::MAX_CPUS];

fn r32(addr: usize) -> u32 {
    // SAFETY: every address passed is inside a GIC frame the boot CPU mapped as device
    // memory (distributor or a redistributor found by walking the mapped regions).
    unsafe { read_volatile(addr as *const u32) }
}
fn w32(addr: usize, v: u32) {
    // SAFETY: as in `r32`.
    unsafe { write_volatile(addr as *mut u32, v) }
}
fn r64(addr: usize) -> u64 {
    // SAFETY: as in `r32`; GICR_TYPER is a 64-bit register.
    unsafe { read_volatile(addr as *const u64) }
}
fn w8(addr: usize, v: u8) {
    // SAFETY: as in `r32`; the priority registers are byte-accessible.
    unsafe { write_volatile(addr as *mut u8, v) }
}

/// Why the GIC could not be brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicError {
    /// No redistributor's affinity matches this CPU.
    NoRedistributor(u64),
    /// The redistributor did not wake up.
    WakeTimeout,
}

/// Initialises the distributor (boot CPU, once): every SPI disabled, Group 1, default
/// priority; then affinity routing and both groups enabled.
pub fn init_distributor(base: usize) {
    DIST.store(base, Ordering::Release);
    w32(base + GICD_CTLR, 0);
    wait_rwp(base);
    let lines = ((r32(base + GICD_TYPER) & 0x1F) + 1) * 32;
    for n in 1..(lines / 32) as usize {
        w32(base + GICD_ICENABLER + 4 * n, u32::MAX);
        w32(base + GICD_IGROUPR + 4 * n, u32::MAX);
    }
    for intid in 32..lines as usize {
        w8(base + GICD_IPRIORITYR + intid, DEFAULT_PRIORITY);
    }
    w32(
        base + GICD_CTLR,
        GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1 | GICD_CTLR_ENABLE_GRP0,
    );
    wait_rwp(base);
}

fn wait_rwp(base: usize) {
    let mut spins = 0u32;
    while r32(base + GICD_CTLR) & GICD_CTLR_RWP != 0 && spins < 1_000_000 {
        spins += 1;
        core::hint::spin_loop();
    }
}

/// Finds this CPU's redistributor in `regions`, wakes it, puts its SGIs/PPIs in Group 1
/// disabled, and enables the system-register CPU interface.
pub fn init_cpu(cpu: usize, affinity: u64, regions: &[(usize, usize)]) -> Result<(), GicError> {
    let rd = find_redistributor(affinity, regions).ok_or(GicError::NoRedistributor(affinity))?;
    REDIST[cpu].store(rd, Ordering::Release);
    let waker = r32(rd + GICR_WAKER);
    w32(rd + GICR_WAKER, waker & !(1 << 1));
    let mut spins = 0u32;
    while r32(rd + GICR_WAKER) & (1 << 2) != 0 {
        spins += 1;
        if spins > 1_000_000 {
            return Err(GicError::WakeTimeout);
        }
        core::hint::spin_loop();
    }
    w32(rd + GICR_ICENABLER0, u32::MAX);
    w32(rd + GICR_IGROUPR0, u32::MAX);
    for intid in 0..32 {
        w8(rd + GICR_IPRIORITYR + intid, DEFAULT_PRIORITY);
    }
    // CPU interface: system registers on (SRE, no IRQ/FIQ bypass, EL1 may use them too).
    write_sysreg!("s3_4_c12_c9_5", 0xF); // ICC_SRE_EL2
    isb();
    write_sysreg!("s3_0_c4_c6_0", 0xFF); // ICC_PMR_EL1: let every priority through
    write_sysreg!("s3_0_c12_c12_3", 0); // ICC_BPR1_EL1
    write_sysreg!("s3_0_c12_c12_4", 1 << 1); // ICC_CTLR_EL1.EOImode = 1
    write_sysreg!("s3_0_c12_c12_7", 1); // ICC_IGRPEN1_EL1
    isb();
    Ok(())
}

fn find_redistributor(affinity: u64, regions: &[(usize, usize)]) -> Option<usize> {
    let wanted = ((affinity >> 32) & 0xFF) << 24 | (affinity & 0xFF_FFFF);
    for &(base, size) in regions {
        let mut rd = base;
        while rd + 0x2_0000 <= base + size {
            let typer = r64(rd + GICR_TYPER);
            if typer >> 32 == wanted {
                return Some(rd);
            }
            if typer & (1 << 4) != 0 {
                break; // Last redistributor of this region.
            }
            // Two 64 KiB frames per redistributor, four with virtual LPIs (GICv4).
            rd += if typer & (1 << 1) != 0 {
                0x4_0000
            } else {
                0x2_0000
            };
        }
    }
    None
}

/// Enables the private interrupt (SGI/PPI) `intid` on CPU `cpu`.
pub fn enable_private(cpu: usize, intid: u32) {
    let rd = REDIST[cpu].load(Ordering::Acquire);
    if rd != 0 && intid < 32 {
        w32(rd + GICR_ISENABLER0, 1 << intid);
    }
}

/// Disables the private interrupt (SGI/PPI) `intid` on CPU `cpu`.
pub fn disable_private(cpu: usize, intid: u32) {
    let rd = REDIST[cpu].load(Ordering::Acquire);
    if rd != 0 && intid < 32 {
        w32(rd + GICR_ICENABLER0, 1 << intid);
    }
}

/// Acknowledges the highest-priority pending interrupt: its INTID, or `None` if spurious.
pub fn acknowledge() -> Option<u32> {
    let intid = (read_sysreg!("s3_0_c12_c12_0") & 0xFF_FFFF) as u32; // ICC_IAR1_EL1
    (intid < SPURIOUS).then_some(intid)
}

/// Ends an interrupt Mica handled itself: priority drop, then deactivation.
pub fn end_of_interrupt(intid: u32) {
    write_sysreg!("s3_0_c12_c12_1", intid as u64); // ICC_EOIR1_EL1
    write_sysreg!("s3_0_c12_c11_1", intid as u64); // ICC_DIR_EL1
}

/// Sends SGI `intid` to the CPU with MPIDR affinity `affinity` (ICC_SGI1R_EL1).
pub fn send_sgi(affinity: u64, intid: u32) {
    let aff0 = affinity & 0xFF;
    let aff1 = (affinity >> 8) & 0xFF;
    let aff2 = (affinity >> 16) & 0xFF;
    let aff3 = (affinity >> 32) & 0xFF;
    // Target list bit aff0 % 16, range selector aff0 / 16.
    let value = (aff3 << 48)
        | ((aff0 / 16) << 44)
        | (aff2 << 32)
        | ((intid as u64 & 0xF) << 24)
        | (aff1 << 16)
        | (1 << (aff0 % 16));
    write_sysreg!("s3_0_c12_c11_5", value);
    isb();
}

/// Drops the running priority of `intid` without deactivating it (the guest deactivates a
/// hardware-linked virtual interrupt itself).
pub fn priority_drop(intid: u32) {
    write_sysreg!("s3_0_c12_c12_1", intid as u64); // ICC_EOIR1_EL1
}

/// Deactivates `intid`.
pub fn deactivate(intid: u32) {
    write_sysreg!("s3_0_c12_c11_1", intid as u64); // ICC_DIR_EL1
}

/// GICD_ISENABLER<n>.
const GICD_ISENABLER: usize = 0x0100;
/// GICD_ICACTIVER<n>.
const GICD_ICACTIVER: usize = 0x0380;
/// GICD_IROUTER<n> (64-bit, one per SPI).
const GICD_IROUTER: usize = 0x6000;

fn w64(addr: usize, v: u64) {
    // SAFETY: as in `r32`; GICD_IROUTER<n> is a 64-bit register of the mapped distributor.
    unsafe { write_volatile(addr as *mut u64, v) }
}

/// Routes SPI `intid` to the CPU with MPIDR affinity `affinity` and enables it.
pub fn enable_spi(intid: u32, affinity: u64) {
    let dist = DIST.load(Ordering::Acquire);
    if dist == 0 || !(32..SPURIOUS).contains(&intid) {
        return;
    }
    let n = intid as usize;
    // IROUTER: Aff3 in [39:32], Aff2..Aff0 in [23:0], Interrupt_Routing_Mode 0 (that CPU).
    w64(dist + GICD_IROUTER + 8 * n, affinity & 0xFF_00FF_FFFF);
    w32(dist + GICD_ISENABLER + 4 * (n / 32), 1 << (n % 32));
}

/// Masks SPI `intid`.
pub fn disable_spi(intid: u32) {
    let dist = DIST.load(Ordering::Acquire);
    if dist == 0 || !(32..SPURIOUS).contains(&intid) {
        return;
    }
    let n = intid as usize;
    w32(dist + GICD_ICENABLER + 4 * (n / 32), 1 << (n % 32));
    wait_rwp(dist);
}

/// Clears the active state of SPI `intid` through the distributor (for an interrupt that was
/// acknowledged on another CPU than the one deactivating it).
pub fn deactivate_spi(intid: u32) {
    let dist = DIST.load(Ordering::Acquire);
    if dist == 0 || !(32..SPURIOUS).contains(&intid) {
        return;
    }
    let n = intid as usize;
    w32(dist + GICD_ICACTIVER + 4 * (n / 32), 1 << (n % 32));
}
