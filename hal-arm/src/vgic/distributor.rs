//! The distributor frame: GICD_* reads and writes (IHI 0069 12.9).

use super::*;

impl Vgic {
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
    pub(super) fn spis(&self) -> &[Interrupt] {
        self.spi.get(..self.spis).unwrap_or_default()
    }

    pub(super) fn distributor_read32(&self, offset: u64) -> u32 {
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
                // The register covers up to 32 SPIs: each may now be pending or active, and
                // every vCPU any of them concern needs a refresh.
                let first = base.saturating_sub(FIRST_SPI) as usize;
                let count = match family {
                    Family::Priority => 4,
                    Family::Config => 16,
                    _ => 32,
                };
                if !cfg!(feature = "mutant-vgic-write-forgets-maybe") {
                    self.spi_maybe |= span_mask(first, count) & span_mask(0, spis);
                }
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
}

/// Bits `first..first + count` of a 64-bit mask (those below 64).
fn span_mask(first: usize, count: usize) -> u64 {
    let ones = u32::try_from(count)
        .ok()
        .and_then(|c| 1u64.checked_shl(c))
        .map_or(u64::MAX, |bit| bit - 1);
    u32::try_from(first)
        .ok()
        .and_then(|f| ones.checked_shl(f))
        .unwrap_or(0)
}
