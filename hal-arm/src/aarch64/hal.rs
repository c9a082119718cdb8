//! The aarch64 implementation of the kernel's HAL traits, and the kernel instance itself.

use alloc::boxed::Box;

use mica_abi::Status;
use mica_kernel::frames::Frames;
use mica_kernel::hal::Hal;
use mica_kernel::kernel::Kernel;
use mica_kernel::memmap::PhysRange;

use super::context::ArmContext;
use super::stage2::ArmStage2;
use super::{console, cpu, gic};
use crate::vgic::{Vgic, DOMAIN_SPIS};

/// The SGI one CPU sends another to make it look at its run queue.
pub const KICK_SGI: u32 = 1;

/// The reset vGIC every domain's is copied from.
static VGIC_RESET: Vgic = Vgic::RESET;

/// The aarch64 HAL (stateless: the hardware is the state).
pub struct ArmHal;

/// The kernel: every object, behind the one lock.
pub static KERNEL: spin::Mutex<Kernel<ArmHal>> = spin::Mutex::new(Kernel::new(ArmHal));

/// Takes the kernel lock, executing `YIELD` between attempts while another CPU holds it.
///
/// On hardware `YIELD` is only a hint to a multithreaded core. It matters under QEMU's
/// single-threaded `-icount` mode (what the scheduler smoke scenarios and `make bench` run
/// on): there QEMU runs the CPUs in turn on one host thread and a CPU keeps the thread up to
/// the next timer deadline of the whole machine, while the CPU after it starts its turn *at*
/// that deadline with no instructions to run (QEMU 7.2's `icount_prepare_for_run`). A CPU
/// spinning on a lock therefore kept the holder from ever running again (seen: the teardown
/// in `sched-policy-crash` parked for minutes after a TLBI while CPU 0 spun in
/// `on_interrupt`). QEMU ends a CPU's turn at `YIELD`, so the holder runs next.
pub fn lock_kernel() -> spin::MutexGuard<'static, Kernel<ArmHal>> {
    loop {
        if let Some(k) = KERNEL.try_lock() {
            return k;
        }
        super::sysreg::cpu_yield();
    }
}

impl Hal for ArmHal {
    type Stage2 = ArmStage2;
    type Context = ArmContext;
    /// Each domain's virtual GICv3, on the kernel heap: at about 6 KiB it must not travel
    /// through the EL2 stack each time the kernel moves a `Domain` by value.
    type DomainArch = Box<Vgic>;

    fn new_stage2(&self, vmid: u16, frames: &mut Frames) -> Result<ArmStage2, Status> {
        // Cortex-A72 has 8-bit VMIDs; domain ids stay below 256.
        if vmid == 0 || vmid > 0xFF {
            return Err(Status::NoFreeSlot);
        }
        ArmStage2::new(vmid, frames)
    }

    fn new_context(&self) -> ArmContext {
        ArmContext::new()
    }

    fn new_domain_arch(&self, vcpus: u16) -> Box<Vgic> {
        let mut gic = Box::<Vgic>::new_uninit();
        // SAFETY: `VGIC_RESET` is a valid `Vgic`; `Vgic` is plain data (no pointers, no drop
        // glue), so a bitwise copy of it into the fresh, exclusively owned, correctly
        // aligned allocation is a valid `Vgic` too. Copying avoids a 6 KiB stack temporary.
        let mut gic = unsafe {
            gic.as_mut_ptr().copy_from_nonoverlapping(&VGIC_RESET, 1);
            gic.assume_init()
        };
        gic.reset_clamped(usize::from(vcpus), DOMAIN_SPIS);
        gic
    }

    fn reset_domain_arch(&self, arch: &mut Box<Vgic>, vcpus: u16) {
        arch.reset_clamped(usize::from(vcpus), DOMAIN_SPIS);
    }

    fn grow_domain_arch(&self, arch: &mut Box<Vgic>, vcpus: u16) {
        arch.grow(usize::from(vcpus));
    }

    fn console_write(&self, bytes: &[u8]) {
        // The kernel lock is held: queue, the CPU drains after letting go of it.
        console::queue(bytes);
    }

    fn zero_phys(&self, range: PhysRange) {
        super::mmu::zero_range(range.start, range.end);
    }

    fn write_phys(&self, pa: u64, bytes: &[u8]) {
        // SAFETY: as for `zero_phys`: `pa..pa + len` lies in a domain's frames, which the
        // kernel translated from the domain's mappings.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), pa as *mut u8, bytes.len()) };
    }

    fn clean_to_poc(&self, range: PhysRange) {
        super::mmu::clean_invalidate_dcache_range(range.start, range.end);
    }

    fn atomic_or_phys(&self, pa: u64, bits: u64) -> bool {
        if !pa.is_multiple_of(8) {
            return false;
        }
        // SAFETY: the kernel passes an 8-byte aligned word of a domain's RAM (its event page,
        // translated through the domain's writable mappings); RAM is identity-mapped normal
        // memory at EL2, and the domain itself only touches the word with atomic operations,
        // so an atomic view of it is sound.
        let word = unsafe { &*(pa as *const core::sync::atomic::AtomicU64) };
        word.fetch_or(bits, core::sync::atomic::Ordering::SeqCst);
        true
    }

    fn raise_upcall(&self, arch: &mut Box<Vgic>, vcpu: u16) -> bool {
        // Pending the upcall PPI in the domain's virtual GIC; it reaches the guest only if the
        // guest enabled it there (otherwise WFI wake-up is the whole notification).
        let vcpu = usize::from(vcpu);
        arch.set_pending(mica_abi::event::UPCALL_INTID, vcpu)
            .is_ok()
            && arch.has_deliverable(vcpu)
    }

    fn set_line(&self, arch: &mut Box<Vgic>, intid: u32, asserted: bool) -> u32 {
        arch.set_level(intid, 0, asserted)
            .map_or(0, |kick| kick.bits())
    }

    fn irq_enable(&self, intid: u32, target: usize) {
        if target < cpu::MAX_CPUS {
            gic::enable_spi(
                intid,
                cpu::CPUS[target]
                    .hw_id
                    .load(core::sync::atomic::Ordering::Relaxed),
            );
        }
    }

    fn irq_disable(&self, intid: u32) {
        gic::disable_spi(intid);
    }

    fn irq_deactivate(&self, intid: u32) {
        // The acknowledging CPU may not be this one: deactivate through the distributor.
        gic::deactivate_spi(intid);
    }

    fn inject_hardware_irq(&self, arch: &mut Box<Vgic>, vcpu: u16, intid: u32) -> bool {
        let vcpu = usize::from(vcpu);
        arch.link_hardware(intid, vcpu, Some(intid)).is_ok()
            && arch.set_pending(intid, vcpu).is_ok()
    }

    fn now_ns(&self) -> u64 {
        super::sysreg::clock().ns(super::sysreg::counter())
    }

    fn kick(&self, target: usize) {
        if target != cpu::current() && target < cpu::MAX_CPUS {
            gic::send_sgi(
                cpu::CPUS[target]
                    .hw_id
                    .load(core::sync::atomic::Ordering::Relaxed),
                KICK_SGI,
            );
        }
    }

    fn cpus(&self) -> usize {
        cpu::online_count()
    }
}
