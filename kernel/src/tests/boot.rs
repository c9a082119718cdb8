//! Boot: instantiating the system image's domains.

use std::vec::Vec;

use mica_abi::sysimage;

use crate::vcpu::VcpuState;

use crate::testing::*;

#[test]
fn boot_creates_domains_maps_ram_loads_images_and_starts_vcpu0() {
    let mut a = dom("alpha");
    a.cpus[0] = 1;
    a.arg = 42;
    let k = kernel(&[a, dom("beta")]);
    let alpha = k.domain(id_of(&k, "alpha")).unwrap();
    assert_eq!(alpha.ram.iter().map(|r| r.size()).sum::<u64>(), 256 * 1024);
    assert_eq!(alpha.stage2.pages.len(), 64);
    let pa = alpha.mappings.translate(sysimage::DOMAIN_RAM_BASE).unwrap();
    assert_eq!(k.hal.memory.borrow().get(&pa), Some(&1));
    assert_eq!(k.hal.memory.borrow().get(&(pa + 4)), Some(&b'c'));
    let v0 = k.vcpu(alpha.vcpus[0]).unwrap();
    assert_eq!(v0.cpu, 1);
    assert_eq!(v0.state, VcpuState::Runnable);
    assert_eq!(v0.context.entry, sysimage::DOMAIN_RAM_BASE);
    let info_ipa = sysimage::DOMAIN_RAM_BASE + 256 * 1024 - 4096;
    assert_eq!(
        v0.context.regs,
        [42, sysimage::DOMAIN_RAM_BASE, 256 * 1024 - 4096, info_ipa]
    );
    // The boot-info page is in the last page of RAM.
    let info_pa = alpha.mappings.translate(info_ipa).unwrap();
    let magic: Vec<u8> = (0..8)
        .map(|i| *k.hal.memory.borrow().get(&(info_pa + i)).unwrap_or(&0))
        .collect();
    assert_eq!(magic, b"MICABOOT");
    assert!(v0.context.cacheable);
    // The two domains got disjoint frames.
    let beta = k.domain(id_of(&k, "beta")).unwrap();
    assert!(!alpha
        .ram
        .iter()
        .any(|a| beta.ram.iter().any(|b| a.overlaps(b))));
    assert!(k.hal.console.borrow().contains("domain alpha (id"));
}

#[test]
fn a_domain_that_does_not_fit_is_reported_and_the_rest_start() {
    let mut huge = dom("huge");
    huge.kib = 1 << 20; // 1 GiB, more than the 64 MiB of RAM
    let k = kernel(&[huge, dom("small")]);
    assert!(k
        .hal
        .console
        .borrow()
        .contains("cannot create domain huge: out of memory"));
    assert!(k.domains().any(|d| d.name() == "small"));
    assert!(!k.domains().any(|d| d.name() == "huge"));
}
