//! Building bootable images: the hypervisor ELF into an arm64 `Image` (`image`), a manifest
//! and its domains' ELF files into a system image appended to it (`builder`, `sysimage`),
//! and the device trees the toolstack edits as its own boot loader (`dtb`).

pub mod builder;
pub mod dtb;
pub mod image;
pub mod linux;
pub mod programs;
pub mod sysimage;
