//! The traits the arch crates implement for the kernel core.
//!
//! The kernel decides; the HAL touches hardware. A HAL provides stage-2 address spaces, vCPU
//! register contexts, the console, physical memory access for loading and scrubbing, and a way
//! to make another CPU look at its run queue. Tests implement these with a mock
//! (`kernel::testing`), so every decision the kernel makes is tested on the host.

use mica_abi::{Rights, Status};

use crate::frames::Frames;
use crate::memmap::PhysRange;

/// A domain's guest-physical address space (stage-2 translation tables).
pub trait Stage2 {
    /// Maps `pages` 4 KiB pages at guest-physical `ipa` to physical `pa` with `perms` (a
    /// subset of READ | WRITE | EXECUTE). Table memory comes from `frames`. On error nothing
    /// is mapped.
    fn map(
        &mut self,
        ipa: u64,
        pa: u64,
        pages: u64,
        perms: Rights,
        frames: &mut Frames,
    ) -> Result<(), Status>;
    /// Removes every mapping in `[ipa, ipa + pages * 4 KiB)`, invalidates the TLB entries
    /// of this address space for them, and gives every table left empty back to `frames`
    /// (after the invalidation, so no CPU walks freed memory).
    fn unmap(&mut self, ipa: u64, pages: u64, frames: &mut Frames);
    /// Invalidates the address space's TLB entries and frees every table back to `frames`.
    fn release(&mut self, frames: &mut Frames);
    /// Bytes of table memory the address space holds beyond its root (the kernel charges
    /// them to the domain's quota).
    fn table_bytes(&self) -> u64;
    /// The most table memory, in bytes, [`Stage2::map`] of `pages` pages at `ipa` -> `pa`
    /// can add (reserved from the domain's quota before the map).
    fn table_bytes_at_most(&self, ipa: u64, pa: u64, pages: u64) -> u64;
    /// Maps device registers (device memory, never executable). The default: unsupported.
    fn map_device(
        &mut self,
        ipa: u64,
        pa: u64,
        pages: u64,
        perms: Rights,
        frames: &mut Frames,
    ) -> Result<(), Status> {
        let _ = (ipa, pa, pages, perms, frames);
        Err(Status::NotSupported)
    }
}

/// A vCPU's saved register state.
pub trait VcpuContext {
    /// Resets the vCPU to start at `entry` with x0-x3 = `regs`, as the vCPU numbered `index`
    /// of its domain (its virtual MPIDR), with default-cacheable memory if asked (HCR_EL2.DC).
    fn reset(&mut self, entry: u64, regs: [u64; 4], index: u16, default_cacheable: bool);
    /// Sets where the vCPU's clock starts: its virtual counter reads the system counter less
    /// `ns` worth of ticks (CNTVOFF_EL2 on Arm), so a guest booted at `ns` sees time start near
    /// zero. [`reset`](Self::reset) sets 0. The default ignores it.
    fn set_clock_base(&mut self, ns: u64) {
        let _ = ns;
    }
    /// Sets the result registers of the hypercall or PSCI call being completed (x0-x3).
    fn set_result(&mut self, regs: [u64; 4]);
    /// When the vCPU's own timer fires (ns of the system counter), if it is armed: a blocked
    /// vCPU must be woken then. The default: no timer.
    fn timer_deadline_ns(&self) -> Option<u64> {
        None
    }
}

/// Everything the kernel core needs from an architecture.
pub trait Hal {
    /// Stage-2 tables.
    type Stage2: Stage2;
    /// vCPU state.
    type Context: VcpuContext;
    /// Per-domain architectural state (e.g. the virtual interrupt controller).
    type DomainArch;

