//! Host tests of the kernel core against the mock HAL of `crate::testing`, one file per
//! subject: boot instantiation, every hypercall's decode/check/perform, PSCI, faults, events,
//! devices, the control domain, scheduling, the vCPU state machine and isolation.

mod boot;
mod control;
mod decode;
mod devices;
mod events;
mod faults;
mod hypercalls;
mod isolation;
mod linux;
mod psci;
mod scheduling;
mod vcpu_states;
mod virtio;
