//! Capabilities: the hypercalls that identify, derive, grant, revoke and delete them (the
//! rules are `mica-caps`'; what a removal undoes is applied by `execute.rs`).

use super::*;

impl<H: Hal> Kernel<H> {
    /// `cap_identify`.
    pub(super) fn invoke_cap_identify(
        &mut self,
        caller: DomainId,
        mica_abi::args::CapIdentify { slot }: mica_abi::args::CapIdentify,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let info = self.caps.identify(space, slot.0)?;
        let kind = info.object_type as u64 | (info.rights.bits() as u64) << 8;
        let (first, count) = info.frames.map_or((0, 0), |f| (f.first(), f.count()));
        Ok([kind, first, count])
    }

    /// `cap_derive`.
    pub(super) fn invoke_cap_derive(
        &mut self,
        caller: DomainId,
        x: mica_abi::args::CapDerive,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        // A count of 0 (checked by the decoding: then the first frame is 0 too) is
        // the source's whole range.
        let frames = FrameRange::new(x.first_frame, x.frame_count);
        self.caps
            .derive(space, x.src.0, x.dst.0, x.rights, frames)?;
        Ok([0; 3])
    }

    /// `cap_grant`.
    pub(super) fn invoke_cap_grant(
        &mut self,
        caller: DomainId,
        x: mica_abi::args::CapGrant,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let frames = FrameRange::new(x.first_frame, x.frame_count);
        self.caps
            .grant(space, x.src.0, x.domain.0, x.dst.0, x.rights, frames)?;
        Ok([0; 3])
    }

    /// `cap_revoke`.
    pub(super) fn invoke_cap_revoke(
        &mut self,
        caller: DomainId,
        mica_abi::args::CapRevoke { slot }: mica_abi::args::CapRevoke,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let queue = &mut self.effects;
        let n = self
            .caps
            .revoke(space, slot.0, |r| queue.push_back(Effect::Removed(r)));
        self.apply([]);
        Ok([n? as u64, 0, 0])
    }

    /// `cap_delete`.
    pub(super) fn invoke_cap_delete(
        &mut self,
        caller: DomainId,
        mica_abi::args::CapDelete { slot }: mica_abi::args::CapDelete,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let queue = &mut self.effects;
        let deleted = self
            .caps
            .delete(space, slot.0, |r| queue.push_back(Effect::Removed(r)));
        self.apply([]);
        deleted.map(|()| [0; 3])
    }
}
