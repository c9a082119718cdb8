//! Each physical CPU's loop: ask the kernel what to run, run it until it traps, tell the
//! kernel why it stopped.
//!
//! Around every entry the loop drives the domain's virtual GICv3 ([`crate::vgic`]), under
//! the kernel lock that guards it:
//!
//! - before entry: the virtual timer's line is evaluated from the saved CNTV_CTL/CVAL and
//!   the counter (so a timer that expired while the vCPU was blocked fires at once), the
//!   list registers are filled from the model and ICH_HCR_EL2 chosen (UIE when more is
//!   pending than fits); list registers the model does not use are cleared. While the
//!   vCPU's virtual timer line is asserted the physical timer PPI stays disabled on this
//!   CPU (it is level-sensitive and would storm); the EOI maintenance interrupt of the
//!   listed level interrupt brings the vCPU back out to resample it.
//! - after exit: the list registers are folded back into the model (and, for a WFI, the
//!   timer line sampled, to know whether it may block); stage-2 data aborts inside the
//!   distributor or redistributor windows are emulated ([`crate::mmio`] decodes them,
//!   reading the instruction through the guest's translation when the syndrome is not
//!   enough), trapped ICC_SGI*R_EL1 writes become SGIs, and every vCPU whose interrupts
//!   changed is woken or has its CPU kicked. A WFI with a deliverable interrupt does not
//!   block. Anything else is handed to the kernel as before.

use core::sync::atomic::{AtomicU8, Ordering};

use mica_kernel::domain::{Domain, DomainId};
use mica_kernel::kernel::{Exit, Kernel};
use mica_kernel::vcpu::VcpuId;

use super::context::{self, ArmContext};
use super::cpu::MAX_CPUS;
use super::hal::{lock_kernel, ArmHal};
use super::sysreg::{
    counter, cpu_yield, isb, mask_interrupts, read_sysreg, unmask_irq, wfi, write_sysreg,
};
use super::trap::{self, vector};
use super::{console, el2, gic, irq, timer};
use crate::esr::{self, class};
use crate::mmio::{self, MmioAccess, Syndrome};
use crate::traps::{self, SysregAction};
use crate::vgic::{self, SysregTrap, Vgic, VIRTUAL_TIMER_PPI};

/// What the run loop needs about the vCPU it is running.
struct Running {
    ctx: *mut ArmContext,
    vttbr: u64,
    vcpu: VcpuId,
    domain: DomainId,
    /// The vCPU's index in its domain (its vGIC vCPU number).
    index: usize,
    /// Its virtual timer line was asserted when the list registers were filled.
    timer_asserted: bool,
}

/// The syndrome registers of a trap, read right after the guest left.
struct Trap {
    kind: u64,
    esr: u64,
    far: u64,
    hpfar: u64,
}

/// Per CPU: whether the physical virtual-timer PPI is enabled (0 unknown, 1 off, 2 on).
static TIMER_PPI: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];

