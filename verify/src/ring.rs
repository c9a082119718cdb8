//! The ring harness: `mica_rt::ring::Ring` — the code domains run — over a model of shared
//! memory, driven by an operation language with preemption and a misbehaving peer.
//!
//! The memory is a byte array behind [`View`]s, one per side, that count every access. An
//! operation may *preempt* a side at its `k`-th access: the other side's whole operation (or a
//! peer's garbage write) runs right there, which is how interleavings inside `push` and `pop`
//! are explored (under sequential consistency; the fences in `SharedRegion` provide it on
//! hardware for the store-then-load pairs that matter). After every operation the harness
//! checks:
//!
//! - **Safety, always:** no access outside the ring's memory; each call does bounded work
//!   (at most [`MAX_WORD_ACCESSES`] header accesses and one slot's bytes); every call returns
//!   `Ok` or one of the errors its situation allows, and a message popped fits its slot.
//! - **Correctness, while the peer behaves** (no garbage written yet): messages come out
//!   exactly once, in order, with their bytes; `Full` only when the ring holds `capacity`
//!   messages, an empty pop only when it holds none, `Corrupt` never; and no wake-up is lost:
//!   a side that found nothing to do (consumer: empty, producer: full) and so would sleep is
//!   never left asleep, without an event pending, while there is work for it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use mica_abi::ring::{slot_offset, Geometry};
use mica_rt::ring::{ring_size, Error, Popped, Ring, RingMemory, LENGTH_SIZE};

/// Header accesses (loads, stores, fences) one call may make.
pub const MAX_WORD_ACCESSES: u32 = 8;
/// Preemption points tried per operation (accesses are numbered from 0).
pub const PREEMPTION_POINTS: u8 = 10;

/// Which side of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Pushes.
    Producer,
    /// Pops.
    Consumer,
}

impl Side {
    fn index(self) -> usize {
        self as usize
    }
}

/// Something broken, found by the harness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An access left the ring's memory.
    OutOfBounds {
        /// Byte offset.
        offset: usize,
        /// Bytes.
        len: usize,
    },
    /// A call did more than bounded work.
    TooMuchWork {
        /// The side.
        side: Side,
        /// Header accesses made.
        words: u32,
        /// Slot bytes touched.
        bytes: usize,
    },
    /// A call returned what its situation does not allow.
    UnexpectedResult {
        /// The side.
        side: Side,
        /// What it returned.
        result: String,
        /// Why that is wrong.
        why: &'static str,
    },
    /// A message came out that is not the next one sent.
    WrongMessage {
        /// What was expected (sequence number and bytes), if anything.
        expected: Option<(u64, Vec<u8>)>,
        /// What came out.
        got: Vec<u8>,
    },
    /// A side would sleep with work to do and no event on its way.
    LostWakeup(Side),
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::OutOfBounds { offset, len } => {
                write!(f, "access of {len} bytes at {offset} outside the ring")
            }
            Violation::TooMuchWork { side, words, bytes } => write!(
                f,
                "{side:?} call made {words} header accesses and touched {bytes} slot bytes"
            ),
            Violation::UnexpectedResult { side, result, why } => {
                write!(f, "{side:?} got {result}: {why}")
            }
            Violation::WrongMessage { expected, got } => {
                write!(
                    f,
                    "popped {got:?}, expected {expected:?} (lost, duplicated or reordered)"
                )
            }
            Violation::LostWakeup(side) => {
                write!(
                    f,
                    "lost wake-up: the {side:?} sleeps with work and no event pending"
                )
            }
        }
    }
}

type Action = Box<dyn FnOnce()>;

/// The shared memory, the access counters and the pending preemption.
pub struct Model {
    bytes: Vec<Cell<u8>>,
    /// Accesses (any kind) by each side since its current operation began.
    accesses: [Cell<u32>; 2],
    /// Header accesses by each side in its current operation.
    words: [Cell<u32>; 2],
    /// Slot bytes touched by each side in its current operation.
    slot_bytes: [Cell<usize>; 2],
    /// Run `action` just before `side`'s access number `at` of its current operation.
    preemption: RefCell<Option<(Side, u32, Action)>>,
    /// The first out-of-bounds access seen.
    out_of_bounds: Cell<Option<(usize, usize)>>,
}

