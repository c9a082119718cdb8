//! The vGIC model's tests: register semantics, list-register traffic and the bookkeeping
//! after every step.

use super::*;

const GRP1: u32 = gicd::CTLR_ENABLE_GRP1;

fn sgi_frame(vcpu: usize, offset: u64) -> u64 {
    vcpu as u64 * REDISTRIBUTOR_STRIDE + SGI_FRAME + offset
}

fn rd_frame(vcpu: usize, offset: u64) -> u64 {
    vcpu as u64 * REDISTRIBUTOR_STRIDE + offset
}

/// A vGIC after the distributor and redistributor steps of Linux's GICv3 driver
/// (gic_dist_init, gic_cpu_init): everything Group 1, priority 0xA0, SPIs level and
/// routed to vCPU 0, nothing enabled, distributor enabled.
fn linux_booted(vcpus: usize, spis: usize) -> Vgic {
    let mut gic = Vgic::new(vcpus, spis).unwrap();
    let _ = gic.distributor_write(gicd::CTLR, 4, 0);
    assert_eq!(
        gic.distributor_read(gicd::CTLR, 4) as u32 & gicd::CTLR_RWP,
        0
    );
    let lines = (gic.distributor_read(gicd::TYPER, 4) & 0x1F) as u32;
    let intids = 32 * (lines + 1);
    for base in (32..intids).step_by(32) {
        let reg = u64::from(base / 32) * 4;
        let _ = gic.distributor_write(gicd::IGROUPR + reg, 4, 0xFFFF_FFFF);
        let _ = gic.distributor_write(gicd::ICACTIVER + reg, 4, 0xFFFF_FFFF);
        let _ = gic.distributor_write(gicd::ICENABLER + reg, 4, 0xFFFF_FFFF);
    }
    for base in (32..intids).step_by(16) {
        let _ = gic.distributor_write(gicd::ICFGR + u64::from(base / 16) * 4, 4, 0);
    }
    for base in (32..intids).step_by(4) {
        let _ = gic.distributor_write(gicd::IPRIORITYR + u64::from(base), 4, 0xA0A0_A0A0);
    }
    for intid in 32..intids {
        let _ = gic.distributor_write(gicd::IROUTER + 8 * u64::from(intid), 8, vcpu_affinity(0));
    }
    let _ = gic.distributor_write(gicd::CTLR, 4, 0x13);
    for v in 0..vcpus {
        let _ = gic.redistributor_write(rd_frame(v, gicr::WAKER), 4, 0);
        let _ = gic.redistributor_write(sgi_frame(v, gicd::ICACTIVER), 4, 0xFFFF_FFFF);
        let _ = gic.redistributor_write(sgi_frame(v, gicd::ICENABLER), 4, 0xFFFF_0000);
        let _ = gic.redistributor_write(sgi_frame(v, gicd::ISENABLER), 4, 0x0000_FFFF);
        let _ = gic.redistributor_write(sgi_frame(v, gicd::IGROUPR), 4, 0xFFFF_FFFF);
        for reg in 0..8 {
            let _ =
                gic.redistributor_write(sgi_frame(v, gicd::IPRIORITYR + 4 * reg), 4, 0xA0A0_A0A0);
        }
    }
    gic
}

fn enable(gic: &mut Vgic, vcpu: usize, intid: u32) {
    let bit = 1u64 << (intid % 32);
    let kick = if intid < FIRST_SPI {
        gic.redistributor_write(sgi_frame(vcpu, gicd::ISENABLER), 4, bit)
    } else {
        gic.distributor_write(gicd::ISENABLER + u64::from(intid / 32) * 4, 4, bit)
    };
    assert!(!kick.is_empty());
}

fn set_priority(gic: &mut Vgic, vcpu: usize, intid: u32, priority: u8) {
    if intid < FIRST_SPI {
        let _ = gic.redistributor_write(
            sgi_frame(vcpu, gicd::IPRIORITYR + u64::from(intid)),
            1,
            priority.into(),
        );
    } else {
        let _ = gic.distributor_write(gicd::IPRIORITYR + u64::from(intid), 1, priority.into());
    }
}

fn lr_intid(value: u64) -> u32 {
    (value & lr::VINTID_MASK) as u32
}

fn lr_priority(value: u64) -> u8 {
    (value >> lr::PRIORITY_SHIFT) as u8
}

/// The virtual CPU interface: acknowledges the highest-priority pending list register
/// (ties: lowest INTID), which becomes active, then (if `eoi`) deactivates it.
fn guest_takes_one(lrs: &mut [u64], eoi: bool) -> Option<u32> {
    let (slot, _) = lrs
        .iter()
        .enumerate()
        .filter(|(_, v)| *v & lr::PENDING != 0 && *v & lr::ACTIVE == 0)
        .map(|(n, v)| (n, (lr_priority(*v), lr_intid(*v))))
        .min_by_key(|(_, key)| *key)?;
    let intid = lr_intid(lrs[slot]);
    lrs[slot] = (lrs[slot] & !lr::STATE_MASK) | lr::ACTIVE;
    if eoi {
        lrs[slot] &= !lr::STATE_MASK;
    }
    Some(intid)
}

fn elrsr(lrs: &[u64]) -> u32 {
    lrs.iter().enumerate().fold(0, |acc, (n, v)| {
        acc | u32::from(v & lr::STATE_MASK == 0) << n
    })
}

fn fill(gic: &mut Vgic, vcpu: usize, lrs: &mut [u64]) -> FillOutcome {
    let empty = elrsr(lrs);
    gic.fill_list_registers(vcpu, lrs, empty).unwrap()
}