/// Runs vCPUs on CPU `cpu` forever.
pub fn run(cpu: usize) -> ! {
    loop {
        let picked = {
            let mut k = lock_kernel();
            let picked = k
                .pick(cpu)
                .and_then(|next| prepare(&mut k, cpu, next.vcpu, next.domain));
            timer::program(cpu, k.deadline(cpu));
            picked
        };
        // What the kernel printed under the lock goes to the UART now, without it.
        console::drain();
        let Some(running) = picked else {
            // Nothing to run: sleep until an interrupt is pending (WFI wakes for it even with
            // IRQs masked), then take it here, between unmask and mask, and look again. Taking
            // it before the WFI instead would let a handler that changes the timer be followed
            // by a sleep that nothing ends.
            wfi();
            unmask_irq();
            isb();
            mask_interrupts();
            continue;
        };
        set_timer_ppi(cpu, !running.timer_asserted);
        // A hint on hardware; under QEMU's single-threaded `-icount` mode it ends this CPU's
        // turn, so every CPU gets one at each guest entry. Without it a CPU running guests
        // keeps the host thread up to each timer deadline of the machine, and the CPU after
        // it starts its turns at those deadlines with nothing left to run: seen as the
        // policy domain on CPU 1 never running again while CPU 0 ran budgeted workers.
        cpu_yield();
        // `pick` marked the vCPU Running on this CPU; until this CPU hands it back through
        // `handle_exit`/`pick`, nobody else reads or writes its context, and the vCPU table
        // is a static that never moves.
        // SAFETY: the context is this CPU's alone (above), `vttbr` names its domain's stage-2 tables, `cpu` is this CPU.
        let kind = unsafe { context::enter(running.ctx, running.vttbr, cpu) };
        let trap = Trap {
            kind,
            esr: read_sysreg!("esr_el2"),
            far: read_sysreg!("far_el2"),
            hpfar: read_sysreg!("hpfar_el2"),
        };
        if matches!(kind, vector::LOWER_IRQ | vector::LOWER_FIQ) {
            // Without the kernel lock: the tick handler takes it.
            trap::handle_irqs();
        }
        let mut k = lock_kernel();
        // SAFETY: as above; the guest has stopped and the context is ours again. The
        // context lives in the vCPU table, apart from the domain the kernel reference reaches.
        let ctx = unsafe { &mut *running.ctx };
        let exit = after_exit(&mut k, &running, &trap, ctx);
        k.handle_exit(cpu, &exit);
    }
}

/// Enables or disables the virtual timer's physical PPI on this CPU, if it changes.
fn set_timer_ppi(cpu: usize, enabled: bool) {
    let Some(state) = TIMER_PPI.get(cpu) else {
        return;
    };
    let want = if enabled { 2 } else { 1 };
    if state.swap(want, Ordering::Relaxed) != want {
        if enabled {
            gic::enable_private(cpu, irq::vtimer_intid());
        } else {
            gic::disable_private(cpu, irq::vtimer_intid());
        }
    }
}

/// Gets the picked vCPU ready to enter: its virtual timer line and list registers.
fn prepare(k: &mut Kernel<ArmHal>, cpu: usize, vcpu: VcpuId, domain: DomainId) -> Option<Running> {
    let index = usize::from(k.vcpu(vcpu)?.index);
    let ctx: *mut ArmContext = &mut k.vcpu_mut(vcpu)?.context;
    let d = k.domain_mut(domain)?;
    let vttbr = d.stage2.vttbr_for(cpu);
    // SAFETY: `pick` just made the vCPU Running on this CPU, so its context is this CPU's
    // alone; it lives in the vCPU table, not in the domain borrowed here.
    let c = unsafe { &mut *ctx };
    let timer_asserted = sample_timer(&mut d.arch, index, c);
    fill(&mut d.arch, index, c);
    Some(Running {
        ctx,
        vttbr,
        vcpu,
        domain,
        index,
        timer_asserted,
    })
}

/// Drives the vGIC's virtual timer line from the vCPU's saved timer; returns it.
fn sample_timer(gic: &mut Vgic, index: usize, c: &ArmContext) -> bool {
    // The guest's virtual count: the physical count less its domain's CNTVOFF_EL2.
    let virtual_count = counter().wrapping_sub(c.cntvoff);
    let asserted = vgic::virtual_timer_asserted(c.el1.cntv_ctl, c.el1.cntv_cval, virtual_count);
    let _ = gic.set_level(VIRTUAL_TIMER_PPI, index, asserted);
    asserted
}

