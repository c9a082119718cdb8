//! The scheduler mechanism: picking what each CPU runs, blocking and waking, ticks, the
//! accounting page and the policy domain's parameters.

use super::*;

impl<H: Hal> Kernel<H> {
    /// Rewrites the accounting page from the kernel's vCPU table (a seqlock: `seq` is odd
    /// while the entries change).
    pub fn publish_accounting(&mut self) {
        use mica_abi::sched::{state, SchedPage, VcpuAccount, MAX_ACCOUNTED_VCPUS};
        use zerocopy::{FromZeros, IntoBytes};
        let Some((frame, _)) = self.accounting else {
            return;
        };
        self.accounting_seq = self.accounting_seq.wrapping_add(2);
        let mut page = SchedPage::new_zeroed();
        page.seq = self.accounting_seq;
        page.now_ns = self.hal.now_ns();
        page.cpus = self.hal.cpus() as u32;
        for (i, v) in self.vcpus.iter().enumerate().take(MAX_ACCOUNTED_VCPUS) {
            let Some(v) = v else { continue };
            page.vcpus[i] = VcpuAccount {
                domain: v.domain.0,
                index: v.index,
                cpu: v.cpu as u8,
                state: match v.state {
                    VcpuState::Off => state::OFF,
                    VcpuState::Runnable => state::RUNNABLE,
                    VcpuState::Running => state::RUNNING,
                    VcpuState::Blocked => state::BLOCKED,
                },
                priority: v.sched.params.priority,
                valid: 1,
                run_time_ns: v.sched.run_time_at(page.now_ns),
                wakeups: v.sched.wakeups as u32,
                overruns: v.sched.overruns as u32,
                budget_us: (v.sched.params.budget_ns / 1000) as u32,
                period_us: (v.sched.params.period_ns / 1000) as u32,
                affinity: v.sched.params.affinity,
                request: v.request,
                node: self.cpu_nodes.get(v.cpu).copied().unwrap_or(0),
                memory_node: self.domain(v.domain).map_or(0, |d| d.memory_node),
                reserved: 0,
            };
        }
        // Odd sequence first, then the entries, then the even sequence.
        self.hal
            .write_phys(frame.start, &(self.accounting_seq - 1).to_le_bytes());
        self.hal.write_phys(frame.start + 8, &page.as_bytes()[8..]);
        self.hal.write_phys(frame.start, &page.seq.to_le_bytes());
    }

    /// Tells the policy domain that something changed (coalesced; ignored if it is gone).
    pub(crate) fn notify_policy(&mut self) {
        let Some(end) = self.sched_events else { return };
        if let Ok(Some(delivery)) = self.channels.send(end) {
            self.apply([Effect::Deliver(delivery)]);
        }
    }

    /// `sched_set`, after decoding: checks, then applies new parameters to one vCPU.
    pub(crate) fn set_sched(
        &mut self,
        caller: DomainId,
        control: u16,
        domain: u16,
        index: u16,
        params: SchedParams,
    ) -> Result<(), Status> {
        self.caps.lookup(
            caller.space(),
            control,
            ObjectType::SchedControl,
            Rights::CONTROL,
        )?;
        let cpus = self.hal.cpus().max(1);
        if !params.is_valid(cpus) {
            return Err(Status::InvalidArgument);
        }
        let v = self
            .domain(DomainId(domain))
            .and_then(|d| d.vcpus.get(index as usize).copied())
            .ok_or(Status::OutOfRange)?;
        let old_cpu = self.vcpu(v).ok_or(Status::OutOfRange)?.cpu;
        let new_cpu = if params.affinity & (1 << old_cpu) != 0 {
            old_cpu
        } else {
            params.affinity.trailing_zeros() as usize
        };
        // Admission: reservations on the CPU it will run on stay within 100%.
        let others = self
            .vcpus
            .iter()
            .enumerate()
            .filter_map(|(i, x)| x.as_ref().filter(|x| i != v.index() && x.cpu == new_cpu))
            .map(|x| x.sched.params);
        if !sched::admissible(others.chain(core::iter::once(params))) {
            return Err(Status::Overcommitted);
        }
        // Act.
        let now = self.hal.now_ns();
        let x = self.vcpus[v.index()].as_mut().ok_or(Status::OutOfRange)?;
        x.sched.set_params(params, now);
        let state = x.state;
        if new_cpu != old_cpu {
            x.cpu = new_cpu;
            if state == VcpuState::Running {
                // Its current CPU lets go of it at the next pick; it then runs on the new one.
                self.resched[old_cpu] = true;
                self.hal.kick(old_cpu);
            }
        }
        self.resched[new_cpu] = true;
        self.hal.kick(new_cpu);
        self.publish_accounting();
        Ok(())
    }

