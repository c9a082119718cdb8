//! The x86_64 hardware layer of Mica.
#![cfg_attr(not(test), no_std)]