/// Fills the saved list registers from the model and sets the ICH_HCR_EL2 to enter with.
fn fill(gic: &mut Vgic, index: usize, c: &mut ArmContext) {
    let lrs = &mut c.gic.lr[..el2::list_registers()];
    // No ICH_ELRSR_EL2 mask: the model finds the empty registers in the saved values, which
    // is all the register would say (`vgic::empty_list_registers`), and only when it needs one.
    match gic.fill_list_registers(index, lrs, 0) {
        Ok(outcome) => {
            // Nothing but the model uses the list registers: clear the ones it left, so a
            // deactivated entry's EOI request cannot raise the maintenance interrupt again.
            for (n, lr) in lrs.iter_mut().enumerate() {
                if outcome.valid & (1 << n) == 0 {
                    *lr = 0;
                }
            }
            c.gic.hcr = outcome.ich_hcr();
        }
        Err(_) => c.gic.hcr = vgic::hcr::EN,
    }
}

/// Handles the vGIC side of an exit and turns the trap into the [`Exit`] for the kernel.
fn after_exit(k: &mut Kernel<ArmHal>, r: &Running, trap: &Trap, ctx: &mut ArmContext) -> Exit {
    let Some(d) = k.domain_mut(r.domain) else {
        return plain_exit(trap, ctx);
    };
    let _ = d
        .arch
        .sync_from_list_registers(r.index, &ctx.gic.lr[..el2::list_registers()]);
    let mut kick = 0u32;
    let mut sent = Sent::new();
    let mut virtio = None;
    let exit = match (trap.kind, esr::exception_class(trap.esr)) {
        (vector::LOWER_SYNC, class::DATA_ABORT_LOWER) => {
            let ipa = fault_ipa(trap);
            let device = if d.arch.contains(ipa) {
                Some(Device::Gic)
            } else if let Some(index) = d.virtio_at(ipa) {
                Some(Device::Virtio(index))
            } else {
                d.uart_offset(ipa).map(|_| Device::Uart)
            };
            let out = (&mut sent, &mut virtio);
            match device.and_then(|device| emulate_mmio(d, device, trap, ipa, ctx, out)) {
                Some(k) => {
                    kick = k;
                    Exit::Interrupt
                }
                None => plain_exit(trap, ctx),
            }
        }
        (vector::LOWER_SYNC, class::SYSREG) => match SysregTrap::decode(trap.esr) {
            Some(t) => match traps::classify(&t) {
                SysregAction::GenerateSgi { group1 } => {
                    let value = ctx.x.get(usize::from(t.rt)).copied().unwrap_or(0);
                    kick = d.arch.write_sgi(r.index, value, group1).bits();
                    ctx.pc += 4;
                    Exit::Interrupt
                }
                SysregAction::ReadAsZero => {
                    // Rt 31 is XZR: a read into it has no effect.
                    if t.read {
                        if let Some(x) = ctx.x.get_mut(usize::from(t.rt)) {
                            *x = 0;
                        }
                    }
                    ctx.pc += 4;
                    Exit::Interrupt
                }
                SysregAction::IdRegister { crm, op2 } => {
                    let value = traps::sanitise_id(crm, op2, read_id_register(crm, op2));
                    // Rt 31 is XZR: a read into it has no effect.
                    if let Some(x) = ctx.x.get_mut(usize::from(t.rt)) {
                        *x = value;
                    }
                    ctx.pc += 4;
                    Exit::Interrupt
                }
                SysregAction::CleanInvalidateBySetWay => {
                    let operand = ctx.x.get(usize::from(t.rt)).copied().unwrap_or(0);
                    clean_invalidate_by_set_way(operand);
                    ctx.pc += 4;
                    Exit::Interrupt
                }
                SysregAction::Refuse => plain_exit(trap, ctx),
            },
            None => plain_exit(trap, ctx),
        },
        _ => plain_exit(trap, ctx),
    };
    // Only a WFI asks (the scan over every interrupt is not free), with its timer sampled
    // now; otherwise the line is sampled before the vCPU next enters (`prepare`).
    let deliverable = exit == Exit::WaitForInterrupt && {
        let _ = sample_timer(&mut d.arch, r.index, ctx);
        d.arch.has_deliverable(r.index)
    };
    k.interrupt_vcpus(r.domain, kick);
    if !sent.is_empty() {
        k.console_bytes(r.domain, &sent);
    }
    if let Some((index, written)) = virtio {
        k.virtio_written(r.domain, index, written);
    }
    if deliverable {
        // Sets wake_pending: the kernel does not block a vCPU with an interrupt to take.
        k.wake(r.vcpu);
    }
    exit
}

