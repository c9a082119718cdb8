//! The aarch64 implementation of the kernel's HAL traits, and the kernel instance itself.

use mica_abi::Status;
use mica_kernel::frames::Frames;
use mica_kernel::hal::Hal;
use mica_kernel::kernel::Kernel;
use mica_kernel::memmap::PhysRange;

use super::context::ArmContext;
use super::stage2::ArmStage2;
use super::{console, cpu, gic};

/// The SGI one CPU sends another to make it look at its run queue.
pub const KICK_SGI: u32 = 1;

/// The aarch64 HAL (stateless: the hardware is the state).
pub struct ArmHal;

/// The kernel: every object, behind the one lock.
pub static KERNEL: spin::Mutex<Kernel<ArmHal>> = spin::Mutex::new(Kernel::new(ArmHal));

impl Hal for ArmHal {
    type Stage2 = ArmStage2;
    type Context = ArmContext;
    type DomainArch = ();

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

    fn new_domain_arch(&self, _vcpus: u16) {}

    fn console_write(&self, bytes: &[u8]) {
        console::write_bytes(bytes);
    }

    fn zero_phys(&self, range: PhysRange) {
        // SAFETY: the kernel passes only RAM it owns (a domain's frames or a new table),
        // which the EL2 map identity-maps as normal writable memory.
        unsafe { core::ptr::write_bytes(range.start as *mut u8, 0, range.size() as usize) };
    }

    fn write_phys(&self, pa: u64, bytes: &[u8]) {
        // SAFETY: as for `zero_phys`: `pa..pa + len` lies in a domain's frames, which the
        // kernel translated from the domain's mappings.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), pa as *mut u8, bytes.len()) };
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
