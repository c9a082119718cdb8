//! The control domain's console lines that say what it did, written here so that a host test
//! keeps each within one kernel console line.
//!
//! The kernel cuts a domain's console output into lines of at most
//! `mica_kernel::domain::CONSOLE_LINE` (160) bytes; a longer line continues on the next
//! with the domain's prefix again, which reads badly and defeats a regex that looks for the
//! whole line.

use core::fmt::Write;

/// The longest line the kernel prints whole (`CONSOLE_LINE` in `kernel/src/domain.rs`).
pub const MAX_LINE: usize = 160;

/// A line, cut at [`MAX_LINE`] bytes if it had to be.
pub type Line = heapless::String<MAX_LINE>;

fn line(args: core::fmt::Arguments<'_>) -> Line {
    let mut out = Line::new();
    // A line too long is cut, not lost (the tests keep every line short enough).
    let _ = out.write_fmt(args);
    out
}

/// After a domain it created is gone: its RAM (`kib`, lent from the pool) was scrubbed here
/// and returned (the kernel's own line says the memory went back to its creator: it scrubs
/// only RAM it gave).
pub fn destroyed(name: &str, kib: u64, free_kib: u64) -> Line {
    line(format_args!(
        "ctl: destroyed {name}; scrubbed its {kib} KiB and returned it to the pool; {free_kib} KiB free in the pool"
    ))
}

/// The console is on a transport whose interrupt the manifest did not give: polling.
pub fn wrong_interrupt(transport: u64, transport_intid: u32, manifest_intid: u32) -> Line {
    line(format_args!(
        "ctl: warning: console on transport {transport:#x} (interrupt {transport_intid}), not the manifest's interrupt {manifest_intid}: another device took it; polling"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fit_one_console_line() {
        let longest_name = "a".repeat(31);
        // The pool is 64 MiB: no size or free count has more than five digits.
        let d = destroyed(&longest_name, 65_536, 65_536);
        assert!(d.len() < MAX_LINE, "{} bytes: {d}", d.len());
        assert!(d.ends_with("KiB free in the pool"), "{d}");
        let w = wrong_interrupt(0x0a00_3e00, 1019, 1019);
        assert!(w.len() < MAX_LINE && w.ends_with("polling"), "{w}");
        assert_eq!(
            destroyed("spin-c", 1024, 63424).as_str(),
            "ctl: destroyed spin-c; scrubbed its 1024 KiB and returned it to the pool; 63424 KiB free in the pool"
        );
    }
}
