//! `smp`: vCPU 0 starts vCPU 1 with PSCI CPU_ON; both report, then the domain ends.
//!
//! Each vCPU prints its index as `whoami` reports it; which physical CPU runs it is the
//! kernel's business (it logs that itself). vCPU 0 waits until vCPU 1 has reported before it
//! prints the final line and ends the domain (the `smp-guest` smoke scenario).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};
use mica_rt::smp::{self, VcpuStack};
use mica_rt::{hypercall, println, psci, BootInfo};

/// The second vCPU's stack.
static VCPU1_STACK: VcpuStack<{ 16 * 1024 }> = VcpuStack::new();

/// Set by vCPU 1 once it has printed.
static VCPU1_REPORTED: AtomicBool = AtomicBool::new(false);

/// The index `whoami` gives the calling vCPU, for the report line.
fn vcpu_index() -> u64 {
    hypercall::whoami().map_or(u64::MAX, |me| me.vcpu_index)
}

fn main(_info: BootInfo) -> ! {
    match psci::version() {
        Ok((major, minor)) => println!("smp: psci version {major}.{minor}"),
        Err(e) => println!("smp: psci version refused ({e})"),
    }
    println!("smp: vcpu {} running", vcpu_index());
    if let Err(e) = smp::start_vcpu(1, &VCPU1_STACK, secondary, 1) {
        println!("smp: starting vcpu 1 failed ({e})");
        mica_rt::exit();
    }
    while !VCPU1_REPORTED.load(Ordering::Acquire) {
        let _ = hypercall::yield_now();
        core::hint::spin_loop();
    }
    println!("smp: both vcpus reported");
    mica_rt::exit()
}

/// vCPU 1: reports, tells vCPU 0, stops itself.
fn secondary(_arg: u64) -> ! {
    println!("smp: vcpu {} running", vcpu_index());
    VCPU1_REPORTED.store(true, Ordering::Release);
    let refused = psci::cpu_off();
    println!("smp: vcpu 1 CPU_OFF refused ({refused})");
    loop {
        core::hint::spin_loop();
    }
}

mica_rt::entry!(main);