    /// vCPU `v` may run ([`Vcpu::make_runnable`]). Inlined: called out of line from the
    /// HAL's exit loop it cost domain-create ~600 instructions in `make bench` (the loop's
    /// code around it came out worse).
    #[inline]
    pub(super) fn make_runnable(&mut self, v: VcpuId) {
        let Some(x) = self.vcpus[v.index()].as_mut() else {
            return;
        };
        let runs = runs(&self.domains, x.domain);
        let kick = x.make_runnable(runs);
        self.kick(kick);
    }

    /// What physical CPU `cpu` should run now (`None`: idle until an interrupt), following
    /// the mechanism of [`sched`]: the running vCPU is charged for its time and keeps the CPU
    /// unless its slice ended (a [`Kernel::tick`]), it yielded or blocked, or a vCPU of higher
    /// priority became runnable. Also computes [`Kernel::deadline`].
    pub fn pick(&mut self, cpu: usize) -> Option<Next> {
        if cpu >= MAX_CPUS {
            return None;
        }
        let now = self.hal.now_ns();
        if let Some(next) = self.keep_running(cpu, now) {
            return Some(next);
        }
        self.stirred[cpu] = false;
        if let Some(c) = self.current[cpu] {
            let mut overran = false;
            let still = self.vcpus[c.index()].as_mut().map(|x| {
                overran = x.sched.charge(now);
                (x.state, x.domain)
            });
            if overran {
                self.notify_policy();
            }
            let retired = self.vcpus[c.index()].as_ref().is_none_or(|x| x.retired);
            let keeps_running = !retired
                && still.is_some_and(|(state, d)| {
                    state == VcpuState::Running
                        && self
                            .domain(d)
                            .is_some_and(|d| d.state == DomainState::Running)
                });
            if !keeps_running {
                // Blocked, stopped, paused or dying: off the CPU first (this may restart or
                // tear down its domain, which changes what is runnable).
                self.current[cpu] = None;
                self.leave_cpu(c);
            }
        }
        let current = self.current[cpu];
        let resched = core::mem::take(&mut self.resched[cpu]);
        // Everything that may run here, with budgets replenished for `now`.
        let mut candidates: heapless::Vec<VcpuId, MAX_VCPUS> = heapless::Vec::new();
        for i in 0..self.vcpu_end.min(MAX_VCPUS) {
            let id = VcpuId(i as u16);
            let running_domain = match self.vcpus[i].as_ref() {
                Some(x) if x.cpu == cpu => self
                    .domain(x.domain)
                    .is_some_and(|d| d.state == DomainState::Running),
                _ => continue,
            };
            let Some(x) = self.vcpus[i].as_mut() else {
                continue;
            };
            x.sched.replenish(now);
            let runnable = x.state == VcpuState::Runnable
                || (x.state == VcpuState::Running && current == Some(id));
            if running_domain && runnable {
                let _ = candidates.push(id);
            }
        }
        let chosen = {
            let vcpus = &self.vcpus[..];
            let candidate =
                |id: &VcpuId| sched_of(vcpus, *id).map(|sched| Candidate { id: *id, sched });
            let best = sched::choose(candidates.iter().filter_map(candidate));
            // The running vCPU keeps the CPU unless something better came or its turn is over.
            let keep = current.filter(|c| {
                let prio = |id: VcpuId| sched_of(vcpus, id).map_or(0, |s| s.params.priority);
                // Its slice is over and an equal waits: the equal's turn (the timer for it may
                // not have fired yet, if the vCPU exited for something else first).
                let turn_over = best.is_some_and(|b| b != *c && prio(b) == prio(*c))
                    && sched_of(vcpus, *c).is_some_and(|s| s.slice_over(now));
                !resched
                    && !turn_over
                    && candidates.contains(c)
                    && sched_of(vcpus, *c).is_some_and(SchedState::eligible)
                    && best.is_some_and(|b| prio(b) <= prio(*c))
            });
            keep.or(best)
        };
        if let Some(c) = current.filter(|c| Some(*c) != chosen) {
            self.current[cpu] = None;
            self.leave_cpu(c);
        }
        let timers = self.blocked_timer_deadline(cpu);
        let Some(v) = chosen else {
            let vcpus = &self.vcpus[..];
            let waiting = candidates.iter().filter_map(|id| sched_of(vcpus, *id));
            self.deadlines[cpu] = earliest(sched::next_deadline(now, None, waiting), timers);
            return None;
        };
        let vcpu = self.vcpus[v.index()].as_mut()?;
        if current != Some(v) {
            vcpu.runs += 1;
        }
        vcpu.run();
        if current != Some(v) {
            self.run_seq += 1;
            vcpu.sched.start(now, self.run_seq);
        } else {
            vcpu.sched.resume(now);
        }
        let domain = vcpu.domain;
        self.current[cpu] = Some(v);
        let vcpus = &self.vcpus[..];
        let waiting = candidates
            .iter()
            .filter(|id| **id != v)
            .filter_map(|id| sched_of(vcpus, *id));
        let deadline = sched::next_deadline(now, sched_of(vcpus, v), waiting);
        self.deadlines[cpu] = earliest(deadline, timers);
        Some(Next { vcpu: v, domain })
    }

