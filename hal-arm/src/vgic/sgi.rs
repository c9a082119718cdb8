//! SGIs and injection: ICC_SGI1R_EL1 writes, trapped system-register accesses, interrupts
//! set pending or driven by a line from outside the guest.

use super::*;

/// A decoded ICC_SGI1R_EL1 / ICC_SGI0R_EL1 write (IHI 0069 12.2.20).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgiRequest {
    /// INTID[27:24]: the SGI, 0-15.
    pub intid: u8,
    /// IRM (bit 40): every PE but the sender; the affinity fields are ignored.
    pub all_but_self: bool,
    /// Aff3[55:48], Aff2[39:32], Aff1[23:16] as MPIDR affinity with Aff0 = 0.
    pub affinity: u64,
    /// RS[47:44]: TargetList bit n means Aff0 = 16 * RS + n.
    pub range_selector: u8,
    /// TargetList[15:0].
    pub target_list: u16,
}

impl SgiRequest {
    /// Decodes the 64-bit value the guest wrote.
    pub fn decode(value: u64) -> SgiRequest {
        let aff1 = (value >> 16) & 0xFF;
        let aff2 = (value >> 32) & 0xFF;
        let aff3 = (value >> 48) & 0xFF;
        SgiRequest {
            intid: ((value >> 24) & 0xF) as u8,
            all_but_self: value & (1 << 40) != 0,
            affinity: aff3 << 32 | aff2 << 16 | aff1 << 8,
            range_selector: ((value >> 44) & 0xF) as u8,
            target_list: (value & 0xFFFF) as u16,
        }
    }

    /// Whether the PE with MPIDR affinity `affinity` is named by TargetList (IRM = 0).
    pub fn names(&self, affinity: u64) -> bool {
        let aff0 = affinity & 0xFF;
        if affinity & !0xFF != self.affinity {
            return false;
        }
        let first = u64::from(self.range_selector) * 16;
        match aff0.checked_sub(first) {
            Some(bit) if bit < 16 => self.target_list & (1 << bit) != 0,
            _ => false,
        }
    }
}

/// A trapped MSR/MRS (ESR_EL2.EC 0x18), from its ISS (Arm ARM D19.2, "ISS encoding for an
/// exception from MSR, MRS, or System instruction execution in AArch64 state").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysregTrap {
    /// Op0, ISS[21:20].
    pub op0: u8,
    /// Op1, ISS[16:14].
    pub op1: u8,
    /// CRn, ISS[13:10].
    pub crn: u8,
    /// CRm, ISS[4:1].
    pub crm: u8,
    /// Op2, ISS[19:17].
    pub op2: u8,
    /// Rt, ISS[9:5]: the transfer register; 31 is XZR.
    pub rt: u8,
    /// Direction, ISS[0]: an MRS (read) rather than an MSR (write).
    pub read: bool,
}

/// The exception class of a trapped MSR/MRS/system instruction.
pub const EC_SYSREG: u8 = crate::esr::class::SYSREG;

impl SysregTrap {
    /// Decodes ESR_EL2, or `None` if its EC is not [`EC_SYSREG`].
    pub fn decode(esr: u64) -> Option<SysregTrap> {
        if (esr >> 26) & 0x3F != u64::from(EC_SYSREG) {
            return None;
        }
        let bits = |lo: u32, width: u32| ((esr >> lo) & ((1 << width) - 1)) as u8;
        Some(SysregTrap {
            op0: bits(20, 2),
            op2: bits(17, 3),
            op1: bits(14, 3),
            crn: bits(10, 4),
            rt: bits(5, 5),
            crm: bits(1, 4),
            read: esr & 1 != 0,
        })
    }

    /// For a write of an SGI generation register, the group its SGIs are generated in
    /// (true: Group 1): ICC_SGI1R_EL1 (S3_0_C12_C11_5) generates Group 1,
    /// ICC_ASGI1R_EL1 (S3_0_C12_C11_6) and ICC_SGI0R_EL1 (S3_0_C12_C11_7) Group 0, as in the
    /// single security state the model presents (GICD_CTLR.DS = 1). `None` for anything else,
    /// reads included (the registers are write-only).
    pub fn sgi_group1(&self) -> Option<bool> {
        if self.read || (self.op0, self.op1, self.crn, self.crm) != (3, 0, 12, 11) {
            return None;
        }
        match self.op2 {
            5 => Some(true),
            6 | 7 => Some(false),
            _ => None,
        }
    }
}

