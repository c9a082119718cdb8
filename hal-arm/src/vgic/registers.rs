//! The register families the distributor and the SGI frame share (group, enable, pending,
//! active, priority, configuration), read and written over a run of interrupts.

use super::*;

/// The register families that exist in both the distributor and the SGI frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
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
pub(super) fn family(offset: u64) -> Option<(Family, u32)> {
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
pub(super) fn lookup(irqs: &[Interrupt], first: u32, intid: u32) -> Option<&Interrupt> {
    irqs.get(usize::try_from(intid.checked_sub(first)?).ok()?)
}

pub(super) fn lookup_mut(irqs: &mut [Interrupt], first: u32, intid: u32) -> Option<&mut Interrupt> {
    irqs.get_mut(usize::try_from(intid.checked_sub(first)?).ok()?)
}

/// Reads the 32-bit register of `family` whose first INTID is `base`, from a run of
/// interrupts starting at INTID `first`. INTIDs outside the run read as zero.
pub(super) fn read_register(irqs: &[Interrupt], first: u32, family: Family, base: u32) -> u32 {
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
pub(super) fn write_register(
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
pub(super) fn aligned(offset: u64, size: u8) -> bool {
    matches!(size, 1 | 2 | 4 | 8) && offset.is_multiple_of(u64::from(size))
}