/// Runs fill / guest / sync cycles on `vcpu` until nothing is left; returns the INTIDs
/// in the order the guest took them.
fn deliver_all(gic: &mut Vgic, vcpu: usize, lrs: &mut [u64]) -> Vec<u32> {
    let mut taken = Vec::new();
    for _ in 0..1000 {
        let outcome = fill(gic, vcpu, lrs);
        let Some(intid) = guest_takes_one(lrs, true) else {
            assert!(!outcome.underflow);
            break;
        };
        taken.push(intid);
        gic.sync_from_list_registers(vcpu, lrs).unwrap();
    }
    taken
}

#[test]
fn linux_init_reads_identification_and_topology() {
    let gic = linux_booted(2, 64);
    let typer = gic.distributor_read(gicd::TYPER, 4);
    assert_eq!(typer & 0x1F, 2, "ITLinesNumber: 96 INTIDs");
    assert_eq!((typer >> 19) & 0x1F, 9, "IDbits: 10");
    assert_eq!(typer & (1 << 17), 0, "no LPIs");
    assert_eq!(typer & (1 << 16), 0, "no MBIS");
    assert_eq!(gic.distributor_read(gicd::PIDR2, 4) & 0xF0, 0x30);
    assert_eq!(gic.distributor_read(gicd::IIDR, 4), u64::from(IIDR_VALUE));
    let ctlr = gic.distributor_read(gicd::CTLR, 4) as u32;
    assert_eq!(
        ctlr,
        gicd::CTLR_ARE | gicd::CTLR_DS | gicd::CTLR_ENABLE_GRP1 | gicd::CTLR_ENABLE_GRP0
    );

    // Linux's redistributor walk: PIDR2, then TYPER as 64 bits, until Last.
    let mut frame = 0;
    let mut seen = Vec::new();
    loop {
        assert_eq!(gic.redistributor_read(frame + gicr::PIDR2, 4) & 0xF0, 0x30);
        let typer = gic.redistributor_read(frame + gicr::TYPER, 8);
        seen.push(((typer >> 32), (typer >> 8) & 0xFFFF));
        assert_eq!(
            gic.redistributor_read(frame + gicr::TYPER, 4),
            typer & 0xFFFF_FFFF
        );
        assert_eq!(
            gic.redistributor_read(frame + gicr::TYPER + 4, 4),
            typer >> 32
        );
        if typer & gicr::TYPER_LAST != 0 {
            break;
        }
        frame += REDISTRIBUTOR_STRIDE;
    }
    assert_eq!(seen, vec![(0, 0), (1, 1)]);
    assert_eq!(gic.redistributor_region_size(), 2 * REDISTRIBUTOR_STRIDE);
    assert_eq!(
        gic.redistributor_read(2 * REDISTRIBUTOR_STRIDE + gicr::PIDR2, 4),
        0
    );
    assert_eq!(vmpidr(1), 0x8000_0001);
}

#[test]
fn waker_children_asleep_mirrors_processor_sleep() {
    let mut gic = Vgic::new(1, 32).unwrap();
    let sleeping = u64::from(gicr::WAKER_PROCESSOR_SLEEP | gicr::WAKER_CHILDREN_ASLEEP);
    assert_eq!(gic.redistributor_read(gicr::WAKER, 4), sleeping);
    let _ = gic.redistributor_write(gicr::WAKER, 4, 0);
    assert_eq!(gic.redistributor_read(gicr::WAKER, 4), 0);
    let _ = gic.redistributor_write(gicr::WAKER, 4, u64::from(gicr::WAKER_PROCESSOR_SLEEP));
    assert_eq!(gic.redistributor_read(gicr::WAKER, 4), sleeping);
    assert_eq!(gic.redistributor_read(gicr::CTLR, 4), 0, "RWP reads 0");
}

#[test]
fn set_and_clear_families_for_spis_and_private_interrupts() {
    let families = [
        (gicd::ISENABLER, gicd::ICENABLER),
        (gicd::ISPENDR, gicd::ICPENDR),
        (gicd::ISACTIVER, gicd::ICACTIVER),
    ];
    for (set, clear) in families {
        let mut gic = Vgic::new(2, 64).unwrap();
        // SPIs 33 and 40 in register 1.
        let _ = gic.distributor_write(set + 4, 4, 1 << 1 | 1 << 8);
        assert_eq!(gic.distributor_read(set + 4, 4), 1 << 1 | 1 << 8);
        check_consistency(&gic);
        assert_eq!(gic.distributor_read(clear + 4, 4), 1 << 1 | 1 << 8);
        // Zero bits change nothing.
        let _ = gic.distributor_write(set + 4, 4, 0);
        let _ = gic.distributor_write(clear + 4, 4, 0);
        assert_eq!(gic.distributor_read(set + 4, 4), 1 << 1 | 1 << 8);
        let _ = gic.distributor_write(clear + 4, 4, 1 << 1);
        assert_eq!(gic.distributor_read(set + 4, 4), 1 << 8);
        // Register 0 (INTIDs 0-31) is RAZ/WI in the distributor with ARE = 1, and
        // register 3 is past the 64 SPIs.
        let _ = gic.distributor_write(set, 4, 0xFFFF_FFFF);
        let _ = gic.distributor_write(set + 12, 4, 0xFFFF_FFFF);
        assert_eq!(gic.distributor_read(set, 4), 0);
        assert_eq!(gic.distributor_read(set + 12, 4), 0);
        // Banked per vCPU in the SGI frame.
        let _ = gic.redistributor_write(sgi_frame(1, set), 4, 1 << 27 | 1 << 3);
        check_consistency(&gic);
        assert_eq!(
            gic.redistributor_read(sgi_frame(1, set), 4),
            1 << 27 | 1 << 3
        );
        assert_eq!(gic.redistributor_read(sgi_frame(0, set), 4), 0);
        let _ = gic.redistributor_write(sgi_frame(1, clear), 4, 1 << 3);
        assert_eq!(gic.redistributor_read(sgi_frame(1, clear), 4), 1 << 27);
        // Only register 0 exists in the SGI frame.
        assert_eq!(gic.redistributor_read(sgi_frame(1, set + 4), 4), 0);
    }
}