impl Model {
    fn new(size: usize) -> Model {
        Model {
            bytes: (0..size).map(|_| Cell::new(0)).collect(),
            accesses: Default::default(),
            words: Default::default(),
            slot_bytes: Default::default(),
            preemption: RefCell::new(None),
            out_of_bounds: Cell::new(None),
        }
    }

    fn begin(&self, side: Side) {
        self.accesses[side.index()].set(0);
        self.words[side.index()].set(0);
        self.slot_bytes[side.index()].set(0);
    }

    fn tick(&self, side: Side) {
        let n = self.accesses[side.index()].get();
        self.accesses[side.index()].set(n + 1);
        let due = matches!(&*self.preemption.borrow(), Some((s, at, _)) if *s == side && *at == n);
        if due {
            let taken = self.preemption.borrow_mut().take();
            if let Some((_, _, action)) = taken {
                action();
            }
        }
    }

    /// Runs a preemption that never came due (the operation made fewer accesses).
    fn flush(&self) {
        let pending = self.preemption.borrow_mut().take();
        if let Some((_, _, action)) = pending {
            action();
        }
    }

    fn in_bounds(&self, offset: usize, len: usize) -> bool {
        let ok = offset
            .checked_add(len)
            .is_some_and(|e| e <= self.bytes.len());
        if !ok && self.out_of_bounds.get().is_none() {
            self.out_of_bounds.set(Some((offset, len)));
        }
        ok
    }

    fn raw_read(&self, offset: usize, out: &mut [u8]) {
        if self.in_bounds(offset, out.len()) {
            for (o, c) in out.iter_mut().zip(&self.bytes[offset..]) {
                *o = c.get();
            }
        } else {
            out.fill(0);
        }
    }

    fn raw_write(&self, offset: usize, data: &[u8]) {
        if self.in_bounds(offset, data.len()) {
            for (d, c) in data.iter().zip(&self.bytes[offset..]) {
                c.set(*d);
            }
        }
    }

    /// The peer writing `value` at 4-byte `offset`, behind everyone's back.
    pub fn scribble(&self, offset: usize, value: u32) {
        self.raw_write(offset, &value.to_le_bytes());
    }

    fn snapshot(&self) -> Vec<u8> {
        self.bytes.iter().map(Cell::get).collect()
    }
}

/// One side's handle on the model memory.
#[derive(Clone)]
pub struct View {
    model: Rc<Model>,
    side: Side,
}

impl RingMemory for View {
    fn len(&self) -> usize {
        self.model.bytes.len()
    }

