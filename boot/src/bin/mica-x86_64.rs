//! x86
#![no_std]
#![no_main]
