//! What domains may put on the machine's console, and how much of it.
//!
//! The hypervisor console is shared by every domain, so it is a channel one domain could use
//! against the others: to flood it (hiding everyone else's output and keeping the UART busy),
//! or to send terminal control sequences that rewrite what an operator sees. Two rules close
//! that channel:
//!
//! - **A budget per domain** ([`Budget`]): a token bucket of console bytes, refilled with
//!   time. Console lines and the kernel's own log lines about what a domain did (a vCPU
//!   started, say) are paid from it; what it cannot pay for is dropped and counted, and the
//!   count is reported once the domain can pay again. The domain's own console log (read back
//!   with `console_read`) keeps everything: only the shared console is limited.
//! - **Plain text only** ([`sanitize`]): every line is printed as valid UTF-8 with no control
//!   character (C0, DEL, C1) and no bidirectional-override character; anything else becomes
//!   `?`.

/// Bytes a domain may write to the console at once (its bucket's size).
pub const BURST_BYTES: u32 = 64 * 1024;
/// Bytes per second its bucket refills with.
pub const BYTES_PER_SECOND: u64 = 16 * 1024;

/// A domain's console allowance: a token bucket of bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Bytes it may still write.
    tokens: u32,
    /// When the bucket was last refilled (ns of the system counter).
    refilled_ns: u64,
    /// Bytes dropped since output last got through.
    dropped: u64,
}

impl Budget {
    /// A full bucket.
    pub const FULL: Budget = Budget {
        tokens: BURST_BYTES,
        refilled_ns: 0,
        dropped: 0,
    };

    /// Pays for `bytes` of output at time `now_ns`. `Some(dropped)`: it may be written, and
    /// `dropped` bytes were refused since the last output that got through (to be reported
    /// first); `None`: it is dropped (and counted).
    pub fn pay(&mut self, now_ns: u64, bytes: usize) -> Option<u64> {
        let elapsed = now_ns.saturating_sub(self.refilled_ns);
        let refill = (u128::from(elapsed) * u128::from(BYTES_PER_SECOND) / 1_000_000_000)
            .min(u128::from(BURST_BYTES)) as u32;
        if refill > 0 {
            self.tokens = self.tokens.saturating_add(refill).min(BURST_BYTES);
            self.refilled_ns = now_ns;
        }
        let cost = u32::try_from(bytes).unwrap_or(u32::MAX);
        if cost > self.tokens {
            self.dropped = self.dropped.saturating_add(bytes as u64);
            return None;
        }
        self.tokens -= cost;
        Some(core::mem::take(&mut self.dropped))
    }
}

/// Whether `c` may appear on the console: printable, not a control character, not a
/// character that reorders the text around it (the Unicode bidirectional embeddings,
/// overrides and isolates, which can make a line read differently from what it holds).
fn printable(c: char) -> bool {
    !(c.is_control() && c != '\t' || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'))
}

/// Appends `bytes` to `out` as console text: valid UTF-8 with every character that is not
/// [`printable`], and every byte that is not part of a valid UTF-8 sequence, replaced by `?`.
/// Stops quietly when `out` is full.
pub fn sanitize<const N: usize>(bytes: &[u8], out: &mut heapless::Vec<u8, N>) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            let c = if printable(c) { c } else { '?' };
            let mut buf = [0u8; 4];
            if out
                .extend_from_slice(c.encode_utf8(&mut buf).as_bytes())
                .is_err()
            {
                return;
            }
        }
        for _ in chunk.invalid() {
            if out.push(b'?').is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(bytes: &[u8]) -> std::string::String {
        let mut out: heapless::Vec<u8, 256> = heapless::Vec::new();
        sanitize(bytes, &mut out);
        std::string::String::from_utf8(out.to_vec()).expect("always UTF-8")
    }

    #[test]
    fn control_characters_and_invalid_bytes_become_question_marks() {
        assert_eq!(clean(b"plain text\tok"), "plain text\tok");
        assert_eq!(clean(b"\x1b[2Jclear"), "?[2Jclear");
        assert_eq!(clean(b"del\x7f"), "del?");
        // C1 controls: raw (not UTF-8) and encoded as UTF-8 (U+009B, CSI).
        assert_eq!(clean(b"raw \x9b2J"), "raw ?2J");
        assert_eq!(clean("utf8 \u{9b}2J".as_bytes()), "utf8 ?2J");
        assert_eq!(clean(b"\xff\xfe"), "??");
        // Text that reads backwards: the override goes, the letters stay.
        assert_eq!(clean("a\u{202E}cba".as_bytes()), "a?cba");
        assert_eq!(
            clean("caf\u{e9} \u{2014} \u{1F600}".as_bytes()),
            "caf\u{e9} \u{2014} \u{1F600}"
        );
    }

    #[test]
    fn a_full_buffer_stops_the_copy() {
        let mut out: heapless::Vec<u8, 4> = heapless::Vec::new();
        sanitize("ab\u{e9}\u{e9}".as_bytes(), &mut out);
        assert_eq!(out.as_slice(), "ab\u{e9}".as_bytes());
    }

    #[test]
    fn the_budget_drops_a_flood_and_reports_it_once_output_resumes() {
        let mut b = Budget::FULL;
        let mut written = 0u64;
        for _ in 0..1000 {
            if b.pay(0, 1000).is_some() {
                written += 1000;
            }
        }
        assert_eq!(written, 65_000, "a burst of at most BURST_BYTES");
        // Time passes: 16 KiB per second.
        assert_eq!(b.pay(1_000_000_000, 1000), Some(935_000));
        assert_eq!(b.pay(1_000_000_000, 1000), Some(0));
        let mut more = 0;
        while b.pay(1_000_000_000, 100).is_some() {
            more += 100;
        }
        assert!(more <= 16 * 1024, "{more}");
        // A long quiet time refills at most one burst.
        let mut b2 = b;
        assert!(b2.pay(u64::MAX, BURST_BYTES as usize).is_some());
        assert!(b2.pay(u64::MAX, 1).is_none());
    }
}