/// This CPU's ID register `S3_0_C0_C<crm>_<op2>` (CRm 1-7), as EL2 reads it: the hardware's
/// value, which [`traps::sanitise_id`] turns into the guest's. Reserved encodings read as 0.
fn read_id_register(crm: u8, op2: u8) -> u64 {
    // One arm per encoding: `mrs` takes the register in its instruction.
    match (crm, op2) {
        (1, 0) => read_sysreg!("s3_0_c0_c1_0"),
        (1, 1) => read_sysreg!("s3_0_c0_c1_1"),
        (1, 2) => read_sysreg!("s3_0_c0_c1_2"),
        (1, 3) => read_sysreg!("s3_0_c0_c1_3"),
        (1, 4) => read_sysreg!("s3_0_c0_c1_4"),
        (1, 5) => read_sysreg!("s3_0_c0_c1_5"),
        (1, 6) => read_sysreg!("s3_0_c0_c1_6"),
        (1, 7) => read_sysreg!("s3_0_c0_c1_7"),
        (2, 0) => read_sysreg!("s3_0_c0_c2_0"),
        (2, 1) => read_sysreg!("s3_0_c0_c2_1"),
        (2, 2) => read_sysreg!("s3_0_c0_c2_2"),
        (2, 3) => read_sysreg!("s3_0_c0_c2_3"),
        (2, 4) => read_sysreg!("s3_0_c0_c2_4"),
        (2, 5) => read_sysreg!("s3_0_c0_c2_5"),
        (2, 6) => read_sysreg!("s3_0_c0_c2_6"),
        (2, 7) => read_sysreg!("s3_0_c0_c2_7"),
        (3, 0) => read_sysreg!("s3_0_c0_c3_0"),
        (3, 1) => read_sysreg!("s3_0_c0_c3_1"),
        (3, 2) => read_sysreg!("s3_0_c0_c3_2"),
        (3, 3) => read_sysreg!("s3_0_c0_c3_3"),
        (3, 4) => read_sysreg!("s3_0_c0_c3_4"),
        (3, 5) => read_sysreg!("s3_0_c0_c3_5"),
        (3, 6) => read_sysreg!("s3_0_c0_c3_6"),
        (3, 7) => read_sysreg!("s3_0_c0_c3_7"),
        (4, 0) => read_sysreg!("s3_0_c0_c4_0"),
        (4, 1) => read_sysreg!("s3_0_c0_c4_1"),
        (4, 2) => read_sysreg!("s3_0_c0_c4_2"),
        (4, 3) => read_sysreg!("s3_0_c0_c4_3"),
        (4, 4) => read_sysreg!("s3_0_c0_c4_4"),
        (4, 5) => read_sysreg!("s3_0_c0_c4_5"),
        (4, 6) => read_sysreg!("s3_0_c0_c4_6"),
        (4, 7) => read_sysreg!("s3_0_c0_c4_7"),
        (5, 0) => read_sysreg!("s3_0_c0_c5_0"),
        (5, 1) => read_sysreg!("s3_0_c0_c5_1"),
        (5, 2) => read_sysreg!("s3_0_c0_c5_2"),
        (5, 3) => read_sysreg!("s3_0_c0_c5_3"),
        (5, 4) => read_sysreg!("s3_0_c0_c5_4"),
        (5, 5) => read_sysreg!("s3_0_c0_c5_5"),
        (5, 6) => read_sysreg!("s3_0_c0_c5_6"),
        (5, 7) => read_sysreg!("s3_0_c0_c5_7"),
        (6, 0) => read_sysreg!("s3_0_c0_c6_0"),
        (6, 1) => read_sysreg!("s3_0_c0_c6_1"),
        (6, 2) => read_sysreg!("s3_0_c0_c6_2"),
        (6, 3) => read_sysreg!("s3_0_c0_c6_3"),
        (6, 4) => read_sysreg!("s3_0_c0_c6_4"),
        (6, 5) => read_sysreg!("s3_0_c0_c6_5"),
        (6, 6) => read_sysreg!("s3_0_c0_c6_6"),
        (6, 7) => read_sysreg!("s3_0_c0_c6_7"),
        (7, 0) => read_sysreg!("s3_0_c0_c7_0"),
        (7, 1) => read_sysreg!("s3_0_c0_c7_1"),
        (7, 2) => read_sysreg!("s3_0_c0_c7_2"),
        (7, 3) => read_sysreg!("s3_0_c0_c7_3"),
        (7, 4) => read_sysreg!("s3_0_c0_c7_4"),
        (7, 5) => read_sysreg!("s3_0_c0_c7_5"),
        (7, 6) => read_sysreg!("s3_0_c0_c7_6"),
        (7, 7) => read_sysreg!("s3_0_c0_c7_7"),
        _ => 0,
    }
}

