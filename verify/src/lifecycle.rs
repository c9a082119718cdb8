//! The lifecycle harness: the whole kernel (`mica_kernel::kernel::Kernel` on the mock HAL of
//! `mica_kernel::testing`) driven by hypercalls from its domains, faults and scheduling, with
//! the isolation invariants checked after every step:
//!
//! - **No vCPU runs for a domain or vCPU whose object is gone:** a vCPU whose domain's Domain
//!   object, or whose own Vcpu object, was destroyed is off or still leaving the CPU it ran on
//!   (its domain dying); a CPU that has just picked never picks one.
//! - **An id names at most one domain, and is held while anything of it remains:** every
//!   domain the kernel knows has a capability space that is not free and that the kernel
//!   holds; its Domain object, while alive, owns exactly that space.
//! - **Nothing leaks:** free frames + every domain's RAM + every stage 2's tables + what the
//!   kernel keeps for itself = all of RAM, always; each domain's table charge equals what its
//!   tables hold; every space is charged exactly for the objects, domains and tables alive on
//!   its account, and never beyond its quota.
//! - **Every mapping belongs to a live capability:** each mapping a domain has was made
//!   through a capability that is still there, names a live object and covers the frames;
//!   and stage 2 maps exactly what the mapping records say.
//!
//! The system: domain `a` on CPU 0, holding scheduling authority (so it may place vCPUs on
//! either CPU), and domain `b` on CPU 1; both start. Operations are issued by whatever runs on
//! the CPU they name, with slots and domains taken modulo small bounds so sequences hit the
//! interesting cases (a slot that holds a child's Domain capability, RAM mapped into a child,
//! a vCPU started in a child that is then deleted, ...).

use std::fmt;

use mica_abi::hypercall::{Call, SELF_DOMAIN};
use mica_abi::sysimage;
use mica_abi::{Rights, Status};
use mica_kernel::domain::DomainState;
use mica_kernel::kernel::{Exit, Kernel, MAX_CPUS, MAX_VCPUS};
use mica_kernel::testing::{self, MockHal};
use mica_kernel::vcpu::{VcpuId, VcpuState};

/// Capability slots the operations name (mod this).
pub const SLOTS: u8 = 12;
/// CPUs of the harness machine (the mock HAL has two).
pub const CPUS: u8 = 2;
/// Guest-physical addresses the map operations use: RAM's base, then three far apart (each
/// in a GiB of its own, none 2 MiB-aligned with another).
pub const IPAS: [u64; 4] = [0x4000_0000, 0x1_0000_0000, 0x2_4020_0000, 0x7F_FFE0_0000];

/// One operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bolero::TypeGenerator)]
pub enum Op {
    /// `domain_create` into slot `dst` (8 slots, 32 KiB of quota).
    Create {
        /// Issuing CPU.
        cpu: u8,
        /// Slot for the Domain capability.
        dst: u8,
    },
    /// `mem_map` of page `page` of the caller's RAM capability (slot 0) into `domain` at
    /// `IPAS[at]`, read-write-execute.
    Map {
        /// Issuing CPU.
        cpu: u8,
        /// Domain argument: a slot, or [`SLOTS`] and above for SELF_DOMAIN.
        domain: u8,
        /// Page of the RAM capability.
        page: u8,
        /// Index into [`IPAS`].
        at: u8,
    },
    /// `mem_unmap` of one page at `IPAS[at]` of `domain`.
    Unmap {
        /// Issuing CPU.
        cpu: u8,
        /// Domain argument.
        domain: u8,
        /// Index into [`IPAS`].
        at: u8,
    },
    /// `vcpu_create` of the next vCPU of `domain`, its capability in `dst`, on CPU `on`.
    VcpuCreate {
        /// Issuing CPU.
        cpu: u8,
        /// Domain argument.
        domain: u8,
        /// Slot for the Vcpu capability.
        dst: u8,
        /// Physical CPU.
        on: u8,
    },
    /// `vcpu_start` of the Vcpu capability in `slot` at the first of [`IPAS`].
    VcpuStart {
        /// Issuing CPU.
        cpu: u8,
        /// Slot.
        slot: u8,
    },
    /// `cap_grant` of `src` (all its rights) into slot `dst` of `domain`.
    Grant {
        /// Issuing CPU.
        cpu: u8,
        /// Source slot.
        src: u8,
        /// Slot of the receiver's Domain capability.
        domain: u8,
        /// Slot in the receiver's space.
        dst: u8,
    },
    /// `cap_delete`.
    Delete {
        /// Issuing CPU.
        cpu: u8,
        /// Slot.
        slot: u8,
    },
    /// `cap_revoke`.
    Revoke {
        /// Issuing CPU.
        cpu: u8,
        /// Slot.
        slot: u8,
    },
    /// `domain_destroy`.
    Destroy {
        /// Issuing CPU.
        cpu: u8,
        /// Domain argument.
        domain: u8,
    },
    /// What runs on `cpu` touches memory it was not given: its domain is stopped.
    Fault {
        /// CPU.
        cpu: u8,
    },
    /// `cpu` runs its scheduler.
    Run {
        /// CPU.
        cpu: u8,
    },
}