    /// A new, empty stage-2 address space tagged `vmid`.
    fn new_stage2(&self, vmid: u16, frames: &mut Frames) -> Result<Self::Stage2, Status>;
    /// A fresh vCPU context (not yet runnable).
    fn new_context(&self) -> Self::Context;
    /// Fresh architectural state for a domain with `vcpus` vCPUs.
    fn new_domain_arch(&self, vcpus: u16) -> Self::DomainArch;
    /// Returns `arch` to the state [`new_domain_arch`](Self::new_domain_arch) gives, for a
    /// domain that restarts with `vcpus` vCPUs. Override to reset in place when the state
    /// is large.
    fn reset_domain_arch(&self, arch: &mut Self::DomainArch, vcpus: u16) {
        *arch = self.new_domain_arch(vcpus);
    }
    /// Lets the domain's architectural state serve `vcpus` vCPUs if it serves fewer, keeping
    /// its state (a domain created at run time gets its vCPUs one at a time).
    fn grow_domain_arch(&self, arch: &mut Self::DomainArch, vcpus: u16) {
        let _ = (arch, vcpus);
    }
    /// Writes bytes to the hypervisor console.
    fn console_write(&self, bytes: &[u8]);
    /// Zeroes physical memory (RAM the kernel owns, mapped in its own address space).
    fn zero_phys(&self, range: PhysRange);
    /// Copies `bytes` to physical address `pa`.
    fn write_phys(&self, pa: u64, bytes: &[u8]);
    /// Makes memory written by [`zero_phys`](Self::zero_phys) and
    /// [`write_phys`](Self::write_phys) visible to a guest that runs with its caches off
    /// (cleans and invalidates it to the point of coherency). Nothing to do where caches are
    /// coherent with every access.
    fn clean_to_poc(&self, range: PhysRange) {
        let _ = range;
    }
    /// Atomically ORs `bits` into the 64-bit word at physical address `pa` (8-byte aligned, in
    /// a domain's RAM, which the domain may be updating concurrently with atomic operations).
    /// Returns false if this HAL cannot (the kernel then drops the event and says so).
    fn atomic_or_phys(&self, pa: u64, bits: u64) -> bool {
        let _ = (pa, bits);
        false
    }
    /// Raises the event-channel upcall interrupt on vCPU `vcpu` of the domain whose
    /// architectural state is `arch`; returns whether an interrupt was raised (the kernel then
    /// kicks the vCPU's CPU if it is running). The default raises nothing: the vCPU is only
    /// woken from WFI.
    fn raise_upcall(&self, arch: &mut Self::DomainArch, vcpu: u16) -> bool {
        let _ = (arch, vcpu);
        false
    }
    /// Drives the line of an interrupt the kernel emulates (an SPI of an emulated device, e.g.
    /// the PL011 of `crate::uart`) in the domain's virtual interrupt controller; returns the
    /// vCPUs (one bit per vCPU index) that may have an interrupt to take now because the line
    /// changed (none if it already had that level).
    fn set_line(&self, arch: &mut Self::DomainArch, intid: u32, asserted: bool) -> u32 {
        let _ = (arch, intid, asserted);
        0
    }
    /// Enables physical interrupt `intid` (an SPI) and routes it to CPU `cpu`.
    fn irq_enable(&self, intid: u32, cpu: usize) {
        let _ = (intid, cpu);
    }
    /// Masks physical interrupt `intid`.
    fn irq_disable(&self, intid: u32) {
        let _ = intid;
    }
    /// Deactivates physical interrupt `intid` (left active after an event delivery).
    fn irq_deactivate(&self, intid: u32) {
        let _ = intid;
    }
    /// Makes physical interrupt `intid` pending in the domain's virtual interrupt controller as
    /// a hardware-linked interrupt for vCPU `vcpu` (the guest's EOI deactivates the physical
    /// line); returns false if this HAL cannot.
    fn inject_hardware_irq(&self, arch: &mut Self::DomainArch, vcpu: u16, intid: u32) -> bool {
        let _ = (arch, vcpu, intid);
        false
    }
    /// Makes physical CPU `cpu` re-run its scheduler soon (an IPI, or nothing if it is `me`).
    fn kick(&self, cpu: usize);
    /// Nanoseconds of the system counter (monotonic, the same on every CPU). The default is a
    /// clock that never moves: budgets then never run out.
    fn now_ns(&self) -> u64 {
        0
    }
    /// How many physical CPUs are online (indices `0..cpus()`).
    fn cpus(&self) -> usize;
}
