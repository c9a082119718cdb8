//! Decoding a trapped guest data access to an emulated device window.
//!
//! A stage-2 data abort (ESR_EL2.EC 0x24) on an address the domain was given an emulator for
//! must be turned into "read or write N bytes at this IPA, to or from this register". When
//! ESR_EL2.ISV is 1 the syndrome says so directly ([`decode_syndrome`]). When it is 0 (QEMU
//! and real cores report this for `ldp`/`stp`, pre/post-index and other writeback forms) the
//! caller reads the 32-bit instruction at ELR_EL2 through the guest's translation tables and
//! [`decode_instruction`] decodes it from the A64 load/store encoding tables. Either way the
//! result is one [`MmioAccess`]; [`MmioAccess::transfers`] splits a pair into its two
//! device accesses, [`MmioAccess::store_value`] gives what a store writes and
//! [`MmioAccess::complete`] applies a load's result and any base-register writeback to the
//! guest's registers. Nothing here reads guest memory or panics on any input: the kernel
//! treats a [`DecodeError`] as a fault of the domain, never of the machine.
//!
//! Supported: general-purpose-register LDR/STR of every size (B, H, W, X) in the unsigned
//! offset, unscaled (LDUR/STUR), pre-index, post-index, register offset and unprivileged
//! (LDTR/STTR) forms; sign-extending loads LDRSB/LDRSH/LDRSW; LDP/STP (32- and 64-bit,
//! signed offset, pre-index, post-index), LDNP/STNP and LDPSW; load-acquire/store-release
//! LDAR/STLR (B, H, W, X). Rejected with [`DecodeError::Unsupported`]: SIMD/FP register
//! loads and stores, exclusives (LDXR/STXR and the LDAXR/STLXR and pair forms), compare and
//! swap, atomic memory operations (LDADD, SWP, ...), LDAPR/LDAPUR, LDLAR/STLLR, load literal,
//! PRFM/PRFUM, pointer-authenticated loads (LDRAA/LDRAB), STGP and other MTE forms, memory
//! copy/set (FEAT_MOPS) and every unallocated encoding. Loads that the architecture makes
//! CONSTRAINED UNPREDICTABLE (writeback into the loaded register, LDP into one register
//! twice) are rejected with [`DecodeError::Unpredictable`]; stores that write back into the
//! stored register store its original value, one of the behaviours the architecture allows.
//!
//! Data is little-endian: a guest running with SCTLR_EL1.EE=1 would need the caller to swap
//! bytes. Encodings follow the Arm ARM (DDI 0487) C4.1, "A64 instruction set encoding",
//! section "Loads and Stores"; the syndrome follows D19.2 "ESR_EL2", ISS encoding for an
//! exception from a Data Abort.

/// The fields of ESR_EL2 used here (Arm ARM D19.2, ISS encoding for a Data Abort).
pub mod syndrome {
    /// EC[31:26] of a data abort from a lower exception level.
    pub const EC_DATA_ABORT_LOWER: u8 = crate::esr::class::DATA_ABORT_LOWER;
    /// ISV (ISS bit 24): bits [23:14] hold a valid instruction syndrome.
    pub const ISV: u64 = 1 << 24;
    /// SAS[23:22]: access size, log2 of bytes.
    pub const SAS_SHIFT: u32 = 22;
    /// SSE (bit 21): the load sign-extends.
    pub const SSE: u64 = 1 << 21;
    /// SRT[20:16]: the transfer register; 31 is XZR/WZR.
    pub const SRT_SHIFT: u32 = 16;
    /// SF (bit 15): the register is 64 bits wide (X), else 32 (W).
    pub const SF: u64 = 1 << 15;
    /// AR (bit 14): the instruction has acquire/release semantics.
    pub const AR: u64 = 1 << 14;
    /// LST[12:11]: load/store type of FEAT_LS64 single-copy atomic 64-byte accesses.
    pub const LST_MASK: u64 = 0b11 << 11;
    /// CM (bit 8): the fault came from a cache maintenance or address translation instruction.
    pub const CM: u64 = 1 << 8;
    /// S1PTW (bit 7): the fault was on a stage-2 walk of a stage-1 translation table.
    pub const S1PTW: u64 = 1 << 7;
    /// WnR (bit 6): the access was a write.
    pub const WNR: u64 = 1 << 6;
}

/// The zero register's number in a transfer register field: reads as 0, writes are discarded.
pub const ZERO_REGISTER: u8 = 31;

/// One decoded guest access to an emulated device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// A store (guest to device) rather than a load.
    pub write: bool,
    /// Bytes per register transferred: 1, 2, 4 or 8. A pair moves twice this.
    pub size: u8,
    /// The first (or only) transfer register, 0-30, or [`ZERO_REGISTER`].
    pub register: u8,
    /// A load sign-extends the value from `size` bytes.
    pub sign_extend: bool,
    /// The register is used as 64 bits (X); a 32-bit (W) load clears bits [63:32].
    pub sixty_four: bool,
    /// Load-acquire or store-release (trapping already orders it; for the record).
    pub acquire_release: bool,
    /// For LDP/STP/LDNP/STNP/LDPSW: the second register, accessed at `size` bytes higher.
    pub pair: Option<u8>,
    /// For pre- and post-index forms: the base register update.
    pub writeback: Option<Writeback>,
}