/// A broken invariant.
#[derive(Debug)]
pub struct Violation(pub String);

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err(Violation(format!($($arg)*)));
        }
    };
}

/// The kernel under test and what the invariants compare against.
pub struct Harness {
    /// The kernel.
    pub kernel: Box<Kernel<MockHal>>,
    /// All of RAM the frame allocator manages.
    total: u64,
    /// What the kernel keeps for itself after boot (the accounting page).
    kept: u64,
}

impl Harness {
    /// Boots the two-domain system and runs each CPU's first pick.
    pub fn new() -> Harness {
        let mut a = testing::dom("a");
        a.cpus[0] = 0;
        a.flags = sysimage::FLAG_SCHED_CONTROL;
        let mut b = testing::dom("b");
        b.cpus[0] = 1;
        let mut kernel = testing::kernel(&[a, b]);
        let total = testing::RAM.size();
        kernel.pick(0);
        kernel.pick(1);
        let kept = total - kernel.frames.free_bytes() - in_domains(&kernel);
        Harness {
            kernel,
            total,
            kept,
        }
    }

    /// Applies `op`, then checks every invariant.
    pub fn step(&mut self, op: Op) -> Result<(), Violation> {
        let k = &mut self.kernel;
        let slot = |s: u8| u64::from(s % SLOTS);
        let domain = |d: u8| {
            if d % (SLOTS + 1) == SLOTS {
                SELF_DOMAIN
            } else {
                u64::from(d % SLOTS)
            }
        };
        let cpu_of = |c: u8| usize::from(c % CPUS);
        let rwx = (Rights::READ | Rights::WRITE | Rights::EXECUTE).bits() as u64;
        let mut picked = None;
        match op {
            Op::Run { cpu } => {
                let cpu = cpu_of(cpu);
                k.pick(cpu);
                picked = Some(cpu);
            }
            Op::Fault { cpu } => {
                let cpu = cpu_of(cpu);
                if k.current(cpu).is_some() {
                    k.handle_exit(
                        cpu,
                        &Exit::MemoryFault {
                            ipa: 0xDEAD_0000,
                            write: true,
                            pc: 0,
                        },
                    );
                }
            }
            _ => {
                let cpu = match op {
                    Op::Create { cpu, .. }
                    | Op::Map { cpu, .. }
                    | Op::Unmap { cpu, .. }
                    | Op::VcpuCreate { cpu, .. }
                    | Op::VcpuStart { cpu, .. }
                    | Op::Grant { cpu, .. }
                    | Op::Delete { cpu, .. }
                    | Op::Revoke { cpu, .. }
                    | Op::Destroy { cpu, .. } => cpu_of(cpu),
                    Op::Run { .. } | Op::Fault { .. } => unreachable!("handled above"),
                };
                if k.current(cpu).is_none() {
                    return self.check(None);
                }
                let (call, args) = match op {
                    Op::Create { dst, .. } => {
                        (Call::DomainCreate, [slot(dst), 8, 32 << 10, 0, 0, 0])
                    }
                    Op::Map {
                        domain: d,
                        page,
                        at,
                        ..
                    } => {
                        // Absolute frames of the caller's RAM capability (slot 0), if still there.
                        let first = caller_space(k, cpu)
                            .and_then(|space| k.caps.identify(space, 0).ok())
                            .and_then(|info| info.frames)
                            .map_or(0, |f| f.first());
                        let ipa = IPAS[usize::from(at) % IPAS.len()];
                        let frame = first + u64::from(page % 8);
                        (Call::MemMap, [domain(d), 0, ipa, frame, 1, rwx])
                    }
                    Op::Unmap { domain: d, at, .. } => {
                        let ipa = IPAS[usize::from(at) % IPAS.len()];
                        (Call::MemUnmap, [domain(d), ipa, 1, 0, 0, 0])
                    }
                    Op::VcpuCreate {
                        domain: d, dst, on, ..
                    } => {
                        let index = next_vcpu_index(k, cpu, domain(d));
                        (
                            Call::VcpuCreate,
                            [domain(d), slot(dst), index, u64::from(on % CPUS), 0, 0],
                        )
                    }
                    Op::VcpuStart { slot: s, .. } => {
                        (Call::VcpuStart, [slot(s), IPAS[0], 0, 0, 0, 0])
                    }
                    Op::Grant {
                        src,
                        domain: d,
                        dst,
                        ..
                    } => {
                        // Every right the source has (a grant never widens them).
                        let rights = caller_space(k, cpu)
                            .and_then(|space| k.caps.identify(space, slot(src) as u16).ok())
                            .map_or(0, |info| u64::from(info.rights.bits()));
                        (
                            Call::CapGrant,
                            [slot(src), slot(d), slot(dst), rights, 0, 0],
                        )
                    }
                    Op::Delete { slot: s, .. } => (Call::CapDelete, [slot(s), 0, 0, 0, 0, 0]),
                    Op::Revoke { slot: s, .. } => (Call::CapRevoke, [slot(s), 0, 0, 0, 0, 0]),
                    Op::Destroy { domain: d, .. } => {
                        (Call::DomainDestroy, [domain(d), 0, 0, 0, 0, 0])
                    }
                    Op::Run { .. } | Op::Fault { .. } => unreachable!("handled above"),
                };
                let result = testing::hvc(k, cpu, call, args);
                // Every call ends with a status this ABI defines.
                ensure!(
                    Status::from_raw(result[0]).is_some(),
                    "{call:?} returned an undefined status {:#x}",
                    result[0]
                );
            }
        }
        self.check(picked)
    }

