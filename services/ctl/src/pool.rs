//! The control domain's memory pool: which pages are handed out to which domain.
//!
//! The kernel gives the control domain one contiguous Memory capability (`free-memory`).
//! Every domain it creates gets a run of whole pages of it; destroying the domain gives the
//! run back. [`Pool`] only keeps the books (first fit over a sorted list of free runs,
//! neighbours merged on return); copying and scrubbing are the caller's.

/// Most separate free runs kept (a pool fragmented further refuses allocations).
pub const MAX_RUNS: usize = 64;

/// A run of pages: `[first, first + count)`, in pages from the pool's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// First page.
    pub first: u64,
    /// Pages.
    pub count: u64,
}

/// The books of a pool.
#[derive(Clone, Debug)]
pub struct Pool {
    free: heapless::Vec<Run, MAX_RUNS>,
    pages: u64,
}

impl Pool {
    /// A pool of `pages` pages, all free.
    pub fn new(pages: u64) -> Pool {
        let mut free = heapless::Vec::new();
        if pages > 0 {
            let _ = free.push(Run {
                first: 0,
                count: pages,
            });
        }
        Pool { free, pages }
    }

    /// Takes `count` pages from the lowest run that has them.
    pub fn take(&mut self, count: u64) -> Option<Run> {
        if count == 0 {
            return None;
        }
        let i = self.free.iter().position(|r| r.count >= count)?;
        let run = &mut self.free[i];
        let taken = Run {
            first: run.first,
            count,
        };
        run.first += count;
        run.count -= count;
        if run.count == 0 {
            self.free.remove(i);
        }
        Some(taken)
    }

    /// Gives `run` back (merged with its neighbours). False if it is not wholly taken (a
    /// double free or a run outside the pool), which changes nothing.
    pub fn give_back(&mut self, run: Run) -> bool {
        let Some(end) = run.first.checked_add(run.count) else {
            return false;
        };
        if run.count == 0 || end > self.pages {
            return false;
        }
        if self
            .free
            .iter()
            .any(|r| run.first < r.first + r.count && r.first < end)
        {
            return false;
        }
        let at = self
            .free
            .iter()
            .position(|r| r.first > run.first)
            .unwrap_or(self.free.len());
        if self.free.insert(at, run).is_err() {
            return false;
        }
        // Merge with the next, then with the previous.
        if at + 1 < self.free.len()
            && self.free[at].first + self.free[at].count == self.free[at + 1].first
        {
            self.free[at].count += self.free[at + 1].count;
            self.free.remove(at + 1);
        }
        if at > 0 && self.free[at - 1].first + self.free[at - 1].count == self.free[at].first {
            self.free[at - 1].count += self.free[at].count;
            self.free.remove(at);
        }
        true
    }

    /// Free pages.
    pub fn free_pages(&self) -> u64 {
        self.free.iter().map(|r| r.count).sum()
    }

    /// All pages.
    pub fn pages(&self) -> u64 {
        self.pages
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_give_back_restores_the_pool() {
        let mut p = Pool::new(100);
        let a = p.take(10).unwrap();
        let b = p.take(20).unwrap();
        let c = p.take(30).unwrap();
        assert_eq!((a.first, b.first, c.first), (0, 10, 30));
        assert_eq!(p.free_pages(), 40);
        assert!(p.give_back(b));
        assert!(!p.give_back(b), "a double free is refused");
        assert_eq!(p.take(15).unwrap().first, 10, "first fit reuses the hole");
        assert!(p.give_back(Run {
            first: 10,
            count: 15
        }));
        assert!(p.give_back(a));
        assert!(p.give_back(c));
        assert_eq!(p.free_pages(), 100);
        assert_eq!(
            p.take(100),
            Some(Run {
                first: 0,
                count: 100
            }),
            "merged back into one run"
        );
        assert_eq!(p.take(1), None);
        assert!(
            !p.give_back(Run {
                first: 99,
                count: 2
            }),
            "outside the pool"
        );
        assert!(!p.give_back(Run { first: 0, count: 0 }));
    }

    #[test]
    fn random_sequences_keep_the_books_consistent() {
        let mut p = Pool::new(256);
        let mut held: Vec<Run> = Vec::new();
        let mut state = 12345u64;
        for _ in 0..10_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if state >> 63 == 0 || held.is_empty() {
                if let Some(r) = p.take((state >> 33) % 40 + 1) {
                    assert!(held
                        .iter()
                        .all(|h| r.first + r.count <= h.first || h.first + h.count <= r.first));
                    held.push(r);
                }
            } else {
                let r = held.swap_remove((state >> 33) as usize % held.len());
                assert!(p.give_back(r));
            }
            let used: u64 = held.iter().map(|r| r.count).sum();
            assert_eq!(p.free_pages() + used, 256);
        }
    }
}