/// A base-register update of a pre- or post-indexed access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Writeback {
    /// The base register Rn, 0-30, or 31 for the stack pointer in use (SP_EL1 or SP_EL0).
    pub base_register: u8,
    /// Added to the base register after the access.
    pub offset: i64,
    /// The access used base + offset (pre-index) rather than base (post-index).
    pub pre_index: bool,
}

/// A stack-pointer update the caller must apply: the guest's current stack pointer (SP_EL1
/// if SPSR_EL2.M is EL1h, SP_EL0 if EL1t or EL0) plus `offset`, wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the guest's stack pointer must be updated"]
pub struct StackPointerWriteback {
    /// Added to the stack pointer.
    pub offset: i64,
}

/// One device access of an [`MmioAccess`]: a pair makes two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The guest physical address accessed.
    pub ipa: u64,
    /// Bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// The register that supplies (store) or receives (load) the data.
    pub register: u8,
    /// 0 for the first register, 1 for the second of a pair; the index into the `loaded`
    /// argument of [`MmioAccess::complete`].
    pub index: u8,
}

/// What the syndrome alone says about a data abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syndrome {
    /// ISV was 1: the access is fully described.
    Decoded(MmioAccess),
    /// ISV was 0: read the instruction at ELR_EL2 and call [`decode_instruction`].
    NeedsInstruction {
        /// ESR_EL2.WnR, for a report if the instruction cannot be read.
        write: bool,
    },
}

/// Why an access cannot be emulated. The kernel stops the domain with a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The exception class is not a data abort from a lower exception level.
    NotADataAbort {
        /// ESR_EL2.EC.
        class: u8,
    },
    /// A cache maintenance or address translation instruction faulted (ISS.CM).
    CacheMaintenance,
    /// A stage-1 table walk touched the device window (ISS.S1PTW).
    PageTableWalk,
    /// A valid syndrome this decoder does not handle (FEAT_LS64 single-copy 64-byte access).
    UnsupportedSyndrome {
        /// ESR_EL2.ISS.
        iss: u32,
    },
    /// The instruction is not a supported general-purpose load or store.
    Unsupported(u32),
    /// The instruction's behaviour is CONSTRAINED UNPREDICTABLE (register overlap).
    Unpredictable(u32),
}

/// Decodes ESR_EL2 of a trapped data access.
pub fn decode_syndrome(esr: u64) -> Result<Syndrome, DecodeError> {
    let class = ((esr >> 26) & 0x3F) as u8;
    if class != syndrome::EC_DATA_ABORT_LOWER {
        return Err(DecodeError::NotADataAbort { class });
    }
    if esr & syndrome::CM != 0 {
        return Err(DecodeError::CacheMaintenance);
    }
    if esr & syndrome::S1PTW != 0 {
        return Err(DecodeError::PageTableWalk);
    }
    let write = esr & syndrome::WNR != 0;
    if esr & syndrome::ISV == 0 {
        return Ok(Syndrome::NeedsInstruction { write });
    }
    if esr & syndrome::LST_MASK != 0 {
        return Err(DecodeError::UnsupportedSyndrome {
            iss: (esr & 0x1FF_FFFF) as u32,
        });
    }
    let sixty_four = esr & syndrome::SF != 0;
    Ok(Syndrome::Decoded(MmioAccess {
        write,
        size: 1 << ((esr >> syndrome::SAS_SHIFT) & 3),
        register: ((esr >> syndrome::SRT_SHIFT) & 0x1F) as u8,
        // SSE is only meaningful for loads; a store never extends.
        sign_extend: !write && esr & syndrome::SSE != 0,
        sixty_four,
        acquire_release: esr & syndrome::AR != 0,
        pair: None,
        writeback: None,
    }))
}

/// Bits `[lo, lo + width)` of `insn`.
const fn field(insn: u32, lo: u32, width: u32) -> u32 {
    (insn >> lo) & ((1 << width) - 1)
}

/// Sign-extends the low `bits` bits of `value`.
const fn signed(value: u32, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((value as i64) << shift) >> shift
}

/// Decodes a 32-bit A64 instruction that made a data access to an emulated device.
pub fn decode_instruction(insn: u32) -> Result<MmioAccess, DecodeError> {
    let unsupported = Err(DecodeError::Unsupported(insn));
    // C4.1: loads and stores have op1 (bits [28:25]) = x1x0.
    if field(insn, 27, 1) != 1 || field(insn, 25, 1) != 0 {
        return unsupported;
    }
    // Bit 26 (V) selects SIMD/FP registers in every load/store class.
    if field(insn, 26, 1) == 1 {
        return unsupported;
    }
    // Bits [29:28] of op0 choose the class group.
    match field(insn, 28, 2) {
        0b00 => decode_ordered(insn),
        0b10 => decode_pair(insn),
        0b11 => decode_register(insn),
        // 0b01: load literal and FEAT_MOPS memory copy/set.
        _ => unsupported,
    }
}

