//! The event-channel harness: `mica_kernel::evtchn::Channels`, the kernel's own state machine,
//! driven the way the hypercall layer drives it, against an observer that knows only what
//! the operations returned.
//!
//! Endpoints are addressed as the kernel addresses them: by object, through
//! [`Channels::find`] (a capability names an object; a deleted one names nothing). The
//! observer tracks, per endpoint, whether it is open, where it is bound, whether it is
//! masked, whether an accepted event has not reached a page yet (`undelivered`) and whether
//! an event reached the page without waking anyone (`unwoken`). Each operation's result is
//! checked against what it must be, and after every step:
//!
//! - **No event is lost:** an open, bound endpoint has nothing undelivered (a send to it is
//!   delivered at once, a latched one at bind), and an open, bound, unmasked endpoint has
//!   nothing unwoken (a send wakes, an unmask after a masked delivery wakes).
//! - **None reaches a closed endpoint:** a send to a closed peer is `PeerClosed`, a closed
//!   endpoint cannot be found, and every delivery goes to the receiver's current binding.
//! - **Masking suppresses wakes, not pending bits:** a delivery to a masked endpoint has
//!   `wake: false` (the bit is still set); unmasking with one outstanding delivers a wake once.
//! - **Nothing leaks:** the table holds exactly the pairs with an open side, and has room for a
//!   new channel exactly when two entries are free.

use std::fmt;
use std::hash::{Hash, Hasher};

use mica_abi::Status;
use mica_caps::ObjectRef;
use mica_kernel::domain::DomainId;
use mica_kernel::evtchn::{Binding, Channels, Delivery, EndpointId};

/// Endpoint-table entries in the harness: room for two channels.
pub const ENTRIES: usize = 4;
/// Receiving domains.
pub const DOMAINS: u16 = 2;
/// Ports per domain.
pub const PORTS: u16 = 2;

/// The kernel answers `SlotOccupied` when an endpoint bound to a port is bound again to the
/// same port with another vCPU (its own binding counts as taking the port). Harmless for
/// delivery (nothing is lost; the old binding stays), but arguably wrong: set to `false`
/// when `Channels::bind` lets an endpoint move its own port to another vCPU.
pub const KERNEL_REFUSES_REBINDING_ITS_OWN_PORT: bool = false;

/// The system under test.
pub type Table = Channels<ENTRIES>;

/// One operation; operands decoded modulo small bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bolero::TypeGenerator)]
pub enum Op {
    /// Create a channel (two endpoint objects).
    Create,
    /// Bind endpoint `ep` to (`domain`, `port`, vCPU `vcpu`).
    Bind {
        /// Endpoint (index among those ever created; one past the end names nothing).
        ep: u8,
        /// Domain (mod [`DOMAINS`]).
        domain: u8,
        /// Port (mod [`PORTS`]).
        port: u8,
        /// vCPU (mod 2).
        vcpu: u8,
    },
    /// Send on endpoint `ep` (to its peer).
    Send {
        /// Endpoint.
        ep: u8,
    },
    /// Mask or unmask endpoint `ep`.
    Mask {
        /// Endpoint.
        ep: u8,
        /// Mask (true) or unmask.
        masked: bool,
    },
    /// The last capability to endpoint `ep` goes: its object is destroyed.
    Close {
        /// Endpoint.
        ep: u8,
    },
    /// Domain `domain` is destroyed or restarted: its bindings go.
    UnbindDomain {
        /// Domain.
        domain: u8,
    },
}

/// Something broken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An operation returned what it must not.
    WrongResult {
        /// The operation.
        op: Op,
        /// What it returned.
        got: String,
        /// What it had to return.
        expected: String,
    },
    /// An accepted event is neither in the receiver's page nor latched for its bind.
    EventLost(usize),
    /// An event reached an unmasked receiver's page and nobody was woken.
    WakeLost(usize),
    /// The table's view of endpoints disagrees with the capabilities.
    Table(String),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::WrongResult { op, got, expected } => {
                write!(f, "{op:?} returned {got}, expected {expected}")
            }
            Violation::EventLost(e) => write!(f, "endpoint {e}: an accepted event was lost"),
            Violation::WakeLost(e) => {
                write!(
                    f,
                    "endpoint {e}: bound and unmasked, but an event never woke it"
                )
            }
            Violation::Table(what) => write!(f, "endpoint table: {what}"),
        }
    }
}

