//! The virtio-mmio register file (`crate::virtio`): the driver's initialisation sequence as
//! Linux's `virtio_mmio` and the `virtio-drivers` crate perform it, and every rule a guest can
//! break — features it was not offered, queues of a bad size, misaligned or outside its RAM,
//! notifications before the device is live, accesses of the wrong width.

use crate::virtio::{Identity, VirtioMmio, Written, MAX_QUEUES};
use mica_abi::virtio::{self, blk, device, feature, interrupt, reg, status};

/// The guest's RAM in these tests: 1 MiB at 0x4000_0000.
const RAM: (u64, u64) = (0x4000_0000, 0x10_0000);

fn in_ram(at: u64, bytes: u64) -> bool {
    at >= RAM.0
        && at
            .checked_add(bytes)
            .is_some_and(|end| end <= RAM.0 + RAM.1)
}

fn block_device() -> VirtioMmio {
    let mut config = [0u8; blk::config::SIZE];
    config[..8].copy_from_slice(&(1u64 << 20).to_le_bytes()); // 512 MiB
    config[20..24].copy_from_slice(&blk::BLOCK.to_le_bytes());
    let identity = Identity {
        device_id: device::BLOCK,
        features: blk::F_FLUSH | blk::F_BLK_SIZE | feature::EVENT_IDX,
        queue_max: [256, 0],
    };
    VirtioMmio::new(identity, &config)
}

fn write(d: &mut VirtioMmio, offset: u64, value: u32) -> Written {
    d.write(offset, 4, value, in_ram).expect("a whole register")
}

fn read(d: &VirtioMmio, offset: u64) -> u32 {
    d.read(offset, 4).expect("a whole register")
}