#[test]
fn groups_and_configuration() {
    let mut gic = Vgic::new(1, 32).unwrap();
    assert_eq!(
        gic.distributor_read(gicd::IGROUPR + 4, 4),
        0xFFFF_FFFF,
        "reset: Group 1"
    );
    let _ = gic.distributor_write(gicd::IGROUPR + 4, 4, 0xFFFF_FFFE);
    assert_eq!(gic.distributor_read(gicd::IGROUPR + 4, 4), 0xFFFF_FFFE);
    // SGIs are edge and read-only; PPIs and SPIs are programmable.
    assert_eq!(
        gic.redistributor_read(sgi_frame(0, gicd::ICFGR), 4),
        0xAAAA_AAAA
    );
    let _ = gic.redistributor_write(sgi_frame(0, gicd::ICFGR), 4, 0);
    assert_eq!(
        gic.redistributor_read(sgi_frame(0, gicd::ICFGR), 4),
        0xAAAA_AAAA
    );
    assert_eq!(gic.redistributor_read(sgi_frame(0, gicd::ICFGR + 4), 4), 0);
    let _ = gic.redistributor_write(sgi_frame(0, gicd::ICFGR + 4), 4, 0x2 << 22);
    assert_eq!(
        gic.redistributor_read(sgi_frame(0, gicd::ICFGR + 4), 4),
        0x2 << 22
    );
    // SPI 33 (ICFGR2, field 1) edge; the RES0 bit 0 of each field stays clear.
    let _ = gic.distributor_write(gicd::ICFGR + 8, 4, 0xF << 2);
    assert_eq!(
        gic.distributor_read(gicd::ICFGR + 8, 4),
        0x2 << 2 | 0x2 << 4
    );
    assert_eq!(
        gic.distributor_read(gicd::ICFGR, 4),
        0,
        "SGIs: RAZ in the distributor"
    );
    assert_eq!(gic.distributor_read(gicd::IGRPMODR + 4, 4), 0);
}

#[test]
fn priorities_by_byte_and_by_word() {
    let mut gic = Vgic::new(1, 32).unwrap();
    let _ = gic.distributor_write(gicd::IPRIORITYR + 32, 4, 0x4030_2010);
    assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 33, 1), 0x20);
    assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 35, 1), 0x40);
    let _ = gic.distributor_write(gicd::IPRIORITYR + 34, 1, 0xEE);
    assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 32, 4), 0x40EE_2010);
    // Halfword and unaligned accesses are RAZ/WI.
    let _ = gic.distributor_write(gicd::IPRIORITYR + 32, 2, 0xFFFF);
    assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 32, 2), 0);
    let _ = gic.distributor_write(gicd::IPRIORITYR + 33, 4, 0xFFFF_FFFF);
    assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 32, 4), 0x40EE_2010);
    // INTIDs 0-31 are RAZ/WI in the distributor, banked in the SGI frame.
    let _ = gic.distributor_write(gicd::IPRIORITYR, 4, 0xFFFF_FFFF);
    assert_eq!(gic.distributor_read(gicd::IPRIORITYR, 4), 0);
    let _ = gic.redistributor_write(sgi_frame(0, gicd::IPRIORITYR + 24), 4, 0x8070_6050);
    let _ = gic.redistributor_write(sgi_frame(0, gicd::IPRIORITYR + 27), 1, 0x10);
    assert_eq!(
        gic.redistributor_read(sgi_frame(0, gicd::IPRIORITYR + 24), 4),
        0x1070_6050
    );
    assert_eq!(
        gic.redistributor_read(sgi_frame(0, gicd::IPRIORITYR + 26), 1),
        0x70
    );
    // Beyond the SPIs.
    assert_eq!(gic.distributor_read(gicd::IPRIORITYR + 64, 4), 0);
}

#[test]
fn spis_go_where_irouter_says() {
    let mut gic = linux_booted(3, 64);
    enable(&mut gic, 0, 50);
    // Route SPI 50 to vCPU 2 with a 64-bit write; read back in both widths.
    let kick = gic.distributor_write(gicd::IROUTER + 8 * 50, 8, vcpu_affinity(2));
    assert!(
        kick.contains(0) && kick.contains(2),
        "old and new targets: {kick:?}"
    );
    assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 50, 8), 2);
    assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 50, 4), 2);
    assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 50 + 4, 4), 0);
    assert_eq!(gic.set_pending(50, 0).unwrap().bits(), 1 << 2);
    let mut lrs = [0u64; 4];
    assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 0);
    assert_eq!(gic.fill_list_registers(2, &mut lrs, 0xF).unwrap().valid, 1);
    assert_eq!(lr_intid(lrs[0]), 50);
    assert_eq!(lrs[0] & lr::STATE_MASK, lr::PENDING);
    assert!(gic.has_deliverable(2));
    assert!(!gic.has_deliverable(0));

    // An affinity no vCPU has: pending, but delivered nowhere until rerouted.
    let _ = gic.distributor_write(gicd::IROUTER + 8 * 51, 8, 0x0000_0100);
    enable(&mut gic, 0, 51);
    let _ = gic.set_pending(51, 0).unwrap();
    assert!(!gic.has_deliverable(0));
    assert!(!gic.has_deliverable(1));
    let mut lrs = [0u64; 4];
    assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 0);
    assert_eq!(gic.fill_list_registers(1, &mut lrs, 0xF).unwrap().valid, 0);
    // Interrupt_Routing_Mode = 1: any vCPU, here vCPU 0. Aff3 and RES0 bits are dropped.
    let any = 0xFF_0000_0000 | gicd::IROUTER_ANY;
    let _ = gic.distributor_write(gicd::IROUTER + 8 * 51, 8, any);
    assert_eq!(
        gic.distributor_read(gicd::IROUTER + 8 * 51, 8),
        gicd::IROUTER_ANY
    );
    assert!(gic.has_deliverable(0));
    assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 1);
    assert_eq!(lr_intid(lrs[0]), 51);
    // 32-bit halves.
    let _ = gic.distributor_write(gicd::IROUTER + 8 * 52, 4, 1);
    let _ = gic.distributor_write(gicd::IROUTER + 8 * 52 + 4, 4, 0xFF);
    assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 52, 8), 1);
    // IROUTER of an SGI/PPI or past the SPIs: RAZ/WI.
    let _ = gic.distributor_write(gicd::IROUTER + 8 * 5, 8, 1);
    assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 5, 8), 0);
    assert_eq!(gic.distributor_read(gicd::IROUTER + 8 * 96, 8), 0);
}