    /// The earliest virtual-timer deadline of the vCPUs blocked on `cpu`.
    pub(super) fn blocked_timer_deadline(&self, cpu: usize) -> Option<u64> {
        self.vcpus
            .iter()
            .take(self.vcpu_end)
            .flatten()
            .filter(|v| v.cpu == cpu && v.state == VcpuState::Blocked)
            .filter_map(|v| v.context.timer_deadline_ns())
            .min()
    }

    /// `v` has just left its physical CPU.
    pub(super) fn leave_cpu(&mut self, v: VcpuId) {
        let Some(x) = self.vcpus[v.index()].as_mut() else {
            return;
        };
        let domain = x.domain;
        let state = self.domains[domain.index()].as_ref().map(|d| d.state);
        match x.left_cpu(state) {
            Left::Nothing => {}
            Left::Kick(kick) => self.kick(Some(kick)),
            Left::Stopped => self.finish_if_quiescent(domain),
        }
    }

    /// The timer of `cpu` fired (its deadline, or a periodic tick): the scheduler looks again
    /// (round robin among equals, budgets), and blocked vCPUs wake to check their virtual
    /// timer.
    pub fn tick(&mut self, cpu: usize) {
        if cpu >= MAX_CPUS {
            return;
        }
        let now = self.hal.now_ns();
        let expired: heapless::Vec<VcpuId, MAX_VCPUS> = self
            .vcpus
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.as_ref()
                    .filter(|v| {
                        v.cpu == cpu
                            && v.state == VcpuState::Blocked
                            && v.context.timer_deadline_ns().is_some_and(|d| d <= now)
                    })
                    .map(|_| VcpuId(i as u16))
            })
            .collect();
        for v in expired {
            self.wake(v);
        }
        self.resched[cpu] = true;
        if cpu == 0 {
            self.publish_accounting();
        }
    }

    /// Marks vCPU `v` as having a pending virtual interrupt: a blocked vCPU becomes runnable.
    pub fn wake(&mut self, v: VcpuId) {
        let Some(x) = self.vcpus.get_mut(v.index()).and_then(Option::as_mut) else {
            return;
        };
        let runs = runs(&self.domains, x.domain);
        let kick = x.wake(runs);
        self.kick(kick);
    }

    /// A virtual interrupt of vCPU `v` may have become deliverable: a blocked `v` wakes
    /// ([`wake`](Self::wake)); a running one has its physical CPU interrupted so that it
    /// exits and sees the interrupt (the HAL refills its interrupt state before every entry).
    /// A runnable or stopped `v` needs nothing.
    pub fn interrupt_vcpu(&mut self, v: VcpuId) {
        let Some(x) = self.vcpus.get_mut(v.index()).and_then(Option::as_mut) else {
            return;
        };
        let runs = runs(&self.domains, x.domain);
        let kick = x.interrupt(runs);
        self.kick(kick);
    }

    /// [`interrupt_vcpu`](Self::interrupt_vcpu) for each vCPU of `domain` whose index has
    /// its bit set in `mask` (what the virtual interrupt controller reports as changed).
    pub fn interrupt_vcpus(&mut self, domain: DomainId, mask: u32) {
        if mask == 0 {
            return;
        }
        let Some(d) = self.domain(domain) else { return };
        let vcpus: heapless::Vec<VcpuId, 8> = d
            .vcpus
            .iter()
            .enumerate()
            .filter(|(i, _)| *i < 32 && mask & (1 << i) != 0)
            .map(|(_, v)| *v)
            .collect();
        for v in vcpus {
            self.interrupt_vcpu(v);
        }
    }

    pub(crate) fn request_resched(&mut self, cpu: usize) {
        if cpu < MAX_CPUS {
            self.resched[cpu] = true;
        }
    }

    /// The next [`pick`](Self::pick) on `cpu` looks at every candidate (see `stirred`).
    pub(super) fn stir(&mut self, cpu: usize) {
        if let Some(s) = self.stirred.get_mut(cpu) {
            *s = true;
        }
    }

    /// The fast path of [`pick`](Self::pick): the vCPU running on `cpu` goes on, without a
    /// look at the other candidates, when nothing that decides it changed since the last full
    /// pick there: no reschedule was asked for, nothing was made runnable or kicked on this
    /// CPU, and the deadline that pick computed (the end of the slice if an equal waits, of
    /// the budget, the next replenishment that matters, a blocked vCPU's timer) has not come.
    /// Its time is charged at the next full pick, which covers the whole run.
    fn keep_running(&self, cpu: usize, now: u64) -> Option<Next> {
        let c = (*self.current.get(cpu)?)?;
        if self.resched[cpu] || self.stirred[cpu] || self.deadlines[cpu].is_some_and(|d| now >= d) {
            return None;
        }
        let x = self.vcpus[c.index()].as_ref()?;
        let runs = x.state == VcpuState::Running
            && !x.retired
            && self
                .domain(x.domain)
                .is_some_and(|d| d.state == DomainState::Running);
        runs.then_some(Next {
            vcpu: c,
            domain: x.domain,
        })
    }

    /// The vCPU on `cpu` yields: it goes behind every runnable vCPU of its priority.
    pub(crate) fn yield_cpu(&mut self, cpu: usize) {
        if let Some(v) = self.current(cpu) {
            self.run_seq += 1;
            if let Some(x) = self.vcpus[v.index()].as_mut() {
                x.sched.last_run = self.run_seq;
            }
        }
        self.request_resched(cpu);
    }

    /// The physical CPUs `caller` may place vCPUs on (one bit per CPU): every online CPU if
    /// it holds scheduling authority (a SchedControl capability with CONTROL), else only the
    /// CPUs its own vCPUs may run on, so a domain cannot escape the pinning its manifest or
    /// its policy gave it by creating vCPUs.
    pub fn placement(&self, caller: DomainId) -> u64 {
        let cpus = self.hal.cpus().clamp(1, MAX_CPUS);
        let online = if cpus >= 64 {
            u64::MAX
        } else {
            (1u64 << cpus) - 1
        };
        if self.holds(caller, ObjectType::SchedControl, Rights::CONTROL) {
            return online;
        }
        let own = self.domain(caller).map_or(0, |d| {
            d.vcpus
                .iter()
                .filter_map(|v| self.vcpu(*v))
                .filter(|v| !v.retired)
                .fold(0, |mask, v| mask | v.sched.params.affinity | 1 << v.cpu)
        });
        own & online
    }
}