/// What the observer knows about one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Observed {
    object: ObjectRef,
    /// Index of the other end in the harness list.
    peer: usize,
    open: bool,
    bound: Option<(u16, u16, u16)>,
    masked: bool,
    undelivered: bool,
    unwoken: bool,
}

/// The table and the observer.
#[derive(Clone, Debug)]
pub struct Harness {
    /// The system under test.
    pub table: Table,
    ends: Vec<Observed>,
    next_object: u32,
}

fn key(b: Binding) -> (u16, u16, u16) {
    (b.domain.0, b.port, b.vcpu)
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// No channels yet.
    pub fn new() -> Harness {
        Harness {
            table: Table::new(),
            ends: Vec::new(),
            next_object: 1,
        }
    }

    /// Endpoints created so far.
    pub fn endpoints(&self) -> usize {
        self.ends.len()
    }

    fn wrong(op: Op, got: impl fmt::Debug, expected: impl fmt::Debug) -> Violation {
        Violation::WrongResult {
            op,
            got: format!("{got:?}"),
            expected: format!("{expected:?}"),
        }
    }

    /// Resolves endpoint `e` as the hypercall layer does (`StaleCapability` if its object is
    /// gone); checks that the table agrees with the observer about it.
    fn resolve(&self, op: Op, e: Option<usize>) -> Result<Option<EndpointId>, Violation> {
        let Some(e) = e else { return Ok(None) };
        let end = self.ends[e];
        let found = self.table.find(end.object);
        match (end.open, found) {
            (false, None) => Ok(None),
            (true, Some(id)) if self.table.get(id).is_some_and(|x| x.object == end.object) => {
                Ok(Some(id))
            }
            (open, found) => Err(Violation::Table(format!(
                "{op:?}: endpoint {e} open {open}, but find gives {found:?}"
            ))),
        }
    }

    fn pick(&self, ep: u8) -> Option<usize> {
        let e = usize::from(ep) % (self.ends.len() + 1);
        (e < self.ends.len()).then_some(e)
    }

    /// Entries the table must hold: both ends of every pair with an open side.
    fn live_entries(&self) -> usize {
        self.ends
            .iter()
            .enumerate()
            .filter(|(i, e)| e.open || self.ends[e.peer].open && e.peer != *i)
            .count()
    }

    /// Applies `op`, checks its result, then every invariant.
    pub fn step(&mut self, op: Op) -> Result<(), Violation> {
        match op {
            Op::Create => {
                let free = ENTRIES - self.live_entries();
                let (a, b) = (
                    ObjectRef {
                        index: self.next_object,
                        generation: 0,
                    },
                    ObjectRef {
                        index: self.next_object + 1,
                        generation: 0,
                    },
                );
                self.next_object += 2;
                let room = self.table.has_room();
                if room != (free >= 2) {
                    return Err(Self::wrong(op, room, free >= 2));
                }
                match self.table.create(a, b) {
                    Ok(_) if free >= 2 => {
                        let n = self.ends.len();
                        let fresh = |object, peer| Observed {
                            object,
                            peer,
                            open: true,
                            bound: None,
                            masked: false,
                            undelivered: false,
                            unwoken: false,
                        };
                        self.ends.push(fresh(a, n + 1));
                        self.ends.push(fresh(b, n));
                    }
                    Err(Status::OutOfMemory) if free < 2 => {}
                    got => return Err(Self::wrong(op, got, "Ok iff two entries are free")),
                }
            }
            Op::Send { ep } => {
                let e = self.pick(ep);
                let Some(id) = self.resolve(op, e)? else {
                    return self.check();
                };
                let e = e.unwrap_or_default();
                let p = self.ends[e].peer;
                let peer = self.ends[p];
                let got = self.table.send(id);
                let expected = if !peer.open {
                    Err(Status::PeerClosed)
                } else {
                    match peer.bound {
                        None => Ok(None),
                        Some((d, port, vcpu)) => Ok(Some(Delivery {
                            binding: Binding {
                                domain: DomainId(d),
                                port,
                                vcpu,
                            },
                            wake: !peer.masked,
                        })),
                    }
                };
                if got != expected {
                    return Err(Self::wrong(op, got, expected));
                }
                match got {
                    Ok(None) => self.ends[p].undelivered = true,
                    Ok(Some(d)) => self.ends[p].unwoken = !d.wake,
                    Err(_) => {}
                }
            }
            Op::Bind {
                ep,
                domain,
                port,
                vcpu,
            } => {
                let e = self.pick(ep);
                let Some(id) = self.resolve(op, e)? else {
                    return self.check();
                };
                let e = e.unwrap_or_default();
                let binding = Binding {
                    domain: DomainId(u16::from(domain) % DOMAINS),
                    port: u16::from(port) % PORTS,
                    vcpu: u16::from(vcpu) % 2,
                };
                let end = self.ends[e];
                let taken = self.ends.iter().enumerate().any(|(i, x)| {
                    (i != e || KERNEL_REFUSES_REBINDING_ITS_OWN_PORT)
                        && x.open
                        && x.bound
                            .is_some_and(|(d, p, _)| (d, p) == (binding.domain.0, binding.port))
                });
                let got = self.table.bind(id, binding);
                let expected = if end.bound == Some(key(binding)) {
                    Ok(None)
                } else if taken {
                    Err(Status::SlotOccupied)
                } else if end.undelivered {
                    Ok(Some(Delivery {
                        binding,
                        wake: !end.masked,
                    }))
                } else {
                    Ok(None)
                };
                if got != expected {
                    return Err(Self::wrong(op, got, expected));
                }
                if got.is_ok() {
                    let x = &mut self.ends[e];
                    x.bound = Some(key(binding));
                    if let Ok(Some(d)) = got {
                        x.undelivered = false;
                        x.unwoken = !d.wake;
                    }
                }
            }
            Op::Mask { ep, masked } => {
                let e = self.pick(ep);
                let Some(id) = self.resolve(op, e)? else {
                    return self.check();
                };
                let e = e.unwrap_or_default();
                let end = self.ends[e];
                let got = self.table.mask(id, masked);
                let expected = match end.bound {
                    Some((d, port, vcpu)) if !masked && end.unwoken => Ok(Some(Delivery {
                        binding: Binding {
                            domain: DomainId(d),
                            port,
                            vcpu,
                        },
                        wake: true,
                    })),
                    _ => Ok(None),
                };
                if got != expected {
                    return Err(Self::wrong(op, got, expected));
                }
                let x = &mut self.ends[e];
                x.masked = masked;
                if !masked {
                    x.unwoken = false;
                }
            }
            Op::Close { ep } => {
                if let Some(e) = self.pick(ep) {
                    self.table.close(self.ends[e].object);
                    let x = &mut self.ends[e];
                    x.open = false;
                    x.bound = None;
                    x.undelivered = false;
                    x.unwoken = false;
                }
            }
            Op::UnbindDomain { domain } => {
                let d = u16::from(domain) % DOMAINS;
                self.table.unbind_domain(DomainId(d));
                for x in &mut self.ends {
                    if x.bound.is_some_and(|(bd, _, _)| bd == d) {
                        x.bound = None;
                    }
                }
            }
        }
        self.check()
    }

    /// The invariants that hold between operations.
    pub fn check(&self) -> Result<(), Violation> {
        for (i, e) in self.ends.iter().enumerate() {
            if !e.open {
                if self.table.find(e.object).is_some() {
                    return Err(Violation::Table(format!(
                        "closed endpoint {i} is still found"
                    )));
                }
                continue;
            }
            let Some(id) = self.table.find(e.object) else {
                return Err(Violation::Table(format!("open endpoint {i} is not found")));
            };
            let entry = self.table.get(id).copied();
            let bound = entry.and_then(|x| x.binding).map(key);
            if bound != e.bound {
                return Err(Violation::Table(format!(
                    "endpoint {i} bound to {bound:?}, observed {:?}",
                    e.bound
                )));
            }
            if e.bound.is_some() && e.undelivered {
                return Err(Violation::EventLost(i));
            }
            if e.bound.is_some() && !e.masked && e.unwoken {
                return Err(Violation::WakeLost(i));
            }
        }
        let live = self.live_entries();
        if self.table.len() != live {
            return Err(Violation::Table(format!(
                "{} entries held, {live} pairs' worth live",
                self.table.len()
            )));
        }
        Ok(())
    }

    /// The operations the exhaustive explorer tries from this state.
    pub fn alphabet(&self) -> Vec<Op> {
        let mut ops = vec![Op::Create];
        for ep in 0..=self.ends.len() as u8 {
            ops.push(Op::Send { ep });
            ops.push(Op::Close { ep });
            for masked in [true, false] {
                ops.push(Op::Mask { ep, masked });
            }
            for (domain, port, vcpu) in [(0, 0, 0), (0, 0, 1), (0, 1, 0), (1, 0, 0)] {
                ops.push(Op::Bind {
                    ep,
                    domain,
                    port,
                    vcpu,
                });
            }
        }
        for domain in 0..DOMAINS as u8 {
            ops.push(Op::UnbindDomain { domain });
        }
        ops
    }
}