#[test]
fn sgi1r_decodes_targets_affinity_and_irm() {
    let request = SgiRequest::decode(0x00AB_1002_0503_0006);
    assert_eq!(
        request,
        SgiRequest {
            intid: 5,
            all_but_self: false,
            affinity: 0xAB_0002_0300,
            range_selector: 1,
            target_list: 6,
        }
    );
    assert!(request.names(0xAB_0002_0311));
    assert!(request.names(0xAB_0002_0312));
    assert!(!request.names(0xAB_0002_0310));
    assert!(!request.names(0xAB_0002_0301));
    assert!(!request.names(0x0002_0311));

    let mut gic = linux_booted(4, 32);
    // INTID 3 to vCPUs 1 and 3 (TargetList 0b1010, Aff1-3 = 0, RS = 0).
    let kick = gic.write_sgi(0, 3 << 24 | 0b1010, true);
    assert_eq!(kick.iter().collect::<Vec<_>>(), vec![1, 3]);
    for v in 0..4 {
        let pending = gic.redistributor_read(sgi_frame(v, gicd::ISPENDR), 4);
        assert_eq!(pending, if v % 2 == 1 { 1 << 3 } else { 0 });
    }
    // IRM: everyone but the sender.
    let kick = gic.write_sgi(2, 1 << 40 | 7 << 24, true);
    assert_eq!(kick.bits(), 0b1011);
    // Another Aff1, or an RS past our vCPUs: nobody.
    assert!(gic.write_sgi(0, 1 << 16 | 1 << 24 | 1, true).is_empty());
    assert!(gic.write_sgi(0, 1 << 44 | 1, true).is_empty());
    // SGI0R reaches only SGIs configured as Group 0.
    assert!(gic.write_sgi(0, 9 << 24 | 0b10, false).is_empty());
    let _ = gic.redistributor_write(sgi_frame(1, gicd::IGROUPR), 4, !(1u64 << 9) & 0xFFFF_FFFF);
    let _ = gic.distributor_write(gicd::CTLR, 4, 0x3);
    assert_eq!(gic.write_sgi(0, 9 << 24 | 0b10, false).bits(), 0b10);
    let mut lrs = [0u64; 4];
    let _ = gic.fill_list_registers(1, &mut lrs, 0xF).unwrap();
    let sgi9 = lrs.iter().find(|v| lr_intid(**v) == 9).copied().unwrap();
    assert_eq!(
        sgi9 & lr::GROUP1,
        0,
        "Group 0 is signalled as a virtual FIQ"
    );
}

#[test]
fn list_register_encoding() {
    let mut gic = linux_booted(1, 32);
    enable(&mut gic, 0, 40);
    set_priority(&mut gic, 0, 40, 0x80);
    let _ = gic.set_pending(40, 0).unwrap();
    let mut lrs = [0u64; 4];
    let outcome = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
    assert_eq!(
        outcome,
        FillOutcome {
            valid: 1,
            underflow: false
        }
    );
    assert_eq!(outcome.ich_hcr(), hcr::EN);
    assert_eq!(lrs[0], lr::PENDING | lr::GROUP1 | 0x80 << 48 | 40);
    assert_eq!(lrs[0], 0x5080_0000_0000_0028);

    // Hardware-linked: HW and pINTID, no EOI bit.
    let mut gic = linux_booted(1, 32);
    enable(&mut gic, 0, VIRTUAL_TIMER_PPI);
    gic.link_hardware(VIRTUAL_TIMER_PPI, 0, Some(27)).unwrap();
    let _ = gic.set_pending(VIRTUAL_TIMER_PPI, 0).unwrap();
    let mut lrs = [0u64; 4];
    let _ = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
    assert_eq!(
        lrs[0],
        lr::PENDING | lr::HW | lr::GROUP1 | 0xA0 << 48 | 27 << 32 | 27
    );
    assert_eq!(
        gic.link_hardware(VIRTUAL_TIMER_PPI, 0, Some(1020)),
        Err(VgicError::BadPhysicalInterrupt(1020))
    );
    assert_eq!(
        gic.link_hardware(3, 0, Some(40)),
        Err(VgicError::NoSuchInterrupt(3))
    );
}