    fn load_acquire(&self, offset: usize) -> u32 {
        self.model.tick(self.side);
        let w = &self.model.words[self.side.index()];
        w.set(w.get() + 1);
        let mut b = [0; 4];
        if !offset.is_multiple_of(4) {
            self.model.out_of_bounds.set(Some((offset, 4)));
        }
        self.model.raw_read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn store_release(&self, offset: usize, value: u32) {
        self.model.tick(self.side);
        let w = &self.model.words[self.side.index()];
        w.set(w.get() + 1);
        if !offset.is_multiple_of(4) {
            self.model.out_of_bounds.set(Some((offset, 4)));
        }
        self.model.raw_write(offset, &value.to_le_bytes());
    }

    fn fence(&self) {
        self.model.tick(self.side);
        let w = &self.model.words[self.side.index()];
        w.set(w.get() + 1);
    }

    fn read(&self, offset: usize, out: &mut [u8]) {
        self.model.tick(self.side);
        let b = &self.model.slot_bytes[self.side.index()];
        b.set(b.get() + out.len());
        self.model.raw_read(offset, out);
    }

    fn write(&self, offset: usize, data: &[u8]) {
        self.model.tick(self.side);
        let b = &self.model.slot_bytes[self.side.index()];
        b.set(b.get() + data.len());
        self.model.raw_write(offset, data);
    }
}

/// One operation. Operands are raw and decoded modulo small bounds, so bolero, the fuzzer
/// and the exhaustive enumerator can all produce them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bolero::TypeGenerator)]
pub enum Op {
    /// The producer pushes a message of `len % (max + 2)` bytes (one more than fits: the
    /// too-large case).
    Push {
        /// Length selector.
        len: u8,
    },
    /// The consumer pops.
    Pop,
    /// The producer pushes; the consumer's pop runs before the push's access `at`.
    PopDuringPush {
        /// Preemption point (mod [`PREEMPTION_POINTS`]).
        at: u8,
        /// Length selector.
        len: u8,
    },
    /// The consumer pops; the producer's push runs before the pop's access `at`.
    PushDuringPop {
        /// Preemption point.
        at: u8,
        /// Length selector.
        len: u8,
    },
    /// A misbehaving peer writes `value` into `field` (see [`Harness::field_offset`]).
    Scribble {
        /// Field selector.
        field: u8,
        /// The garbage.
        value: u32,
    },
    /// The same, before access `at` of the consumer's pop (`pop = true`) or producer's push.
    ScribbleDuring {
        /// Whose operation is interrupted.
        pop: bool,
        /// Preemption point.
        at: u8,
        /// Field selector.
        field: u8,
        /// The garbage.
        value: u32,
    },
}

impl Op {
    /// Whether the operation writes garbage.
    pub fn is_hostile(&self) -> bool {
        matches!(self, Op::Scribble { .. } | Op::ScribbleDuring { .. })
    }
}

/// What the observer knows: messages in flight and who is waiting for what.
#[derive(Clone, Debug, Default)]
struct Observed {
    /// Messages whose push returned `Ok`, not yet popped.
    queue: VecDeque<(u64, Vec<u8>)>,
    /// The message of a push under way (a nested pop may take it before the push returns).
    in_flight: Option<(u64, Vec<u8>)>,
    /// Sequence number of the next message (not part of the fingerprint: messages are
    /// data to the ring, which never branches on their bytes).
    next_seq: u64,
    /// Garbage has been written: from here on only safety is checked.
    corrupted: bool,
    /// The consumer found the ring empty and would sleep.
    consumer_waiting: bool,
    /// An event to the consumer is pending.
    consumer_event: bool,
    /// The producer found the ring full and would sleep.
    producer_waiting: bool,
    /// An event to the producer is pending.
    producer_event: bool,
    /// The first violation seen (nested operations record here).
    violation: Option<Violation>,
}

impl Observed {
    fn fail(&mut self, v: Violation) {
        if self.violation.is_none() {
            self.violation = Some(v);
        }
    }
}

/// Everything an operation (top-level or preempting) needs.
#[derive(Clone)]
struct Parts {
    model: Rc<Model>,
    producer: Rc<RefCell<Ring<View>>>,
    consumer: Rc<RefCell<Ring<View>>>,
    observed: Rc<RefCell<Observed>>,
    geometry: Geometry,
}

/// A ring, its two sides and the observer.
pub struct Harness {
    parts: Parts,
}

/// The message with sequence number `seq` and `len` bytes.
fn message(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq as u8).wrapping_mul(31).wrapping_add(i as u8) ^ 0xA5)
        .collect()
}

impl Parts {
    fn max_message(&self) -> usize {
        self.geometry.slot_size() - LENGTH_SIZE
    }

    fn check_work(&self, side: Side) {
        let words = self.model.words[side.index()].get();
        let bytes = self.model.slot_bytes[side.index()].get();
        if words > MAX_WORD_ACCESSES || bytes > self.geometry.slot_size() {
            self.observed
                .borrow_mut()
                .fail(Violation::TooMuchWork { side, words, bytes });
        }
    }

    fn unexpected(&self, side: Side, result: String, why: &'static str) {
        self.observed
            .borrow_mut()
            .fail(Violation::UnexpectedResult { side, result, why });
    }

