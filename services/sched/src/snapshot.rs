//! A consistent copy of the accounting page, in the planner's terms.
//!
//! The kernel rewrites the page (`mica_abi::sched::SchedPage`) whenever something changes,
//! as a seqlock: `seq` is odd while it writes. [`read_consistent`] is the reader's half
//! (read `seq`, copy, read it again, accept if equal and even), written against two
//! closures so the retry logic is tested here and the domain only supplies the memory
//! accesses. [`Snapshot::from_page`] keeps the live entries, sorted by vCPU.

use heapless::Vec;
use mica_abi::sched::{state, SchedPage};
use mica_abi::sysimage::SchedRequest;
use zerocopy::FromBytes;

use crate::{Params, VcpuKey, MAX_VCPUS};

/// Bytes of the page that matter.
pub const PAGE_BYTES: usize = core::mem::size_of::<SchedPage>();

/// One live vCPU as the page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Which vCPU.
    pub key: VcpuKey,
    /// The CPU it runs on.
    pub cpu: u8,
    /// `mica_abi::sched::state` value.
    pub state: u8,
    /// Nanoseconds it has run, in total.
    pub run_time_ns: u64,
    /// Times it was woken from blocking.
    pub wakeups: u32,
    /// Times it used up its budget.
    pub overruns: u32,
    /// Its current parameters.
    pub params: Params,
    /// What the manifest asked for.
    pub request: SchedRequest,
    /// NUMA node of its CPU.
    pub node: u8,
    /// NUMA node of its domain's memory.
    pub memory_node: u8,
}

impl Observed {
    /// Whether it wants a CPU right now (runnable or running).
    pub const fn wants_cpu(&self) -> bool {
        self.state == state::RUNNABLE || self.state == state::RUNNING
    }
}

/// The accounting page at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Kernel time of the page's last update, nanoseconds.
    pub now_ns: u64,
    /// Physical CPUs online.
    pub cpus: u32,
    /// The live vCPUs, in [`VcpuKey`] order.
    pub vcpus: Vec<Observed, MAX_VCPUS>,
}

impl Snapshot {
    /// The live entries of `page`.
    pub fn from_page(page: &SchedPage) -> Snapshot {
        let mut vcpus: Vec<Observed, MAX_VCPUS> = page
            .vcpus
            .iter()
            .filter(|v| v.valid != 0 && v.state != state::OFF)
            .map(|v| Observed {
                key: VcpuKey {
                    domain: v.domain,
                    index: v.index,
                },
                cpu: v.cpu,
                state: v.state,
                run_time_ns: v.run_time_ns,
                wakeups: v.wakeups,
                overruns: v.overruns,
                params: Params {
                    priority: v.priority,
                    budget_us: v.budget_us,
                    period_us: v.period_us,
                    affinity: v.affinity,
                },
                request: v.request,
                node: v.node,
                memory_node: v.memory_node,
            })
            .collect();
        vcpus.sort_unstable_by_key(|v| v.key);
        Snapshot {
            now_ns: page.now_ns,
            cpus: page.cpus,
            vcpus,
        }
    }

    /// Decodes a page from its bytes (`None` if too short).
    pub fn from_bytes(bytes: &[u8]) -> Option<Snapshot> {
        let (page, _) = SchedPage::read_from_prefix(bytes).ok()?;
        Some(Snapshot::from_page(&page))
    }

    /// The vCPU `key`.
    pub fn get(&self, key: VcpuKey) -> Option<&Observed> {
        self.vcpus.iter().find(|v| v.key == key)
    }
}

/// Why no consistent copy was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TornRead;

/// The seqlock reader: `read_seq` loads `seq` (with acquire ordering), `copy` copies the
/// page into `buffer` (and orders its loads before the next `read_seq`). Tries up to
/// `attempts` times; the copy in `buffer` is consistent when this returns `Ok`.
pub fn read_consistent(
    mut read_seq: impl FnMut() -> u64,
    mut copy: impl FnMut(&mut [u8]),
    buffer: &mut [u8],
    attempts: usize,
) -> Result<u64, TornRead> {
    for _ in 0..attempts {
        let before = read_seq();
        if before % 2 == 1 {
            continue;
        }
        copy(buffer);
        if read_seq() == before {
            return Ok(before);
        }
    }
    Err(TornRead)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use mica_abi::sched::VcpuAccount;
    use zerocopy::{FromZeros, IntoBytes};

    #[test]
    fn live_entries_sorted_with_their_parameters() {
        let mut page = SchedPage::new_zeroed();
        page.now_ns = 5;
        page.cpus = 2;
        page.vcpus[7] = VcpuAccount {
            domain: 4,
            index: 1,
            cpu: 1,
            state: state::RUNNING,
            priority: 100,
            valid: 1,
            run_time_ns: 77,
            budget_us: 2000,
            period_us: 10_000,
            affinity: 2,
            ..VcpuAccount::default()
        };
        page.vcpus[3] = VcpuAccount {
            domain: 2,
            valid: 1,
            state: state::BLOCKED,
            ..VcpuAccount::default()
        };
        page.vcpus[5] = VcpuAccount {
            domain: 3,
            valid: 1,
            state: state::OFF,
            ..VcpuAccount::default()
        };
        page.vcpus[9] = VcpuAccount {
            domain: 1,
            valid: 0,
            state: state::RUNNING,
            ..VcpuAccount::default()
        };
        let s = Snapshot::from_bytes(page.as_bytes()).unwrap();
        assert_eq!((s.now_ns, s.cpus), (5, 2));
        let keys: std::vec::Vec<_> = s
            .vcpus
            .iter()
            .map(|v| (v.key.domain, v.key.index))
            .collect();
        assert_eq!(keys, [(2, 0), (4, 1)], "valid, not off, in key order");
        let v = s
            .get(VcpuKey {
                domain: 4,
                index: 1,
            })
            .unwrap();
        assert_eq!(v.params, Params::reserved(100, 2000, 10_000, 1));
        assert!(v.wants_cpu());
        assert!(!s.vcpus[0].wants_cpu());
        assert!(Snapshot::from_bytes(&[0; 8]).is_none());
    }

    #[test]
    fn the_seqlock_reader_retries_odd_and_changed_sequences() {
        // seq values the reader sees: odd (writer busy), 2 then 4 (changed under the copy),
        // then 4 and 4 (consistent).
        let seqs = [1u64, 2, 4, 4, 4];
        let at = Cell::new(0);
        let copies = Cell::new(0);
        let mut buf = [0u8; 4];
        let got = read_consistent(
            || {
                let s = seqs[at.get()];
                at.set(at.get() + 1);
                s
            },
            |b| {
                copies.set(copies.get() + 1);
                b[0] = copies.get();
            },
            &mut buf,
            5,
        );
        assert_eq!(got, Ok(4));
        assert_eq!(copies.get(), 2);
        assert_eq!(buf[0], 2);
        let always_odd = read_consistent(|| 3, |_| {}, &mut buf, 3);
        assert_eq!(always_odd, Err(TornRead));
    }
}
