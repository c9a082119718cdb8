//! The arch-neutral core of the Mica microhypervisor.
#![cfg_attr(not(test), no_std)]