impl Vgic {
    // ---- SGIs and injection ------------------------------------------------------------

    /// A trapped write by vCPU `sender` of ICC_SGI1R_EL1 (`group1`) or ICC_SGI0R_EL1 (not
    /// `group1`): pends the SGI on every targeted vCPU whose copy of it is in that group.
    pub fn write_sgi(&mut self, sender: usize, value: u64, group1: bool) -> Kick {
        let request = SgiRequest::decode(value);
        let mut kick = Kick::NONE;
        for v in 0..self.vcpus {
            let targeted = if request.all_but_self {
                v != sender
            } else {
                request.names(vcpu_affinity(v))
            };
            if !targeted {
                continue;
            }
            if let Some(irq) = self.interrupt_mut(v, u32::from(request.intid)) {
                if irq.group1 == group1 {
                    irq.latch = true;
                    kick = kick.union(Kick::one(v));
                }
            }
        }
        kick
    }

    /// Makes `intid` pending (an edge, or a software request): on `vcpu` for SGIs and PPIs;
    /// `vcpu` is ignored for SPIs, which go where the guest routed them.
    pub fn set_pending(&mut self, intid: u32, vcpu: usize) -> Result<Kick, VgicError> {
        self.check_vcpu(vcpu)?;
        let irq = self
            .interrupt_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        irq.latch = true;
        Ok(self.kick_for(vcpu, intid))
    }

    /// Drives the input line of a PPI or SPI (e.g. the virtual timer, PPI 27, from its saved
    /// CNTV_CTL/CVAL before each entry; a virtio device's interrupt status): a
    /// level-sensitive interrupt is pending while the line is asserted, an edge-triggered one
    /// latches pending when the line rises (IHI 0069 4.1.2), whichever the guest configured.
    /// Returns the vCPUs to kick for a change of the line; a line driven to the level it
    /// already has changes nothing and kicks no one.
    pub fn set_level(
        &mut self,
        intid: u32,
        vcpu: usize,
        asserted: bool,
    ) -> Result<Kick, VgicError> {
        self.check_vcpu(vcpu)?;
        if intid < SGI_COUNT {
            return Err(VgicError::NoSuchInterrupt(intid));
        }
        // A line that stays as it was changes nothing (the run loop samples the virtual
        // timer's before every entry): no state touched, nobody to kick.
        let unchanged = self
            .interrupt(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?
            .line
            == asserted;
        if unchanged {
            return Ok(Kick::NONE);
        }
        let irq = self
            .interrupt_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        if irq.edge && asserted && !irq.line {
            irq.latch = true;
        }
        irq.line = asserted;
        Ok(self.kick_for(vcpu, intid))
    }

    /// Links `intid` to physical interrupt `physical` (`None` unlinks): its list register
    /// entries carry HW = 1, so the guest's deactivation deactivates the physical interrupt,
    /// which the caller acknowledged at EL2 with a priority drop only (EOImode = 1).
    pub fn link_hardware(
        &mut self,
        intid: u32,
        vcpu: usize,
        physical: Option<u32>,
    ) -> Result<(), VgicError> {
        self.check_vcpu(vcpu)?;
        if intid < SGI_COUNT {
            return Err(VgicError::NoSuchInterrupt(intid));
        }
        let hardware = match physical {
            None => None,
            Some(p @ 16..=1019) => Some(p as u16),
            Some(p) => return Err(VgicError::BadPhysicalInterrupt(p)),
        };
        let irq = self
            .interrupt_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        irq.hardware = hardware;
        Ok(())
    }

    pub(super) fn kick_for(&self, vcpu: usize, intid: u32) -> Kick {
        match self.spi_index(intid) {
            Some(index) => self.spi_kick(index),
            None => Kick::one(vcpu),
        }
    }

    /// Whether `vcpu` has an interrupt the guest could take: for deciding whether a vCPU
    /// that trapped on WFI may sleep. Call after [`sync_from_list_registers`](Self::sync_from_list_registers).
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        let Some(cpu) = self.cpu.get(vcpu).filter(|_| vcpu < self.vcpus) else {
            return false;
        };
        self.maybe_interesting(vcpu)
            .any(|(intid, irq)| irq.pending() && self.eligible(vcpu, intid, irq))
            || cpu.list.iter().flatten().any(|l| l.latched)
    }
}