/// "Load/store exclusive" and "load/store ordered": only LDAR/STLR (B, H, W, X) are supported.
fn decode_ordered(insn: u32) -> Result<MmioAccess, DecodeError> {
    // size:2 | 001000 | o2=1 | L | o1=0 | Rs=11111 | o0=1 | Rt2=11111 | Rn | Rt
    const MASK: u32 = 0x3FBF_FC00;
    const LDAR_STLR: u32 = 0x089F_FC00;
    if insn & MASK != LDAR_STLR {
        return Err(DecodeError::Unsupported(insn));
    }
    let size_log2 = field(insn, 30, 2);
    Ok(MmioAccess {
        write: field(insn, 22, 1) == 0,
        size: 1 << size_log2,
        register: field(
            insn,
            0,
            if cfg!(feature = "mutant-mmio-register-field-too-wide") {
                6
            } else {
                5
            },
        ) as u8,
        sign_extend: false,
        sixty_four: size_log2 == 3,
        acquire_release: true,
        pair: None,
        writeback: None,
    })
}

/// "Load/store register pair" in its four addressing classes (bits [24:23]).
fn decode_pair(insn: u32) -> Result<MmioAccess, DecodeError> {
    let opc = field(insn, 30, 2);
    let load = field(insn, 22, 1) == 1;
    let class = field(insn, 23, 2);
    let (size, sign_extend, sixty_four) = match (opc, load) {
        (0b00, _) => (4u8, false, false),
        (0b10, _) => (8, false, true),
        // LDPSW; there is no no-allocate form of it.
        (0b01, true) if class != 0b00 => (4, true, true),
        // STGP (MTE), opc 11 and the no-allocate opc 01 encodings.
        _ => return Err(DecodeError::Unsupported(insn)),
    };
    let t = field(insn, 0, 5) as u8;
    let n = field(insn, 5, 5) as u8;
    let t2 = field(insn, 10, 5) as u8;
    // imm7 is scaled by the register size.
    let offset = signed(field(insn, 15, 7), 7) * i64::from(size);
    let writeback = match class {
        // No-allocate pair (offset) and signed offset: no writeback.
        0b00 | 0b10 => None,
        0b01 => Some(Writeback {
            base_register: n,
            offset,
            pre_index: false,
        }),
        _ => Some(Writeback {
            base_register: n,
            offset,
            pre_index: true,
        }),
    };
    if load && (t == t2 || (writeback.is_some() && n != 31 && (t == n || t2 == n))) {
        return Err(DecodeError::Unpredictable(insn));
    }
    Ok(MmioAccess {
        write: !load,
        size,
        register: t,
        sign_extend,
        sixty_four,
        acquire_release: false,
        pair: Some(t2),
        writeback,
    })
}

/// "Load/store register" classes: unsigned immediate, unscaled, pre/post-index, unprivileged
/// and register offset. Returns (size, load, sign extend, 64-bit) from size:opc, or `None` for
/// prefetches and unallocated encodings.
fn size_and_kind(insn: u32) -> Option<(u8, bool, bool, bool)> {
    let size_log2 = field(insn, 30, 2);
    let opc = field(insn, 22, 2);
    let size = 1u8 << size_log2;
    match (size_log2, opc) {
        (_, 0b00) => Some((size, false, false, size_log2 == 3)),
        (_, 0b01) => Some((size, true, false, size_log2 == 3)),
        // LDRSB/LDRSH/LDRSW into an X register.
        (0..=2, 0b10) => Some((size, true, true, true)),
        // LDRSB/LDRSH into a W register.
        (0..=1, 0b11) => Some((size, true, true, false)),
        // size 11 opc 10 is PRFM/PRFUM; the rest are unallocated.
        _ => None,
    }
}

