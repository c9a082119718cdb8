//! Faults: what stops a domain.

use crate::kernel::Exit;

use crate::testing::*;

#[test]
fn a_memory_fault_stops_only_the_faulting_domain() {
    let mut a = dom("wild");
    a.cpus[0] = 0;
    let mut b = dom("calm");
    b.cpus[0] = 1;
    let mut k = kernel(&[a, b]);
    run(&mut k, 0).unwrap();
    run(&mut k, 1).unwrap();
    k.handle_exit(
        0,
        &Exit::MemoryFault {
            ipa: 0x8000_0000,
            write: false,
            pc: 0x4000_0010,
        },
    );
    assert_eq!(run(&mut k, 0), None);
    assert!(!k.domains().any(|d| d.name() == "wild"));
    assert!(run(&mut k, 1).is_some());
    let console = k.hal.console.borrow();
    assert!(
        console.contains(
            "domain wild (id 1) stopped: vCPU 0 read guest-physical 0x80000000 at pc 0x40000010"
        ),
        "{console}"
    );
}
