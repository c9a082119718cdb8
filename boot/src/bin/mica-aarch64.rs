//! aarch64
#![no_std]
#![no_main]