/// A guest's `DC ISW/CSW/CISW` (trapped by HCR_EL2.TSW), performed as `DC CISW` on the same
/// set/way operand: the line is written back before it is invalidated, so no other domain's
/// (or the hypervisor's) data in it is lost, and nothing else is touched.
fn clean_invalidate_by_set_way(operand: u64) {
    // SAFETY: a clean and invalidate by set/way only moves dirty data to memory and drops the
    // line from this CPU's cache; it changes no memory content any software can observe.
    unsafe {
        core::arch::asm!("dc cisw, {0}", "dsb sy", in(reg) operand, options(nostack, preserves_flags));
    }
}

/// The guest-physical address of a stage-2 abort.
fn fault_ipa(trap: &Trap) -> u64 {
    ((trap.hpfar & 0x0000_0FFF_FFFF_FFF0) << 8) | (trap.far & 0xFFF)
}

/// Bytes a guest wrote to its emulated UART during one exit (a store pair writes at most 16
/// transfers' worth; the kernel prints them once the domain is no longer borrowed).
type Sent = heapless::Vec<u8, 16>;

/// The emulated devices a data abort can land in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Device {
    /// The vGIC's distributor and redistributors.
    Gic,
    /// A Linux domain's PL011 (`mica_kernel::uart`).
    Uart,
    /// One of the domain's virtio devices (`mica_kernel::virtio`), by index.
    Virtio(usize),
}

/// What a write to a virtio device's registers asked of the kernel (`Kernel::virtio_written`,
/// called once the domain is no longer borrowed).
type VirtioWritten = Option<(usize, mica_kernel::virtio::Written)>;