    fn push(&self, len_selector: u8) {
        let len = usize::from(len_selector) % (self.max_message() + 2);
        let msg = {
            let mut o = self.observed.borrow_mut();
            let seq = o.next_seq;
            o.next_seq += 1;
            o.producer_waiting = false;
            o.producer_event = false;
            let msg = message(seq, len);
            o.in_flight = Some((seq, msg.clone()));
            msg
        };
        self.model.begin(Side::Producer);
        let result = self.producer.borrow_mut().push(&msg);
        self.check_work(Side::Producer);
        let mut o = self.observed.borrow_mut();
        let in_flight = o.in_flight.take();
        let corrupted = o.corrupted;
        match result {
            Ok(notify) => {
                if len > self.max_message() {
                    drop(o);
                    return self.unexpected(Side::Producer, format!("{result:?}"), "too large");
                }
                if let Some(m) = in_flight {
                    o.queue.push_back(m);
                }
                if notify {
                    o.consumer_event = true;
                }
            }
            Err(Error::TooLarge) if len > self.max_message() => {}
            Err(Error::Full) if corrupted || o.queue.len() >= self.geometry.capacity() as usize => {
                if in_flight.is_none() && !corrupted {
                    drop(o);
                    return self.unexpected(
                        Side::Producer,
                        format!("{result:?}"),
                        "a nested pop took the message",
                    );
                }
                o.producer_waiting = true;
            }
            Err(Error::Corrupt) if corrupted => {}
            Err(_) => {
                drop(o);
                self.unexpected(
                    Side::Producer,
                    format!("{result:?}"),
                    "not possible in this state",
                );
            }
        }
    }

    fn pop(&self) {
        {
            let mut o = self.observed.borrow_mut();
            o.consumer_waiting = false;
            o.consumer_event = false;
        }
        self.model.begin(Side::Consumer);
        let mut buf = vec![0; self.geometry.slot_size() + 8];
        let result = self.consumer.borrow_mut().pop(&mut buf);
        self.check_work(Side::Consumer);
        let mut o = self.observed.borrow_mut();
        let corrupted = o.corrupted;
        match result {
            Ok(Some(Popped { len, notify })) => {
                if len > self.max_message() {
                    drop(o);
                    return self.unexpected(
                        Side::Consumer,
                        format!("{result:?}"),
                        "a message larger than its slot",
                    );
                }
                if notify {
                    o.producer_event = true;
                }
                if corrupted {
                    return;
                }
                let got = buf[..len].to_vec();
                let expected = match o.queue.pop_front() {
                    Some(m) => Some(m),
                    None => o.in_flight.take(),
                };
                if expected.as_ref().map(|(_, m)| m) != Some(&got) {
                    o.fail(Violation::WrongMessage { expected, got });
                }
            }
            Ok(None) => {
                if !corrupted && !o.queue.is_empty() {
                    drop(o);
                    return self.unexpected(
                        Side::Consumer,
                        "Ok(None)".into(),
                        "empty while holding messages",
                    );
                }
                o.consumer_waiting = true;
            }
            Err(Error::Corrupt) if corrupted => {}
            Err(_) => {
                drop(o);
                self.unexpected(
                    Side::Consumer,
                    format!("{result:?}"),
                    "not possible in this state",
                );
            }
        }
    }

    fn preempt(&self, side: Side, at: u8, action: Action) {
        let at = u32::from(at % PREEMPTION_POINTS);
        *self.model.preemption.borrow_mut() = Some((side, at, action));
    }

    fn scribble(&self, field: u8, value: u32) {
        self.observed.borrow_mut().corrupted = true;
        let offset = field_offset(&self.geometry, field);
        self.model.scribble(offset, value);
    }
}

/// Byte offset of garbage field `field`: 0-3 the header words, then the length prefix of
/// each slot.
pub fn field_offset(g: &Geometry, field: u8) -> usize {
    let fields = 4 + g.capacity() as usize;
    let f = usize::from(field) % fields;
    if f < 4 {
        f * 4
    } else {
        slot_offset(g, (f - 4) as u32)
    }
}

impl Harness {
    /// A fresh ring of `capacity` slots of `slot_size` bytes, set up by the producer and
    /// attached by the consumer.
    pub fn new(capacity: u32, slot_size: usize) -> Harness {
        let model = Rc::new(Model::new(ring_size(capacity, slot_size)));
        let view = |side| View {
            model: model.clone(),
            side,
        };
        let producer = Ring::init(view(Side::Producer), 0, capacity, slot_size)
            .expect("the harness geometry is valid");
        let consumer = Ring::attach(view(Side::Consumer), 0, capacity, slot_size)
            .expect("the harness geometry is valid");
        let geometry = producer.geometry();
        Harness {
            parts: Parts {
                model,
                producer: Rc::new(RefCell::new(producer)),
                consumer: Rc::new(RefCell::new(consumer)),
                observed: Rc::new(RefCell::new(Observed::default())),
                geometry,
            },
        }
    }

