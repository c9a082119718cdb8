//! Converting between the generic timer's ticks and nanoseconds without a division on the
//! hot path.
//!
//! The kernel turns the counter into nanoseconds on every exit (scheduling is in
//! nanoseconds) and nanoseconds back into ticks for every timer it programs; the exact
//! `x * 1e9 / hz` in 128 bits is a call to the compiler's 128-bit division, a few hundred
//! instructions each, which showed in the null hypercall's profile. A [`Scale`] is computed
//! once (that is where the division happens) and then converts with one 128-bit multiply
//! and a shift, the way clock sources commonly do it.
//!
//! Both directions round **up**: a deadline converted to ticks never fires before it, and
//! the time of a tick is never earlier than the tick, so a deadline the kernel programs has
//! passed, in its own nanoseconds, when the timer fires. The rounding costs at most a few
//! units of the target (tests below bound it against the exact division).

/// Nanoseconds per second.
pub const NS_PER_SECOND: u64 = 1_000_000_000;

/// `x * to / from`, rounded up, as `(x * mult + (2^shift - 1)) >> shift` (saturating).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scale {
    mult: u64,
    shift: u32,
}

impl Scale {
    /// The scale from a clock of `from` Hz to one of `to` Hz (a `from` of 0 counts as 1).
    /// Exact when `to` is a multiple of `from` (62.5 MHz to 1 GHz: 16) or the ratio a power
    /// of two; otherwise the multiplier has as many fraction bits as fit in 64.
    pub const fn new(from: u64, to: u64) -> Scale {
        let from = if from == 0 { 1 } else { from };
        if to.is_multiple_of(from) {
            return Scale {
                mult: to / from,
                shift: 0,
            };
        }
        // The largest shift whose multiplier, ceil(to * 2^shift / from), stays below 2^64.
        let mut shift = 64;
        loop {
            let scaled = (to as u128) << shift;
            let from = from as u128;
            let mult = scaled.div_ceil(from);
            if mult <= u64::MAX as u128 {
                return Scale {
                    mult: mult as u64,
                    shift,
                };
            }
            shift -= 1;
        }
    }

    /// `x` in the target clock's units, rounded up (at most `u64::MAX`).
    #[inline]
    pub fn apply(self, x: u64) -> u64 {
        let product = u128::from(x) * u128::from(self.mult);
        let rounded = if self.shift == 0 {
            product
        } else {
            (product + ((1u128 << self.shift) - 1)) >> self.shift
        };
        rounded.min(u128::from(u64::MAX)) as u64
    }
}

/// The two scales of a counter of `hz` Hz: ticks to nanoseconds and back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Ticks to nanoseconds.
    pub to_ns: Scale,
    /// Nanoseconds to ticks.
    pub to_ticks: Scale,
}

impl Clock {
    /// The scales of a counter of `hz` Hz.
    pub const fn new(hz: u64) -> Clock {
        Clock {
            to_ns: Scale::new(hz, NS_PER_SECOND),
            to_ticks: Scale::new(NS_PER_SECOND, hz),
        }
    }

    /// `ticks` in nanoseconds, rounded up.
    #[inline]
    pub fn ns(&self, ticks: u64) -> u64 {
        self.to_ns.apply(ticks)
    }

    /// `ns` in ticks, rounded up.
    #[inline]
    pub fn ticks(&self, ns: u64) -> u64 {
        self.to_ticks.apply(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x * to / from` rounded up, exactly (saturating).
    fn exact(x: u64, from: u64, to: u64) -> u64 {
        (u128::from(x) * u128::from(to))
            .div_ceil(u128::from(from))
            .min(u128::from(u64::MAX)) as u64
    }

    /// Values that cover small counts, round numbers and the far end of the range.
    fn samples() -> impl Iterator<Item = u64> {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let random = (0..2000).map(move |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state >> (state % 40)
        });
        (0..1000u64)
            .chain([
                1_000_000_000,
                62_500_000,
                24_000_000,
                1 << 40,
                1 << 50,
                1 << 56,
            ])
            .chain(random)
    }

    /// Frequencies of real counters: QEMU's `virt` (62.5 MHz), many SoCs (24, 19.2, 54 MHz),
    /// Arm's 1 GHz for Armv8.6 and later, and odd ones.
    const HZ: [u64; 8] = [
        62_500_000,
        24_000_000,
        19_200_000,
        54_000_000,
        1_000_000_000,
        100_000_000,
        33_333_333,
        1,
    ];

    #[test]
    fn rounds_up_and_stays_within_two_units_of_the_exact_value() {
        for hz in HZ {
            let clock = Clock::new(hz);
            for x in samples().filter(|x| *x < 1 << 56) {
                let (ns, ticks) = (clock.ns(x), clock.ticks(x));
                let (ns_exact, ticks_exact) =
                    (exact(x, hz, NS_PER_SECOND), exact(x, NS_PER_SECOND, hz));
                assert!(
                    ns >= ns_exact && ns - ns_exact <= 1,
                    "{hz} Hz: {x} ticks: {ns} ns, exactly {ns_exact}"
                );
                assert!(
                    ticks >= ticks_exact && ticks - ticks_exact <= 1,
                    "{hz} Hz: {x} ns: {ticks} ticks, exactly {ticks_exact}"
                );
            }
        }
    }

    #[test]
    fn is_exact_for_whole_ratios() {
        let clock = Clock::new(62_500_000);
        assert_eq!(clock.to_ns, Scale { mult: 16, shift: 0 });
        for x in samples() {
            assert_eq!(clock.ns(x), exact(x, 62_500_000, NS_PER_SECOND));
            assert_eq!(clock.ticks(x), exact(x, NS_PER_SECOND, 62_500_000));
        }
    }

    #[test]
    fn a_deadline_in_ticks_has_passed_in_nanoseconds_when_it_fires() {
        for hz in HZ {
            let clock = Clock::new(hz);
            for ns in samples().filter(|x| *x < 1 << 56) {
                assert!(clock.ns(clock.ticks(ns)) >= ns, "{hz} Hz, {ns} ns");
            }
        }
    }

    #[test]
    fn saturates_instead_of_wrapping() {
        let clock = Clock::new(24_000_000);
        assert_eq!(clock.ns(u64::MAX), u64::MAX);
        assert_eq!(Clock::new(1).ns(u64::MAX / 2), u64::MAX);
        assert_eq!(Scale::new(0, 5).apply(3), 15);
    }

    #[test]
    fn is_monotonic() {
        for hz in HZ {
            let clock = Clock::new(hz);
            let mut values: Vec<u64> = samples().collect();
            values.sort_unstable();
            for pair in values.windows(2) {
                assert!(clock.ns(pair[0]) <= clock.ns(pair[1]));
                assert!(clock.ticks(pair[0]) <= clock.ticks(pair[1]));
            }
        }
    }
}
