//! The redistributors: each vCPU's RD_base and SGI_base frames (IHI 0069 12.10).

use super::*;

impl Vgic {
    // ---- Redistributors ----------------------------------------------------------------

    /// Splits a redistributor-region offset into (vCPU, SGI frame?, offset in frame).
    pub(super) fn redistributor_frame(&self, offset: u64) -> Option<(usize, bool, u64)> {
        let vcpu = usize::try_from(offset / REDISTRIBUTOR_STRIDE).ok()?;
        if vcpu >= self.vcpus {
            return None;
        }
        let within = offset % REDISTRIBUTOR_STRIDE;
        Some((vcpu, within >= SGI_FRAME, within % SGI_FRAME))
    }

    pub(super) fn redistributor_typer(&self, vcpu: usize) -> u64 {
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
}
