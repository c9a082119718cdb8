//! Event channels as a domain sees them: the shared event page and the upcall.
//!
//! A domain registers one page of its own RAM as its event page (`event_page_set`). When a
//! peer sends on a channel whose receiving endpoint the domain bound to port `p`
//! (`evtchn_bind`), the kernel sets bit `p` of `pending` and bit `p / 64` of `summary` (both
//! with atomic OR), then — unless the endpoint is masked — wakes the domain's bound vCPU and
//! raises the upcall interrupt [`UPCALL_INTID`] on it. The receiver takes `summary` with an
//! atomic swap to zero, then each word it names, so finding pending events costs one word
//! plus one per word with events in it, however many channels are idle.

/// Ports per domain.
pub const PORTS: usize = 4096;
/// 64-bit words of pending bits.
pub const PENDING_WORDS: usize = PORTS / 64;
/// The per-domain upcall: a private peripheral interrupt (PPI 15 = INTID 31) on the bound vCPU.
pub const UPCALL_INTID: u32 = 31;

/// The layout of a domain's event page (4 KiB, only the kernel and the domain touch it).
#[repr(C)]
pub struct EventPage {
    /// Bit `i % 64` of word `i / 64`: port `i` has an event.
    pub pending: [u64; PENDING_WORDS],
    /// Bit `w`: `pending[w]` may be non-zero.
    pub summary: u64,
}

const _: () = assert!(core::mem::size_of::<EventPage>() <= 4096);

/// Byte offset of `pending[word]` in the page.
pub const fn pending_offset(word: usize) -> usize {
    word * 8
}

/// Byte offset of `summary` in the page.
pub const SUMMARY_OFFSET: usize = PENDING_WORDS * 8;

/// Which word and bit hold `port`; `None` if the port is out of range.
pub const fn port_position(port: u64) -> Option<(usize, u64)> {
    if port >= PORTS as u64 {
        return None;
    }
    Some(((port / 64) as usize, 1 << (port % 64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_map_to_words_and_bits() {
        assert_eq!(port_position(0), Some((0, 1)));
        assert_eq!(port_position(65), Some((1, 2)));
        assert_eq!(port_position(4095), Some((63, 1 << 63)));
        assert_eq!(port_position(4096), None);
        assert_eq!(SUMMARY_OFFSET, 512);
        assert_eq!(pending_offset(63), 504);
    }
}
