//! Each physical CPU's loop: ask the kernel what to run, run it until it traps, tell the
//! kernel why it stopped.

use mica_kernel::kernel::Exit;

use super::context::{self, ArmContext};
use super::hal::KERNEL;
use super::sysreg::{mask_interrupts, read_sysreg, unmask_irq, wfi};
use super::trap;
use crate::esr;

/// Runs vCPUs on CPU `cpu` forever.
pub fn run(cpu: usize) -> ! {
    loop {
        let picked = {
            let mut k = KERNEL.lock();
            k.pick(cpu).and_then(|next| {
                let vttbr = k.domain(next.domain)?.stage2.vttbr();
                let ctx: *mut ArmContext = &mut k.vcpu_mut(next.vcpu)?.context;
                Some((ctx, vttbr))
            })
        };
        let Some((ctx, vttbr)) = picked else {
            // Nothing to run: sleep until an interrupt (taken right here, between unmask and
            // mask, by the EL2 vector).
            unmask_irq();
            wfi();
            mask_interrupts();
            continue;
        };
        // SAFETY: `pick` marked the vCPU Running on this CPU; until this CPU hands it back
        // through `handle_exit`/`pick`, nobody else reads or writes its context, and the
        // vCPU table is a static that never moves. `vttbr` names its domain's stage-2 tables.
        let kind = unsafe { context::enter(ctx, vttbr) };
        // SAFETY: as above; the guest has stopped and the context is ours again.
        let exit = decode(kind, unsafe { &mut *ctx });
        if exit == Exit::Interrupt {
            trap::handle_irqs();
        }
        KERNEL.lock().handle_exit(cpu, exit);
    }
}

/// Turns a trap from the guest into an [`Exit`], advancing the PC past instructions the
/// kernel completes (SMC, WFI/WFE).
fn decode(kind: u64, ctx: &mut ArmContext) -> Exit {
    match kind {
        8 => {
            let syndrome: u64 = read_sysreg!("esr_el2");
            let pc = ctx.pc;
            match esr::exception_class(syndrome) {
                // HVC: ELR_EL2 already points past it.
                0x16 => Exit::Hvc {
                    function: ctx.x[0],
                    args: [ctx.x[1], ctx.x[2], ctx.x[3], ctx.x[4], ctx.x[5], ctx.x[6]],
                },
                // SMC with HCR_EL2.TSC: ELR_EL2 points at it.
                0x17 => {
                    ctx.pc += 4;
                    Exit::Smc {
                        function: ctx.x[0],
                        args: [ctx.x[1], ctx.x[2], ctx.x[3], ctx.x[4], ctx.x[5], ctx.x[6]],
                    }
                }
                0x01 => {
                    ctx.pc += 4;
                    Exit::WaitForInterrupt
                }
                ec @ (0x20 | 0x24) => {
                    let far: u64 = read_sysreg!("far_el2");
                    let hpfar: u64 = read_sysreg!("hpfar_el2");
                    let ipa = ((hpfar & 0x0000_0FFF_FFFF_FFF0) << 8) | (far & 0xFFF);
                    Exit::MemoryFault {
                        ipa,
                        write: ec == 0x24 && esr::is_write(syndrome),
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
        9 | 10 => Exit::Interrupt,
        11 => Exit::Unhandled {
            syndrome: read_sysreg!("esr_el2"),
            pc: ctx.pc,
            what: "SError interrupt",
        },
        _ => Exit::Unhandled {
            syndrome: read_sysreg!("esr_el2"),
            pc: ctx.pc,
            what: "exception from AArch32",
        },
    }
}
