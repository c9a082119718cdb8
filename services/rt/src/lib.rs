//! The runtime every Mica domain is built on.
#![cfg_attr(not(test), no_std)]
