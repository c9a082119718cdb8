//! Booting under QEMU: the command line for a system (`qemu`), the small boot loader that
//! places an image and its device tree (`bootloader`), the serial console (`serial`)
//! and the machine's drives (`drives`).

pub mod bootloader;
pub mod drives;
pub mod qemu;
pub mod serial;