/// Emulates a data abort at `ipa` inside the vGIC's windows, the domain's PL011 or one of its
/// virtio devices. Returns the vCPUs to kick (one bit per vCPU index), or `None` if the access
/// cannot be decoded (a fault of the domain). Nothing is changed unless the whole access is
/// emulated; bytes the guest transmits are added to `sent`, what a virtio register write asks
/// of the kernel is put in `virtio`.
fn emulate_mmio(
    d: &mut Domain<ArmHal>,
    device: Device,
    trap: &Trap,
    ipa: u64,
    ctx: &mut ArmContext,
    (sent, virtio): (&mut Sent, &mut VirtioWritten),
) -> Option<u32> {
    let access: MmioAccess = match mmio::decode_syndrome(trap.esr).ok()? {
        Syndrome::Decoded(access) => access,
        Syndrome::NeedsInstruction { .. } => {
            mmio::decode_instruction(fetch_instruction(d, ctx)?).ok()?
        }
    };
    let transfers = access.transfers(ipa)?;
    let inside = |t: &mmio::Transfer| match device {
        Device::Gic => d.arch.window(t.ipa, t.size).is_some(),
        // Whole registers only: 8-, 16- and 32-bit accesses at their natural alignment.
        Device::Uart => {
            t.size <= 4 && t.ipa.is_multiple_of(u64::from(t.size)) && d.uart_offset(t.ipa).is_some()
        }
        // One register of that device per access (its model checks the width).
        Device::Virtio(index) => transfers.len() == 1 && d.virtio_at(t.ipa) == Some(index),
    };
    if !transfers.iter().all(inside) {
        return None;
    }
    let mut loaded = [0u64; 2];
    let mut kick = 0u32;
    for t in transfers.iter() {
        if let Device::Virtio(index) = device {
            let offset = d.virtio.get(index)?.offset(t.ipa)?;
            let size = u64::from(t.size);
            let write = access
                .write
                .then(|| access.store_value(&ctx.x, t.index) as u32);
            let (value, written) = d.virtio_access(index, offset, size, write)?;
            *virtio = Some((index, written));
            if let (false, Some(slot)) = (access.write, loaded.get_mut(usize::from(t.index))) {
                *slot = u64::from(value);
            }
        } else if device == Device::Uart {
            let offset = d.uart_offset(t.ipa)?;
            let uart = d.uart.as_mut()?;
            // A narrower access reads or writes the low bytes of the register at its word.
            let (word, shift) = (offset & !3, (offset & 3) * 8);
            if access.write {
                let value = access.store_value(&ctx.x, t.index) as u32;
                if let Some(byte) = uart.write(word, value << shift) {
                    let _ = sent.push(byte);
                }
            } else if let Some(slot) = loaded.get_mut(usize::from(t.index)) {
                let mask = u64::MAX >> (64 - 8 * u32::from(t.size));
                *slot = (u64::from(uart.read(word)) >> shift) & mask;
            }
        } else if access.write {
            let value = access.store_value(&ctx.x, t.index);
            kick |= d.arch.mmio_write(t.ipa, t.size, value)?.bits();
        } else if let Some(slot) = loaded.get_mut(usize::from(t.index)) {
            *slot = d.arch.mmio_read(t.ipa, t.size)?;
        }
    }
    if device == Device::Uart {
        let line = d.uart.as_ref().is_some_and(|u| u.line());
        kick |= d
            .arch
            .set_level(mica_abi::layout::devices::UART_INTID, 0, line)
            .map_or(0, |k| k.bits());
    }
    if let Some(sp) = access.complete(&mut ctx.x, loaded) {
        // SPSR_EL2.M[3:0]: EL1h uses SP_EL1; EL1t and EL0t use SP_EL0.
        let target = if ctx.pstate & 0xF == 0b0101 {
            &mut ctx.el1.sp_el1
        } else {
            &mut ctx.el1.sp_el0
        };
        *target = target.wrapping_add(sp.offset as u64);
        ctx.el1_changed();
    }
    ctx.pc += 4;
    Some(kick)
}

/// Reads the 32-bit instruction at the guest's PC: through the domain's mappings if its
/// stage-1 MMU is off (the PC is then an IPA), else through both stages with `AT S12E1R`.
/// `None` if the PC is misaligned or does not lead to the domain's memory.
fn fetch_instruction(d: &Domain<ArmHal>, ctx: &ArmContext) -> Option<u32> {
    let pc = ctx.pc;
    if !pc.is_multiple_of(4) {
        return None;
    }
    // Only RAM mapped into the domain, never its device windows: a guest could point its own
    // stage 1 at a passed-through device between the trap and this walk (from another vCPU),
    // and EL2 must never read a device register on its behalf. The kernel lock is held, so
    // the domain's mappings cannot change before the read.
    let pa = if ctx.el1.sctlr & 1 == 0 {
        d.mappings.translate_ram(pc)?
    } else {
        let pa = translate_guest_va(pc, ctx.hcr)?;
        d.mappings.maps_ram_at(pa).then_some(pa)?
    };
    // SAFETY: `pa` is 4-byte aligned and inside one of the domain's RAM mappings: RAM the
    // kernel gave the domain (checked above under the kernel lock), which the EL2 map
    // identity-maps as normal memory. A plain read of it has no side effects.
    Some(unsafe { core::ptr::read_volatile(pa as *const u32) })
}