/// Negotiates `features` (words 0 and 1) and sets FEATURES_OK; returns the status read back.
fn negotiate(d: &mut VirtioMmio, features: u64) -> u32 {
    write(d, reg::STATUS, status::ACKNOWLEDGE);
    write(d, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    for sel in 0..2u32 {
        write(d, reg::DRIVER_FEATURES_SEL, sel);
        write(d, reg::DRIVER_FEATURES, (features >> (32 * sel)) as u32);
    }
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    write(d, reg::STATUS, s);
    read(d, reg::STATUS)
}

/// Sets up queue 0 with `size` entries at `desc`, `driver`, `device` and makes it ready.
fn set_up_queue(d: &mut VirtioMmio, size: u32, desc: u64, driver: u64, device: u64) {
    write(d, reg::QUEUE_SEL, 0);
    write(d, reg::QUEUE_NUM, size);
    for (low, address) in [
        (reg::QUEUE_DESC_LOW, desc),
        (reg::QUEUE_DRIVER_LOW, driver),
        (reg::QUEUE_DEVICE_LOW, device),
    ] {
        write(d, low, address as u32);
        write(d, low + 4, (address >> 32) as u32);
    }
    write(d, reg::QUEUE_READY, 1);
}

/// A device brought up the way Linux does it, queue 0 of 128 entries in RAM.
fn live_device() -> VirtioMmio {
    let mut d = block_device();
    negotiate(&mut d, feature::VERSION_1 | blk::F_FLUSH);
    set_up_queue(&mut d, 128, 0x4000_0000, 0x4000_1000, 0x4000_2000);
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    assert_eq!(write(&mut d, reg::STATUS, ok), Written::DriverOk);
    d
}

#[test]
fn the_device_identifies_itself_as_a_modern_virtio_mmio_device() {
    let mut d = block_device();
    assert_eq!(read(&d, reg::MAGIC), 0x7472_6976);
    assert_eq!(read(&d, reg::VERSION), 2);
    assert_eq!(read(&d, reg::DEVICE_ID), device::BLOCK);
    assert_eq!(read(&d, reg::VENDOR_ID), virtio::VENDOR);
    write(&mut d, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(
        read(&d, reg::DEVICE_FEATURES),
        1,
        "VIRTIO_F_VERSION_1 is always offered"
    );
    // Transport features Mica does not implement are never offered (packed rings: bit 34).
    let packed = Identity {
        device_id: device::BLOCK,
        features: 1 << 34 | 1 << 30,
        queue_max: [8, 0],
    };
    let mut p = VirtioMmio::new(packed, &[]);
    write(&mut p, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(read(&p, reg::DEVICE_FEATURES), 1);
    write(&mut p, reg::DEVICE_FEATURES_SEL, 0);
    assert_eq!(read(&p, reg::DEVICE_FEATURES), 0);
    write(&mut d, reg::DEVICE_FEATURES_SEL, 0);
    let low = (blk::F_FLUSH | blk::F_BLK_SIZE | feature::EVENT_IDX) as u32;
    assert_eq!(read(&d, reg::DEVICE_FEATURES), low);
    write(&mut d, reg::DEVICE_FEATURES_SEL, 7);
    assert_eq!(read(&d, reg::DEVICE_FEATURES), 0);
    assert_eq!(read(&d, reg::QUEUE_NUM_MAX), 256);
    write(&mut d, reg::QUEUE_SEL, 1);
    assert_eq!(read(&d, reg::QUEUE_NUM_MAX), 0, "no second queue");
    write(&mut d, reg::QUEUE_SEL, u32::MAX);
    assert_eq!(read(&d, reg::QUEUE_NUM_MAX), 0);
    assert_eq!(
        read(&d, reg::SHM_LEN_LOW),
        u32::MAX,
        "no shared memory region"
    );
    // The configuration: capacity in sectors, blk_size, byte by byte as well.
    assert_eq!(d.read(reg::CONFIG, 4), Some(1 << 20));
    assert_eq!(d.read(reg::CONFIG + 4, 4), Some(0));
    assert_eq!(d.read(reg::CONFIG + 20, 4), Some(4096));
    assert_eq!(d.read(reg::CONFIG + 21, 1), Some(0x10));
    assert_eq!(d.read(reg::CONFIG + 20, 2), Some(4096));
    assert_eq!(
        d.read(reg::CONFIG + 0xFC, 4),
        Some(0),
        "past the configuration: zero"
    );
}

#[test]
fn linux_brings_the_device_up_and_notifications_reach_the_server() {
    let mut d = live_device();
    assert_eq!(d.negotiated(), feature::VERSION_1 | blk::F_FLUSH);
    let live: Vec<u16> = d.live_queues().map(|(i, _)| i).collect();
    assert_eq!(live, [0]);
    let (_, q) = d.live_queues().next().unwrap();
    assert_eq!(
        (q.size, q.desc, q.driver, q.device),
        (128, 0x4000_0000, 0x4000_1000, 0x4000_2000)
    );
    assert_eq!(read(&d, reg::QUEUE_READY), 1);
    assert_eq!(write(&mut d, reg::QUEUE_NOTIFY, 0), Written::Notify(0));
    assert_eq!(
        write(&mut d, reg::QUEUE_NOTIFY, 1),
        Written::Nothing,
        "no queue 1"
    );
    assert_eq!(write(&mut d, reg::QUEUE_NOTIFY, u32::MAX), Written::Nothing);
    // The server used buffers: the line rises until the guest acknowledges.
    assert!(!d.line());
    d.used(d.epoch());
    assert!(d.line());
    assert_eq!(read(&d, reg::INTERRUPT_STATUS), interrupt::USED_BUFFER);
    write(&mut d, reg::INTERRUPT_ACK, interrupt::USED_BUFFER);
    assert!(!d.line());
}

#[test]
fn a_reset_forgets_the_driver_and_ignores_late_completions() {
    let mut d = live_device();
    let before = d.epoch();
    assert_eq!(write(&mut d, reg::STATUS, 0), Written::Reset);
    assert_eq!(read(&d, reg::STATUS), 0, "reads back 0 once reset");
    assert_eq!(read(&d, reg::QUEUE_READY), 0);
    assert_eq!(d.live_queues().count(), 0);
    assert_ne!(d.epoch(), before);
    d.used(before);
    assert!(!d.line(), "a completion from before the reset is ignored");
    assert_eq!(
        d.read(reg::CONFIG, 4),
        Some(1 << 20),
        "the configuration stays"
    );
    assert_eq!(write(&mut d, reg::QUEUE_NOTIFY, 0), Written::Nothing);
}

#[test]
fn features_the_device_did_not_offer_or_a_legacy_driver_are_refused() {
    let mut d = block_device();
    let s = negotiate(&mut d, feature::VERSION_1 | feature::INDIRECT_DESC);
    assert_eq!(s & status::FEATURES_OK, 0, "INDIRECT_DESC was not offered");
    let mut legacy = block_device();
    let s = negotiate(&mut legacy, blk::F_FLUSH);
    assert_eq!(s & status::FEATURES_OK, 0, "without VERSION_1");
    // DRIVER_OK without FEATURES_OK does not stick either, and no queue can be made ready.
    let all = status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK;
    assert_eq!(write(&mut legacy, reg::STATUS, all), Written::Nothing);
    assert_eq!(read(&legacy, reg::STATUS) & status::DRIVER_OK, 0);
    // Features cannot change after FEATURES_OK.
    let mut ok = block_device();
    negotiate(&mut ok, feature::VERSION_1);
    write(&mut ok, reg::DRIVER_FEATURES_SEL, 0);
    write(&mut ok, reg::DRIVER_FEATURES, u32::MAX);
    assert_eq!(ok.negotiated(), feature::VERSION_1);
}

#[test]
fn a_queue_that_breaks_a_rule_needs_a_reset_and_is_never_served() {
    let cases: [(&str, u32, u64, u64, u64); 8] = [
        ("size 0", 0, 0x4000_0000, 0x4000_1000, 0x4000_2000),
        (
            "size not a power of two",
            100,
            0x4000_0000,
            0x4000_1000,
            0x4000_2000,
        ),
        (
            "size above the maximum",
            512,
            0x4000_0000,
            0x4000_1000,
            0x4000_2000,
        ),
        (
            "descriptors misaligned",
            128,
            0x4000_0008,
            0x4000_1000,
            0x4000_2000,
        ),
        (
            "used ring misaligned",
            128,
            0x4000_0000,
            0x4000_1000,
            0x4000_2002,
        ),
        (
            "descriptors outside RAM",
            128,
            0x3FFF_F000,
            0x4000_1000,
            0x4000_2000,
        ),
        (
            "used ring across the end of RAM",
            128,
            0x4000_0000,
            0x4000_1000,
            0x400F_FC00,
        ),
        (
            "an address that wraps",
            128,
            0xFFFF_FFFF_FFFF_FF00,
            0x4000_1000,
            0x4000_2000,
        ),
    ];
    for (what, size, desc, driver, device) in cases {
        let mut d = block_device();
        negotiate(&mut d, feature::VERSION_1);
        set_up_queue(&mut d, size, desc, driver, device);
        assert_eq!(read(&d, reg::QUEUE_READY), 0, "{what}");
        assert_ne!(
            read(&d, reg::STATUS) & status::DEVICE_NEEDS_RESET,
            0,
            "{what}"
        );
        let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
        assert_eq!(write(&mut d, reg::STATUS, ok), Written::Nothing, "{what}");
        assert_eq!(d.live_queues().count(), 0, "{what}");
        assert_eq!(
            write(&mut d, reg::QUEUE_NOTIFY, 0),
            Written::Nothing,
            "{what}"
        );
        // A reset gives the guest its device back.
        write(&mut d, reg::STATUS, 0);
        negotiate(&mut d, feature::VERSION_1);
        set_up_queue(&mut d, 128, 0x4000_0000, 0x4000_1000, 0x4000_2000);
        assert_eq!(read(&d, reg::QUEUE_READY), 1, "{what}: after a reset");
    }
}

#[test]
fn a_ready_queue_cannot_be_moved_and_a_broken_live_device_tells_the_guest() {
    let mut d = live_device();
    write(&mut d, reg::QUEUE_DESC_LOW, 0x4008_0000);
    write(&mut d, reg::QUEUE_NUM, 16);
    write(&mut d, reg::QUEUE_READY, 0);
    let (_, q) = d.live_queues().next().unwrap();
    assert_eq!(
        (q.desc, q.size),
        (0x4000_0000, 128),
        "setup is fixed while ready"
    );
    assert_eq!(
        read(&d, reg::QUEUE_READY),
        1,
        "a live queue is not stopped (no ring reset)"
    );
    d.fail();
    assert_eq!(read(&d, reg::INTERRUPT_STATUS), interrupt::CONFIG_CHANGE);
    assert_eq!(d.live_queues().count(), 0);
    assert_eq!(write(&mut d, reg::QUEUE_NOTIFY, 0), Written::Nothing);
}

#[test]
fn accesses_a_driver_may_not_make_are_refused_and_change_nothing() {
    let mut d = live_device();
    let before = d.clone();
    for (offset, size) in [
        (reg::STATUS, 2),
        (reg::STATUS + 1, 1),
        (reg::QUEUE_NOTIFY, 8),
    ] {
        assert_eq!(d.read(offset, size), None, "{offset:#x}/{size}");
        assert_eq!(d.write(offset, size, 0, in_ram), None, "{offset:#x}/{size}");
    }
    for (offset, size) in [
        (reg::CONFIG + 1, 2),
        (reg::CONFIG + 2, 4),
        (virtio::WINDOW, 4),
    ] {
        assert_eq!(d.read(offset, size), None, "{offset:#x}/{size}");
    }
    assert_eq!(d, before);
    // Config writes are accepted and ignored; read-only registers ignore writes.
    assert_eq!(d.write(reg::CONFIG, 4, 7, in_ram), Some(Written::Nothing));
    write(&mut d, reg::MAGIC, 0);
    write(&mut d, reg::INTERRUPT_STATUS, 3);
    assert_eq!(d, before);
}

#[test]
fn every_register_sequence_keeps_the_rules() {
    // Random accesses (a fixed-seed generator): whatever the guest writes, a live queue has
    // passed every check and notifications only name live queues.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let offsets = [
        reg::DRIVER_FEATURES_SEL,
        reg::DRIVER_FEATURES,
        reg::QUEUE_SEL,
        reg::QUEUE_NUM,
        reg::QUEUE_READY,
        reg::QUEUE_NOTIFY,
        reg::INTERRUPT_ACK,
        reg::STATUS,
        reg::QUEUE_DESC_LOW,
        reg::QUEUE_DESC_HIGH,
        reg::QUEUE_DRIVER_LOW,
        reg::QUEUE_DEVICE_LOW,
    ];
    let (mut notified, mut refused) = (0, 0);
    // A correct bring-up and a notification, which the random writes interrupt.
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    let script: [(u64, u32); 14] = [
        (reg::STATUS, status::ACKNOWLEDGE | status::DRIVER),
        (reg::DRIVER_FEATURES_SEL, 1),
        (reg::DRIVER_FEATURES, 1),
        (reg::STATUS, ok),
        (reg::QUEUE_SEL, 0),
        (reg::QUEUE_NUM, 64),
        (reg::QUEUE_DESC_LOW, 0x4000_0000),
        (reg::QUEUE_DESC_HIGH, 0),
        (reg::QUEUE_DRIVER_LOW, 0x4000_1000),
        (reg::QUEUE_DEVICE_LOW, 0x4000_2000),
        (reg::QUEUE_READY, 1),
        (reg::STATUS, ok | status::DRIVER_OK),
        (reg::QUEUE_NOTIFY, 0),
        (reg::QUEUE_NOTIFY, 0),
    ];
    for _ in 0..2000 {
        let mut d = block_device();
        let mut step = 0;
        for _ in 0..40 {
            let r = next();
            let (offset, value) = if r % 5 != 0 {
                step += 1;
                script[(step - 1) % script.len()]
            } else {
                let value = match (r >> 8) % 4 {
                    0 => (r >> 16) as u32 & 0xF,
                    1 => 0x4000_0000 + ((r >> 16) as u32 & 0xF_FFF0),
                    2 => 0x400F_F000 + ((r >> 16) as u32 & 0xFFF),
                    _ => (r >> 16) as u32,
                };
                (offsets[((r >> 3) % offsets.len() as u64) as usize], value)
            };
            let written = d.write(offset, 4, value, in_ram).unwrap();
            if let Written::Notify(q) = written {
                assert!(d.live_queues().any(|(i, _)| i == q));
                notified += 1;
            }
            if d.status() & status::DEVICE_NEEDS_RESET != 0 {
                refused += 1;
            }
            for (_, q) in d.live_queues() {
                assert!(q.size.is_power_of_two() && q.size <= 256);
                assert!(in_ram(q.desc, mica_abi::virtio::queue::desc_bytes(q.size)));
                assert!(in_ram(
                    q.driver,
                    mica_abi::virtio::queue::driver_bytes(q.size)
                ));
                assert!(in_ram(
                    q.device,
                    mica_abi::virtio::queue::device_bytes(q.size)
                ));
                assert!(q.desc.is_multiple_of(16) && q.device.is_multiple_of(4));
            }
        }
        assert!(d.live_queues().count() <= MAX_QUEUES);
    }
    // The sequences reach both ends: queues served, and queues refused.
    assert!(
        notified > 0 && refused > 0,
        "notified {notified}, refused {refused}"
    );
}

// ----- A guest's device in the kernel, and the domain that serves it ---------------------------

mod served {
    use super::*;
    use crate::ids::DomainId;
    use crate::kernel::{Exit, Kernel};
    use crate::testing::*;
    use mica_abi::args::{self as a, Slot};
    use mica_abi::layout::devices;
    use mica_abi::{ObjectType, Rights, Status};

    /// A guest on CPU 0 with a block device in virtio slot 2, served by `vda` on CPU 1;
    /// the server's capability slots (device, events).
    fn system() -> (Box<Kernel<MockHal>>, DomainId, DomainId, (u16, u16)) {
        let mut guest = dom("guest");
        guest.cpus[0] = 0;
        let mut server = dom("vda");
        server.cpus[0] = 1;
        let mut k = kernel(&[guest, server]);
        run(&mut k, 0).unwrap();
        run(&mut k, 1).unwrap();
        let (g, s) = (id_of(&k, "guest"), id_of(&k, "vda"));
        let identity = Identity {
            device_id: device::BLOCK,
            features: blk::F_FLUSH,
            queue_max: [64, 0],
        };
        let slots = k.add_virtio_device(g, s, (identity, &[0x10]), 2).unwrap();
        (k, g, s, slots)
    }

    fn window(offset: u64) -> u64 {
        devices::virtio_slot(2).unwrap().0 + offset
    }

    fn guest_write(k: &mut Kernel<MockHal>, g: DomainId, offset: u64, value: u32) {
        k.virtio_mmio(g, window(offset), 4, Some(value))
            .expect("a register");
    }

    /// Brings the device up as Linux does, its queue in the guest's RAM.
    fn bring_up(k: &mut Kernel<MockHal>, g: DomainId) {
        let ram = mica_abi::sysimage::DOMAIN_RAM_BASE;
        guest_write(k, g, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        guest_write(k, g, reg::DRIVER_FEATURES_SEL, 1);
        guest_write(k, g, reg::DRIVER_FEATURES, 1);
        let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        guest_write(k, g, reg::STATUS, ok);
        guest_write(k, g, reg::QUEUE_NUM, 64);
        guest_write(k, g, reg::QUEUE_DESC_LOW, ram as u32 + 0x1000);
        guest_write(k, g, reg::QUEUE_DESC_HIGH, (ram >> 32) as u32);
        guest_write(k, g, reg::QUEUE_DRIVER_LOW, ram as u32 + 0x2000);
        guest_write(k, g, reg::QUEUE_DRIVER_HIGH, (ram >> 32) as u32);
        guest_write(k, g, reg::QUEUE_DEVICE_LOW, ram as u32 + 0x3000);
        guest_write(k, g, reg::QUEUE_DEVICE_HIGH, (ram >> 32) as u32);
        guest_write(k, g, reg::QUEUE_READY, 1);
        guest_write(k, g, reg::STATUS, ok | status::DRIVER_OK);
    }

    /// Whether the kernel raised the server's end of the device's channel (and clears it).
    fn server_told(k: &mut Kernel<MockHal>, g: DomainId) -> bool {
        let notify = k.domain(g).unwrap().virtio[0].notify;
        let theirs = k.channels.get(notify).unwrap().peer;
        k.channels.get(theirs).unwrap().latched
    }

    #[test]
    fn the_server_learns_what_the_guest_set_up_and_interrupts_it() {
        let (mut k, g, _, (device, events)) = system();
        assert_eq!(
            k.virtio_mmio(g, window(reg::MAGIC), 4, None),
            Some(virtio::MAGIC)
        );
        assert_eq!(k.virtio_mmio(g, window(reg::CONFIG), 1, None), Some(0x10));
        assert!(!server_told(&mut k, g));
        // The server's capabilities: the device with CONTROL, the channel's end.
        let vda = id_of(&k, "vda");
        let space = vda.space();
        let lookup = |t, r| k.caps.lookup(space, device, t, r).map(|_| ());
        assert_eq!(lookup(ObjectType::VirtioDevice, Rights::CONTROL), Ok(()));
        k.caps
            .lookup(space, events, ObjectType::EventChannel, Rights::RECEIVE)
            .unwrap();
        // Before DRIVER_OK nothing is live.
        let queue0 = |epoch| a::VirtioQueue {
            device: Slot(device),
            queue: 0,
            epoch,
        };
        let r = call(&mut k, 1, queue0(0));
        assert_eq!(status(r), Err(Status::WrongState));
        bring_up(&mut k, g);
        assert!(server_told(&mut k, g), "DRIVER_OK is passed on");
        let r = call(
            &mut k,
            1,
            a::VirtioInfo {
                device: Slot(device),
            },
        );
        assert_eq!(status(r), Ok(()));
        assert_ne!(r[1] & u64::from(status::DRIVER_OK), 0);
        assert_eq!(r[2], feature::VERSION_1);
        assert_eq!(r[3], 64, "queue 0 live with 64 entries");
        let epoch = r[1] >> 32;
        let ram = mica_abi::sysimage::DOMAIN_RAM_BASE;
        let r = call(&mut k, 1, queue0(epoch));
        assert_eq!(r[1..], [ram + 0x1000, ram + 0x2000, ram + 0x3000]);
        let late = call(&mut k, 1, queue0(epoch + 1));
        assert_eq!(status(late), Err(Status::WrongState));
        // The server used buffers: the guest's line rises until it acknowledges.
        let intid = devices::virtio_slot(2).unwrap().1;
        let signal = a::VirtioSignal {
            device: Slot(device),
            epoch,
            broken: false,
        };
        assert_eq!(status(call(&mut k, 1, signal)), Ok(()));
        assert_eq!(k.hal.lines.borrow().get(&intid), Some(&true));
        guest_write(&mut k, g, reg::INTERRUPT_ACK, interrupt::USED_BUFFER);
        assert_eq!(k.hal.lines.borrow().get(&intid), Some(&false));
        // After a reset, the server's epoch is stale.
        guest_write(&mut k, g, reg::STATUS, 0);
        assert_eq!(status(call(&mut k, 1, signal)), Err(Status::WrongState));
        assert_eq!(k.hal.lines.borrow().get(&intid), Some(&false));
    }

    #[test]
    fn only_the_serving_domain_can_serve_and_its_death_leaves_the_device() {
        let (mut k, g, s, (device, _)) = system();
        bring_up(&mut k, g);
        // The guest itself holds no VirtioDevice capability: a slot of its space is refused.
        let r = call(
            &mut k,
            0,
            a::VirtioInfo {
                device: Slot(device),
            },
        );
        assert!(status(r).is_err());
        // The server dies: the guest's register file is what it was.
        k.destroy(s);
        run(&mut k, 1);
        assert!(k.domain(s).is_none());
        let status_now = k.virtio_mmio(g, window(reg::STATUS), 4, None).unwrap();
        assert_ne!(status_now & status::DRIVER_OK, 0);
        assert_eq!(k.virtio_mmio(g, window(reg::QUEUE_READY), 4, None), Some(1));
        // A notification to a dead server is only dropped: the vCPU goes on.
        guest_write(&mut k, g, reg::QUEUE_NOTIFY, 0);
    }

    #[test]
    fn a_guest_that_unmaps_its_rings_breaks_its_device() {
        let (mut k, g, _, (device, _)) = system();
        bring_up(&mut k, g);
        let ram = mica_abi::sysimage::DOMAIN_RAM_BASE;
        let pages = k.domain(g).unwrap().mappings.at(ram).unwrap().pages;
        let unmap = a::MemUnmap {
            domain: Slot::SELF_DOMAIN,
            ipa: ram,
            frame_count: pages,
        };
        assert_eq!(status(call(&mut k, 0, unmap)), Ok(()));
        let s = k.virtio_mmio(g, window(reg::STATUS), 4, None).unwrap();
        assert_ne!(s & status::DEVICE_NEEDS_RESET, 0, "status {s:#x}");
        let r = call(
            &mut k,
            1,
            a::VirtioInfo {
                device: Slot(device),
            },
        );
        assert_eq!(r[3], 0, "no queue is live any more");
        let intid = devices::virtio_slot(2).unwrap().1;
        assert_eq!(
            k.hal.lines.borrow().get(&intid),
            Some(&true),
            "configuration change"
        );
    }

    #[test]
    fn the_guests_end_takes_the_servers_capability() {
        let (mut k, g, s, (device, events)) = system();
        // The server waits on its channel's port 0, blocked in WFI.
        let page = mica_abi::sysimage::DOMAIN_RAM_BASE + 0x10000;
        assert_eq!(
            status(call(&mut k, 1, a::EventPageSet { ipa: page })),
            Ok(())
        );
        let bind = a::EvtchnBind {
            endpoint: Slot(events),
            port: a::Port(0),
            vcpu: Slot(0),
        };
        assert_eq!(status(call(&mut k, 1, bind)), Ok(()));
        let server = k.current(1).unwrap();
        k.handle_exit(1, &Exit::WaitForInterrupt);
        assert_eq!(run(&mut k, 1), None);
        k.destroy(g);
        run(&mut k, 0);
        assert!(k.domain(g).is_none());
        // It was told at once, before the channel closed: woken, port 0 pending.
        assert_eq!(run(&mut k, 1), Some(server), "the server is woken");
        let pa = k.domain(s).unwrap().mappings.translate(page).unwrap();
        let m = k.hal.memory.borrow().clone();
        assert_eq!(
            read_u64(&m, pa + mica_abi::event::pending_offset(0) as u64) & 1,
            1
        );
        for (slot, t) in [
            (device, ObjectType::VirtioDevice),
            (events, ObjectType::EventChannel),
        ] {
            let r = k.caps.lookup(s.space(), slot, t, Rights::empty());
            assert!(r.is_err(), "{t:?}: {r:?}");
        }
    }

    #[test]
    fn devices_are_placed_in_free_slots_only() {
        let (mut k, g, s, _) = system();
        let identity = Identity {
            device_id: device::NET,
            features: 0,
            queue_max: [64, 64],
        };
        let add = |k: &mut Kernel<MockHal>, slot| k.add_virtio_device(g, s, (identity, &[]), slot);
        assert_eq!(add(&mut k, 2), Err(Status::SlotOccupied));
        assert_eq!(
            add(&mut k, devices::VIRTIO_SLOTS),
            Err(Status::InvalidArgument)
        );
        assert_eq!(
            k.add_virtio_device(g, g, (identity, &[]), 3),
            Err(Status::InvalidArgument)
        );
        assert!(add(&mut k, 3).is_ok());
        // Accesses outside a window, or of the wrong width, are the guest's fault.
        assert_eq!(
            k.virtio_mmio(g, window(virtio::WINDOW) + 0x200, 4, None),
            None
        );
        assert_eq!(k.virtio_mmio(g, window(reg::STATUS), 2, None), None);
    }
}

// ----- Devices from the system image -----------------------------------------------------------

mod from_the_image {
    use super::*;
    use crate::memmap::RangeSet;
    use crate::testing::*;
    use mica_abi::args::{self as a, Slot};
    use mica_abi::bootinfo::name_field;
    use mica_abi::layout::devices;
    use mica_abi::sysimage::VirtioRecord;
    use mica_abi::ObjectType;

    fn record(name: &str, guest: u32, server: u32, slot: u32) -> VirtioRecord {
        VirtioRecord {
            name: name_field(name),
            guest,
            server,
            slot,
            device_id: device::BLOCK,
            features: 0,
            capacity: 2048,
            queue_size: 128,
            reserved: 0,
        }
    }

    #[test]
    fn a_guest_boots_with_its_disk_and_the_server_finds_its_capabilities() {
        let mut guest = dom("guest");
        guest.cpus[0] = 0;
        let mut server = dom("vda");
        server.cpus[0] = 1;
        let mut k = Box::new(crate::kernel::Kernel::new(MockHal::default()));
        let mut free: RangeSet<4> = RangeSet::new();
        free.insert(crate::testing::RAM).unwrap();
        k.frames.add_ranges(&free);
        let image = image_with_virtio(&[guest, server], &[], &[], &[], &[record("vda", 0, 1, 5)]);
        k.load_system(image).unwrap();
        run(&mut k, 0).unwrap();
        run(&mut k, 1).unwrap();
        let (g, s) = (id_of(&k, "guest"), id_of(&k, "vda"));
        // The guest sees a block device in slot 5: 2048 sectors, 4 KiB blocks, seg_max 62.
        let base = devices::virtio_slot(5).unwrap().0;
        let reg32 =
            |k: &mut crate::kernel::Kernel<MockHal>, off| k.virtio_mmio(g, base + off, 4, None);
        assert_eq!(reg32(&mut k, reg::MAGIC), Some(virtio::MAGIC));
        assert_eq!(reg32(&mut k, reg::DEVICE_ID), Some(device::BLOCK));
        assert_eq!(reg32(&mut k, reg::QUEUE_NUM_MAX), Some(128));
        assert_eq!(
            reg32(&mut k, reg::CONFIG + blk::config::CAPACITY),
            Some(2048)
        );
        assert_eq!(reg32(&mut k, reg::CONFIG + blk::config::SEG_MAX), Some(62));
        assert_eq!(
            reg32(&mut k, reg::CONFIG + blk::config::BLK_SIZE),
            Some(4096)
        );
        let offered = reg32(&mut k, reg::DEVICE_FEATURES).unwrap();
        assert_eq!(u64::from(offered) & blk::F_FLUSH, blk::F_FLUSH);
        // The server's boot-info page names both capabilities.
        let info = boot_info(&k, s);
        let device_slot = info.cap("vda").expect("the device is listed").slot;
        let events = info.cap("vda-events").expect("the channel is listed");
        assert_eq!(events.object_type, ObjectType::EventChannel as u8);
        let r = call(
            &mut k,
            1,
            a::VirtioInfo {
                device: Slot(device_slot),
            },
        );
        assert_eq!(r[0], 0, "the server can serve it");
        let capacity = a::VirtioConfig {
            device: Slot(device_slot),
            offset: blk::config::CAPACITY,
        };
        assert_eq!(
            call(&mut k, 1, capacity)[..2],
            [0, 2048],
            "the capacity the guest sees"
        );
        let past = a::VirtioConfig {
            device: Slot(device_slot),
            offset: 64,
        };
        let refused = status(call(&mut k, 1, past));
        assert_eq!(refused, Err(mica_abi::Status::InvalidArgument));
        // The guest has nothing of the sort.
        assert!(boot_info(&k, g).cap("vda").is_none());
    }
}