#[test]
fn ten_pending_through_four_list_registers_arrive_once_in_priority_order() {
    let mut gic = linux_booted(2, 64);
    let interrupts: [(u32, u8); 10] = [
        (40, 0xA0),
        (33, 0x20),
        (27, 0xA0),
        (1, 0x60),
        (90, 0x20),
        (45, 0xF0),
        (20, 0x60),
        (60, 0x00),
        (34, 0xA0),
        (5, 0xF0),
    ];
    for (intid, priority) in interrupts {
        enable(&mut gic, 0, intid);
        set_priority(&mut gic, 0, intid, priority);
        let kick = gic.set_pending(intid, 0).unwrap();
        assert!(kick.contains(0));
    }
    let mut lrs = [0u64; 4];
    let first = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
    assert!(first.underflow, "10 pending, 4 list registers");
    assert_eq!(first.ich_hcr(), hcr::EN | hcr::UIE);
    assert_eq!(first.valid, 0xF);
    let listed: Vec<u32> = lrs.iter().map(|v| lr_intid(*v)).collect();
    assert_eq!(listed, vec![60, 33, 90, 1]);
    gic.sync_from_list_registers(0, &lrs).unwrap();

    let taken = deliver_all(&mut gic, 0, &mut lrs);
    let mut expected = interrupts;
    expected.sort_by_key(|&(intid, priority)| (priority, intid));
    let expected: Vec<u32> = expected.iter().map(|&(intid, _)| intid).collect();
    assert_eq!(taken, expected);
    assert!(!gic.has_deliverable(0));
    assert_eq!(
        gic.fill_list_registers(0, &mut lrs, 0xF).unwrap(),
        FillOutcome::default()
    );
}

#[test]
fn the_guest_may_take_several_per_run() {
    let mut gic = linux_booted(1, 64);
    for intid in 32..52 {
        enable(&mut gic, 0, intid);
        set_priority(&mut gic, 0, intid, (60 - intid) as u8);
        let _ = gic.set_pending(intid, 0).unwrap();
    }
    let mut lrs = [0u64; 4];
    let mut taken = Vec::new();
    for _ in 0..100 {
        let outcome = fill(&mut gic, 0, &mut lrs);
        // The guest drains list registers until the underflow maintenance interrupt.
        let mut took = false;
        while lrs.iter().filter(|v| *v & lr::STATE_MASK != 0).count()
            > usize::from(outcome.underflow)
        {
            match guest_takes_one(&mut lrs, true) {
                Some(intid) => {
                    taken.push(intid);
                    took = true;
                }
                None => break,
            }
        }
        gic.sync_from_list_registers(0, &lrs).unwrap();
        if !took {
            break;
        }
    }
    assert_eq!(taken, (32..52).rev().collect::<Vec<_>>());
}

#[test]
fn a_better_interrupt_evicts_a_listed_pending_one() {
    let mut gic = linux_booted(1, 64);
    for intid in 40..44 {
        enable(&mut gic, 0, intid);
        set_priority(&mut gic, 0, intid, 0xC0);
        let _ = gic.set_pending(intid, 0).unwrap();
    }
    let mut lrs = [0u64; 4];
    assert!(!gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().underflow);
    // The guest acknowledges 40 and keeps it active; then 50 arrives at a higher priority.
    assert_eq!(guest_takes_one(&mut lrs, false), Some(40));
    gic.sync_from_list_registers(0, &lrs).unwrap();
    enable(&mut gic, 0, 50);
    set_priority(&mut gic, 0, 50, 0x10);
    let _ = gic.set_pending(50, 0).unwrap();
    let outcome = fill(&mut gic, 0, &mut lrs);
    assert!(outcome.underflow, "43 was evicted and waits");
    let mut listed: Vec<u32> = lrs.iter().map(|v| lr_intid(*v)).collect();
    listed.sort_unstable();
    assert_eq!(listed, vec![40, 41, 42, 50]);
    let active = lrs.iter().find(|v| lr_intid(**v) == 40).unwrap();
    assert_eq!(active & lr::STATE_MASK, lr::ACTIVE, "the active one stays");
    assert_eq!(
        gic.distributor_read(gicd::ISPENDR + 4, 4) & (1 << 11),
        1 << 11,
        "43 still pending"
    );
    // Finish 40, then everything else arrives in order, 43 last.
    let slot = lrs.iter().position(|v| lr_intid(*v) == 40).unwrap();
    lrs[slot] = 0;
    gic.sync_from_list_registers(0, &lrs).unwrap();
    assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![50, 41, 42, 43]);
}

#[test]
fn a_disabled_interrupt_waits_until_enabled() {
    let mut gic = linux_booted(1, 32);
    let _ = gic.set_pending(44, 0).unwrap();
    let mut lrs = [0u64; 4];
    assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 0);
    assert!(!gic.has_deliverable(0));
    enable(&mut gic, 0, 44);
    assert!(gic.has_deliverable(0));
    // Listed, then disabled before the guest runs: withdrawn, still pending.
    assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 1);
    let _ = gic.distributor_write(gicd::ICENABLER + 4, 4, 1 << 12);
    assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 0);
    assert_eq!(lrs, [0; 4]);
    assert_eq!(gic.distributor_read(gicd::ISPENDR + 4, 4), 1 << 12);
    // Same when it was listed and the guest ran without taking it.
    enable(&mut gic, 0, 44);
    assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 1);
    gic.sync_from_list_registers(0, &lrs).unwrap();
    let _ = gic.distributor_write(gicd::ICENABLER + 4, 4, 1 << 12);
    assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 0);
    // A disabled distributor group delivers nothing either.
    enable(&mut gic, 0, 44);
    let _ = gic.distributor_write(gicd::CTLR, 4, 0);
    assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 0);
    let _ = gic.distributor_write(gicd::CTLR, 4, u64::from(GRP1));
    assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![44]);
}

#[test]
fn clearing_pending_withdraws_a_listed_interrupt() {
    let mut gic = linux_booted(1, 32);
    enable(&mut gic, 0, 2);
    let _ = gic.write_sgi(0, 2 << 24 | 1, true);
    let mut lrs = [0u64; 4];
    assert_eq!(gic.fill_list_registers(0, &mut lrs, 0xF).unwrap().valid, 1);
    gic.sync_from_list_registers(0, &lrs).unwrap();
    assert_eq!(
        gic.redistributor_read(sgi_frame(0, gicd::ISPENDR), 4),
        1 << 2
    );
    let _ = gic.redistributor_write(sgi_frame(0, gicd::ICPENDR), 4, 1 << 2);
    assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 0);
    assert!(deliver_all(&mut gic, 0, &mut lrs).is_empty());
}

