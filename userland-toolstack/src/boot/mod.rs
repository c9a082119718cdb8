//! Booting under QEMU: the command line for a system (`qemu`), the small boot loader that
//! places an image and its device tree (`bootloader`), and the serial console (`serial`).

pub mod bootloader;
pub mod qemu;
pub mod serial;
