//! Event channels from the receiving side: the event page, taking pending ports, waiting.
//!
//! A domain registers one page of its RAM as its event page ([`register`]; the runtime keeps a
//! page-aligned one in BSS) and binds each endpoint it receives on to a port ([`bind`]). A
//! peer's [`send`] makes the kernel OR the port's bit into `pending` and its word's bit into
//! `summary` (`mica_abi::event`), then wake the bound vCPU if it sleeps in WFI.
//! [`take_pending`] swaps `summary` to zero and then only the words it names, so finding
//! events costs the same however many channels are idle; [`wait`] takes pending events or
//! sleeps in WFI until some arrive. Events coalesce: many sends before a take are one bit.
//!
//! The page is shared with the kernel (which writes it from other CPUs), so every access is
//! atomic; the layout is checked against `mica_abi::event` at compile time.

use core::sync::atomic::{AtomicU64, Ordering};

use mica_abi::event::{port_position, PENDING_WORDS, PORTS, SUMMARY_OFFSET};
use mica_abi::Status;

use crate::hypercall::{self, Port, Slot};

/// Bytes of an event page.
pub const PAGE_SIZE: usize = mica_abi::layout::PAGE_SIZE as usize;

/// The memory of an event page: `mica_abi::event::EventPage`, accessed atomically.
#[repr(C, align(4096))]
pub struct EventPage {
    pending: [AtomicU64; PENDING_WORDS],
    summary: AtomicU64,
    unused: [AtomicU64; PAGE_SIZE / 8 - PENDING_WORDS - 1],
}

const _: () = assert!(core::mem::offset_of!(EventPage, summary) == SUMMARY_OFFSET);
const _: () = assert!(core::mem::size_of::<EventPage>() == PAGE_SIZE);

impl EventPage {
    /// An empty page.
    pub const fn new() -> EventPage {
        EventPage {
            pending: [const { AtomicU64::new(0) }; PENDING_WORDS],
            summary: AtomicU64::new(0),
            unused: [const { AtomicU64::new(0) }; PAGE_SIZE / 8 - PENDING_WORDS - 1],
        }
    }

    /// Guest-physical (with the MMU off: the same as virtual) address of the page.
    pub fn address(&self) -> u64 {
        core::ptr::from_ref(self) as u64
    }

    /// Marks `port` pending as the kernel does (the port's bit, then its word's summary
    /// bit); for tests and for a domain signalling itself. False if the port is out of range.
    pub fn post(&self, port: Port) -> bool {
        let Some((word, bit)) = port_position(port.raw()) else {
            return false;
        };
        self.pending[word].fetch_or(bit, Ordering::AcqRel);
        self.summary.fetch_or(1 << word, Ordering::AcqRel);
        true
    }

    /// Takes every pending port: swaps `summary` to zero, then each word it names. An event
    /// the kernel posts meanwhile is either taken now or left with its summary bit set for
    /// the next call (the kernel sets the summary bit after the pending bit).
    pub fn take_pending(&self) -> Pending {
        let summary = self.summary.swap(0, Ordering::AcqRel);
        let mut words = [0; PENDING_WORDS];
        let mut left = summary;
        while left != 0 {
            let w = left.trailing_zeros() as usize;
            left &= left - 1;
            words[w] = self.pending[w].swap(0, Ordering::AcqRel);
        }
        Pending { summary, words }
    }

    /// Whether anything is pending (without taking it).
    pub fn any_pending(&self) -> bool {
        self.summary.load(Ordering::Acquire) != 0
    }
}

impl Default for EventPage {
    fn default() -> EventPage {
        EventPage::new()
    }
}

/// Ports taken from the event page by one [`EventPage::take_pending`]; iterates them in
/// ascending order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    summary: u64,
    words: [u64; PENDING_WORDS],
}

impl Pending {
    /// Whether no port was pending. (A summary bit whose word turned out empty counts as
    /// nothing: it can be left over from an event an earlier take already got.)
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }

    /// Whether `port` was pending.
    pub fn contains(&self, port: Port) -> bool {
        port_position(port.raw()).is_some_and(|(w, bit)| self.words[w] & bit != 0)
    }
}

impl Iterator for Pending {
    type Item = Port;

    fn next(&mut self) -> Option<Port> {
        while self.summary != 0 {
            let w = self.summary.trailing_zeros() as usize;
            let bits = self.words[w];
            if bits == 0 {
                self.summary &= self.summary - 1;
                continue;
            }
            let b = bits.trailing_zeros() as usize;
            self.words[w] = bits & (bits - 1);
            let port = w * 64 + b;
            debug_assert!(port < PORTS);
            return Some(Port(port as u16));
        }
        None
    }
}

/// The domain's event page (in BSS, page aligned).
static PAGE: EventPage = EventPage::new();

/// The domain's event page.
pub fn page() -> &'static EventPage {
    &PAGE
}

/// Registers the runtime's event page with the kernel (`event_page_set`). Call once before
/// binding endpoints.
pub fn register() -> Result<(), Status> {
    hypercall::event_page_set(PAGE.address())
}

