//! Devices and interrupts passed through.

use mica_abi::args::{self as a, Port, Slot};
use mica_abi::bootinfo::name_field;
use mica_abi::sysimage;
use mica_abi::{ObjectType, Rights, Status};

use crate::kernel::Kernel;
use crate::memmap::RangeSet;
use crate::psci;

use crate::testing::*;

use crate::irq::IrqOutcome;

fn device_kernel() -> Box<Kernel<MockHal>> {
    let mut drv = dom("drv");
    drv.cpus[0] = 1;
    let mut other = dom("other");
    other.cpus[0] = 0;
    let rtc = sysimage::DeviceRecord {
        name: name_field("rtc"),
        domain: 0,
        interrupt: 34,
        mmio_base: 0x0901_0000,
        mmio_size: 0x1000,
        guest_address: 0x0901_0000,
        reserved: 0,
    };
    let mut k = Box::new(Kernel::new(MockHal::default()));
    let mut free: RangeSet<4> = RangeSet::new();
    free.insert(RAM).unwrap();
    k.frames.add_ranges(&free);
    k.load_system(image_with_devices(&[drv, other], &[], &[], &[rtc]))
        .unwrap();
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    k
}

#[test]
fn devices_become_mapped_device_memory_and_a_masked_irq_capability() {
    let k = device_kernel();
    let drv = id_of(&k, "drv");
    let info = boot_info(&k, drv);
    assert_eq!(
        info.cap("rtc").unwrap().object_type,
        ObjectType::DeviceMemory as u8
    );
    assert_eq!(
        info.cap("rtc-irq").unwrap().object_type,
        ObjectType::Irq as u8
    );
    assert_eq!(info.region("rtc").unwrap().ipa, 0x0901_0000);
    assert_eq!(
        k.domain(drv).unwrap().stage2.device_pages.get(&0x0901_0000),
        Some(&0x0901_0000)
    );
    assert!(
        k.hal.irq_log.borrow().contains(&"disable 34".to_string()),
        "masked until bound"
    );
    assert!(boot_info(&k, id_of(&k, "other")).cap("rtc").is_none());
}

#[test]
fn an_interrupt_bound_to_an_event_is_delivered_and_stays_active_until_acknowledged() {
    let mut k = device_kernel();
    let drv = id_of(&k, "drv");
    let irq = Slot(boot_info(&k, drv).cap("rtc-irq").unwrap().slot);
    let page = sysimage::DOMAIN_RAM_BASE + 0x10000;
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::EvtchnCreate {
                dst_a: Slot(30),
                dst_b: Slot(31),
            }
        )),
        Ok(())
    );
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::IrqBindEvent {
                irq,
                endpoint: Slot(31),
            }
        )),
        Err(Status::WrongState),
        "endpoint unbound"
    );
    assert_eq!(
        status(call(&mut k, 1, a::EventPageSet { ipa: page })),
        Ok(())
    );
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::EvtchnBind {
                endpoint: Slot(31),
                port: Port(9),
                vcpu: Slot(0),
            }
        )),
        Ok(())
    );
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::IrqBindEvent {
                irq: Slot(31),
                endpoint: Slot(31),
            }
        )),
        Err(Status::InvalidCapability),
        "not an Irq"
    );
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::IrqBindEvent {
                irq,
                endpoint: Slot(31),
            }
        )),
        Ok(())
    );
    assert!(
        k.hal
            .irq_log
            .borrow()
            .contains(&"enable 34 on 1".to_string()),
        "routed to the vCPU's CPU"
    );
    assert_eq!(
        status(call(&mut k, 1, a::IrqAck { irq })),
        Err(Status::WrongState),
        "nothing to ack"
    );
    assert_eq!(k.physical_interrupt(34), IrqOutcome::LeaveActive);
    let pa = k.domain(drv).unwrap().mappings.translate(page).unwrap();
    assert_eq!(read_u64(&k.hal.memory.borrow(), pa), 1 << 9);
    assert_eq!(status(call(&mut k, 1, a::IrqAck { irq })), Ok(()));
    assert!(k
        .hal
        .irq_log
        .borrow()
        .contains(&"deactivate 34".to_string()));
    // Another domain cannot touch the line.
    assert_eq!(
        status(call(&mut k, 0, a::IrqUnbind { irq })),
        Err(Status::InvalidCapability)
    );
    // Unbound: masked, and a stray occurrence is deactivated by the kernel.
    assert_eq!(status(call(&mut k, 1, a::IrqUnbind { irq })), Ok(()));
    assert_eq!(k.physical_interrupt(34), IrqOutcome::Deactivate);
    assert_eq!(
        k.physical_interrupt(99),
        IrqOutcome::Deactivate,
        "nobody's line"
    );
}

#[test]
fn an_interrupt_bound_as_virtual_is_injected_hardware_linked() {
    let mut k = device_kernel();
    let drv = id_of(&k, "drv");
    let irq = Slot(boot_info(&k, drv).cap("rtc-irq").unwrap().slot);
    assert_eq!(
        status(call(&mut k, 1, a::IrqBindVirtual { irq, vcpu: Slot(4) })),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(call(&mut k, 1, a::IrqBindVirtual { irq, vcpu: Slot(0) })),
        Ok(())
    );
    k.hal.inject_ok.set(true);
    assert_eq!(k.physical_interrupt(34), IrqOutcome::LeaveActive);
    assert!(k
        .hal
        .irq_log
        .borrow()
        .contains(&"inject 34 to vcpu 0".to_string()));
    // A HAL that cannot inject: the kernel unbinds rather than leave the line stuck.
    k.hal.inject_ok.set(false);
    assert_eq!(k.physical_interrupt(34), IrqOutcome::Deactivate);
}

#[test]
fn device_memory_maps_as_device_and_dies_with_its_domain() {
    let mut k = device_kernel();
    let drv = id_of(&k, "drv");
    let rtc = Slot(boot_info(&k, drv).cap("rtc").unwrap().slot);
    let rw = Rights::READ | Rights::WRITE;
    let rwx = Rights::READ | Rights::WRITE | Rights::EXECUTE;
    let frame = 0x0901_0000 / 4096;
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::MemMap {
                domain: Slot::SELF_DOMAIN,
                memory: rtc,
                ipa: 0xA000_0000,
                first_frame: frame,
                frame_count: 1,
                perms: rwx,
            }
        )),
        Err(Status::InsufficientRights),
        "never executable"
    );
    assert_eq!(
        status(call(
            &mut k,
            1,
            a::MemMap {
                domain: Slot::SELF_DOMAIN,
                memory: rtc,
                ipa: 0xA000_0000,
                first_frame: frame,
                frame_count: 1,
                perms: rw,
            }
        )),
        Ok(())
    );
    assert_eq!(
        k.domain(drv).unwrap().stage2.device_pages.get(&0xA000_0000),
        Some(&0x0901_0000)
    );
    raw(&mut k, 1, psci::SYSTEM_OFF, [0; 6]);
    assert_eq!(run(&mut k, 1), None);
    assert!(k.domain(drv).is_none());
    assert_eq!(
        k.physical_interrupt(34),
        IrqOutcome::Deactivate,
        "the line went with its domain"
    );
}
