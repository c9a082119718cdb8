//! PSCI, emulated per domain.

use mica_abi::sysimage;

use crate::hal::Hal;
use crate::kernel::Exit;
use crate::psci;
use crate::vcpu::VcpuState;

use crate::testing::*;

#[test]
fn psci_cpu_on_affinity_info_and_cpu_off() {
    let mut d = dom("smp");
    d.vcpus = 2;
    d.cpus[0] = 0;
    d.cpus[1] = 1;
    let mut k = kernel(&[d]);
    run(&mut k, 0).unwrap();
    assert_eq!(raw(&mut k, 0, psci::VERSION, [0; 6])[0], psci::VERSION_1_1);
    assert_eq!(
        raw(&mut k, 0, psci::AFFINITY_INFO[1], [1, 0, 0, 0, 0, 0])[0],
        psci::ret::AFFINITY_OFF
    );
    assert_eq!(
        raw(&mut k, 0, psci::CPU_ON[1], [1, 0x9000_0000, 7, 0, 0, 0])[0],
        psci::ret::INVALID_ADDRESS
    );
    assert_eq!(
        raw(&mut k, 0, psci::CPU_ON[1], [5, 0x4000_0000, 7, 0, 0, 0])[0],
        psci::ret::INVALID_PARAMETERS
    );
    assert_eq!(
        raw(&mut k, 0, psci::CPU_ON[1], [1, 0x4000_0100, 7, 0, 0, 0])[0],
        psci::ret::SUCCESS
    );
    assert_eq!(
        raw(&mut k, 0, psci::CPU_ON[1], [1, 0x4000_0100, 7, 0, 0, 0])[0],
        psci::ret::ALREADY_ON
    );
    let v1 = run(&mut k, 1).unwrap();
    let ctx = &k.vcpu(v1).unwrap().context;
    assert_eq!((ctx.entry, ctx.regs[0], ctx.index), (0x4000_0100, 7, 1));
    assert_eq!(
        raw(&mut k, 0, psci::AFFINITY_INFO[1], [1, 0, 0, 0, 0, 0])[0],
        psci::ret::AFFINITY_ON
    );
    assert_eq!(raw(&mut k, 1, psci::CPU_OFF, [0; 6])[0], psci::ret::SUCCESS);
    assert_eq!(run(&mut k, 1), None);
    assert_eq!(
        raw(&mut k, 0, psci::AFFINITY_INFO[1], [1, 0, 0, 0, 0, 0])[0],
        psci::ret::AFFINITY_OFF
    );
    assert_eq!(
        raw(&mut k, 0, psci::FEATURES, [psci::CPU_ON[1], 0, 0, 0, 0, 0])[0],
        psci::ret::SUCCESS
    );
    assert_eq!(
        raw(
            &mut k,
            0,
            psci::FEATURES,
            [psci::CPU_SUSPEND[1], 0, 0, 0, 0, 0]
        )[0],
        psci::ret::NOT_SUPPORTED
    );
}

#[test]
fn system_off_via_smc_ends_only_that_domain_and_scrubs_its_memory() {
    let mut a = dom("victim");
    a.cpus[0] = 0;
    let mut b = dom("bystander");
    b.cpus[0] = 1;
    let mut k = kernel(&[a, b]);
    let free_before_boot = 0x400_0000u64;
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    let victim = id_of(&k, "victim");
    let ram = k.domain(victim).unwrap().ram.clone();
    // The guest writes a secret.
    k.hal.write_phys(ram[0].start + 100, b"secret");
    let v = k.current(0).unwrap();
    k.handle_exit(
        0,
        &Exit::Smc {
            function: psci::SYSTEM_OFF,
            args: [0; 6],
        },
    );
    assert_eq!(
        k.vcpu(v).map(|x| x.state),
        Some(VcpuState::Running),
        "still on CPU 0 until it leaves"
    );
    assert_eq!(run(&mut k, 0), None);
    assert!(k.domain(victim).is_none());
    assert!(
        k.hal
            .memory
            .borrow()
            .range(ram[0].start..ram[0].end)
            .next()
            .is_none(),
        "scrubbed"
    );
    assert!(k.domains().any(|d| d.name() == "bystander"));
    let bystander_ram: u64 = k
        .domain(id_of(&k, "bystander"))
        .unwrap()
        .ram
        .iter()
        .map(|r| r.size())
        .sum();
    assert!(k.frames.free_bytes() >= free_before_boot - bystander_ram - 0x1000 * 16);
    assert!(k
        .hal
        .console
        .borrow()
        .contains("victim (id 1) powered itself off"));
}

#[test]
fn a_successor_gets_the_scrubbed_frames_of_the_domain_it_follows() {
    let mut writer = dom("writer");
    writer.cpus[0] = 0;
    let mut reader = dom("reader");
    reader.at_boot = false;
    reader.after = 1;
    reader.memory_from = 1;
    let mut k = kernel(&[writer, reader]);
    run(&mut k, 0).unwrap();
    let w = id_of(&k, "writer");
    let ram = k.domain(w).unwrap().ram.clone();
    k.hal.write_phys(ram[0].start + 0x1000, &[0x5E; 64]);
    raw(&mut k, 0, psci::SYSTEM_OFF, [0; 6]);
    assert_eq!(run(&mut k, 0), None);
    let r = id_of(&k, "reader");
    assert_eq!(k.domain(r).unwrap().ram, ram, "the same frames");
    assert!(
        k.hal
            .memory
            .borrow()
            .range(ram[0].start + 0x1000..ram[0].end - 4096)
            .next()
            .is_none(),
        "only zeros beyond the image"
    );
}

#[test]
fn system_reset_restarts_the_domain_with_its_boot_count() {
    let (mut k, cpu) = single("phoenix");
    let id = id_of(&k, "phoenix");
    let ram = k.domain(id).unwrap().ram.clone();
    k.hal.write_phys(ram[0].start + 0x3000, b"old state");
    k.domain_mut(id).unwrap().arch = 99;
    raw(&mut k, cpu, psci::SYSTEM_RESET, [0; 6]);
    let v = run(&mut k, cpu).unwrap();
    assert_eq!(k.domain(id).unwrap().boots, 1);
    assert_eq!(k.domain(id).unwrap().arch, 1, "architectural state reset");
    let info = boot_info(&k, id);
    assert_eq!(info.boots, 1, "the boot-info page counts restarts");
    assert_eq!(
        k.vcpu(v).unwrap().context.regs[3],
        sysimage::DOMAIN_RAM_BASE + 256 * 1024 - 4096
    );
    assert!(k
        .hal
        .memory
        .borrow()
        .range(ram[0].start + 0x3000..ram[0].end - 4096)
        .next()
        .is_none());
    assert_eq!(
        k.hal.memory.borrow().get(&ram[0].start),
        Some(&1),
        "image reloaded"
    );
}