fn decode_register(insn: u32) -> Result<MmioAccess, DecodeError> {
    let unsupported = Err(DecodeError::Unsupported(insn));
    let Some((size, load, sign_extend, sixty_four)) = size_and_kind(insn) else {
        return unsupported;
    };
    let t = field(insn, 0, 5) as u8;
    let n = field(insn, 5, 5) as u8;
    let writeback = if field(insn, 24, 1) == 1 {
        // Unsigned immediate: imm12 scaled, no writeback.
        None
    } else if field(insn, 21, 1) == 1 {
        // Bit 21 set, by op4 (bits [11:10]): atomic memory operations (00), register
        // offset (10) and pointer-authenticated loads (x1).
        if field(insn, 10, 2) != 0b10 {
            return unsupported;
        }
        // option<1> must be 1: UXTW, LSL/UXTX, SXTW, SXTX.
        if field(insn, 14, 1) == 0 {
            return unsupported;
        }
        None
    } else {
        let offset = signed(field(insn, 12, 9), 9);
        match field(insn, 10, 2) {
            // Unscaled (LDUR/STUR) and unprivileged (LDTR/STTR): no writeback.
            0b00 | 0b10 => None,
            0b01 => Some(Writeback {
                base_register: n,
                offset,
                pre_index: false,
            }),
            _ => Some(Writeback {
                base_register: n,
                offset,
                pre_index: true,
            }),
        }
    };
    if load && writeback.is_some() && n == t && n != 31 {
        return Err(DecodeError::Unpredictable(insn));
    }
    Ok(MmioAccess {
        write: !load,
        size,
        register: t,
        sign_extend,
        sixty_four,
        acquire_release: false,
        pair: None,
        writeback,
    })
}

/// The addresses of the two halves of a pair access of `size` bytes per register at `ipa`,
/// or `None` if the second would pass the end of the address space.
pub fn split_pair_address(ipa: u64, size: u8) -> Option<[u64; 2]> {
    Some([ipa, ipa.checked_add(u64::from(size))?])
}

impl MmioAccess {
    /// Bytes moved in all: `size`, or twice that for a pair.
    pub fn total_size(&self) -> u8 {
        if self.pair.is_some() {
            self.size.saturating_mul(2)
        } else {
            self.size
        }
    }

    /// The device accesses, in order, for an access that faulted at `ipa` (the lowest address
    /// it touches). `None` if a pair would wrap past the end of the address space.
    pub fn transfers(&self, ipa: u64) -> Option<heapless::Vec<Transfer, 2>> {
        let mut out = heapless::Vec::new();
        let first = Transfer {
            ipa,
            size: self.size,
            register: self.register,
            index: 0,
        };
        match self.pair {
            None => out.push(first).ok()?,
            Some(second) => {
                let [_, next] = split_pair_address(ipa, self.size)?;
                out.push(first).ok()?;
                out.push(Transfer {
                    ipa: next,
                    size: self.size,
                    register: second,
                    index: 1,
                })
                .ok()?;
            }
        }
        Some(out)
    }

    /// Bit mask of `size` bytes.
    fn size_mask(&self) -> u64 {
        match self.size {
            1 => 0xFF,
            2 => 0xFFFF,
            4 => 0xFFFF_FFFF,
            _ => u64::MAX,
        }
    }

    /// The value a store writes for transfer `index` (0, or 1 for a pair's second register),
    /// truncated to `size` bytes. The zero register and an out-of-range index give 0. Read
    /// every store value before [`complete`](Self::complete) applies writeback.
    pub fn store_value(&self, registers: &[u64; 31], index: u8) -> u64 {
        let register = match index {
            0 => Some(self.register),
            1 => self.pair,
            _ => None,
        };
        register
            .and_then(|r| registers.get(usize::from(r)).copied())
            .map_or(0, |value| value & self.size_mask())
    }

