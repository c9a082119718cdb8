//! Bolero properties of the kernel's domain and vCPU lifecycle (see `mica_verify::lifecycle`).

use std::time::Duration;

use mica_verify::lifecycle::{run, Op};

/// Random sequences under plain `cargo test`.
const ITERATIONS: usize = 3_000;

/// Any sequence of creates, maps, unmaps, vCPU creates and starts, grants, deletes, revokes,
/// destroys, faults and scheduling: no vCPU runs for a domain or vCPU whose object is gone,
/// an id names one domain and stays held while anything of it remains, no frame leaks, and
/// every mapping belongs to a live capability.
#[test]
fn isolation_holds_over_any_sequence_of_lifecycle_operations() {
    bolero::check!()
        .with_type::<Vec<Op>>()
        .with_iterations(ITERATIONS)
        .with_shrink_time(Duration::from_secs(10))
        .for_each(|ops| {
            if let Err((step, v)) = run(ops) {
                panic!("broken at step {step}: {v}\nsequence: {ops:#?}");
            }
        });
}

/// The red-team finding, step by step: a child with a running vCPU whose Vcpu and Domain
/// capabilities are deleted, then a new domain: the old vCPU never runs again.
#[test]
fn a_deleted_child_never_runs_in_the_next_domain() {
    let ops = [
        Op::Create { cpu: 0, dst: 5 },
        Op::Map {
            cpu: 0,
            domain: 5,
            page: 1,
            at: 0,
        },
        Op::VcpuCreate {
            cpu: 0,
            domain: 5,
            dst: 6,
            on: 1,
        },
        Op::VcpuStart { cpu: 0, slot: 6 },
        Op::Fault { cpu: 1 },
        Op::Run { cpu: 1 },
        Op::Delete { cpu: 0, slot: 6 },
        Op::Delete { cpu: 0, slot: 5 },
        Op::Create { cpu: 0, dst: 5 },
        Op::Run { cpu: 1 },
        Op::Run { cpu: 0 },
    ];
    if let Err((step, v)) = run(&ops) {
        panic!("broken at step {step}: {v}");
    }
}
