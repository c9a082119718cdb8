//! Capability spaces, the derivation tree, rights arithmetic and revoke.
//!
//! Pure logic with no hardware in sight, so the kernel's most security-critical data
//! structure is tested and model-checked on the host (`verify/`).
#![no_std]
#![forbid(unsafe_code)]