    /// What a load puts in its register, given the `size`-byte value the device returned in
    /// the low bits of `raw`: zero- or sign-extended, and with bits [63:32] cleared for a W
    /// register.
    pub fn loaded_value(&self, raw: u64) -> u64 {
        let bits = u32::from(self.size) * 8;
        let value = raw & self.size_mask();
        let value = if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            (((value << shift) as i64) >> shift) as u64
        } else {
            value
        };
        if self.sixty_four {
            value
        } else {
            value & 0xFFFF_FFFF
        }
    }

    /// Finishes the access in the guest's x0-x30: a load writes `loaded[0]` (and `loaded[1]`
    /// for a pair) through [`loaded_value`](Self::loaded_value), the zero register discards;
    /// writeback adds the offset to the base register. A base of 31 is the stack pointer,
    /// which is not in `registers`: that update is returned for the caller to apply. The
    /// caller also advances ELR_EL2 by 4.
    pub fn complete(
        &self,
        registers: &mut [u64; 31],
        loaded: [u64; 2],
    ) -> Option<StackPointerWriteback> {
        if !self.write {
            let targets = [Some(self.register), self.pair];
            for (target, raw) in targets.into_iter().zip(loaded) {
                if let Some(slot) = target.and_then(|r| registers.get_mut(usize::from(r))) {
                    *slot = self.loaded_value(raw);
                }
            }
        }
        let writeback = self.writeback?;
        match registers.get_mut(usize::from(writeback.base_register)) {
            Some(base) => {
                *base = base.wrapping_add(writeback.offset as u64);
                None
            }
            None => Some(StackPointerWriteback {
                offset: writeback.offset,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(write: bool, size: u8, register: u8) -> MmioAccess {
        MmioAccess {
            write,
            size,
            register,
            sign_extend: false,
            sixty_four: size == 8,
            acquire_release: false,
            pair: None,
            writeback: None,
        }
    }

    fn wb(base_register: u8, offset: i64, pre_index: bool) -> Option<Writeback> {
        Some(Writeback {
            base_register,
            offset,
            pre_index,
        })
    }

    fn decode(insn: u32) -> MmioAccess {
        match decode_instruction(insn) {
            Ok(access) => access,
            Err(e) => panic!("{insn:#010x}: {e:?}"),
        }
    }

    // Every instruction word below was assembled with `llvm-mc -triple=aarch64
    // -show-encoding` and checked field by field against the Arm ARM C4.1 diagrams.

    #[test]
    fn unsigned_offset_loads_and_stores_of_every_size() {
        // strb w1, [x2, #3]
        assert_eq!(decode(0x3900_0C41), single(true, 1, 1));
        // ldrb w1, [x2]
        assert_eq!(decode(0x3940_0041), single(false, 1, 1));
        // strh w3, [x4, #2]
        assert_eq!(decode(0x7900_0483), single(true, 2, 3));
        // ldrh w3, [x4, #4094]
        assert_eq!(decode(0x795F_FC83), single(false, 2, 3));
        // str w0, [sp, #8]
        assert_eq!(decode(0xB900_0BE0), single(true, 4, 0));
        // ldr w30, [x29, #16380]
        assert_eq!(decode(0xB97F_FFBE), single(false, 4, 30));
        // str x5, [x6, #32760]
        assert_eq!(decode(0xF93F_FCC5), single(true, 8, 5));
        // ldr x7, [x8]
        assert_eq!(decode(0xF940_0107), single(false, 8, 7));
        // str xzr, [x1]
        assert_eq!(decode(0xF900_003F), single(true, 8, ZERO_REGISTER));
    }

    #[test]
    fn sign_extending_loads() {
        let sx = |size, register, sixty_four| MmioAccess {
            sign_extend: true,
            sixty_four,
            ..single(false, size, register)
        };
        // ldrsb x1, [x2]
        assert_eq!(decode(0x3980_0041), sx(1, 1, true));
        // ldrsb w1, [x2]
        assert_eq!(decode(0x39C0_0041), sx(1, 1, false));
        // ldrsh x3, [x4, #2]
        assert_eq!(decode(0x7980_0483), sx(2, 3, true));
        // ldrsh w3, [x4]
        assert_eq!(decode(0x79C0_0083), sx(2, 3, false));
        // ldrsw x5, [x6, #4]
        assert_eq!(decode(0xB980_04C5), sx(4, 5, true));
        // ldrsw x5, [x6], #-4  (post-index)
        assert_eq!(
            decode(0xB89F_C4C5),
            MmioAccess {
                writeback: wb(6, -4, false),
                ..sx(4, 5, true)
            }
        );
        // ldursh w1, [x2, #-1]
        assert_eq!(decode(0x78DF_F041), sx(2, 1, false));
    }

    #[test]
    fn unscaled_unprivileged_and_register_offset_forms() {
        // stur w1, [x2, #-3]
        assert_eq!(decode(0xB81F_D041), single(true, 4, 1));
        // ldur x1, [x2, #255]
        assert_eq!(decode(0xF84F_F041), single(false, 8, 1));
        // ldurb w9, [x10, #-256]
        assert_eq!(decode(0x3850_0149), single(false, 1, 9));
        // sttrh w1, [x2, #4]
        assert_eq!(decode(0x7800_4841), single(true, 2, 1));
        // ldtr x1, [x2]
        assert_eq!(decode(0xF840_0841), single(false, 8, 1));
        // ldr x0, [x1, x2, lsl #3]
        assert_eq!(decode(0xF862_7820), single(false, 8, 0));
        // strb w0, [x1, w2, uxtw]
        assert_eq!(decode(0x3822_4820), single(true, 1, 0));
        // ldrsh w0, [x1, w2, sxtw #1]
        assert_eq!(
            decode(0x78E2_D820),
            MmioAccess {
                sign_extend: true,
                ..single(false, 2, 0)
            }
        );
        // str w3, [x4, x5, sxtx]
        assert_eq!(decode(0xB825_E883), single(true, 4, 3));
    }

    #[test]
    fn pre_and_post_index_forms_write_back() {
        // ldr x1, [x2, #8]!
        assert_eq!(
            decode(0xF840_8C41),
            MmioAccess {
                writeback: wb(2, 8, true),
                ..single(false, 8, 1)
            }
        );
        // str w1, [x2], #-256
        assert_eq!(
            decode(0xB810_0441),
            MmioAccess {
                writeback: wb(2, -256, false),
                ..single(true, 4, 1)
            }
        );
        // strb w0, [sp, #255]!
        assert_eq!(
            decode(0x380F_FFE0),
            MmioAccess {
                writeback: wb(31, 255, true),
                ..single(true, 1, 0)
            }
        );
        // ldrh w4, [x5], #2
        assert_eq!(
            decode(0x7840_24A4),
            MmioAccess {
                writeback: wb(5, 2, false),
                ..single(false, 2, 4)
            }
        );
    }

    fn pair(write: bool, size: u8, t: u8, t2: u8, writeback: Option<Writeback>) -> MmioAccess {
        MmioAccess {
            pair: Some(t2),
            writeback,
            ..single(write, size, t)
        }
    }

    #[test]
    fn pairs_in_every_addressing_mode() {
        // ldp x1, x2, [x3, #16]!
        assert_eq!(decode(0xA9C1_0861), pair(false, 8, 1, 2, wb(3, 16, true)));
        // stp x29, x30, [sp, #-16]!
        assert_eq!(
            decode(0xA9BF_7BFD),
            pair(true, 8, 29, 30, wb(31, -16, true))
        );
        // ldp x29, x30, [sp], #16
        assert_eq!(
            decode(0xA8C1_7BFD),
            pair(false, 8, 29, 30, wb(31, 16, false))
        );
        // stp w1, w2, [x3, #-256]
        assert_eq!(decode(0x2920_0861), pair(true, 4, 1, 2, None));
        // ldp w1, w2, [x3, #252]
        assert_eq!(decode(0x295F_8861), pair(false, 4, 1, 2, None));
        // stp x1, x2, [x3, #504]
        assert_eq!(decode(0xA91F_8861), pair(true, 8, 1, 2, None));
        // stp w5, w6, [x7], #-8
        assert_eq!(decode(0x28BF_18E5), pair(true, 4, 5, 6, wb(7, -8, false)));
        // ldnp x1, x2, [x3, #8]
        assert_eq!(decode(0xA840_8861), pair(false, 8, 1, 2, None));
        // stnp w1, w2, [x3]
        assert_eq!(decode(0x2800_0861), pair(true, 4, 1, 2, None));
        // ldpsw x1, x2, [x3, #-8]
        assert_eq!(
            decode(0x697F_0861),
            MmioAccess {
                sign_extend: true,
                sixty_four: true,
                ..pair(false, 4, 1, 2, None)
            }
        );
        // ldpsw x1, x2, [x3], #8
        assert_eq!(
            decode(0x68C1_0861),
            MmioAccess {
                sign_extend: true,
                sixty_four: true,
                ..pair(false, 4, 1, 2, wb(3, 8, false))
            }
        );
        // stp xzr, xzr, [x0]
        assert_eq!(decode(0xA900_7C1F), pair(true, 8, 31, 31, None));
    }

    #[test]
    fn load_acquire_and_store_release() {
        let ordered = |write, size, register| MmioAccess {
            acquire_release: true,
            ..single(write, size, register)
        };
        // ldar x1, [x2]
        assert_eq!(decode(0xC8DF_FC41), ordered(false, 8, 1));
        // stlr w1, [x2]
        assert_eq!(decode(0x889F_FC41), ordered(true, 4, 1));
        // ldarb w3, [x4]
        assert_eq!(decode(0x08DF_FC83), ordered(false, 1, 3));
        // stlrh w3, [x4]
        assert_eq!(decode(0x489F_FC83), ordered(true, 2, 3));
    }

    #[test]
    fn rejects_everything_else() {
        let rejected = [
            // SIMD/FP: ldr q0, [x1]; str d0, [x1, #8]; ldp q0, q1, [x2]; ldr s0, [x1, x2]
            0x3DC0_0020,
            0xFD00_0420,
            0xAD40_0440,
            0xBC62_6820,
            // ld1 {v0.16b}, [x0]
            0x4C40_7000,
            // exclusives: ldxr x1, [x2]; stxr w3, x1, [x2]; ldaxp x1, x2, [x3]; stlxr w0, w1, [x2]
            0xC85F_7C41,
            0xC803_7C41,
            0xC87F_8861,
            0x8800_FC41,
            // casal x0, x1, [x2]
            0xC8E0_FC41,
            // atomics: ldadd x0, x1, [x2]; swpal w0, w1, [x2]; stadd w0, [x2]
            0xF820_0041,
            0xB8E0_8041,
            0xB820_005F,
            // ldapr x0, [x1] (FEAT_LRCPC); ldlar x0, [x1] (FEAT_LOR)
            0xF8BF_C020,
            0xC8DF_7C20,
            // load literal: ldr x0, #8
            0x5800_0040,
            // prfm pldl1keep, [x0]; prfum pldl1keep, [x0, #1]; prfm pldl1keep, [x0, x1]
            0xF980_0000,
            0xF880_1000,
            0xF8A1_6800,
            // ldraa x0, [x1]
            0xF820_0420,
            // stgp x0, x1, [x2]
            0x6900_0440,
            // unallocated: size 10 opc 11 unsigned offset; pair opc 11; register offset
            // with option<1> = 0; no-allocate pair opc 01
            0xB9C0_0041,
            0xE940_0861,
            0xF862_0820,
            0x6840_0861,
            // not a load/store at all: nop, add x0, x0, #1, hvc #0
            0xD503_201F,
            0x9100_0400,
            0xD400_0002,
        ];
        for insn in rejected {
            assert_eq!(
                decode_instruction(insn),
                Err(DecodeError::Unsupported(insn)),
                "{insn:#010x}"
            );
        }
    }

    #[test]
    fn constrained_unpredictable_loads_are_rejected_stores_are_not() {
        let unpredictable = [
            // ldr x1, [x1, #8]!
            0xF840_8C21,
            // ldp x1, x1, [x2]
            0xA940_0441,
            // ldp x1, x2, [x1], #16
            0xA8C1_0821,
            // ldp x1, x2, [x2, #16]!
            0xA9C1_0841,
        ];
        for insn in unpredictable {
            assert_eq!(
                decode_instruction(insn),
                Err(DecodeError::Unpredictable(insn))
            );
        }
        // str x1, [x1, #8]! stores the original x1.
        let access = decode(0xF800_8C21);
        let mut regs = [0u64; 31];
        regs[1] = 0x1000;
        assert_eq!(access.store_value(&regs, 0), 0x1000);
        assert_eq!(access.complete(&mut regs, [0, 0]), None);
        assert_eq!(regs[1], 0x1008);
        // ldr x1, [sp, #8]! and ldp x1, x2, [x3] with n = 31 or distinct are fine.
        assert!(decode_instruction(0xF840_8FE1).is_ok());
        assert!(decode_instruction(0xA940_0861).is_ok());
    }

    #[test]
    fn syndrome_with_isv_describes_the_access() {
        let data_abort = 0x24u64 << 26 | 1 << 25;
        // str w3, [x0]: ISV, SAS=2, SRT=3, WnR.
        let esr = data_abort | syndrome::ISV | 2 << 22 | 3 << 16 | syndrome::WNR;
        assert_eq!(
            decode_syndrome(esr),
            Ok(Syndrome::Decoded(single(true, 4, 3)))
        );
        // ldrsh x9, [x0]: SAS=1, SSE, SRT=9, SF.
        let esr = data_abort | syndrome::ISV | 1 << 22 | syndrome::SSE | 9 << 16 | syndrome::SF;
        assert_eq!(
            decode_syndrome(esr),
            Ok(Syndrome::Decoded(MmioAccess {
                sign_extend: true,
                sixty_four: true,
                ..single(false, 2, 9)
            }))
        );
        // ldar xzr with AR.
        let esr = data_abort | syndrome::ISV | 3 << 22 | 31 << 16 | syndrome::SF | syndrome::AR;
        assert_eq!(
            decode_syndrome(esr),
            Ok(Syndrome::Decoded(MmioAccess {
                acquire_release: true,
                ..single(false, 8, 31)
            }))
        );
    }

    #[test]
    fn syndrome_without_isv_or_of_another_kind() {
        let data_abort = 0x24u64 << 26;
        assert_eq!(
            decode_syndrome(data_abort | syndrome::WNR | 0x05),
            Ok(Syndrome::NeedsInstruction { write: true })
        );
        assert_eq!(
            decode_syndrome(0x16u64 << 26),
            Err(DecodeError::NotADataAbort { class: 0x16 })
        );
        assert_eq!(
            decode_syndrome(0x25u64 << 26 | syndrome::ISV),
            Err(DecodeError::NotADataAbort { class: 0x25 })
        );
        assert_eq!(
            decode_syndrome(data_abort | syndrome::ISV | syndrome::CM),
            Err(DecodeError::CacheMaintenance)
        );
        assert_eq!(
            decode_syndrome(data_abort | syndrome::S1PTW),
            Err(DecodeError::PageTableWalk)
        );
        assert!(matches!(
            decode_syndrome(data_abort | syndrome::ISV | 1 << 11),
            Err(DecodeError::UnsupportedSyndrome { .. })
        ));
    }

    #[test]
    fn loads_extend_and_zero_the_upper_half() {
        let mut regs = [u64::MAX; 31];
        // ldrsb w1: 0x80 -> 0xFFFF_FF80, top half cleared.
        let ldrsb_w = decode(0x39C0_0041);
        assert_eq!(ldrsb_w.complete(&mut regs, [0x1234_5680, 0]), None);
        assert_eq!(regs[1], 0xFFFF_FF80);
        // ldrsb x1: 0x80 -> all ones above.
        assert_eq!(
            decode(0x3980_0041).loaded_value(0x80),
            0xFFFF_FFFF_FFFF_FF80
        );
        // ldrb w1: zero-extends.
        assert_eq!(decode(0x3940_0041).loaded_value(0xFFFF), 0xFF);
        // ldrsw x5: 0x8000_0000 -> sign-extended.
        assert_eq!(
            decode(0xB980_04C5).loaded_value(0x8000_0000),
            0xFFFF_FFFF_8000_0000
        );
        // ldr w30 writes the low half and clears the rest.
        let ldr_w = decode(0xB97F_FFBE);
        assert_eq!(ldr_w.complete(&mut regs, [0xDEAD_BEEF_1234_5678, 0]), None);
        assert_eq!(regs[30], 0x1234_5678);
        // ldr x7 with the full value.
        assert_eq!(decode(0xF940_0107).loaded_value(u64::MAX), u64::MAX);
    }

    #[test]
    fn the_zero_register_reads_zero_and_discards() {
        let regs_before = [7u64; 31];
        let mut regs = regs_before;
        // ldr xzr via the syndrome: nothing changes.
        let access = single(false, 8, ZERO_REGISTER);
        assert_eq!(access.complete(&mut regs, [42, 0]), None);
        assert_eq!(regs, regs_before);
        // stp xzr, xzr stores zeros.
        let stp = decode(0xA900_7C1F);
        assert_eq!(stp.store_value(&regs, 0), 0);
        assert_eq!(stp.store_value(&regs, 1), 0);
        assert_eq!(stp.store_value(&regs, 2), 0);
    }

    #[test]
    fn pairs_split_into_two_transfers_and_write_back() {
        // ldp x29, x30, [sp], #16: two 8-byte loads, SP update returned.
        let ldp = decode(0xA8C1_7BFD);
        let transfers = ldp.transfers(0x0900_0000).unwrap();
        assert_eq!(
            transfers.as_slice(),
            &[
                Transfer {
                    ipa: 0x0900_0000,
                    size: 8,
                    register: 29,
                    index: 0
                },
                Transfer {
                    ipa: 0x0900_0008,
                    size: 8,
                    register: 30,
                    index: 1
                },
            ]
        );
        assert_eq!(ldp.total_size(), 16);
        let mut regs = [0u64; 31];
        assert_eq!(
            ldp.complete(&mut regs, [0xAA, 0xBB]),
            Some(StackPointerWriteback { offset: 16 })
        );
        assert_eq!((regs[29], regs[30]), (0xAA, 0xBB));

        // stp w5, w6, [x7], #-8: values truncated to 32 bits, x7 decremented.
        let stp = decode(0x28BF_18E5);
        regs[5] = 0x1_0000_0005;
        regs[6] = 0x6;
        regs[7] = 0x100;
        assert_eq!(stp.store_value(&regs, 0), 5);
        assert_eq!(stp.store_value(&regs, 1), 6);
        assert_eq!(stp.complete(&mut regs, [0, 0]), None);
        assert_eq!(regs[7], 0xF8);
        assert_eq!(regs[5], 0x1_0000_0005, "a store leaves its registers alone");

        // A pair at the very top of the address space cannot be split.
        assert_eq!(split_pair_address(u64::MAX - 3, 4), None);
        assert_eq!(ldp.transfers(u64::MAX - 7), None);
        assert_eq!(split_pair_address(0x1000, 4), Some([0x1000, 0x1004]));
        // A single access is one transfer.
        assert_eq!(decode(0xF940_0107).transfers(u64::MAX).unwrap().len(), 1);
    }

    /// xorshift64*: a fixed-seed generator so the test is reproducible.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn check_invariants(insn: u32, access: &MmioAccess) {
        assert!(matches!(access.size, 1 | 2 | 4 | 8), "{insn:#010x}");
        assert!(access.register <= 31);
        assert!(access.pair.is_none_or(|r| r <= 31));
        assert!(!(access.write && access.sign_extend));
        if let Some(w) = access.writeback {
            assert!(w.base_register <= 31);
            assert!((-512..=504).contains(&w.offset), "{insn:#010x}");
        }
        // Applying it never panics either.
        let mut regs = [0x5555_5555_5555_5555; 31];
        let _ = access.store_value(&regs, 0);
        let _ = access.complete(&mut regs, [u64::MAX, u64::MAX]);
        let _ = access.transfers(u64::MAX);
    }

    #[test]
    fn random_instruction_words_never_panic() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..1 << 22 {
            let word = next(&mut state);
            // Half the words are forced into the load/store space (bit 27 set, bit 25 clear).
            let insn = if word & 1 == 0 {
                (word >> 32) as u32
            } else {
                ((word >> 32) as u32 | 1 << 27) & !(1 << 25)
            };
            if let Ok(access) = decode_instruction(insn) {
                check_invariants(insn, &access);
                // Only sign-extending loads widen a B or H access to an X register.
                assert!(!(access.sixty_four && access.size < 4 && !access.sign_extend));
            }
            if let Ok(Syndrome::Decoded(access)) = decode_syndrome(word) {
                check_invariants(insn, &access);
            }
        }
    }

    #[test]
    fn every_load_store_class_pattern_is_handled() {
        // Exhaustive over the class-selecting bits ([31:21], [15:10]) with fixed registers.
        for high in 0..1u32 << 11 {
            for low in 0..1u32 << 6 {
                let insn = high << 21 | 0b10101 << 16 | low << 10 | 2 << 5 | 1;
                if let Ok(access) = decode_instruction(insn) {
                    check_invariants(insn, &access);
                }
            }
        }
    }
}