#[test]
fn an_edge_while_active_makes_it_pending_and_active() {
    let mut gic = linux_booted(1, 64);
    enable(&mut gic, 0, 70);
    let _ = gic.distributor_write(gicd::ICFGR + 4 * (70 / 16), 4, 0x2 << (2 * (70 % 16)));
    let _ = gic.set_pending(70, 0).unwrap();
    let mut lrs = [0u64; 4];
    let _ = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
    assert_eq!(guest_takes_one(&mut lrs, false), Some(70));
    gic.sync_from_list_registers(0, &lrs).unwrap();
    assert_eq!(gic.distributor_read(gicd::ISACTIVER + 8, 4), 1 << 6);
    let _ = gic.set_pending(70, 0).unwrap();
    let _ = fill(&mut gic, 0, &mut lrs);
    assert_eq!(
        lrs[0] & lr::STATE_MASK,
        lr::STATE_MASK,
        "pending and active"
    );
    // EOI of the first leaves the second pending; then it is taken once more.
    lrs[0] = (lrs[0] & !lr::STATE_MASK) | lr::PENDING;
    gic.sync_from_list_registers(0, &lrs).unwrap();
    assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![70]);
}

#[test]
fn filling_twice_without_running_loses_nothing() {
    let mut gic = linux_booted(1, 32);
    enable(&mut gic, 0, 36);
    let _ = gic.set_pending(36, 0).unwrap();
    let mut lrs = [0u64; 4];
    let _ = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
    let again = fill(&mut gic, 0, &mut lrs);
    assert_eq!(again.valid, 1);
    assert_eq!(lrs[0] & lr::STATE_MASK, lr::PENDING);
    assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![36]);
}

#[test]
fn a_level_interrupt_is_pending_while_its_line_is_asserted() {
    let mut gic = linux_booted(1, 32);
    enable(&mut gic, 0, VIRTUAL_TIMER_PPI);
    let _ = gic.set_level(VIRTUAL_TIMER_PPI, 0, true).unwrap();
    let mut lrs = [0u64; 4];
    let _ = gic.fill_list_registers(0, &mut lrs, 0xF).unwrap();
    assert_eq!(
        lrs[0] & (lr::EOI | lr::PENDING),
        lr::EOI | lr::PENDING,
        "resample on EOI"
    );
    assert_eq!(guest_takes_one(&mut lrs, true), Some(VIRTUAL_TIMER_PPI));
    gic.sync_from_list_registers(0, &lrs).unwrap();
    // Still asserted: listed again, and still asking to be told of the EOI.
    let _ = fill(&mut gic, 0, &mut lrs);
    assert_eq!(lrs[0] & lr::EOI, lr::EOI, "EOI request kept across refills");
    assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 1);
    // The line drops before the guest takes it: withdrawn.
    gic.sync_from_list_registers(0, &lrs).unwrap();
    let _ = gic.set_level(VIRTUAL_TIMER_PPI, 0, false).unwrap();
    assert_eq!(fill(&mut gic, 0, &mut lrs).valid, 0);
    assert!(!gic.has_deliverable(0));
    // ISPENDR on a level interrupt latches until ICPENDR or acknowledgement.
    let _ = gic.redistributor_write(sgi_frame(0, gicd::ISPENDR), 4, 1 << VIRTUAL_TIMER_PPI);
    assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![VIRTUAL_TIMER_PPI]);
    assert_eq!(
        gic.set_level(3, 0, true),
        Err(VgicError::NoSuchInterrupt(3))
    );
}

/// A device line (a virtio device's interrupt status) on an SPI the guest configured as
/// edge-triggered, as Linux does from a device tree's `IRQ_TYPE_EDGE_RISING`: the rise makes it
/// pending once; staying high or falling does not; the next rise does again.
#[test]
fn an_edge_interrupt_latches_when_its_line_rises() {
    let mut gic = linux_booted(1, 32);
    enable(&mut gic, 0, 49);
    // SPI 49: ICFGR3, field 1, edge.
    let _ = gic.distributor_write(gicd::ICFGR + 12, 4, 0x2 << 2);
    let mut lrs = [0u64; 4];
    let _ = gic.set_level(49, 0, true).unwrap();
    assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![49]);
    // Still high: no second edge.
    let _ = gic.set_level(49, 0, true).unwrap();
    assert!(deliver_all(&mut gic, 0, &mut lrs).is_empty());
    let _ = gic.set_level(49, 0, false).unwrap();
    assert!(deliver_all(&mut gic, 0, &mut lrs).is_empty());
    let _ = gic.set_level(49, 0, true).unwrap();
    assert_eq!(deliver_all(&mut gic, 0, &mut lrs), vec![49]);
}

#[test]
fn requests_outside_the_domain_are_refused() {
    assert_eq!(Vgic::new(0, 32).err(), Some(VgicError::BadVcpuCount(0)));
    assert_eq!(Vgic::new(9, 32).err(), Some(VgicError::BadVcpuCount(9)));
    assert_eq!(Vgic::new(1, 65).err(), Some(VgicError::BadSpiCount(65)));
    let mut gic = Vgic::new(2, 20).unwrap();
    assert_eq!(gic.spi_count(), 32);
    assert_eq!(gic.vcpu_count(), 2);
    assert_eq!(gic.set_pending(64, 0), Err(VgicError::NoSuchInterrupt(64)));
    assert_eq!(gic.set_pending(5, 2), Err(VgicError::NoSuchVcpu(2)));
    let mut lrs = [0u64; 4];
    assert_eq!(
        gic.fill_list_registers(2, &mut lrs, 0xF),
        Err(VgicError::NoSuchVcpu(2))
    );
    assert_eq!(
        gic.sync_from_list_registers(7, &lrs),
        Err(VgicError::NoSuchVcpu(7))
    );
    assert!(!gic.has_deliverable(5));
}

