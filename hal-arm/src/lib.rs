//! The aarch64 EL2 hardware layer of Mica.
#![cfg_attr(not(test), no_std)]
