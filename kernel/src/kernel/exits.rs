//! A vCPU's exits: hypercalls, PSCI (emulated per domain), WFI/WFE and faults.

use super::*;

impl<H: Hal> Kernel<H> {
    /// Handles an exit of the vCPU running on `cpu`.
    pub fn handle_exit(&mut self, cpu: usize, exit: &Exit) {
        let Some(v) = self.current(cpu) else { return };
        let Some(domain) = self.vcpu(v).map(|x| x.domain) else {
            return;
        };
        match *exit {
            Exit::Hvc { function, args } => {
                let regs = if psci::is_psci(function) {
                    self.psci(cpu, v, domain, function, args)
                } else if function & !0xFFFF == mica_abi::hypercall::VENDOR_HYP_BASE {
                    match self.hypercall(cpu, v, domain, function, args) {
                        Ok(values) => [0, values[0], values[1], values[2]],
                        Err(s) => [s.to_raw(), 0, 0, 0],
                    }
                } else {
                    // SMCCC: an unknown function id answers NOT_SUPPORTED.
                    [psci::ret::NOT_SUPPORTED, 0, 0, 0]
                };
                self.set_result(v, regs);
            }
            Exit::Smc { function, args } => {
                let regs = if psci::is_psci(function) {
                    self.psci(cpu, v, domain, function, args)
                } else {
                    [psci::ret::NOT_SUPPORTED, 0, 0, 0]
                };
                self.set_result(v, regs);
            }
            Exit::WaitForInterrupt => {
                let blocked = self.vcpus[v.index()]
                    .as_mut()
                    .is_some_and(|x| x.wait_for_interrupt());
                if blocked {
                    self.request_resched(cpu);
                }
            }
            Exit::MemoryFault { ipa, write, pc } => {
                let index = self.vcpu(v).map_or(0, |x| x.index);
                let name = self.domain(domain).map_or("?", |d| d.name());
                let name: heapless::String<32> = name_copy(name);
                log_for!(
                    self,
                    domain,
                    "domain {} (id {}) stopped: vCPU {index} {} guest-physical {ipa:#x} at pc {pc:#x}, which it was not given",
                    name,
                    domain.0,
                    if write { "wrote" } else { "read" }
                );
                self.destroy(domain);
            }
            Exit::Unhandled { syndrome, pc, what } => {
                let name: heapless::String<32> =
                    name_copy(self.domain(domain).map_or("?", |d| d.name()));
                log_for!(
                    self,
                    domain,
                    "domain {} (id {}) stopped: {what} (syndrome {syndrome:#x}) at pc {pc:#x}",
                    name,
                    domain.0
                );
                self.destroy(domain);
            }
            Exit::Yield => self.yield_cpu(cpu),
            Exit::Interrupt => {}
        }
    }

    pub(super) fn set_result(&mut self, v: VcpuId, regs: [u64; 4]) {
        if let Some(x) = self.vcpus[v.index()].as_mut() {
            x.context.set_result(regs);
        }
    }

    pub(super) fn psci(
        &mut self,
        cpu: usize,
        v: VcpuId,
        domain: DomainId,
        function: u64,
        args: [u64; 6],
    ) -> [u64; 4] {
        use psci::ret;
        let r = match function {
            psci::VERSION => psci::VERSION_1_1,
            psci::FEATURES => {
                if psci::implemented(args[0]) {
                    ret::SUCCESS
                } else {
                    ret::NOT_SUPPORTED
                }
            }
            psci::MIGRATE_INFO_TYPE => 2, // Trusted OS not present: no migration needed.
            f if psci::CPU_ON.contains(&f) => self.psci_cpu_on(domain, args[0], args[1], args[2]),
            f if psci::AFFINITY_INFO.contains(&f) => {
                match self.domain_vcpu_by_mpidr(domain, args[0]) {
                    Some(t) => match self.vcpu(t).map(|x| x.state) {
                        Some(VcpuState::Off) | None => ret::AFFINITY_OFF,
                        Some(_) => ret::AFFINITY_ON,
                    },
                    None => ret::INVALID_PARAMETERS,
                }
            }
            psci::CPU_OFF => {
                if let Some(x) = self.vcpus[v.index()].as_mut() {
                    x.power_off();
                }
                self.request_resched(cpu);
                ret::SUCCESS
            }
            psci::SYSTEM_OFF => {
                let name: heapless::String<32> =
                    name_copy(self.domain(domain).map_or("?", |d| d.name()));
                log_for!(
                    self,
                    domain,
                    "domain {} (id {}) powered itself off (PSCI SYSTEM_OFF)",
                    name,
                    domain.0
                );
                self.destroy(domain);
                ret::SUCCESS
            }
            psci::SYSTEM_RESET => {
                let name: heapless::String<32> =
                    name_copy(self.domain(domain).map_or("?", |d| d.name()));
                log_for!(
                    self,
                    domain,
                    "domain {} (id {}) restarts (PSCI SYSTEM_RESET)",
                    name,
                    domain.0
                );
                self.restart(domain);
                ret::SUCCESS
            }
            _ => ret::NOT_SUPPORTED,
        };
        [r, 0, 0, 0]
    }

    pub(super) fn domain_vcpu_by_mpidr(&self, domain: DomainId, mpidr: u64) -> Option<VcpuId> {
        let index = mica_abi::layout::vcpu_of_affinity(mpidr)?;
        self.domain(domain)?.vcpus.get(index).copied()
    }

    pub(super) fn psci_cpu_on(
        &mut self,
        domain: DomainId,
        target: u64,
        entry: u64,
        context: u64,
    ) -> u64 {
        use psci::ret;
        let Some(t) = self.domain_vcpu_by_mpidr(domain, target) else {
            return ret::INVALID_PARAMETERS;
        };
        let Some(d) = self.domain(domain) else {
            return ret::INVALID_PARAMETERS;
        };
        if d.mappings.translate(entry).is_none() {
            return ret::INVALID_ADDRESS;
        }
        let dc = self.default_cacheable(d);
        let clock_base = d.clock_base_ns;
        let Some(x) = self.vcpus[t.index()].as_mut() else {
            return ret::INVALID_PARAMETERS;
        };
        if x.retired {
            // Its Vcpu object was destroyed: it is gone for good.
            return ret::DENIED;
        }
        if x.state != VcpuState::Off {
            return ret::ALREADY_ON;
        }
        let (index, cpu) = (x.index, x.cpu);
        x.context.reset(entry, [context, 0, 0, 0], index, dc);
        x.context.set_clock_base(clock_base);
        self.make_runnable(t);
        let name = name_copy(self.domain(domain).map_or("?", |d| d.name()));
        log_for!(
            self,
            domain,
            "domain {} (id {}): vCPU {index} started on CPU {cpu} (PSCI CPU_ON)",
            name,
            domain.0
        );
        ret::SUCCESS
    }

    pub(super) fn hypercall(
        &mut self,
        cpu: usize,
        v: VcpuId,
        domain: DomainId,
        function: u64,
        args: [u64; 6],
    ) -> Result<[u64; 3], Status> {
        let call = Call::from_function_id(function).ok_or(Status::UnknownCall)?;
        Self::dispatch(self, cpu, v, domain, call, args)
    }
}