    /// The ring's shape.
    pub fn geometry(&self) -> Geometry {
        self.parts.geometry
    }

    /// Whether garbage has been written.
    pub fn corrupted(&self) -> bool {
        self.parts.observed.borrow().corrupted
    }

    /// Messages sent and not yet received.
    pub fn in_ring(&self) -> usize {
        self.parts.observed.borrow().queue.len()
    }

    /// Applies `op` and checks every property.
    pub fn step(&mut self, op: Op) -> Result<(), Violation> {
        let p = &self.parts;
        match op {
            Op::Push { len } => p.push(len),
            Op::Pop => p.pop(),
            Op::PopDuringPush { at, len } => {
                let q = p.clone();
                p.preempt(Side::Producer, at, Box::new(move || q.pop()));
                p.push(len);
            }
            Op::PushDuringPop { at, len } => {
                let q = p.clone();
                p.preempt(Side::Consumer, at, Box::new(move || q.push(len)));
                p.pop();
            }
            Op::Scribble { field, value } => p.scribble(field, value),
            Op::ScribbleDuring {
                pop,
                at,
                field,
                value,
            } => {
                let q = p.clone();
                let victim = if pop { Side::Consumer } else { Side::Producer };
                p.preempt(victim, at, Box::new(move || q.scribble(field, value)));
                if pop {
                    p.pop();
                } else {
                    p.push(at);
                }
            }
        }
        // A preemption point beyond the operation's last access: run it after.
        p.model.flush();
        self.check()
    }

    /// The properties that hold between operations.
    pub fn check(&self) -> Result<(), Violation> {
        let p = &self.parts;
        if let Some((offset, len)) = p.model.out_of_bounds.get() {
            return Err(Violation::OutOfBounds { offset, len });
        }
        let o = p.observed.borrow();
        if let Some(v) = &o.violation {
            return Err(v.clone());
        }
        if o.corrupted {
            return Ok(());
        }
        if o.consumer_waiting && !o.consumer_event && !o.queue.is_empty() {
            return Err(Violation::LostWakeup(Side::Consumer));
        }
        let full = o.queue.len() >= p.geometry.capacity() as usize;
        if o.producer_waiting && !o.producer_event && !full {
            return Err(Violation::LostWakeup(Side::Producer));
        }
        Ok(())
    }

    /// Pops until the ring is empty (a consumer that keeps going), checking each message.
    pub fn drain(&mut self) -> Result<usize, Violation> {
        let mut n = 0;
        for _ in 0..=self.geometry().capacity() {
            if self.in_ring() == 0 {
                break;
            }
            self.step(Op::Pop)?;
            n += 1;
        }
        Ok(n)
    }

    /// A deep copy: new memory with the same bytes, the same ring ends over it.
    pub fn snapshot(&self) -> Harness {
        let p = &self.parts;
        let model = Rc::new(Model::new(p.model.bytes.len()));
        for (to, from) in model.bytes.iter().zip(&p.model.bytes) {
            to.set(from.get());
        }
        let view = |side| View {
            model: model.clone(),
            side,
        };
        let producer = p
            .producer
            .borrow()
            .clone()
            .map_memory(|_| view(Side::Producer));
        let consumer = p
            .consumer
            .borrow()
            .clone()
            .map_memory(|_| view(Side::Consumer));
        Harness {
            parts: Parts {
                model: model.clone(),
                producer: Rc::new(RefCell::new(producer)),
                consumer: Rc::new(RefCell::new(consumer)),
                observed: Rc::new(RefCell::new(p.observed.borrow().clone())),
                geometry: p.geometry,
            },
        }
    }
}

impl Hash for Harness {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let p = &self.parts;
        p.model.snapshot().hash(state);
        let (prod, cons) = (p.producer.borrow(), p.consumer.borrow());
        (prod.produced(), cons.consumed()).hash(state);
        let o = p.observed.borrow();
        for (_, m) in &o.queue {
            m.hash(state);
        }
        (
            o.corrupted,
            o.consumer_waiting,
            o.consumer_event,
            o.producer_waiting,
            o.producer_event,
        )
            .hash(state);
    }
}