/// Translates guest virtual address `va` through the guest's stage 1 (its EL1 translation
/// registers are still loaded from the vCPU that just exited) and stage 2 (VTTBR_EL2 still
/// names its domain's tables): the physical address, or `None` on a fault.
fn translate_guest_va(va: u64, guest_hcr: u64) -> Option<u64> {
    // Stage 2 must be on for the walk, as it was for the guest (its tables are at IPAs).
    write_sysreg!("hcr_el2", guest_hcr);
    isb();
    // SAFETY: AT S12E1R only performs a translation table walk and writes PAR_EL1; PAR_EL1
    // is the guest's, already saved in its context and reloaded before it runs again. The
    // walk uses the exited vCPU's EL1 and stage-2 registers, which are still loaded.
    unsafe {
        core::arch::asm!("at s12e1r, {0}", in(reg) va, options(nostack, preserves_flags));
    }
    isb();
    let par: u64 = read_sysreg!("par_el1");
    // PAR_EL1 is no longer the guest's: the next entry on this CPU reloads everything.
    context::registers_changed(super::cpu::current());
    write_sysreg!("hcr_el2", super::entry::HCR_EL2_HOST);
    isb();
    if par & 1 != 0 {
        return None;
    }
    Some((par & 0x0000_FFFF_FFFF_F000) | (va & 0xFFF))
}

/// Turns a trap from the guest into an [`Exit`], advancing the PC past instructions the
/// kernel completes (SMC, WFI/WFE).
fn plain_exit(trap: &Trap, ctx: &mut ArmContext) -> Exit {
    let syndrome = trap.esr;
    match trap.kind {
        vector::LOWER_SYNC => {
            let pc = ctx.pc;
            match esr::exception_class(syndrome) {
                // HVC: ELR_EL2 already points past it.
                class::HVC64 => Exit::Hvc {
                    function: ctx.x[0],
                    args: [ctx.x[1], ctx.x[2], ctx.x[3], ctx.x[4], ctx.x[5], ctx.x[6]],
                },
                // SMC with HCR_EL2.TSC: ELR_EL2 points at it.
                class::SMC64 => {
                    ctx.pc += 4;
                    Exit::Smc {
                        function: ctx.x[0],
                        args: [ctx.x[1], ctx.x[2], ctx.x[3], ctx.x[4], ctx.x[5], ctx.x[6]],
                    }
                }
                class::WFX => {
                    ctx.pc += 4;
                    // ISS.TI (bit 0): 0 = WFI, 1 = WFE. WFE is a spin-wait hint: a yield.
                    if syndrome & 1 == 0 {
                        Exit::WaitForInterrupt
                    } else {
                        Exit::Yield
                    }
                }
                ec @ (class::INSTRUCTION_ABORT_LOWER | class::DATA_ABORT_LOWER) => {
                    Exit::MemoryFault {
                        ipa: fault_ipa(trap),
                        write: ec == class::DATA_ABORT_LOWER && esr::is_write(syndrome),
                        pc,
                    }
                }
                ec => Exit::Unhandled {
                    syndrome,
                    pc,
                    what: esr::class_name(ec),
                },
            }
        }
        vector::LOWER_IRQ | vector::LOWER_FIQ => Exit::Interrupt,
        vector::LOWER_SERROR => Exit::Unhandled {
            syndrome,
            pc: ctx.pc,
            what: "SError interrupt",
        },
        _ => Exit::Unhandled {
            syndrome,
            pc: ctx.pc,
            what: "exception from AArch32",
        },
    }
}
