//! Bounded-exhaustive exploration: every operation sequence up to a length bound.
//!
//! Breadth-first over states: from each state reached in `n` steps, every operation of the
//! alphabet is applied to a copy, checked by [`Harness::step`], and new states go to the next
//! level. Revisited states are pruned by a 128-bit hash of the whole harness state (system plus
//! remembered stale references), which is sound because operations are deterministic and the
//! invariants depend on the state alone. So every sequence of at most `depth` operations is
//! covered, with each distinct state expanded once.
//!
//! The alphabet is reduced by one symmetry: a new capability always goes into the lowest empty
//! slot of its space (any empty slot behaves the same up to renaming), while sources, Domain
//! capabilities, revoke and delete targets range over every slot, including empty ones.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};

use mica_caps::SpaceId;

use crate::caps::{Harness, Op, Violation, SLOTS, SPACES};

/// What an exploration saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Distinct states reached (including the start state).
    pub states: usize,
    /// Operations applied (successful or not).
    pub transitions: usize,
    /// Operations that succeeded.
    pub successes: usize,
}

/// The operations tried from `h`.
pub fn alphabet(h: &Harness) -> Vec<Op> {
    let mut ops = Vec::new();
    for space in 0..SPACES as u8 {
        let id = SpaceId(u16::from(space));
        let free = h.lowest_empty(id);
        for kind in 0..5 {
            ops.push(Op::Create {
                space,
                slot: free,
                kind,
            });
        }
        for kind in 0..2 {
            ops.push(Op::CreateDomain {
                space,
                slot: free,
                kind,
            });
        }
        for src in 0..SLOTS as u8 {
            for rights in 0..3 {
                for range in 0..3 {
                    ops.push(Op::Derive {
                        space,
                        src,
                        dst: free,
                        rights,
                        range,
                    });
                }
            }
            for domain in 0..SLOTS as u8 {
                let target = h.domain_target(id, u16::from(domain)).unwrap_or(id);
                let dst = h.lowest_empty(target);
                for rights in 0..2 {
                    ops.push(Op::Grant {
                        space,
                        src,
                        domain,
                        dst,
                        rights,
                        range: 0,
                    });
                }
            }
            ops.push(Op::Revoke { space, slot: src });
            ops.push(Op::Delete { space, slot: src });
        }
    }
    ops
}

fn fingerprint(h: &Harness) -> u128 {
    let mut a = DefaultHasher::new();
    let mut b = DefaultHasher::new();
    0xa5u8.hash(&mut b);
    h.hash(&mut a);
    h.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Explores every sequence of at most `depth` operations from [`Harness::new`]. On a broken
/// invariant returns it with the sequence that led there.
pub fn explore(depth: usize) -> Result<Stats, (Vec<Op>, Violation)> {
    let start = Harness::new();
    start.check().map_err(|v| (Vec::new(), v))?;
    let mut seen = HashSet::new();
    seen.insert(fingerprint(&start));
    let mut stats = Stats {
        states: 1,
        ..Stats::default()
    };
    // Each frontier entry keeps the path that reached it, for the counterexample.
    let mut frontier = vec![(start, Vec::new())];
    for _ in 0..depth {
        let mut next = Vec::new();
        for (state, path) in &frontier {
            for op in alphabet(state) {
                let mut h = state.clone();
                stats.transitions += 1;
                match h.step(op) {
                    Err(v) => {
                        let mut trace: Vec<Op> = path.clone();
                        trace.push(op);
                        return Err((trace, v));
                    }
                    Ok(Err(_)) => {}
                    Ok(Ok(())) => {
                        stats.successes += 1;
                        if seen.insert(fingerprint(&h)) {
                            let mut p = path.clone();
                            p.push(op);
                            next.push((h, p));
                        }
                    }
                }
            }
        }
        stats.states = seen.len();
        frontier = next;
    }
    Ok(stats)
}