/// Runs `ops` on a fresh ring of `capacity` slots of `slot_size` bytes, then drains it;
/// hostile operations are skipped unless `hostile`. On a violation returns the step.
pub fn run(
    capacity: u32,
    slot_size: usize,
    ops: &[Op],
    hostile: bool,
) -> Result<(), (usize, Violation)> {
    let mut h = Harness::new(capacity, slot_size);
    for (i, op) in ops.iter().enumerate() {
        if op.is_hostile() && !hostile {
            continue;
        }
        h.step(*op).map_err(|v| (i, v))?;
    }
    h.drain().map_err(|v| (ops.len(), v))?;
    if !h.corrupted() && h.in_ring() != 0 {
        return Err((
            ops.len(),
            Violation::UnexpectedResult {
                side: Side::Consumer,
                result: format!("{} messages left", h.in_ring()),
                why: "draining did not empty the ring",
            },
        ));
    }
    Ok(())
}

/// Garbage values the exhaustive explorer writes: small indices (both plausible and
/// impossible ones, as the runs are short), the sign bit and all ones.
pub fn garbage(capacity: u32) -> [u32; 6] {
    [0, 1, capacity, capacity + 1, 0x8000_0000, u32::MAX]
}

/// The operations the exhaustive explorer tries from every state. Honest: pushes of a short,
/// a full-slot and a too-large message, pops, and each sort nested in the other at every
/// preemption point. Hostile adds garbage in every header word and slot length prefix, and
/// garbage in the index the victim reads, written at every point of a push or a pop.
pub fn alphabet(g: &Geometry, hostile: bool) -> Vec<Op> {
    let max = (g.slot_size() - LENGTH_SIZE) as u8;
    let mut ops = vec![
        Op::Push { len: 1 },
        Op::Push { len: max },
        Op::Push { len: max + 1 },
        Op::Pop,
    ];
    for at in 0..PREEMPTION_POINTS {
        ops.push(Op::PopDuringPush { at, len: 1 });
        ops.push(Op::PushDuringPop { at, len: 1 });
    }
    if hostile {
        let fields = 4 + g.capacity() as u8;
        for field in 0..fields {
            for value in garbage(g.capacity()) {
                ops.push(Op::Scribble { field, value });
            }
        }
        for at in 0..PREEMPTION_POINTS {
            for value in [g.capacity() + 1, u32::MAX] {
                // The consumer reads `producer` (field 0), the producer `consumer` (field 2).
                ops.push(Op::ScribbleDuring {
                    pop: true,
                    at,
                    field: 0,
                    value,
                });
                ops.push(Op::ScribbleDuring {
                    pop: false,
                    at,
                    field: 2,
                    value,
                });
            }
            // A length prefix changed under the consumer's feet.
            ops.push(Op::ScribbleDuring {
                pop: true,
                at,
                field: 4,
                value: u32::MAX,
            });
        }
    }
    ops
}

fn fingerprint(h: &Harness) -> u128 {
    use std::hash::DefaultHasher;
    let mut a = DefaultHasher::new();
    let mut b = DefaultHasher::new();
    0x5au8.hash(&mut b);
    h.hash(&mut a);
    h.hash(&mut b);
    (u128::from(a.finish()) << 64) | u128::from(b.finish())
}

/// Explores every sequence of at most `depth` operations of [`alphabet`] from a fresh ring
/// (breadth first, each distinct state expanded once), checking every property after every
/// step and draining the ring from every state reached. On a violation returns it with the
/// sequence that led there.
pub fn explore(
    capacity: u32,
    slot_size: usize,
    depth: usize,
    hostile: bool,
) -> Result<crate::exhaustive::Stats, (Vec<Op>, Violation)> {
    use std::collections::HashSet;
    let start = Harness::new(capacity, slot_size);
    let ops = alphabet(&start.geometry(), hostile);
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
            for op in &ops {
                let mut h = state.snapshot();
                stats.transitions += 1;
                let fail = |v| {
                    let mut trace: Vec<Op> = path.clone();
                    trace.push(*op);
                    (trace, v)
                };
                h.step(*op).map_err(fail)?;
                stats.successes += 1;
                if seen.insert(fingerprint(&h)) {
                    h.snapshot().drain().map_err(fail)?;
                    let mut p = path.clone();
                    p.push(*op);
                    next.push((h, p));
                }
            }
        }
        stats.states = seen.len();
        frontier = next;
    }
    Ok(stats)
}