/// The hypercalls on schedule (routed by `invoke.rs`, their arguments decoded by `mica-abi`):
/// each checks with no side effect, then acts.
impl<H: Hal> Kernel<H> {
    /// `sched_set`.
    pub(super) fn invoke_sched_set(
        &mut self,
        caller: DomainId,
        x: mica_abi::args::SchedSet,
    ) -> Result<[u64; 3], Status> {
        // The decoding checked that the target unpacks.
        let (domain, vcpu, priority) =
            mica_abi::sched::unpack_target(x.target).ok_or(Status::InvalidArgument)?;
        let params = crate::sched::SchedParams {
            priority,
            budget_ns: x.budget_ns,
            period_ns: x.period_ns,
            affinity: x.affinity,
        };
        self.set_sched(caller, x.control.0, domain, vcpu, params)?;
        Ok([0; 3])
    }
}

/// vCPU `id`'s scheduling state, borrowed where it lives (see `sched::Candidate`).
fn sched_of<H: Hal>(vcpus: &[Option<Vcpu<H>>], id: VcpuId) -> Option<&SchedState> {
    vcpus
        .get(id.index())
        .and_then(Option::as_ref)
        .map(|x| &x.sched)
}

/// Whether domain `id` of `domains` runs (its vCPUs may be scheduled).
fn runs<H: Hal>(domains: &[Option<Domain<H>>], id: DomainId) -> bool {
    domains
        .get(id.index())
        .and_then(Option::as_ref)
        .is_some_and(|d| d.state.runs())
}