#[test]
fn list_registers_the_model_does_not_own_are_left_alone() {
    let mut gic = linux_booted(1, 32);
    for intid in 32..40 {
        enable(&mut gic, 0, intid);
        let _ = gic.set_pending(intid, 0).unwrap();
    }
    let foreign = lr::PENDING | lr::GROUP1 | 1000;
    let mut lrs = [0, foreign, 0, 0];
    let outcome = gic.fill_list_registers(0, &mut lrs, 0b1101).unwrap();
    assert_eq!(outcome.valid, 0b1101);
    assert_eq!(lrs[1], foreign);
    // More list registers than the architecture allows: only 16 are used.
    let mut many = [0u64; 20];
    let mut gic = linux_booted(1, 64);
    for intid in 32..96 {
        enable(&mut gic, 0, intid);
        let _ = gic.set_pending(intid, 0).unwrap();
    }
    let outcome = gic.fill_list_registers(0, &mut many, u32::MAX).unwrap();
    assert_eq!(outcome.valid, 0xFFFF);
    assert!(outcome.underflow);
    assert_eq!(many[16..], [0; 4]);
}

/// Checks the model's bookkeeping ([`Vgic::consistency`]).
fn check_consistency(gic: &Vgic) {
    if let Err(why) = gic.consistency() {
        panic!("vGIC bookkeeping: {why}");
    }
}

/// One step of a random driver: an MMIO access, an injection or an SGI, or a run of
/// the guest on a vCPU.
fn step(gic: &mut Vgic, lrs: &mut [[u64; 4]; 3], op: (u8, u32, u8, u64)) {
    let (kind, offset, size, value) = op;
    let size = [1, 2, 4, 8, 3][usize::from(size % 5)];
    let vcpu = usize::from(kind >> 4) % 4;
    match kind % 8 {
        0 => {
            let _ = gic.distributor_read(u64::from(offset % 0x1_0010), size);
        }
        1 => {
            let _ = gic.distributor_write(u64::from(offset % 0x1_0010), size, value);
        }
        2 => {
            let _ = gic.redistributor_read(u64::from(offset) % 0x8_0000, size);
        }
        3 => {
            let _ = gic.redistributor_write(u64::from(offset) % 0x8_0000, size, value);
        }
        4 => {
            let _ = gic.set_pending(offset % 128, vcpu);
            let _ = gic.set_level(offset % 128, vcpu, value & 1 != 0);
        }
        5 => {
            let _ = gic.write_sgi(vcpu, value, offset & 1 == 0);
            let _ = gic.link_hardware(offset % 128, vcpu, Some((value % 1100) as u32));
        }
        _ => {
            let Some(regs) = lrs.get_mut(vcpu) else {
                let _ = gic.fill_list_registers(vcpu, &mut [0; 4], 0);
                return;
            };
            let empty = elrsr(regs);
            let _ = gic.fill_list_registers(vcpu, regs, empty);
            check_consistency(gic);
            let _ = guest_takes_one(regs, value & 1 == 0);
            if value & 2 == 0 {
                // Scribble: the guest cannot, but the model must not care.
                regs[(value >> 8) as usize % 4] = value;
            }
            let _ = gic.sync_from_list_registers(vcpu, regs);
            let _ = gic.has_deliverable(vcpu);
        }
    }
    check_consistency(gic);
}

#[test]
fn random_mmio_and_list_register_traffic_never_panics() {
    bolero::check!()
        .with_type::<Vec<(u8, u32, u8, u64)>>()
        .with_iterations(3_000)
        .for_each(|ops| {
            let mut gic = linux_booted(3, 64);
            let mut lrs = [[0u64; 4]; 3];
            for op in ops {
                step(&mut gic, &mut lrs, *op);
                check_consistency(&gic);
            }
        });
}

#[test]
fn clamped_construction_and_in_place_reset() {
    let gic = Vgic::clamped(0, 1000);
    assert_eq!((gic.vcpu_count(), gic.spi_count()), (1, MAX_SPIS));
    let mut gic = Vgic::clamped(2, DOMAIN_SPIS);
    assert_eq!((gic.vcpu_count(), gic.spi_count()), (2, 64));
    let _ = gic.distributor_write(gicd::CTLR, 4, u64::from(GRP1));
    let _ = gic.write_sgi(0, 1 << 1 | 3 << 24, true);
    assert!(gic.has_deliverable(1) || gic.distributor_read(gicd::CTLR, 4) != 0);
    gic.reset_clamped(3, 33);
    assert_eq!((gic.vcpu_count(), gic.spi_count()), (3, 64));
    assert_eq!(gic.distributor_read(gicd::CTLR, 4) as u32 & GRP1, 0);
    for v in 0..3 {
        assert!(!gic.has_deliverable(v));
        assert_eq!(gic.redistributor_read(sgi_frame(v, gicd::ISPENDR), 4), 0);
    }
    check_consistency(&gic);
}

