//! The hypervisor's boot arguments (`/chosen/bootargs`, QEMU `-append`).
//!
//! Arguments are `key=value` words. Mica reads the ones that start with `mica.`; any
//! other word belongs to someone else and is ignored. A `mica.` word Mica does not know,
//! or whose value does not parse, is collected so boot can warn about it by name rather
//! than silently run with a default the user did not ask for.

/// What to do after a fatal error (a kernel panic or a boot configuration error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFatal {
    /// Power the machine off through PSCI `SYSTEM_OFF` (the default: no hang in CI).
    PowerOff,
    /// Stop every CPU and leave the machine up, e.g. to attach a debugger.
    Halt,
}

/// A self-test the boot arguments ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelfTest {
    /// After boot, CPU 0 reads an unmapped address at EL2 to show the exception report.
    El2Fault,
}

/// The parsed `mica.*` boot arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootArgs<'a> {
    /// `mica.poweroff_after_ms=N`: power off N ms after every CPU has ticked.
    pub poweroff_after_ms: Option<u64>,
    /// `mica.tick_hz=N` (1..=10000, default 100): 1/N s after start, each CPU takes one
    /// bring-up timer interrupt (the scheduler's timer is one-shot, not a tick).
    pub tick_hz: u32,
    /// `mica.on_fatal=poweroff|halt`.
    pub on_fatal: OnFatal,
    /// `mica.selftest=el2-fault`.
    pub selftest: Option<SelfTest>,
    /// `mica.heartbeat_s=N` (1..=3600): print uptime and free memory every N seconds.
    pub heartbeat_s: Option<u64>,
    /// `mica.console_timestamps=on|off` (default off): prefix every line the kernel prints
    /// for a domain, and its own log lines, with the time since the machine started
    /// (`[seconds.micros] `), as Xen's `console_timestamps=boot` does (`make bench-xen`
    /// compares Linux boot times from them).
    pub console_timestamps: bool,
    /// `mica.*` words that were not understood (at most [`BootArgs::MAX_REJECTED`] kept).
    pub rejected: heapless::Vec<&'a str, 8>,
}

impl<'a> BootArgs<'a> {
    /// How many rejected words are kept for the warning.
    pub const MAX_REJECTED: usize = 8;
    /// Default tick rate.
    pub const DEFAULT_TICK_HZ: u32 = 100;

    /// Parses a whitespace-separated argument string. Never fails: bad words are
    /// recorded in [`BootArgs::rejected`].
    pub fn parse(args: &'a str) -> BootArgs<'a> {
        let mut out = BootArgs {
            poweroff_after_ms: None,
            tick_hz: Self::DEFAULT_TICK_HZ,
            on_fatal: OnFatal::PowerOff,
            selftest: None,
            heartbeat_s: None,
            console_timestamps: false,
            rejected: heapless::Vec::new(),
        };
        for word in args.split_ascii_whitespace() {
            let Some(rest) = word.strip_prefix("mica.") else {
                continue;
            };
            let (key, value) = rest.split_once('=').unwrap_or((rest, ""));
            let ok = match key {
                "poweroff_after_ms" => value
                    .parse()
                    .map(|v| out.poweroff_after_ms = Some(v))
                    .is_ok(),
                "tick_hz" => match value.parse::<u32>() {
                    Ok(v @ 1..=10_000) => {
                        out.tick_hz = v;
                        true
                    }
                    _ => false,
                },
                "on_fatal" => match value {
                    "poweroff" => {
                        out.on_fatal = OnFatal::PowerOff;
                        true
                    }
                    "halt" => {
                        out.on_fatal = OnFatal::Halt;
                        true
                    }
                    _ => false,
                },
                "heartbeat_s" => match value.parse::<u64>() {
                    Ok(v @ 1..=3600) => {
                        out.heartbeat_s = Some(v);
                        true
                    }
                    _ => false,
                },
                "console_timestamps" => match value {
                    "on" => {
                        out.console_timestamps = true;
                        true
                    }
                    "off" => {
                        out.console_timestamps = false;
                        true
                    }
                    _ => false,
                },
                "selftest" => match value {
                    "el2-fault" => {
                        out.selftest = Some(SelfTest::El2Fault);
                        true
                    }
                    _ => false,
                },
                _ => false,
            };
            if !ok {
                let _ = out.rejected.push(word);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let a = BootArgs::parse("");
        assert_eq!(a.poweroff_after_ms, None);
        assert_eq!(a.tick_hz, 100);
        assert_eq!(a.on_fatal, OnFatal::PowerOff);
        assert!(a.rejected.is_empty());
    }

    #[test]
    fn known_words_parse_and_foreign_words_are_ignored() {
        let a = BootArgs::parse("console=ttyAMA0 mica.poweroff_after_ms=250  mica.tick_hz=1000 mica.on_fatal=halt mica.selftest=el2-fault mica.console_timestamps=on");
        assert!(a.console_timestamps);
        assert!(!BootArgs::parse("mica.console_timestamps=off").console_timestamps);
        assert_eq!(
            BootArgs::parse("mica.console_timestamps=1").rejected.len(),
            1
        );
        assert_eq!(a.poweroff_after_ms, Some(250));
        assert_eq!(a.tick_hz, 1000);
        assert_eq!(a.on_fatal, OnFatal::Halt);
        assert_eq!(a.selftest, Some(SelfTest::El2Fault));
        assert!(a.rejected.is_empty());
    }

    #[test]
    fn bad_words_are_rejected_by_name() {
        let a = BootArgs::parse("mica.tick_hz=0 mica.tick_hz=abc mica.frobnicate=1 mica.poweroff_after_ms= mica.on_fatal");
        assert_eq!(a.tick_hz, 100);
        assert_eq!(
            a.rejected.as_slice(),
            &[
                "mica.tick_hz=0",
                "mica.tick_hz=abc",
                "mica.frobnicate=1",
                "mica.poweroff_after_ms=",
                "mica.on_fatal"
            ]
        );
    }
}
