//! Checking a parsed manifest file into a [`Manifest`]: the checker and its per-domain
//! checks (machine, domain fields, the control domain, devices); pools, start order, links
//! machine fit and guests' disks are in the submodules.

mod disks;
mod links;
mod machine;
mod pools;
mod start_order;

pub use machine::{check_control_pool, machine_problems, pool_blocks, qemu_dtb_offset_mib};

use super::*;
pub(crate) use links::*;
pub(crate) use machine::*;
use mica_abi::bootinfo::suffix;

// ---------------------------------------------------------------------------------------
// Parsing and checking.

/// `path` with `.` and `..` taken out lexically (a drive's file need not exist yet).
fn normal_path(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

/// The largest `[[drive]]`, in MiB (1 TiB).
pub const MAX_DRIVE_MIB: u64 = 1 << 20;

/// Whether `name` is 1..=31 bytes of `a-z`, `0-9`, `-`.
pub fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `binary` is a plain file name (no directory, not `.`/`..`).
pub(crate) fn is_plain_file_name(binary: &str) -> bool {
    !binary.is_empty()
        && binary != "."
        && binary != ".."
        && !binary.contains(['/', '\\'])
        && !binary.contains('\0')
}

/// The fields of a domain that need no other domain to check.
pub(crate) struct DomainBasics {
    pub(crate) elf: DomainElf,
    pub(crate) elf_at: Location,
    pub(crate) vcpus: u32,
    pub(crate) cpus: Option<Vec<u32>>,
}

/// Checks a manifest's text, keeping the file name and text for error positions.
pub(crate) struct Checker<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
}

