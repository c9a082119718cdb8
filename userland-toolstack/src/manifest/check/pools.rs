//! Scheduling pools, per-domain scheduling requests and policy domains.

use super::*;

impl Checker<'_> {
    /// Checks the `[[pool]]` tables: names, CPUs that exist, each CPU in at most one pool.
    pub(crate) fn pools(
        &self,
        sections: &[PoolSection],
        machine: &Machine,
    ) -> Result<Vec<Pool>, ManifestError> {
        let mut pools = Vec::with_capacity(sections.len());
        let mut owner: Vec<Option<usize>> = vec![None; machine.cpus as usize];
        for (i, p) in sections.iter().enumerate() {
            let name = p.name.get_ref();
            if !is_valid_name(name) {
                return Err(self.invalid(&p.name, Problem::BadPoolName(name.clone())));
            }
            if let Some(first) = sections[..i].iter().find(|e| e.name.get_ref() == name) {
                return Err(self.invalid(
                    &p.name,
                    Problem::DuplicatePool {
                        name: name.clone(),
                        first_line: self.line(&first.name),
                    },
                ));
            }
            if p.cpus.get_ref().is_empty() {
                return Err(self.invalid(&p.cpus, Problem::EmptyPool(name.clone())));
            }
            let mut cpus = Vec::with_capacity(p.cpus.get_ref().len());
            for cpu in p.cpus.get_ref() {
                let c = *cpu.get_ref();
                if c >= machine.cpus {
                    return Err(self.invalid(
                        cpu,
                        Problem::NoSuchCpu {
                            cpu: c,
                            machine_cpus: machine.cpus,
                        },
                    ));
                }
                if let Some(other) = owner[c as usize] {
                    return Err(self.invalid(
                        cpu,
                        Problem::CpuInTwoPools {
                            cpu: c,
                            other: sections[other].name.get_ref().clone(),
                            other_line: self.line(&sections[other].cpus),
                        },
                    ));
                }
                owner[c as usize] = Some(i);
                cpus.push(c);
            }
            pools.push(Pool {
                name: name.clone(),
                cpus,
                policy: *p.policy.get_ref(),
            });
        }
        Ok(pools)
    }

    /// Checks a domain's `sched = { ... }` against its CPUs' pools.
    pub(crate) fn sched_request(
        &self,
        d: &DomainSection,
        cpus: &Option<Vec<u32>>,
        pools: &[Pool],
    ) -> Result<SchedRequest, ManifestError> {
        let Some(sched) = &d.sched else {
            return Ok(SchedRequest::default());
        };
        let s = sched.get_ref();
        let mut request = SchedRequest::default();
        if let Some(w) = &s.weight {
            let value = *w.get_ref();
            if !(1..=u64::from(u16::MAX)).contains(&value) {
                return Err(self.invalid(w, Problem::SchedWeight(value)));
            }
            request.weight = value as u16;
        }
        if let Some(c) = &s.cap_percent {
            let value = *c.get_ref();
            if !(1..=100).contains(&value) {
                return Err(self.invalid(c, Problem::SchedCap(value)));
            }
            request.cap_percent = value as u8;
        }
        match (&s.budget_us, &s.period_us) {
            (None, None) => {}
            (Some(b), Some(p)) => {
                let (budget_us, period_us) = (*b.get_ref(), *p.get_ref());
                if budget_us == 0
                    || budget_us > period_us
                    || !(100..=10_000_000).contains(&period_us)
                {
                    return Err(self.invalid(
                        b,
                        Problem::SchedReservation {
                            budget_us,
                            period_us,
                        },
                    ));
                }
                request.budget_us = budget_us as u32;
                request.period_us = period_us as u32;
            }
            (Some(half), None) | (None, Some(half)) => {
                return Err(self.invalid(half, Problem::SchedReservationHalf))
            }
        }
        let credit = s.weight.is_some() || s.cap_percent.is_some();
        let rt = s.budget_us.is_some();
        if credit && rt {
            return Err(self.invalid(sched, Problem::SchedMixed));
        }
        if !credit && !rt {
            return Err(self.invalid(sched, Problem::SchedEmpty));
        }
        let (what, policy) = match (rt, s.cap_percent.is_some()) {
            (true, _) => ("a reservation", PoolPolicy::Rt),
            (false, true) => ("a cap", PoolPolicy::Credit),
            (false, false) => ("a weight", PoolPolicy::Credit),
        };
        let where_ = match cpus {
            None => Some("it has no `cpus` (the kernel would choose its CPUs)".to_owned()),
            Some(list) => {
                list.iter()
                    .find_map(|c| match pools.iter().find(|p| p.cpus.contains(c)) {
                        Some(p) if p.policy == policy => None,
                        Some(p) => Some(format!(
                            "its CPU {c} is in `{}` pool `{}`",
                            p.policy.name(),
                            p.name
                        )),
                        None => Some(format!("its CPU {c} is in no pool")),
                    })
            }
        };
        if let Some(where_) = where_ {
            return Err(self.invalid(
                sched,
                Problem::SchedWrongPool {
                    domain: d.name.get_ref().clone(),
                    what,
                    policy: policy.name(),
                    where_,
                },
            ));
        }
        Ok(request)
    }

    /// Checks the policy domains (one at boot, restarts after a policy domain, no `arg`) and
    /// gives each its argument: every CPU's policy (`pack_policies`).
    pub(crate) fn policy_domains(
        &self,
        sections: &[DomainSection],
        pool_sections: &[PoolSection],
        domains: &mut [Domain],
        pools: &[Pool],
        machine: &Machine,
    ) -> Result<(), ManifestError> {
        let policy: Vec<usize> = (0..domains.len())
            .filter(|&i| domains[i].sched_policy)
            .collect();
        let mut at_boot = 0;
        for &i in &policy {
            let flag = sections[i]
                .sched_policy
                .as_ref()
                .expect("sched_policy is set");
            if let Some(arg) = &sections[i].arg {
                return Err(self.invalid(arg, Problem::PolicyDomainArg));
            }
            let second = match domains[i].start {
                Start::AtBoot => {
                    at_boot += 1;
                    at_boot > 1
                }
                Start::AfterDestroyOf(j) => !domains[j].sched_policy,
            };
            if second {
                return Err(self.invalid(
                    flag,
                    Problem::SecondPolicyDomain {
                        domain: domains[i].name.clone(),
                    },
                ));
            }
        }
        if policy.is_empty() {
            if let Some(d) = sections.iter().find_map(|d| d.sched.as_ref()) {
                return Err(self.invalid(
                    d,
                    Problem::NoPolicyDomain {
                        what: "a domain asks for scheduling (`sched`)",
                        it: "`sched`",
                    },
                ));
            }
            if let Some(p) = pool_sections.first() {
                return Err(self.invalid(
                    &p.name,
                    Problem::NoPolicyDomain {
                        what: "the system has [[pool]] tables",
                        it: "the pools",
                    },
                ));
            }
            return Ok(());
        }
        let per_cpu: Vec<u8> = (0..machine.cpus)
            .map(|c| {
                pools
                    .iter()
                    .find(|p| p.cpus.contains(&c))
                    .map_or(mica_abi::sched::policy::NONE, |p| p.policy.code())
            })
            .collect();
        let arg = mica_abi::sched::pack_policies(&per_cpu);
        for &i in &policy {
            domains[i].arg = arg;
        }
        Ok(())
    }
}
