//! `derive` and `grant`: making a child capability with at most its parent's authority.
//!
//! Both share one check, `derived_info`, so the rule "rights ⊆ source, frames ⊆
//! source" is written once. A child is linked at the head of its parent's child list (O(1)),
//! which is all revoke needs to find it later.

use mica_abi::{ObjectType, Rights, Status};

use crate::cap::Cap;
use crate::{meaningful_rights, CapAddr, CapInfo, CapSystem, FrameRange, SpaceId, SpaceState};

impl<const SPACES: usize, const SLOTS: usize, const OBJECTS: usize>
    CapSystem<SPACES, SLOTS, OBJECTS>
{
    /// Derives a child of the capability in `src` into the empty slot `dst` of the same space,
    /// with `rights` (which must be a subset of the source's) and, for Memory and DeviceMemory,
    /// `frames` (a sub-range of the source's; `None` keeps the source's range).
    ///
    /// Errors: `InvalidArgument` (space not live; rights not meaningful for the type; frames
    /// given for a type without a range), `InvalidCapability` (src empty, either slot out of
    /// range), `SlotOccupied`, `StaleCapability`, `InsufficientRights` (rights beyond the
    /// source's), `OutOfRange` (frames beyond the source's).
    pub fn derive(
        &mut self,
        space: SpaceId,
        src: u16,
        dst: u16,
        rights: Rights,
        frames: Option<FrameRange>,
    ) -> Result<(), Status> {
        let src = self.full_slot(space, src)?;
        let dst = self.empty_slot(space, dst)?;
        let info = self.derived_info(src, rights, frames)?;
        self.insert_child(src, dst, info)
    }

    /// Grants: derives a child of the capability in `src` (exactly as [`CapSystem::derive`])
    /// into slot `dst` of the domain named by the Domain capability in `domain`, both in the
    /// caller's `space`. The source needs `GRANT`, and so does the Domain capability. Returns
    /// where the new capability landed.
    ///
    /// Errors: those of `derive`, plus `InvalidCapability` when `domain` is empty or not a
    /// Domain capability, `StaleCapability` when that domain is gone, and `InsufficientRights`
    /// when either capability lacks `GRANT`.
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &mut self,
        space: SpaceId,
        src: u16,
        domain: u16,
        dst: u16,
        rights: Rights,
        frames: Option<FrameRange>,
    ) -> Result<CapAddr, Status> {
        let src_addr = self.full_slot(space, src)?;
        let domain_info = self.identify(space, domain)?;
        if domain_info.object_type != ObjectType::Domain {
            return Err(Status::InvalidCapability);
        }
        let source_rights = self.identify(space, src)?.rights;
        if !source_rights.contains(Rights::GRANT) || !domain_info.rights.contains(Rights::GRANT) {
            return Err(Status::InsufficientRights);
        }
        let target = self
            .resolve(domain_info.object)?
            .domain_space
            .ok_or(Status::StaleCapability)?;
        if self.space(target).map(|s| s.state) != Some(SpaceState::Live) {
            return Err(Status::StaleCapability);
        }
        let dst = self.empty_slot(target, dst)?;
        let info = self.derived_info(src_addr, rights, frames)?;
        self.insert_child(src_addr, dst, info)?;
        Ok(dst)
    }

    /// What a child of the capability at `src` with `rights` and `frames` would grant, or why
    /// it may not exist. No side effects.
    fn derived_info(
        &self,
        src: CapAddr,
        rights: Rights,
        frames: Option<FrameRange>,
    ) -> Result<CapInfo, Status> {
        let source = self.cap(src).ok_or(Status::InvalidCapability)?.info;
        self.resolve(source.object)?;
        if !meaningful_rights(source.object_type).contains(rights) {
            return Err(Status::InvalidArgument);
        }
        let frames = match (source.frames, frames) {
            (None, None) => None,
            (None, Some(_)) => return Err(Status::InvalidArgument),
            (Some(own), None) => Some(own),
            (Some(own), Some(asked)) => {
                if !cfg!(feature = "mutant-range-not-contained") && !own.contains(asked) {
                    return Err(Status::OutOfRange);
                }
                Some(asked)
            }
        };
        let rights = if cfg!(feature = "mutant-rights-not-intersected") {
            rights
        } else {
            if !source.rights.contains(rights) {
                return Err(Status::InsufficientRights);
            }
            rights.intersection(source.rights)
        };
        Ok(CapInfo {
            object: source.object,
            object_type: source.object_type,
            rights,
            frames,
        })
    }

    /// Links a new capability `info` at the empty slot `dst` as the first child of `parent`.
    fn insert_child(&mut self, parent: CapAddr, dst: CapAddr, info: CapInfo) -> Result<(), Status> {
        let old_first = self
            .cap(parent)
            .ok_or(Status::InvalidCapability)?
            .first_child;
        let live = self
            .live_object_mut(info.object)
            .ok_or(Status::StaleCapability)?;
        live.capabilities = live.capabilities.checked_add(1).ok_or(Status::NoFreeSlot)?;
        let slot = self.slot_mut(dst).ok_or(Status::InvalidCapability)?;
        *slot = Some(Cap {
            info,
            parent: Some(parent),
            first_child: None,
            prev_sibling: None,
            next_sibling: old_first,
        });
        if let Some(old) = old_first.and_then(|a| self.cap_mut(a)) {
            old.prev_sibling = Some(dst);
        }
        if let Some(parent) = self.cap_mut(parent) {
            parent.first_child = Some(dst);
        }
        Ok(())
    }
}