impl Hash for Harness {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Objects by their position among the harness's endpoints: the state up to renaming.
        let position = |o: ObjectRef| self.ends.iter().position(|e| e.object == o);
        for i in 0..ENTRIES {
            let entry = self.table.get(EndpointId(i as u16)).map(|e| {
                (
                    position(e.object),
                    e.peer.0,
                    e.open,
                    e.binding.map(key),
                    e.masked,
                    e.latched,
                    e.pending_while_masked,
                )
            });
            entry.hash(state);
        }
        for e in &self.ends {
            (e.peer, e.open, e.bound, e.masked, e.undelivered, e.unwoken).hash(state);
        }
    }
}

/// Runs `ops` from an empty table; on a violation returns the step.
pub fn run(ops: &[Op]) -> Result<Harness, (usize, Violation)> {
    let mut h = Harness::new();
    for (i, op) in ops.iter().enumerate() {
        h.step(*op).map_err(|v| (i, v))?;
    }
    Ok(h)
}

/// Explores every sequence of at most `depth` operations of [`Harness::alphabet`] from an
/// empty table, breadth first, each distinct state (up to renaming objects) expanded once.
pub fn explore(depth: usize) -> Result<crate::exhaustive::Stats, (Vec<Op>, Violation)> {
    use std::collections::HashSet;
    use std::hash::DefaultHasher;
    let fingerprint = |h: &Harness| {
        let mut a = DefaultHasher::new();
        let mut b = DefaultHasher::new();
        0x3cu8.hash(&mut b);
        h.hash(&mut a);
        h.hash(&mut b);
        (u128::from(a.finish()) << 64) | u128::from(b.finish())
    };
    let start = Harness::new();
    let mut seen = HashSet::new();
    seen.insert(fingerprint(&start));
    let mut stats = crate::exhaustive::Stats {
        states: 1,
        ..Default::default()
    };
    let mut frontier = vec![(start, Vec::new())];
    for _ in 0..depth {
        let mut next = Vec::new();
        for (state, path) in &frontier {
            for op in state.alphabet() {
                let mut h = state.clone();
                stats.transitions += 1;
                if let Err(v) = h.step(op) {
                    let mut trace: Vec<Op> = path.clone();
                    trace.push(op);
                    return Err((trace, v));
                }
                stats.successes += 1;
                if seen.insert(fingerprint(&h)) {
                    let mut p = path.clone();
                    p.push(op);
                    next.push((h, p));
                }
            }
        }
        stats.states = seen.len();
        frontier = next;
    }
    Ok(stats)
}
