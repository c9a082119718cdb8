//! `rtc`: a driver domain for the PL031 real-time clock passed through to it.
//!
//! The `irq-passthrough` scenario. The manifest gives this domain the PL031's registers (a
//! DeviceMemory capability, `rtc`) and its interrupt (an Irq capability, `rtc-irq`). It sets
//! alarms one second ahead and takes the alarm interrupt two ways:
//!
//! 1. bound to an event channel (`irq_bind_event`): the kernel sets the port in the event page
//!    and wakes this vCPU; the line stays active until the domain clears the device and calls
//!    `irq_ack` — shown twice, so the second alarm proves the acknowledgement re-armed it;
//! 2. bound as a virtual interrupt (`irq_bind_virtual`): the domain enables INTID 34 in its
//!    virtual GIC and takes it in its IRQ handler; its own EOI deactivates the physical line
//!    (hardware-linked list register).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};

use mica_abi::ObjectType;
use mica_rt::device::Device;
use mica_rt::{events, gic, hypercall, irq, println, BootInfo, Port, Slot};

/// PL031 registers (ARM DDI 0224): data, match, interrupt mask, masked status, clear.
const RTCDR: u64 = 0x00;
const RTCMR: u64 = 0x04;
const RTCIMSC: u64 = 0x10;
const RTCMIS: u64 = 0x18;
const RTCICR: u64 = 0x1C;
/// The PL031's interrupt on QEMU virt (SPI 2).
const RTC_INTID: u32 = 34;
/// Event-channel slots for the local pair (high slots, above what the kernel hands out).
const ALARM_TX: Slot = Slot(60);
const ALARM_RX: Slot = Slot(61);
const ALARM_PORT: Port = Port(1);

/// Alarms taken by the IRQ handler.
static VIRTUAL_ALARMS: AtomicU32 = AtomicU32::new(0);

fn fail(what: &str, status: mica_rt::Status) -> ! {
    println!("rtc: {what} refused ({status:?})");
    mica_rt::exit()
}

/// Sets the alarm for the next second and unmasks the device interrupt.
fn arm(rtc: &Device) {
    let now = rtc.read32(RTCDR);
    rtc.write32(RTCMR, now.wrapping_add(1));
    rtc.write32(RTCIMSC, 1);
}

/// Clears the device's interrupt (the line drops).
fn clear(rtc: &Device) {
    rtc.write32(RTCIMSC, 0);
    rtc.write32(RTCICR, 1);
}

fn handle_irq() {
    while let Some(intid) = gic::acknowledge() {
        if intid == RTC_INTID {
            if let Some(rtc) = Device::find("rtc") {
                clear(&rtc);
            }
            VIRTUAL_ALARMS.fetch_add(1, Ordering::Release);
        }
        gic::end_of_interrupt(intid);
    }
}

fn main(_info: BootInfo) -> ! {
    let (Some(rtc), Some(line)) = (
        Device::find("rtc"),
        mica_rt::bootinfo().and_then(|p| p.cap_slot("rtc-irq", ObjectType::Irq)),
    ) else {
        println!("rtc: boot-info page lacks the rtc device or its interrupt");
        mica_rt::exit()
    };
    println!("rtc: PL031 at time {}", rtc.read32(RTCDR));
    clear(&rtc);

    // 1. The alarm as an event, twice.
    if let Err(s) = hypercall::evtchn_create(ALARM_TX, ALARM_RX) {
        fail("evtchn_create", s);
    }
    if let Err(s) = events::register().and_then(|()| events::bind(ALARM_RX, ALARM_PORT, 0)) {
        fail("event set-up", s);
    }
    if let Err(s) = hypercall::irq_bind_event(line, ALARM_RX) {
        fail("irq_bind_event", s);
    }
    for round in 1..=2 {
        arm(&rtc);
        while !events::wait().contains(ALARM_PORT) {}
        let raised = rtc.read32(RTCMIS) & 1 == 1;
        clear(&rtc);
        match hypercall::irq_ack(line) {
            Ok(()) => println!(
                "rtc: alarm {round} delivered as an event (device raised: {raised}); acknowledged"
            ),
            Err(s) => fail("irq_ack", s),
        }
    }
    if let Err(s) = hypercall::irq_unbind(line) {
        fail("irq_unbind", s);
    }

    // 2. The alarm as a virtual interrupt: the distributor routes SPI 34 to vCPU 0.
    let gicd = gic::GICD_BASE;
    gic::write32(gicd + 0x6000 + 8 * RTC_INTID as u64, 0); // IROUTER34: vCPU 0
    gic::write32(gicd + 0x0400 + 32, 0xA0A0_A0A0); // IPRIORITYR8 (INTIDs 32-35)
    gic::write32(gicd + 0x0084, 0xFFFF_FFFF); // IGROUPR1: group 1
    gic::write32(gicd + 0x0104, 1 << (RTC_INTID - 32)); // ISENABLER1
    gic::write32(gicd, 0x12); // GICD_CTLR: ARE, EnableGrp1
    gic::enable_system_registers();
    gic::set_priority_mask(0xFF);
    gic::enable_group1(true);
    irq::set_handler(handle_irq);
    irq::enable();
    if let Err(s) = hypercall::irq_bind_virtual(line, 0) {
        fail("irq_bind_virtual", s);
    }
    arm(&rtc);
    while VIRTUAL_ALARMS.load(Ordering::Acquire) == 0 {
        irq::wait();
    }
    println!(
        "rtc: alarm 3 delivered as virtual interrupt {RTC_INTID}; the guest's EOI deactivated it"
    );
    println!("rtc: done");
    mica_rt::exit()
}

mica_rt::entry!(main);
