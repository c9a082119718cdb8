//! The page bitmap of a DMA pool (`crate::virtio`): which of at most 64 pages are taken, and
//! where a run of pages goes. Single pages (a request's header, status and indirect table)
//! are placed from the top and longer runs (its data) from the bottom, so the small buffers of
//! one request do not split the run the next one needs; [`Pages::fits`] says beforehand
//! whether a whole request's buffers, in the order they are shared, will find room.

/// Taken pages of a pool of at most 64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pages {
    used: u64,
    pages: usize,
}

impl Pages {
    /// A pool of `pages` pages (at most 64), all free.
    pub(crate) fn new(pages: usize) -> Pages {
        Pages {
            used: 0,
            pages: pages.min(64),
        }
    }

    /// Pages of the pool.
    pub(crate) fn count(&self) -> usize {
        self.pages
    }

    fn mask(n: usize) -> u64 {
        if n >= 64 {
            u64::MAX
        } else {
            (1u64 << n) - 1
        }
    }

    /// Where a run of `n` pages would go: its first page.
    fn place(&self, n: usize) -> Option<usize> {
        if n == 0 || n > self.pages {
            return None;
        }
        let free = |i: &usize| self.used & (Self::mask(n) << i) == 0;
        if n == 1 {
            (0..self.pages).rev().find(free)
        } else {
            (0..=self.pages - n).find(free)
        }
    }

    /// Takes a run of `n` free pages: its first page.
    pub(crate) fn take(&mut self, n: usize) -> Option<usize> {
        let first = self.place(n)?;
        self.used |= Self::mask(n) << first;
        Some(first)
    }

    /// Frees the `n` pages from `first` (those of the pool).
    pub(crate) fn give_back(&mut self, first: usize, n: usize) {
        for i in first..first.saturating_add(n).min(self.pages) {
            self.used &= !(1 << i);
        }
    }

    /// Whether runs of `sizes` pages, taken in that order, would all find room now.
    pub(crate) fn fits(&self, sizes: &[usize]) -> bool {
        let mut trial = *self;
        sizes.iter().all(|&n| trial.take(n).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 64 KiB request as virtio-drivers shares it: header, data, status, indirect table.
    const REQUEST: [usize; 4] = [1, 16, 1, 1];

    fn take_request(p: &mut Pages, data: usize) -> Vec<(usize, usize)> {
        [1, data, 1, 1]
            .iter()
            .map(|&n| (p.take(n).expect("room"), n))
            .collect()
    }

    #[test]
    fn small_buffers_do_not_split_the_runs_data_needs() {
        // 64 pages, 2 taken by the queue: three 64 KiB requests fit, a fourth does not.
        let mut p = Pages::new(64);
        p.take(2);
        let small = take_request(&mut p, 4);
        let a = take_request(&mut p, 16);
        let b = take_request(&mut p, 16);
        // The small request ends; a 64 KiB one must still find 16 pages in a row after its
        // header took a page (it used to take the lowest free page, inside the run).
        for (first, n) in small {
            p.give_back(first, n);
        }
        assert!(p.fits(&REQUEST));
        let c = take_request(&mut p, 16);
        assert!(!p.fits(&REQUEST), "a fourth 64 KiB request has no room");
        for (first, n) in a.into_iter().chain(b).chain(c) {
            p.give_back(first, n);
        }
        assert!(p.fits(&REQUEST));
    }

    #[test]
    fn fits_agrees_with_taking_for_any_sequence() {
        // Pseudo-random requests and releases: whenever `fits` says yes, every take succeeds.
        let mut p = Pages::new(64);
        let mut held: Vec<Vec<(usize, usize)>> = Vec::new();
        let mut x = 7u32;
        for _ in 0..2000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            if x.is_multiple_of(3) && !held.is_empty() {
                let gone = held.remove((x as usize / 3) % held.len());
                for (first, n) in gone {
                    p.give_back(first, n);
                }
            } else {
                let data = 1 + (x as usize / 7) % 16;
                if p.fits(&[1, data, 1, 1]) {
                    held.push(take_request(&mut p, data));
                }
            }
        }
    }

    #[test]
    fn runs_longer_than_the_pool_never_fit() {
        let p = Pages::new(8);
        assert!(!p.fits(&[9]));
        assert!(!p.fits(&[0]));
        assert!(p.fits(&[8]));
        assert!(Pages::new(100).fits(&[64]));
    }
}
