//! Whether the domains fit the machine: memory, the control domain's pool, CPUs.

use super::*;

/// Fails if the domains' fresh memory does not fit in the machine's RAM minus the
/// hypervisor's share (a domain with `memory_from` reuses its donor's frames).
pub(crate) fn check_memory_fits(
    memory_at: Location,
    machine: &Machine,
    domains: &[Domain],
) -> Result<(), ManifestError> {
    let need_kib: u64 = domains
        .iter()
        .filter(|d| d.memory_from.is_none())
        .map(|d| {
            d.memory_kib
                + if d.control {
                    CONTROL_POOL_BYTES / 1024
                } else {
                    0
                }
        })
        .sum();
    let available_kib = (machine.memory_mib - HYPERVISOR_RESERVED_MIB) * 1024;
    if need_kib > available_kib {
        return Err(ManifestError::Invalid {
            at: memory_at,
            problem: Box::new(Problem::MemoryDoesNotFit {
                need_kib,
                memory_mib: machine.memory_mib,
                available_kib,
                least_mib: HYPERVISOR_RESERVED_MIB + need_kib.div_ceil(1024),
            }),
        });
    }
    Ok(())
}

/// The size and alignment of the block the control domain's pool needs: the kernel's buddy
/// allocator hands out power-of-two blocks aligned to their size, and the pool is one.
pub(crate) const POOL_BLOCK_MIB: u64 = CONTROL_POOL_BYTES >> 20;

/// Where QEMU `virt` puts the device tree it gives a `-kernel` boot without initrd, in MiB
/// from the start of RAM: at half the RAM, at most 128 MiB in (`hw/arm/boot.c`; measured:
/// `-m 140M` puts it at RAM + 70 MiB, `-m 1G` at RAM + 128 MiB). It takes 1 MiB; 2 MiB are
/// counted, for the alignment QEMU may add.
pub fn qemu_dtb_offset_mib(memory_mib: u64) -> u64 {
    (memory_mib / 2).min(128)
}

/// How many pool-sized, pool-aligned blocks of free RAM a machine of `memory_mib` has: not
/// the first (the hypervisor, its heap and the system image lie there) and none that holds
/// the device tree.
pub fn pool_blocks(memory_mib: u64) -> u64 {
    let dtb = qemu_dtb_offset_mib(memory_mib);
    (1..memory_mib / POOL_BLOCK_MIB)
        .map(|k| k * POOL_BLOCK_MIB)
        .filter(|&start| start + POOL_BLOCK_MIB <= memory_mib)
        .filter(|&start| dtb + 2 <= start || start + POOL_BLOCK_MIB <= dtb)
        .count() as u64
}

/// Pool-sized blocks the domains other than the control domain take whole: each domain's
/// fresh RAM comes in power-of-two chunks (the kernel's `build_domain`), and each chunk of
/// 64 MiB or more uses that many such blocks.
pub(crate) fn blocks_taken(domains: &[Domain]) -> u64 {
    domains
        .iter()
        .filter(|d| d.memory_from.is_none())
        .map(|d| (d.memory_kib >> 10) / POOL_BLOCK_MIB)
        .sum()
}

/// Fails if a system with a control domain leaves no block for its pool on a machine of
/// `memory_mib` (the boot would stop with `cannot start the system: out of memory`).
pub fn check_control_pool(memory_mib: u64, domains: &[Domain]) -> Result<(), Box<Problem>> {
    let Some(control) = domains.iter().find(|d| d.control) else {
        return Ok(());
    };
    let taken = blocks_taken(domains);
    let fits = |mib: u64| pool_blocks(mib) > taken;
    if fits(memory_mib) {
        return Ok(());
    }
    let least_mib = (memory_mib..=MAX_MACHINE_MEMORY_MIB)
        .find(|&m| fits(m))
        .unwrap_or(MAX_MACHINE_MEMORY_MIB);
    let blocks = match pool_blocks(memory_mib) {
        0 => "none".to_owned(),
        n => format!("only {n}"),
    };
    Err(Box::new(Problem::ControlPoolDoesNotFit {
        control: control.name.clone(),
        others: match taken {
            0 => String::new(),
            n => format!(" besides the {n} such block(s) the other domains' RAM takes"),
        },
        memory_mib,
        blocks,
        dtb_mib: qemu_dtb_offset_mib(memory_mib),
        least_mib,
    }))
}

/// What keeps the system from booting on a machine other than its `[machine]` (`mica run
/// --smp/--memory`, a smoke scenario's `[qemu]`): CPUs the domains or pools name that the
/// machine lacks (the kernel would move those vCPUs elsewhere), and RAM that does not
/// suffice. `what_cpus` and `what_memory` say where the values came from (`--smp 2`).
pub fn machine_problems(
    manifest: &Manifest,
    cpus: u32,
    what_cpus: &str,
    memory_mib: Option<u64>,
    what_memory: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    let missing =
        |list: &[u32]| -> Vec<u32> { list.iter().copied().filter(|c| *c >= cpus).collect() };
    let mut pinned = Vec::new();
    for d in &manifest.domains {
        if let Some(list) = &d.cpus {
            if !missing(list).is_empty() {
                pinned.push(format!("{} (cpus {list:?})", d.name));
            }
        }
    }
    for p in &manifest.pools {
        if !missing(&p.cpus).is_empty() {
            pinned.push(format!("pool {} (cpus {:?})", p.name, p.cpus));
        }
    }
    if !pinned.is_empty() {
        let highest = manifest
            .domains
            .iter()
            .filter_map(|d| d.cpus.as_ref())
            .chain(manifest.pools.iter().map(|p| &p.cpus))
            .flatten()
            .max()
            .copied()
            .unwrap_or(0);
        problems.push(format!(
            "{what_cpus} gives the machine CPUs 0 to {} but the manifest pins {} to CPUs it lacks; the kernel would move those vCPUs to other CPUs (a policy domain into the pool it manages): give at least {} CPUs (the manifest's [machine] cpus = {})",
            cpus.saturating_sub(1),
            pinned.join(", "),
            highest + 1,
            manifest.machine.cpus
        ));
    }
    if let Some(memory_mib) = memory_mib {
        let machine = Machine {
            memory_mib,
            ..manifest.machine.clone()
        };
        let at = Location::file(&manifest.path);
        let fits = if memory_mib < HYPERVISOR_RESERVED_MIB {
            Err(format!(
                "{what_memory} is less than the {HYPERVISOR_RESERVED_MIB} MiB the hypervisor keeps"
            ))
        } else {
            check_memory_fits(at, &machine, &manifest.domains)
                .map_err(|e| problem_text(&e))
                .and_then(|()| {
                    check_control_pool(memory_mib, &manifest.domains).map_err(|p| p.to_string())
                })
        };
        if let Err(text) = fits {
            // The manifest's words for `[machine] memory_mib`, said of this machine.
            let text = text.replace(
                &format!("memory_mib = {memory_mib} "),
                &format!("{memory_mib} MiB of RAM "),
            );
            let text = regex::Regex::new(r"set memory_mib to at least (\d+)")
                .map(|re| {
                    re.replace_all(&text, "give the machine at least ${1} MiB")
                        .into_owned()
                })
                .unwrap_or(text);
            problems.push(format!("{what_memory}: {text}"));
        }
    }
    problems
}
