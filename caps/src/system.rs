//! The capability system: every space, every slot and the object table, in one fixed-size value.
//!
//! The kernel owns exactly one `CapSystem` and addresses capabilities by (space, slot). Sizes
//! are const generics so the kernel decides them at build time and never allocates: `SPACES`
//! capability spaces of at most `SLOTS` slots each, and `OBJECTS` object-table entries. Every
//! entry point validates its arguments before changing anything ("decode, check, then
//! perform"), so a failing call leaves the system exactly as it was.

use mica_abi::{ObjectType, Rights, Status};

use crate::cap::Cap;
use crate::object::{LiveObject, ObjectEntry};
use crate::{
    domain_charge, meaningful_rights, object_cost, CapAddr, CapInfo, CapView, Children, FrameRange,
    ObjectInfo, ObjectRef, SpaceId, SpaceInfo, SpaceState,
};

/// All capability spaces, their slots and the object table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CapSystem<const SPACES: usize, const SLOTS: usize, const OBJECTS: usize> {
    pub(crate) spaces: [SpaceInfo; SPACES],
    pub(crate) slots: [[Option<Cap>; SLOTS]; SPACES],
    pub(crate) objects: [ObjectEntry; OBJECTS],
}

impl<const SPACES: usize, const SLOTS: usize, const OBJECTS: usize> Default
    for CapSystem<SPACES, SLOTS, OBJECTS>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const SPACES: usize, const SLOTS: usize, const OBJECTS: usize>
    CapSystem<SPACES, SLOTS, OBJECTS>
{
    /// An empty system: every space free, every object entry unused. `const` so the kernel can
    /// place it in a static.
    pub const fn new() -> Self {
        CapSystem {
            spaces: [SpaceInfo::FREE; SPACES],
            slots: [[None; SLOTS]; SPACES],
            objects: [ObjectEntry::EMPTY; OBJECTS],
        }
    }

    /// Creates the root space (the first domain the kernel builds from the boot manifest): it
    /// has no Domain object and no creator, and its `quota` is all the kernel memory the
    /// system hands out.
    ///
    /// Errors: `InvalidArgument` if `slots` is zero or above `SLOTS`; `NoFreeSlot` if every
    /// space is in use.
    pub fn create_root_space(&mut self, slots: u16, quota: u64) -> Result<SpaceId, Status> {
        Self::check_space_size(slots)?;
        let id = self.free_space()?;
        self.install_space(id, slots, quota, None, None);
        Ok(id)
    }

    /// Creates a domain: a new capability space of `slots` slots with kernel-memory `quota`,
    /// and a Domain object naming it, whose original capability (all Domain rights) goes into
    /// `slot` of `space`. The creator pays [`domain_charge`]`(slots, quota)`.
    ///
    /// Errors: `InvalidArgument` (space not live, `slots` zero or above `SLOTS`),
    /// `InvalidCapability` (slot out of range), `SlotOccupied`, `NoFreeSlot` (no free space),
    /// `OutOfMemory` (object table full), `QuotaExceeded`.
    pub fn create_domain(
        &mut self,
        space: SpaceId,
        slot: u16,
        slots: u16,
        quota: u64,
    ) -> Result<(SpaceId, ObjectRef), Status> {
        let dst = self.empty_slot(space, slot)?;
        Self::check_space_size(slots)?;
        let charge = domain_charge(slots, quota).ok_or(Status::QuotaExceeded)?;
        let new_space = self.free_space()?;
        let index = self.free_object()?;
        self.check_quota(space, charge)?;

        let object = self.install_object(
            index,
            LiveObject {
                object_type: ObjectType::Domain,
                frames: None,
                charged_to: space,
                capabilities: 0,
                domain_space: Some(new_space),
            },
        );
        self.install_space(new_space, slots, quota, Some(space), Some(object));
        self.charge(space, charge);
        self.place_original(dst, object, ObjectType::Domain, None);
        Ok((new_space, object))
    }

    /// Creates an object of any type but Domain, charging [`object_cost`] to `space`, and puts
    /// its original capability (every right meaningful for the type) into `slot` of `space`.
    /// Memory and DeviceMemory objects need `frames`, which must not overlap any live object's
    /// frames; other types must pass `None`.
    ///
    /// Only the kernel calls this (boot-manifest instantiation, or a hypercall that creates an
    /// object after its own checks): a domain cannot conjure frames.
    ///
    /// Errors: `InvalidArgument` (space not live, `Domain` type, frames missing, unexpected or
    /// overlapping a live object), `InvalidCapability` (slot out of range), `SlotOccupied`,
    /// `OutOfMemory` (object table full), `QuotaExceeded`.
    pub fn create_object(
        &mut self,
        space: SpaceId,
        slot: u16,
        object_type: ObjectType,
        frames: Option<FrameRange>,
    ) -> Result<ObjectRef, Status> {
        let dst = self.empty_slot(space, slot)?;
        if object_type == ObjectType::Domain || object_type.has_frame_range() != frames.is_some() {
            return Err(Status::InvalidArgument);
        }
        if let Some(range) = frames {
            let overlaps = self.objects.iter().any(|entry| {
                entry
                    .live
                    .and_then(|live| live.frames)
                    .is_some_and(|other| other.overlaps(range))
            });
            if overlaps {
                return Err(Status::InvalidArgument);
            }
        }
        let index = self.free_object()?;
        let cost = object_cost(object_type);
        self.check_quota(space, cost)?;

        let object = self.install_object(
            index,
            LiveObject {
                object_type,
                frames,
                charged_to: space,
                capabilities: 0,
                domain_space: None,
            },
        );
        self.charge(space, cost);
        self.place_original(dst, object, object_type, frames);
        Ok(object)
    }

    /// What the capability in `slot` of `space` grants.
    ///
    /// Errors: `InvalidArgument` (space not live), `InvalidCapability` (slot out of range or
    /// empty), `StaleCapability` (its object was destroyed).
    pub fn identify(&self, space: SpaceId, slot: u16) -> Result<CapInfo, Status> {
        let addr = self.slot_addr(space, slot)?;
        let cap = self.cap(addr).ok_or(Status::InvalidCapability)?;
        self.resolve(cap.info.object)?;
        Ok(cap.info)
    }

    /// The kernel's capability check for a hypercall: the capability in `slot` of `space` must
    /// name a live object of type `object_type` and carry every right in `needed`.
    ///
    /// Errors: those of [`CapSystem::identify`], plus `InvalidCapability` for the wrong type
    /// and `InsufficientRights`.
    pub fn lookup(
        &self,
        space: SpaceId,
        slot: u16,
        object_type: ObjectType,
        needed: Rights,
    ) -> Result<CapInfo, Status> {
        let info = self.identify(space, slot)?;
        if info.object_type != object_type {
            return Err(Status::InvalidCapability);
        }
        if !info.rights.contains(needed) {
            return Err(Status::InsufficientRights);
        }
        Ok(info)
    }

    /// Checks a reference the kernel kept: `InvalidCapability` for an index outside the table,
    /// `StaleCapability` when the object it named has been destroyed.
    pub fn resolve(&self, object: ObjectRef) -> Result<ObjectInfo, Status> {
        let index = usize::try_from(object.index).map_err(|_| Status::InvalidCapability)?;
        let entry = self.objects.get(index).ok_or(Status::InvalidCapability)?;
        match entry.info(object.index) {
            Some(info) if entry.generation == object.generation => Ok(info),
            _ => Err(Status::StaleCapability),
        }
    }

    /// A snapshot of space `id`, or `None` if `id` is outside the system.
    pub fn space(&self, id: SpaceId) -> Option<SpaceInfo> {
        self.spaces.get(id.index()).copied()
    }

    /// The capability stored at `addr`, with its tree links; `None` if empty or out of range.
    pub fn capability(&self, addr: CapAddr) -> Option<CapView> {
        self.cap(addr).map(Cap::view)
    }

    /// Every stored capability, space by space, slot by slot.
    pub fn capabilities(&self) -> impl Iterator<Item = (CapAddr, CapView)> + '_ {
        self.slots.iter().enumerate().flat_map(|(space, slots)| {
            slots.iter().enumerate().filter_map(move |(slot, cap)| {
                let space = u16::try_from(space).ok()?;
                let slot = u16::try_from(slot).ok()?;
                let cap = cap.as_ref()?;
                Some((CapAddr::new(SpaceId(space), slot), cap.view()))
            })
        })
    }

    /// The direct children of the capability at `addr` (empty if there is none there).
    pub fn children(&self, addr: CapAddr) -> Children<'_, SPACES, SLOTS, OBJECTS> {
        Children {
            system: self,
            next: self.cap(addr).and_then(|cap| cap.first_child),
            budget: SPACES.saturating_mul(SLOTS),
        }
    }

    /// Every live object.
    pub fn objects(&self) -> impl Iterator<Item = ObjectInfo> + '_ {
        self.objects
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| entry.info(u32::try_from(index).ok()?))
    }

    // ----- helpers shared by the operation modules -----

    pub(crate) fn cap(&self, addr: CapAddr) -> Option<&Cap> {
        self.slots
            .get(addr.space.index())?
            .get(usize::from(addr.slot))?
            .as_ref()
    }

    pub(crate) fn cap_mut(&mut self, addr: CapAddr) -> Option<&mut Cap> {
        self.slots
            .get_mut(addr.space.index())?
            .get_mut(usize::from(addr.slot))?
            .as_mut()
    }

    pub(crate) fn slot_mut(&mut self, addr: CapAddr) -> Option<&mut Option<Cap>> {
        self.slots
            .get_mut(addr.space.index())?
            .get_mut(usize::from(addr.slot))
    }

    pub(crate) fn space_mut(&mut self, id: SpaceId) -> Option<&mut SpaceInfo> {
        self.spaces.get_mut(id.index())
    }

    pub(crate) fn live_object_mut(&mut self, object: ObjectRef) -> Option<&mut LiveObject> {
        let entry = self.objects.get_mut(usize::try_from(object.index).ok()?)?;
        if entry.generation != object.generation {
            return None;
        }
        entry.live.as_mut()
    }

    /// The address of `slot` in the live space `space`.
    pub(crate) fn slot_addr(&self, space: SpaceId, slot: u16) -> Result<CapAddr, Status> {
        let info = self
            .spaces
            .get(space.index())
            .ok_or(Status::InvalidArgument)?;
        if info.state != SpaceState::Live {
            return Err(Status::InvalidArgument);
        }
        if slot >= info.slots || usize::from(slot) >= SLOTS {
            return Err(Status::InvalidCapability);
        }
        Ok(CapAddr::new(space, slot))
    }

    /// The address of an occupied slot of a live space.
    pub(crate) fn full_slot(&self, space: SpaceId, slot: u16) -> Result<CapAddr, Status> {
        let addr = self.slot_addr(space, slot)?;
        match self.cap(addr) {
            Some(_) => Ok(addr),
            None => Err(Status::InvalidCapability),
        }
    }

    /// The address of an empty slot of a live space.
    pub(crate) fn empty_slot(&self, space: SpaceId, slot: u16) -> Result<CapAddr, Status> {
        let addr = self.slot_addr(space, slot)?;
        match self.cap(addr) {
            Some(_) => Err(Status::SlotOccupied),
            None => Ok(addr),
        }
    }

    fn check_space_size(slots: u16) -> Result<(), Status> {
        if slots == 0 || usize::from(slots) > SLOTS {
            return Err(Status::InvalidArgument);
        }
        Ok(())
    }

    fn free_space(&self) -> Result<SpaceId, Status> {
        let index = self
            .spaces
            .iter()
            .position(|space| space.state == SpaceState::Free)
            .ok_or(Status::NoFreeSlot)?;
        u16::try_from(index)
            .map(SpaceId)
            .map_err(|_| Status::NoFreeSlot)
    }

    fn free_object(&self) -> Result<u32, Status> {
        let index = self
            .objects
            .iter()
            .position(|entry| entry.live.is_none() && !entry.retired)
            .ok_or(Status::OutOfMemory)?;
        u32::try_from(index).map_err(|_| Status::OutOfMemory)
    }

    pub(crate) fn check_quota(&self, space: SpaceId, cost: u64) -> Result<(), Status> {
        let info = self
            .spaces
            .get(space.index())
            .ok_or(Status::InvalidArgument)?;
        match info.used.checked_add(cost) {
            Some(total) if total <= info.quota => Ok(()),
            _ => Err(Status::QuotaExceeded),
        }
    }

    pub(crate) fn charge(&mut self, space: SpaceId, cost: u64) {
        if let Some(info) = self.space_mut(space) {
            info.used = info.used.saturating_add(cost);
        }
    }

    fn install_space(
        &mut self,
        id: SpaceId,
        slots: u16,
        quota: u64,
        parent: Option<SpaceId>,
        domain: Option<ObjectRef>,
    ) {
        if let Some(space) = self.space_mut(id) {
            *space = SpaceInfo {
                state: SpaceState::Live,
                slots,
                quota,
                used: 0,
                parent,
                domain,
                held: false,
            };
        }
    }

    fn install_object(&mut self, index: u32, live: LiveObject) -> ObjectRef {
        let mut generation = 0;
        if let Some(entry) = usize::try_from(index)
            .ok()
            .and_then(|i| self.objects.get_mut(i))
        {
            entry.live = Some(live);
            generation = entry.generation;
        }
        ObjectRef { index, generation }
    }

    /// Puts the first capability of a new object, a root of the derivation forest, at `dst`.
    fn place_original(
        &mut self,
        dst: CapAddr,
        object: ObjectRef,
        object_type: ObjectType,
        frames: Option<FrameRange>,
    ) {
        let cap = Cap {
            info: CapInfo {
                object,
                object_type,
                rights: meaningful_rights(object_type),
                frames,
            },
            parent: None,
            first_child: None,
            prev_sibling: None,
            next_sibling: None,
        };
        if let Some(slot) = self.slot_mut(dst) {
            *slot = Some(cap);
        }
        if let Some(live) = self.live_object_mut(object) {
            live.capabilities = live.capabilities.saturating_add(1);
        }
    }
}
