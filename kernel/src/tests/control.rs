//! The control domain's calls.

use mica_abi::args::{self as a, Slot};
use mica_abi::hypercall::{pack_console_bytes, Call};
use mica_abi::sysimage;
use mica_abi::{ObjectType, Status};

use crate::kernel::Kernel;
use crate::memmap::{PhysRange, RangeSet};

use crate::testing::*;

#[test]
fn a_control_domain_gets_a_pool_the_system_image_and_every_domain() {
    let mut ctl = dom("ctl");
    ctl.flags = sysimage::FLAG_CONTROL;
    ctl.cpus[0] = 0;
    let mut a = dom("web");
    a.cpus[0] = 1;
    let mut later = dom("later");
    later.at_boot = false;
    later.after = 2;
    later.cpus[0] = 1;
    let mut k = Box::new(Kernel::new(MockHal::default()));
    let mut free: RangeSet<4> = RangeSet::new();
    free.insert(PhysRange {
        start: 0x4000_0000,
        end: 0x4800_0000,
    })
    .unwrap();
    k.frames.add_ranges(&free);
    k.set_image_range(PhysRange {
        start: 0x5000_0000,
        end: 0x5000_3000,
    });
    k.load_system(image(&[ctl, a, later])).unwrap();
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    let c = id_of(&k, "ctl");
    let info = boot_info(&k, c);
    let pool = info.cap("free-memory").unwrap();
    assert_eq!(pool.object_type, ObjectType::Memory as u8);
    let r = call(
        &mut k,
        0,
        a::CapIdentify {
            slot: Slot(pool.slot),
        },
    );
    assert_eq!(r[3] * 4096, sysimage::CONTROL_POOL_BYTES);
    assert_eq!(
        info.region("system-image").unwrap().ipa,
        sysimage::SYSTEM_IMAGE_IPA
    );
    assert_eq!(
        k.domain(c)
            .unwrap()
            .mappings
            .translate(sysimage::SYSTEM_IMAGE_IPA),
        Some(0x5000_0000)
    );
    let web = Slot(info.cap("dom-web").unwrap().slot);
    // It may set the scheduling of what it runs.
    let sched = info.cap("sched-control").unwrap();
    assert_eq!(sched.object_type, ObjectType::SchedControl as u8);
    let target = mica_abi::sched::pack_target(id_of(&k, "web").0, 0, 7);
    let r = call(
        &mut k,
        0,
        a::SchedSet {
            control: Slot(sched.slot),
            target,
            budget_ns: 0,
            period_ns: 0,
            affinity: 0b10,
        },
    );
    assert_eq!(status(r), Ok(()));
    // domain_info, console_read, set_name, pause, restart through that capability.
    let w = id_of(&k, "web");
    let r = call(&mut k, 0, a::DomainInfo { domain: web });
    assert_eq!(status(r), Ok(()));
    assert_eq!(r[1] & 0xFFFF, w.0 as u64);
    assert_eq!((r[1] >> 16) & 0xFF, 0, "running");
    assert_eq!(r[1] >> 24, 1, "one vCPU");
    assert_eq!(r[2], 256 * 1024);
    let text = b"hi there, console\n";
    call(&mut k, 1, a::ConsoleWrite::new(text));
    let r = call(
        &mut k,
        0,
        a::ConsoleRead {
            domain: web,
            offset: 3,
        },
    );
    assert_eq!(r[1], text.len() as u64);
    let mut got = r[2].to_le_bytes().to_vec();
    got.extend_from_slice(&r[3].to_le_bytes());
    assert_eq!(&got[..15], &text[3..], "15 bytes from offset 3");
    assert_eq!(&got[15..], &[0], "nothing past the end");
    assert_eq!(
        status(call(&mut k, 0, a::DomainSetName::new(web, b"www"))),
        Ok(())
    );
    assert_eq!(k.domain(w).unwrap().name(), "www");
    // Raw registers: a name outside [a-z0-9-], which decoding refuses.
    let bad = pack_console_bytes(b"BAD NAME");
    assert_eq!(
        status(hvc(
            &mut k,
            0,
            Call::DomainSetName,
            [web.raw(), bad[0], 0, 0, 0, 0]
        )),
        Err(Status::InvalidArgument)
    );
    assert_eq!(
        status(call(&mut k, 0, a::DomainPause { domain: web })),
        Ok(())
    );
    assert_eq!(
        (call(&mut k, 0, a::DomainInfo { domain: web })[1] >> 16) & 0xFF,
        1,
        "paused"
    );
    assert_eq!(
        status(call(&mut k, 0, a::DomainUnpause { domain: web })),
        Ok(())
    );
    assert_eq!(
        status(call(&mut k, 0, a::DomainRestart { domain: web })),
        Ok(())
    );
    run(&mut k, 1);
    assert_eq!(k.domain(w).unwrap().boots, 1);
    // Other domains cannot do any of this.
    assert_eq!(
        status(call(&mut k, 1, a::DomainInfo { domain: web })),
        Err(Status::InvalidCapability)
    );
    // A domain started later (after `web` goes) is granted to the control domain too.
    assert_eq!(
        status(call(&mut k, 0, a::DomainDestroy { domain: web })),
        Ok(())
    );
    run(&mut k, 1);
    assert!(k.domains().any(|d| d.name() == "later"));
    assert!(
        boot_info(&k, c).cap("dom-later").is_some(),
        "listed in the control domain's boot info"
    );
    assert!(
        boot_info(&k, c).cap("dom-web").is_none(),
        "a destroyed domain's entry goes (its slot may hold another domain next)"
    );
    assert!(
        boot_info(&k, c).cap("free-memory").is_some(),
        "the rest stay"
    );
}