#[test]
fn windows_sit_where_qemu_virt_puts_its_gic() {
    let mut gic = Vgic::new(2, 64).unwrap();
    assert_eq!(gic.window(0x0800_0000, 4), Some(Window::Distributor(0)));
    assert_eq!(
        gic.window(0x0800_FFFC, 4),
        Some(Window::Distributor(0xFFFC))
    );
    assert_eq!(gic.window(0x0800_FFFC, 8), None, "straddles the end");
    assert_eq!(gic.window(0x0801_0000, 4), None);
    assert_eq!(gic.window(0x07FF_FFFC, 4), None);
    assert_eq!(gic.window(0x080A_0000, 8), Some(Window::Redistributor(0)));
    assert_eq!(
        gic.window(0x080D_FFFC, 4),
        Some(Window::Redistributor(0x3_FFFC))
    );
    assert_eq!(gic.window(0x080E_0000, 4), None, "no third vCPU");
    assert_eq!(gic.window(u64::MAX - 1, 4), None);
    assert!(gic.contains(0x080B_0080) && !gic.contains(0x4000_0000));
    // Reads and writes go to the right frame.
    assert_eq!(gic.mmio_read(DISTRIBUTOR_BASE + gicd::PIDR2, 4), Some(0x3B));
    let typer1 = gic.mmio_read(REDISTRIBUTOR_BASE + REDISTRIBUTOR_STRIDE + gicr::TYPER, 8);
    assert_eq!(typer1, Some(1 << 32 | 1 << 8 | gicr::TYPER_LAST));
    assert_eq!(gic.mmio_read(0x4000_0000, 4), None);
    assert_eq!(gic.mmio_write(0x4000_0000, 4, 0), None);
    let kick = gic.mmio_write(
        REDISTRIBUTOR_BASE + REDISTRIBUTOR_STRIDE + SGI_FRAME + gicd::ISENABLER,
        4,
        1 << 27,
    );
    assert_eq!(kick, Some(Kick::one(1)));
    assert_eq!(
        gic.redistributor_read(sgi_frame(1, gicd::ISENABLER), 4),
        1 << 27
    );
}

#[test]
fn sysreg_traps_decode_and_name_the_sgi_registers() {
    // msr ICC_SGI1R_EL1, x3: Op0 3, Op2 5, Op1 0, CRn 12, Rt 3, CRm 11, write.
    let iss = 3 << 20 | 5 << 17 | 12 << 10 | 3 << 5 | 11 << 1;
    let esr = u64::from(EC_SYSREG) << 26 | 1 << 25 | iss;
    let trap = SysregTrap::decode(esr).unwrap();
    assert_eq!(
        trap,
        SysregTrap {
            op0: 3,
            op1: 0,
            crn: 12,
            crm: 11,
            op2: 5,
            rt: 3,
            read: false
        }
    );
    assert_eq!(trap.sgi_group1(), Some(true));
    let with_op2 = |op2: u64| SysregTrap::decode(esr & !(7 << 17) | op2 << 17).unwrap();
    assert_eq!(with_op2(6).sgi_group1(), Some(false), "ICC_ASGI1R_EL1");
    assert_eq!(with_op2(7).sgi_group1(), Some(false), "ICC_SGI0R_EL1");
    assert_eq!(with_op2(0).sgi_group1(), None);
    assert_eq!(
        SysregTrap::decode(esr | 1).unwrap().sgi_group1(),
        None,
        "a read"
    );
    // msr ICC_PMR_EL1 (S3_0_C4_C6_0) is not an SGI register.
    let pmr = u64::from(EC_SYSREG) << 26 | 3 << 20 | 4 << 10 | 6 << 1;
    assert_eq!(SysregTrap::decode(pmr).unwrap().sgi_group1(), None);
    assert_eq!(SysregTrap::decode(0x24 << 26), None);
}

#[test]
fn empty_list_registers_and_the_timer_line() {
    let lrs = [0, lr::PENDING | 27, lr::ACTIVE | 3, lr::HW | 5];
    assert_eq!(empty_list_registers(&lrs), 0b1001);
    assert_eq!(empty_list_registers(&[]), 0);
    // ENABLE, not masked, condition met.
    assert!(virtual_timer_asserted(0b101, 100, 0));
    assert!(
        virtual_timer_asserted(0b001, 100, 100),
        "expired since it was saved"
    );
    assert!(!virtual_timer_asserted(0b001, 100, 99));
    assert!(!virtual_timer_asserted(0b111, 100, 200), "masked");
    assert!(!virtual_timer_asserted(0b100, 100, 200), "disabled");
}

#[test]
fn every_distributor_and_redistributor_offset_is_safe() {
    let mut gic = Vgic::new(2, 64).unwrap();
    for offset in (0..DISTRIBUTOR_SIZE + 16).step_by(1) {
        for size in [1, 2, 4, 8] {
            let _ = gic.distributor_read(offset, size);
            let _ = gic.redistributor_read(offset * 2 + 1, size);
        }
    }
    for offset in (0..DISTRIBUTOR_SIZE).step_by(4) {
        let _ = gic.distributor_write(offset, 4, u64::MAX);
        let _ = gic.redistributor_write(offset, 4, u64::MAX);
        let _ = gic.redistributor_write(offset + SGI_FRAME, 4, u64::MAX);
    }
    let _ = gic.distributor_read(u64::MAX, 8);
    let _ = gic.redistributor_write(u64::MAX - 7, 8, 0);
    check_consistency(&gic);
}

#[test]
fn growing_adds_redistributors_and_moves_last_keeping_state() {
    let mut gic = Vgic::new(1, 32).unwrap();
    assert_ne!(gic.redistributor_typer(0) & gicr::TYPER_LAST, 0);
    gic.set_pending(40, 0).unwrap();
    gic.grow(3);
    assert_eq!(gic.vcpu_count(), 3);
    assert_eq!(
        gic.redistributor_typer(0) & gicr::TYPER_LAST,
        0,
        "vCPU 0 is no longer last"
    );
    assert_ne!(gic.redistributor_typer(2) & gicr::TYPER_LAST, 0);
    assert_eq!(gic.redistributor_region_size(), 3 * REDISTRIBUTOR_STRIDE);
    assert!(gic.interrupt(0, 40).unwrap().pending(), "state kept");
    gic.grow(2);
    assert_eq!(gic.vcpu_count(), 3, "never shrinks");
    gic.grow(100);
    assert_eq!(gic.vcpu_count(), MAX_VCPUS);
    check_consistency(&gic);
}