impl Checker<'_> {
    pub(crate) fn at<T>(&self, value: &Spanned<T>) -> Location {
        Location::at_offset(self.path, self.text, value.span().start)
    }

    pub(crate) fn invalid<T>(&self, value: &Spanned<T>, problem: Problem) -> ManifestError {
        ManifestError::Invalid {
            at: self.at(value),
            problem: Box::new(problem),
        }
    }

    pub(crate) fn invalid_file(&self, problem: Problem) -> ManifestError {
        ManifestError::Invalid {
            at: Location::file(self.path),
            problem: Box::new(problem),
        }
    }

    pub(crate) fn machine(&self, m: MachineSection) -> Result<Machine, ManifestError> {
        let cpus = *m.cpus.get_ref();
        if !(1..=MAX_MACHINE_CPUS).contains(&cpus) {
            return Err(self.invalid(&m.cpus, Problem::MachineCpus(cpus)));
        }
        let memory_mib = match &m.memory_mib {
            Some(mib) => {
                let value = *mib.get_ref();
                if !(MIN_MACHINE_MEMORY_MIB..=MAX_MACHINE_MEMORY_MIB).contains(&value) {
                    return Err(self.invalid(mib, Problem::MachineMemory(value)));
                }
                value
            }
            None => DEFAULT_MACHINE_MEMORY_MIB,
        };
        Ok(Machine {
            cpus,
            memory_mib,
            boot_args: m.boot_args,
        })
    }

    /// Checks one domain on its own (names of others are resolved by the caller).
    pub(crate) fn domain_fields(
        &self,
        d: &DomainSection,
        machine: &Machine,
    ) -> Result<DomainBasics, ManifestError> {
        let name = d.name.get_ref();
        let linux_field = [&d.kernel, &d.initramfs, &d.cmdline, &d.script]
            .into_iter()
            .flatten()
            .next();
        let (elf, elf_at) = if d.kind == DomainKind::Linux {
            self.linux_fields(d)?
        } else if let Some(field) = linux_field {
            return Err(self.invalid(field, Problem::LinuxFieldElsewhere(name.clone())));
        } else {
            self.elf_fields(d)?
        };
        let memory_kib = *d.memory_kib.get_ref();
        if !memory_kib.is_multiple_of(4) || memory_kib < MIN_DOMAIN_MEMORY_KIB {
            return Err(self.invalid(&d.memory_kib, Problem::DomainMemory(memory_kib)));
        }
        let vcpus = match &d.vcpus {
            Some(v) => {
                let value = *v.get_ref();
                if !(1..=MAX_VCPUS_PER_DOMAIN as u32).contains(&value) {
                    return Err(self.invalid(v, Problem::Vcpus(value)));
                }
                value
            }
            None => 1,
        };
        let cpus = match &d.cpus {
            Some(list) => {
                let entries = list.get_ref();
                if entries.len() != vcpus as usize {
                    return Err(self.invalid(
                        list,
                        Problem::CpusLength {
                            len: entries.len(),
                            vcpus,
                        },
                    ));
                }
                for cpu in entries {
                    if *cpu.get_ref() >= machine.cpus {
                        return Err(self.invalid(
                            cpu,
                            Problem::NoSuchCpu {
                                cpu: *cpu.get_ref(),
                                machine_cpus: machine.cpus,
                            },
                        ));
                    }
                }
                Some(entries.iter().map(|c| *c.get_ref()).collect())
            }
            None => None,
        };
        Ok(DomainBasics {
            elf,
            elf_at,
            vcpus,
            cpus,
        })
    }

    /// `binary` or `path` of a Mica domain (exactly one).
    fn elf_fields(&self, d: &DomainSection) -> Result<(DomainElf, Location), ManifestError> {
        let name = d.name.get_ref();
        Ok(match (&d.binary, &d.path) {
            (Some(binary), None) => {
                if !is_plain_file_name(binary.get_ref()) {
                    return Err(
                        self.invalid(binary, Problem::BadBinaryName(binary.get_ref().clone()))
                    );
                }
                (DomainElf::Binary(binary.get_ref().clone()), self.at(binary))
            }
            (None, Some(path)) => {
                if path.get_ref().is_empty() {
                    return Err(self.invalid(path, Problem::EmptyPath));
                }
                (
                    DomainElf::Path(PathBuf::from(path.get_ref())),
                    self.at(path),
                )
            }
            (Some(_), Some(second)) => {
                return Err(self.invalid(second, Problem::ElfSource(name.clone())))
            }
            (None, None) => return Err(self.invalid(&d.name, Problem::ElfSource(name.clone()))),
        })
    }

    /// `kernel`, `initramfs`, `cmdline` and `script` of a `kind = "linux"` domain (which has
    /// no ELF).
    fn linux_fields(&self, d: &DomainSection) -> Result<(DomainElf, Location), ManifestError> {
        let name = d.name.get_ref();
        if let Some(elf) = d.binary.as_ref().or(d.path.as_ref()) {
            return Err(self.invalid(elf, Problem::LinuxElf(name.clone())));
        }
        for (flag, field) in [
            (d.control.as_ref(), "control"),
            (d.sched_policy.as_ref(), "sched_policy"),
        ] {
            if let Some(flag) = flag.filter(|f| *f.get_ref()) {
                return Err(self.invalid(
                    flag,
                    Problem::LinuxRole {
                        domain: name.clone(),
                        field,
                    },
                ));
            }
        }
        if d.mmu_off_cacheable == Some(true) {
            return Err(self.invalid(
                &d.name,
                Problem::LinuxRole {
                    domain: name.clone(),
                    field: "mmu_off_cacheable",
                },
            ));
        }
        let file = |field: &Option<Spanned<String>>| -> Result<LinuxFile, ManifestError> {
            match field {
                None => Ok(LinuxFile::Fetched),
                Some(path) if path.get_ref().is_empty() => {
                    Err(self.invalid(path, Problem::EmptyPath))
                }
                Some(path) => Ok(LinuxFile::Path(PathBuf::from(path.get_ref()))),
            }
        };
        let cmdline = match &d.cmdline {
            None => DEFAULT_CMDLINE.to_owned(),
            Some(c) => {
                let text = c.get_ref();
                if text.len() > MAX_CMDLINE || text.contains('\0') {
                    return Err(self.invalid(c, Problem::Cmdline(text.len())));
                }
                text.clone()
            }
        };
        let at = d
            .kernel
            .as_ref()
            .map_or_else(|| self.at(&d.name), |k| self.at(k));
        Ok((
            DomainElf::Linux(LinuxImage {
                kernel: file(&d.kernel)?,
                initramfs: file(&d.initramfs)?,
                cmdline,
                script: match file(&d.script)? {
                    LinuxFile::Path(path) => Some(path),
                    LinuxFile::Fetched => None,
                },
            }),
            at,
        ))
    }

    /// Resolves `after`/`memory_from` to a domain index.
    pub(crate) fn reference(
        &self,
        field: &'static str,
        value: &Spanned<String>,
        own: usize,
        names: &[&str],
    ) -> Result<usize, ManifestError> {
        match names.iter().position(|n| n == value.get_ref()) {
            Some(i) if i == own => Err(self.invalid(value, Problem::SelfReference { field })),
            Some(i) => Ok(i),
            None => Err(self.invalid(
                value,
                Problem::UnknownDomain {
                    field,
                    name: value.get_ref().clone(),
                    known: names.join(", "),
                },
            )),
        }
    }

    pub(crate) fn check(&self, file: ManifestFile) -> Result<Manifest, ManifestError> {
        let name = &file.system.name;
        if !is_valid_name(name.get_ref()) {
            return Err(self.invalid(name, Problem::BadSystemName(name.get_ref().clone())));
        }
        let memory_at = match &file.machine.memory_mib {
            Some(mib) => self.at(mib),
            None => Location::file(self.path),
        };
        let machine = self.machine(file.machine)?;
        let pools = self.pools(&file.pools, &machine)?;
        let sections = &file.domains;
        if sections.is_empty() {
            return Err(self.invalid_file(Problem::NoDomains));
        }
        if sections.len() > MAX_DOMAINS {
            return Err(self.invalid(
                &sections[MAX_DOMAINS].name,
                Problem::TooManyDomains(sections.len()),
            ));
        }
        // Names first: `after` and `memory_from` may name a later domain.
        for (i, d) in sections.iter().enumerate() {
            let n = d.name.get_ref();
            if !is_valid_name(n) {
                return Err(self.invalid(&d.name, Problem::BadDomainName(n.clone())));
            }
            if let Some(first) = sections[..i].iter().find(|e| e.name.get_ref() == n) {
                let first_line = self.at(&first.name).position.map_or(0, |p| p.line);
                return Err(self.invalid(
                    &d.name,
                    Problem::DuplicateDomain {
                        name: n.clone(),
                        first_line,
                    },
                ));
            }
        }
        let names: Vec<&str> = sections.iter().map(|d| d.name.get_ref().as_str()).collect();

        let mut domains = Vec::with_capacity(sections.len());
        for (i, d) in sections.iter().enumerate() {
            let DomainBasics {
                elf,
                elf_at,
                vcpus,
                cpus,
            } = self.domain_fields(d, &machine)?;
            let mode = d.start.as_ref().map_or(StartMode::Boot, |s| *s.get_ref());
            let start = match (mode, &d.after) {
                (StartMode::Boot, None) => Start::AtBoot,
                (StartMode::Boot, Some(after)) => {
                    return Err(self.invalid(after, Problem::AfterWithoutStart))
                }
                (StartMode::AfterDestroy, Some(after)) => {
                    Start::AfterDestroyOf(self.reference("after", after, i, &names)?)
                }
                (StartMode::AfterDestroy, None) => {
                    let at = d
                        .start
                        .as_ref()
                        .map_or_else(|| self.at(&d.name), |s| self.at(s));
                    return Err(ManifestError::Invalid {
                        at,
                        problem: Box::new(Problem::StartWithoutAfter),
                    });
                }
            };
            let memory_from = match &d.memory_from {
                None => None,
                Some(from) => {
                    let donor = self.reference("memory_from", from, i, &names)?;
                    if start != Start::AfterDestroyOf(donor) {
                        return Err(self.invalid(
                            from,
                            Problem::MemoryFromWithoutAfter {
                                memory_from: from.get_ref().clone(),
                            },
                        ));
                    }
                    let donor_kib = *sections[donor].memory_kib.get_ref();
                    if donor_kib != *d.memory_kib.get_ref() {
                        return Err(self.invalid(
                            &d.memory_kib,
                            Problem::MemoryFromSize {
                                memory_kib: *d.memory_kib.get_ref(),
                                donor: from.get_ref().clone(),
                                donor_kib,
                            },
                        ));
                    }
                    if let Some(other) = sections[..i].iter().find(|e| {
                        e.memory_from.as_ref().map(|f| f.get_ref()) == Some(from.get_ref())
                    }) {
                        return Err(self.invalid(
                            from,
                            Problem::DonorTaken {
                                receiver: other.name.get_ref().clone(),
                                donor: from.get_ref().clone(),
                            },
                        ));
                    }
                    Some(donor)
                }
            };
            let mut sched = self.sched_request(d, &cpus, &pools)?;
            if let Some(node) = &d.memory_node {
                let value = *node.get_ref();
                if value > 254 {
                    return Err(self.invalid(node, Problem::MemoryNode(value)));
                }
                // The record says node n as n + 1 (0: the node of the first vCPU's CPU).
                sched.memory_node = value as u8 + 1;
            }
            domains.push(Domain {
                name: d.name.get_ref().clone(),
                kind: d.kind,
                elf,
                elf_at,
                memory_kib: *d.memory_kib.get_ref(),
                vcpus,
                cpus,
                arg: d.arg.as_ref().map_or(0, |a| *a.get_ref()),
                start,
                memory_from,
                priority: d.priority,
                mmu_off_cacheable: d.kind != DomainKind::Linux
                    && d.mmu_off_cacheable.unwrap_or(true),
                sched,
                sched_policy: d.sched_policy.as_ref().is_some_and(|p| *p.get_ref()),
                control: d.control.as_ref().is_some_and(|c| *c.get_ref()),
            });
        }
        self.check_start_cycles(sections, &domains)?;
        self.policy_domains(sections, &file.pools, &mut domains, &pools, &machine)?;
        check_memory_fits(memory_at.clone(), &machine, &domains)?;
        check_control_pool(machine.memory_mib, &domains).map_err(|problem| {
            ManifestError::Invalid {
                at: memory_at,
                problem,
            }
        })?;
        let mut names_in = Namespaces::new(domains.len());
        let channels = self.channels(&file.channels, &names, &mut names_in)?;
        let shares = self.shares(&file.shares, &names, &domains, &mut names_in)?;
        self.links_meet(&file.channels, &file.shares, &domains)?;
        self.control_domain(sections, &domains)?;
        let (devices, drives) = self.devices(sections, &file.drives, &domains, &mut names_in)?;
        let disks = self.disks(
            sections,
            &domains,
            (&drives, &devices),
            shares.len(),
            &mut names_in,
        )?;
        let (io_channels, io_shares) = self.disk_io(
            sections,
            &disks,
            &drives,
            &domains,
            (channels.len(), &shares),
            &mut names_in,
        )?;
        let (mut channels, mut shares) = (channels, shares);
        channels.extend(io_channels);
        shares.extend(io_shares);
        Ok(Manifest {
            path: self.path.to_owned(),
            name: name.get_ref().clone(),
            arch: file.system.arch,
            machine,
            domains,
            channels,
            shares,
            pools,
            devices,
            disks,
            drives,
        })
    }

    /// At most one control domain, and a service.
    pub(crate) fn control_domain(
        &self,
        sections: &[DomainSection],
        domains: &[Domain],
    ) -> Result<(), ManifestError> {
        let mut first: Option<usize> = None;
        for (i, d) in domains.iter().enumerate().filter(|(_, d)| d.control) {
            let flag = sections[i].control.as_ref().expect("control is set");
            if d.kind != DomainKind::Service {
                return Err(self.invalid(flag, Problem::ControlGuest(d.name.clone())));
            }
            if let Some(f) = first {
                return Err(self.invalid(
                    flag,
                    Problem::SecondControlDomain {
                        domain: d.name.clone(),
                        first: domains[f].name.clone(),
                        first_line: self.line(&sections[f].name),
                    },
                ));
            }
            first = Some(i);
        }
        Ok(())
    }

    /// Checks every domain's `devices`, and the machine's `[[drive]]`s as devices of their
    /// servers: names in the domain's boot-info namespace, whole pages outside its RAM, no
    /// page or interrupt given twice.
    pub(crate) fn devices(
        &self,
        sections: &[DomainSection],
        drives: &[DriveSection],
        domains: &[Domain],
        namespaces: &mut Namespaces,
    ) -> Result<(Vec<Device>, Vec<Drive>), ManifestError> {
        let mut devices: Vec<(Device, Spanned<String>)> = Vec::new();
        let total = sections.iter().map(|d| d.devices.len()).sum::<usize>() + drives.len();
        for (i, d) in sections.iter().enumerate() {
            for dev in &d.devices {
                self.device(i, dev, domains, namespaces, &mut devices, total)?;
            }
        }
        let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
        let mut out: Vec<Drive> = Vec::new();
        for (index, drive) in drives.iter().enumerate() {
            let server = self.domain_named("server", &drive.server, &names)?;
            let name = drive.name.get_ref();
            // QEMU names each drive's backend by it, and locks each file.
            let file = self
                .path
                .parent()
                .unwrap_or(Path::new(""))
                .join(drive.file.get_ref());
            if let Some((i, other)) = out.iter().enumerate().find(|(_, d)| d.server == server) {
                return Err(self.invalid(
                    &drive.server,
                    Problem::DriveServerTwice {
                        server: names[server].to_owned(),
                        other: other.name.clone(),
                        other_line: self.line(&drives[i].name),
                    },
                ));
            }
            if let Some((i, _)) = out.iter().enumerate().find(|(_, d)| d.name == *name) {
                return Err(self.invalid(
                    &drive.name,
                    Problem::DriveNameTwice {
                        name: name.clone(),
                        other_line: self.line(&drives[i].name),
                    },
                ));
            }
            if let Some((i, other)) = out
                .iter()
                .enumerate()
                .find(|(_, d)| normal_path(&d.file) == normal_path(&file))
            {
                return Err(self.invalid(
                    &drive.file,
                    Problem::DriveFileTwice {
                        file: file.display().to_string(),
                        other: other.name.clone(),
                        other_line: self.line(&drives[i].name),
                    },
                ));
            }
            let Some(transport) = u32::try_from(index).ok().and_then(drive_transport) else {
                return Err(self.invalid(&drive.name, Problem::TooManyDrives(drives.len())));
            };
            let size_mib = *drive.size_mib.get_ref();
            if size_mib == 0 || size_mib > MAX_DRIVE_MIB {
                return Err(self.invalid(&drive.size_mib, Problem::DriveSize(name.clone())));
            }
            if drive.file.get_ref().is_empty() {
                return Err(self.invalid(&drive.file, Problem::DriveFile(name.clone())));
            }
            // The drive is a device of its server: its transport's window and interrupt.
            let span = drive.name.span();
            let section = DeviceSection {
                name: drive.name.clone(),
                address: Spanned::new(
                    span.clone(),
                    VIRT_TRANSPORT_BASE + u64::from(transport) * VIRT_TRANSPORT_SIZE,
                ),
                size: Spanned::new(span.clone(), VIRT_TRANSPORT_SIZE),
                interrupt: Some(Spanned::new(
                    span,
                    u64::from(VIRT_TRANSPORT_FIRST_INTID + transport),
                )),
            };
            self.device(server, &section, domains, namespaces, &mut devices, total)?;
            out.push(Drive {
                name: name.clone(),
                file,
                size_mib,
                server,
                transport,
            });
        }
        Ok((devices.into_iter().map(|(d, _)| d).collect(), out))
    }

    /// Checks device `dev` of domain `i` against those in `devices`, and adds it.
    fn device(
        &self,
        i: usize,
        dev: &DeviceSection,
        domains: &[Domain],
        namespaces: &mut Namespaces,
        devices: &mut Vec<(Device, Spanned<String>)>,
        total: usize,
    ) -> Result<(), ManifestError> {
        let name = dev.name.get_ref();
        // Room for NAME-irq and its terminating NUL in a boot-info name.
        if name.len() > NAME_LEN - suffix::IRQ.len() - 1 || !is_valid_name(name) {
            return Err(self.invalid(&dev.name, Problem::BadDeviceName(name.clone())));
        }
        if devices.len() == MAX_DEVICES {
            return Err(self.invalid(&dev.name, Problem::TooManyDevices(total)));
        }
        self.claim_name(namespaces, i, &domains[i].name, &dev.name)?;
        let irq_name = Spanned::new(dev.name.span(), format!("{name}{}", suffix::IRQ));
        if dev.interrupt.is_some() {
            self.claim_name(namespaces, i, &domains[i].name, &irq_name)?;
        }
        let (address, size) = (*dev.address.get_ref(), *dev.size.get_ref());
        let window = Problem::DeviceWindow {
            name: name.clone(),
            address,
            size,
        };
        let Some(end) = address.checked_add(size).filter(|_| size > 0) else {
            return Err(self.invalid(&dev.size, window));
        };
        let base = address & !(PAGE_BYTES - 1);
        let end = end.next_multiple_of(PAGE_BYTES);
        let layout = DomainLayout::new(domains[i].memory_kib * 1024);
        let (ram_start, ram_end) = (DOMAIN_RAM_BASE, layout.ram_end());
        // The kernel's rule: clear of the domain's RAM, inside its space.
        if !layout.holds_device_window(base, end - base) {
            return Err(self.invalid(
                &dev.address,
                Problem::DeviceOutsideSpace {
                    name: name.clone(),
                    domain: domains[i].name.clone(),
                    base,
                    end,
                    ram_start,
                    ram_end,
                },
            ));
        }
        if let Some((other, at)) = devices
            .iter()
            .find(|(o, _)| base < o.mmio_base + o.mmio_size && o.mmio_base < end)
        {
            return Err(self.invalid(
                &dev.address,
                Problem::DeviceOverlap {
                    name: name.clone(),
                    base,
                    end,
                    other: other.name.clone(),
                    other_line: self.line(at),
                },
            ));
        }
        let interrupt = match &dev.interrupt {
            None => 0,
            Some(irq) => {
                let intid = *irq.get_ref();
                if !(32..=1019).contains(&intid) {
                    return Err(self.invalid(irq, Problem::DeviceInterrupt(intid)));
                }
                if let Some((other, at)) = devices
                    .iter()
                    .find(|(o, _)| u64::from(o.interrupt) == intid)
                {
                    return Err(self.invalid(
                        irq,
                        Problem::DeviceInterruptTaken {
                            intid,
                            other: other.name.clone(),
                            other_line: self.line(at),
                        },
                    ));
                }
                intid as u32
            }
        };
        devices.push((
            Device {
                name: name.clone(),
                domain: i,
                mmio_base: base,
                mmio_size: end - base,
                interrupt,
            },
            dev.name.clone(),
        ));
        Ok(())
    }
}