/// Routes events sent to `endpoint` (a capability with RECEIVE) to `port`, waking vCPU
/// `vcpu`; events latched before the bind are delivered now.
pub fn bind(endpoint: Slot, port: Port, vcpu: u64) -> Result<(), Status> {
    hypercall::evtchn_bind(endpoint, port, vcpu)
}

/// Signals the other end of `endpoint`'s channel; [`Status::PeerClosed`] once it is closed.
pub fn send(endpoint: Slot) -> Result<(), Status> {
    hypercall::evtchn_send(endpoint)
}

/// Stops events on `endpoint` from waking the domain (they still become pending).
pub fn mask(endpoint: Slot) -> Result<(), Status> {
    hypercall::evtchn_mask(endpoint, true)
}

/// Lets events on `endpoint` wake the domain again; one already pending wakes it now.
pub fn unmask(endpoint: Slot) -> Result<(), Status> {
    hypercall::evtchn_mask(endpoint, false)
}

/// Closes `endpoint` (deletes the capability): the peer's sends then answer
/// [`Status::PeerClosed`] once no other capability to this end is left.
pub fn close(endpoint: Slot) -> Result<(), Status> {
    hypercall::cap_delete(endpoint)
}

/// Takes every pending port of the domain's event page.
pub fn take_pending() -> Pending {
    PAGE.take_pending()
}

/// Takes pending ports from `page`, calling `idle` between looks until some are there.
pub fn wait_on(page: &EventPage, mut idle: impl FnMut()) -> Pending {
    loop {
        let pending = page.take_pending();
        if !pending.is_empty() {
            return pending;
        }
        idle();
    }
}

/// Takes pending ports, sleeping in WFI until there are some. The kernel remembers a
/// wake-up that arrives between the look and the WFI, so none is lost.
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn wait() -> Pending {
    wait_on(&PAGE, wfi)
}

/// Sleeps until the kernel wakes this vCPU (an event, or a wake-up that came earlier).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn wfi() {
    // SAFETY: WFI only suspends the vCPU (trapped by the kernel, HCR_EL2.TWI). It may return
    // after the kernel wrote the event page, so memory is not declared untouched.
    unsafe { core::arch::asm!("wfi", options(nostack, preserves_flags)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conduit::mock;
    use mica_abi::hypercall::Call;

    #[test]
    fn posted_ports_come_back_once_in_order() {
        let page = Box::new(EventPage::new());
        assert!(page.take_pending().is_empty());
        for p in [4095, 0, 64, 63, 0, 130] {
            assert!(page.post(Port(p)));
        }
        assert!(!page.post(Port(4096)));
        assert!(page.any_pending());
        let pending = page.take_pending();
        assert!(pending.contains(Port(63)) && !pending.contains(Port(62)));
        let ports: Vec<u16> = pending.map(|p| p.0).collect();
        assert_eq!(ports, [0, 63, 64, 130, 4095]);
        assert!(!page.any_pending());
        assert!(page.take_pending().is_empty(), "taken once");
    }

    #[test]
    fn the_layout_matches_the_abi() {
        let page = Box::new(EventPage::new());
        assert_eq!(page.address() % 4096, 0);
        page.post(Port(65));
        // SAFETY: reading the page's bytes while no one writes it (test only).
        let bytes: &[u8; 4096] = unsafe { &*(core::ptr::from_ref(&*page).cast()) };
        let word = |off: usize| u64::from_le_bytes(bytes[off..off + 8].try_into().unwrap());
        assert_eq!(word(mica_abi::event::pending_offset(1)), 2);
        assert_eq!(word(SUMMARY_OFFSET), 2);
    }

    #[test]
    fn a_summary_bit_with_an_empty_word_is_nothing() {
        let page = Box::new(EventPage::new());
        page.summary.fetch_or(1 << 5, Ordering::Relaxed);
        let pending = page.take_pending();
        assert!(pending.is_empty());
        assert_eq!(pending.count(), 0);
    }

    #[test]
    fn waiting_idles_until_something_is_posted() {
        let page = Box::new(EventPage::new());
        let mut idles = 0;
        let got = wait_on(&page, || {
            idles += 1;
            if idles == 3 {
                page.post(Port(7));
            }
        });
        assert_eq!(idles, 3);
        assert_eq!(got.collect::<Vec<_>>(), [Port(7)]);
    }

    #[test]
    fn wrappers_issue_their_calls() {
        register().unwrap();
        bind(Slot(4), Port(2), 0).unwrap();
        send(Slot(4)).unwrap();
        mask(Slot(4)).unwrap();
        unmask(Slot(4)).unwrap();
        close(Slot(4)).unwrap();
        let log = mock::take();
        let calls: Vec<u64> = log.iter().map(|r| r.function).collect();
        assert_eq!(
            calls,
            [
                Call::EventPageSet,
                Call::EvtchnBind,
                Call::EvtchnSend,
                Call::EvtchnMask,
                Call::EvtchnMask,
                Call::CapDelete
            ]
            .map(Call::function_id)
        );
        assert_eq!(log[0].args[0], page().address());
        assert_eq!(log[1].args[..3], [4, 2, 0]);
        assert_eq!(log[3].args[1], 1);
        assert_eq!(log[4].args[1], 0);
    }
}