    /// Every invariant of the module documentation; `picked`: the CPU that just picked.
    pub fn check(&self, picked: Option<usize>) -> Result<(), Violation> {
        let k = &self.kernel;
        // Ids: one domain per id, each held by the kernel, its object owning its space.
        let mut seen = std::collections::BTreeSet::new();
        for d in k.domains() {
            ensure!(seen.insert(d.id), "two domains with id {}", d.id.0);
            let space = k.caps.space(d.id.space());
            ensure!(
                space.is_some_and(|s| s.state != mica_caps::SpaceState::Free && s.held),
                "domain {} is known but its space is {space:?}",
                d.id.0
            );
            if let Ok(o) = k.caps.resolve(d.object) {
                ensure!(
                    o.domain_space == Some(d.id.space()),
                    "domain {}'s object owns {:?}",
                    d.id.0,
                    o.domain_space
                );
            } else {
                ensure!(
                    d.state == DomainState::Dying,
                    "domain {} outlives its object while {:?}",
                    d.id.0,
                    d.state
                );
            }
        }
        // vCPUs of gone objects do not run.
        for i in 0..MAX_VCPUS {
            let Some(v) = k.vcpu(VcpuId(i as u16)) else {
                continue;
            };
            let Some(d) = k.domain(v.domain) else {
                return Err(Violation(format!(
                    "vCPU {i} of a domain the kernel no longer has"
                )));
            };
            ensure!(
                d.vcpus.contains(&VcpuId(i as u16)),
                "vCPU {i} is not in its domain's list"
            );
            let domain_gone = k.caps.resolve(d.object).is_err();
            let vcpu_gone = k.caps.resolve(v.object).is_err();
            if domain_gone || vcpu_gone {
                ensure!(
                    matches!(v.state, VcpuState::Off | VcpuState::Running),
                    "vCPU {i} is {:?} though its {} object is gone",
                    v.state,
                    if domain_gone { "Domain" } else { "Vcpu" }
                );
                if v.state == VcpuState::Running {
                    ensure!(
                        k.current(v.cpu) == Some(VcpuId(i as u16)),
                        "vCPU {i} is Running but not on CPU {}",
                        v.cpu
                    );
                }
            }
            if vcpu_gone {
                ensure!(v.retired, "vCPU {i}'s object is gone but it is not retired");
            }
        }
        if let Some(cpu) = picked {
            if let Some(v) = k.current(cpu).and_then(|v| k.vcpu(v)) {
                let d = k.domain(v.domain);
                ensure!(
                    d.is_some_and(
                        |d| k.caps.resolve(d.object).is_ok() && d.state == DomainState::Running
                    ) && k.caps.resolve(v.object).is_ok()
                        && !v.retired,
                    "CPU {cpu} picked a vCPU of a gone domain or a retired vCPU"
                );
            }
        }
        for cpu in 0..MAX_CPUS.min(usize::from(CPUS)) {
            if let Some(v) = k.current(cpu) {
                ensure!(
                    k.vcpu(v).is_some(),
                    "CPU {cpu} runs vCPU {} the kernel no longer has",
                    v.0
                );
            }
        }
        // Memory: all of it accounted for.
        let free = k.frames.free_bytes();
        let used = in_domains(k);
        ensure!(
            free + used + self.kept == self.total,
            "frames: {free} free + {used} in domains + {} kept != {} (a leak of {})",
            self.kept,
            self.total,
            self.total as i128 - (free + used + self.kept) as i128
        );
        for d in k.domains() {
            ensure!(
                d.table_bytes == mica_kernel::hal::Stage2::table_bytes(&d.stage2),
                "domain {} is charged {} for tables holding {}",
                d.id.0,
                d.table_bytes,
                mica_kernel::hal::Stage2::table_bytes(&d.stage2)
            );
            let space = k.caps.space(d.id.space());
            ensure!(
                space.is_some_and(|s| s.used >= d.table_bytes && s.used <= s.quota),
                "domain {}'s space {space:?} does not pay for its tables ({})",
                d.id.0,
                d.table_bytes
            );
        }
        // Quota: every space is charged exactly for what is alive on its account.
        for index in 0..mica_kernel::kernel::SPACES {
            let id = mica_caps::SpaceId(index as u16);
            let Some(space) = k
                .caps
                .space(id)
                .filter(|s| s.state != mica_caps::SpaceState::Free)
            else {
                continue;
            };
            let objects: u64 = k
                .caps
                .objects()
                .filter(|o| o.charged_to == id && o.object_type != mica_abi::ObjectType::Domain)
                .map(|o| mica_caps::object_cost(o.object_type))
                .sum();
            let children: u64 = (0..mica_kernel::kernel::SPACES)
                .filter_map(|c| k.caps.space(mica_caps::SpaceId(c as u16)))
                .filter(|c| c.state != mica_caps::SpaceState::Free && c.parent == Some(id))
                .map(|c| mica_caps::domain_charge(c.slots, c.quota).unwrap_or(u64::MAX))
                .sum();
            let tables = k
                .domain(mica_kernel::domain::DomainId(index as u16))
                .map_or(0, |d| d.table_bytes);
            ensure!(
                space.used == objects + children + tables,
                "space {index} is charged {} for {objects} of objects, {children} of domains and \
                 {tables} of tables",
                space.used
            );
        }
        // Mappings: each through a live capability covering it; stage 2 matches the records.
        for d in k.domains() {
            let mut recorded = std::collections::BTreeSet::new();
            for m in d.mappings.iter() {
                let cap = k.caps.capability(m.through);
                ensure!(
                    cap.is_some_and(|c| k.caps.resolve(c.info.object).is_ok()
                        && c.info.frames.is_some_and(|f| f.first() <= m.pa / 4096
                            && m.pa / 4096 + m.pages <= f.first() + f.count())),
                    "domain {}: mapping at {:#x} through {:?}, which is {cap:?}",
                    d.id.0,
                    m.ipa,
                    m.through
                );
                for p in 0..m.pages {
                    recorded.insert(m.ipa + p * 4096);
                }
            }
            let mapped: std::collections::BTreeSet<u64> = d
                .stage2
                .pages
                .keys()
                .chain(d.stage2.device_pages.keys())
                .copied()
                .collect();
            ensure!(
                mapped == recorded,
                "domain {}: stage 2 maps {} pages, the records say {}",
                d.id.0,
                mapped.len(),
                recorded.len()
            );
        }
        Ok(())
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Frames domains hold: their RAM and their stage-2 tables (roots included).
fn in_domains(k: &Kernel<MockHal>) -> u64 {
    k.domains()
        .map(|d| d.ram.iter().map(|r| r.size()).sum::<u64>() + d.stage2.frames_held())
        .sum()
}

/// The capability space of the domain running on `cpu`.
fn caller_space(k: &Kernel<MockHal>, cpu: usize) -> Option<mica_caps::SpaceId> {
    let v = k.vcpu(k.current(cpu)?)?;
    Some(v.domain.space())
}

/// The index the next `vcpu_create` in the domain named by `domain` (from `cpu`'s domain)
/// must use, or 0 if it names nothing.
fn next_vcpu_index(k: &Kernel<MockHal>, cpu: usize, domain: u64) -> u64 {
    let caller = k.current(cpu).and_then(|v| k.vcpu(v)).map(|v| v.domain);
    let target = if domain == SELF_DOMAIN {
        caller
    } else {
        caller.and_then(|c| {
            let info = k.caps.identify(c.space(), domain as u16).ok()?;
            let space = k.caps.resolve(info.object).ok()?.domain_space?;
            Some(mica_kernel::domain::DomainId(space.0))
        })
    };
    target
        .and_then(|t| k.domain(t))
        .map_or(0, |d| d.vcpus.len() as u64)
}

/// Runs `ops` from a fresh system; the first violation and the step it happened at.
pub fn run(ops: &[Op]) -> Result<Harness, (usize, Violation)> {
    let mut h = Harness::new();
    h.check(None).map_err(|v| (0, v))?;
    for (i, op) in ops.iter().enumerate() {
        h.step(*op).map_err(|v| (i + 1, v))?;
    }
    Ok(h)
}
