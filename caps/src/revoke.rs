//! `revoke` and `delete`, object destruction, domain teardown and quota refunds.
//!
//! Everything that removes a capability ends up here and reports each removal to the kernel
//! through a callback ([`Removal`]), so the kernel can undo mappings made through a removed
//! Memory capability, unbind event channels, and free the state of destroyed objects. Removal
//! never recurses: revoke walks the subtree with its own links, and a dying domain's space is
//! emptied by a loop, so no input can exhaust the kernel stack.

use mica_abi::{ObjectType, Status};

use crate::{
    domain_charge, object_cost, CapAddr, CapInfo, CapSystem, ObjectRef, SpaceId, SpaceInfo,
    SpaceState,
};

/// Something the kernel must clean up after a capability operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Removal {
    /// The capability that was at `addr` is gone: undo every mapping or binding made through it.
    Capability {
        /// Where it was.
        addr: CapAddr,
        /// What it granted.
        info: CapInfo,
    },
    /// The last capability to the object is gone: the object is destroyed, its reference is
    /// stale from now on, and the kernel frees its state. For a Domain, the domain's space has
    /// been emptied (each of its capabilities reported first).
    ObjectDestroyed {
        /// The now-stale reference.
        object: ObjectRef,
        /// Its type.
        object_type: ObjectType,
    },
    /// A domain's space is free again (its Domain object is gone and nothing it paid for is
    /// alive): its creator has been refunded and the kernel may reuse the id.
    SpaceReleased {
        /// The space.
        space: SpaceId,
    },
}

impl<const SPACES: usize, const SLOTS: usize, const OBJECTS: usize>
    CapSystem<SPACES, SLOTS, OBJECTS>
{
    /// Removes every descendant of the capability in `slot` of `space`, transitively and in
    /// whatever space it lives, keeping the capability itself. Each removed capability is
    /// reported to `on_removed`. Takes time proportional to the number of descendants. Returns
    /// how many capabilities were removed.
    ///
    /// Errors: `InvalidArgument` (space not live), `InvalidCapability` (slot out of range or
    /// empty).
    pub fn revoke<F: FnMut(Removal)>(
        &mut self,
        space: SpaceId,
        slot: u16,
        mut on_removed: F,
    ) -> Result<usize, Status> {
        let root = self.full_slot(space, slot)?;
        let mut removed = 0usize;
        if cfg!(feature = "mutant-revoke-skips-grandchildren") {
            // Planted bug: only the direct children go; theirs are handed up to `root`.
            let mut next = self.cap(root).and_then(|cap| cap.first_child);
            while let Some(child) = next {
                next = self.cap(child).and_then(|cap| cap.next_sibling);
                self.remove(child, &mut on_removed);
                removed = removed.saturating_add(1);
            }
        } else {
            // Post-order walk with the tree's own links: descend to a leaf, remove it, go back
            // to its parent. Every descendant is entered once and removed once.
            let mut current = root;
            loop {
                match self.cap(current).and_then(|cap| cap.first_child) {
                    Some(child) => current = child,
                    None if current == root => break,
                    None => {
                        let parent = self.cap(current).and_then(|cap| cap.parent);
                        self.remove(current, &mut on_removed);
                        removed = removed.saturating_add(1);
                        match parent {
                            Some(parent) => current = parent,
                            None => break,
                        }
                    }
                }
            }
        }
        self.reap(&mut on_removed);
        Ok(removed)
    }

    /// Deletes the capability in `slot` of `space`. Its children stay, re-linked to its parent
    /// (or become roots), so an ancestor's revoke still reaches them. If it was the object's
    /// last capability the object is destroyed, its creator refunded, and, for a Domain, the
    /// domain's space emptied; all of it is reported to `on_removed`.
    ///
    /// Errors: `InvalidArgument` (space not live), `InvalidCapability` (slot out of range or
    /// empty).
    pub fn delete<F: FnMut(Removal)>(
        &mut self,
        space: SpaceId,
        slot: u16,
        mut on_removed: F,
    ) -> Result<(), Status> {
        let addr = self.full_slot(space, slot)?;
        self.remove(addr, &mut on_removed);
        self.reap(&mut on_removed);
        Ok(())
    }

    /// Destroys `object` outright: every capability that names it, in whatever space and at
    /// whatever depth of the derivation tree, is removed (their descendants naming other
    /// objects are re-linked as by [`CapSystem::delete`]), the object is destroyed and its
    /// creator refunded; for a Domain its space is emptied. Everything is reported to
    /// `on_removed`. This is how the kernel ends an object whose life it decides itself (a
    /// domain that faulted or powered off, a vCPU of a dying domain, RAM it reclaims).
    ///
    /// Errors: `StaleCapability` (the object is already gone), `InvalidCapability` (the
    /// reference is outside the object table).
    pub fn destroy_object<F: FnMut(Removal)>(
        &mut self,
        object: ObjectRef,
        mut on_removed: F,
    ) -> Result<(), Status> {
        self.resolve(object)?;
        for space in 0..SPACES {
            for slot in 0..SLOTS {
                let (Ok(space), Ok(slot)) = (u16::try_from(space), u16::try_from(slot)) else {
                    continue;
                };
                let addr = CapAddr::new(SpaceId(space), slot);
                if self.cap(addr).is_some_and(|cap| cap.info.object == object) {
                    self.remove(addr, &mut on_removed);
                }
            }
        }
        self.reap(&mut on_removed);
        Ok(())
    }

    /// Like [`CapSystem::destroy_object`], given where the object's original capability was
    /// put: while it is still there (a root of the derivation forest naming `object`), every
    /// other capability to the object is one of its descendants, so a revoke and a delete of
    /// it remove them all without looking at every slot of the system. Otherwise (the original
    /// was deleted and its descendants became roots), or if any capability to the object is
    /// left after that, the whole system is searched: the result is always that of
    /// `destroy_object`.
    pub fn destroy_object_from<F: FnMut(Removal)>(
        &mut self,
        original: CapAddr,
        object: ObjectRef,
        mut on_removed: F,
    ) -> Result<(), Status> {
        self.resolve(object)?;
        let is_original = self
            .cap(original)
            .is_some_and(|cap| cap.info.object == object && cap.parent.is_none());
        if !is_original {
            return self.destroy_object(object, on_removed);
        }
        self.revoke(original.space, original.slot, &mut on_removed)?;
        self.delete(original.space, original.slot, &mut on_removed)?;
        // A root naming `object` at `original` need not be the original: after the original
        // was deleted, a capability derived into its slot from one of its (then root)
        // children becomes a root there when that child is deleted, and its siblings are
        // roots of their own. The object's capability count tells: if any remain, search.
        if self.resolve(object).is_ok() {
            return self.destroy_object(object, on_removed);
        }
        Ok(())
    }

    /// Marks `space` as holding kernel state: it is not released (its id not reused) until
    /// [`CapSystem::let_go_of_space`]. The kernel holds every domain's space from creation
    /// until it has finished tearing the domain down.
    ///
    /// Errors: `InvalidArgument` if `space` is outside the system or free.
    pub fn hold_space(&mut self, space: SpaceId) -> Result<(), Status> {
        match self.space_mut(space) {
            Some(info) if info.state != SpaceState::Free => {
                info.held = true;
                Ok(())
            }
            _ => Err(Status::InvalidArgument),
        }
    }

    /// Ends the kernel's hold on `space`; a zombie that pays for nothing is released at once
    /// (reported as [`Removal::SpaceReleased`]).
    pub fn let_go_of_space<F: FnMut(Removal)>(&mut self, space: SpaceId, mut on_removed: F) {
        let Some(info) = self.space_mut(space) else {
            return;
        };
        info.held = false;
        if info.state == SpaceState::Zombie && info.used == 0 {
            self.release(space, &mut on_removed);
        }
    }

    /// Charges `bytes` of kernel memory the kernel spends for `space` outside the object table
    /// (e.g. stage-2 translation tables) to its quota.
    ///
    /// Errors: `InvalidArgument` (no such space, or free), `QuotaExceeded`; nothing is charged
    /// on error.
    pub fn charge_space(&mut self, space: SpaceId, bytes: u64) -> Result<(), Status> {
        match self.space(space) {
            Some(info) if info.state != SpaceState::Free => {}
            _ => return Err(Status::InvalidArgument),
        }
        self.check_quota(space, bytes)?;
        self.charge(space, bytes);
        Ok(())
    }

    /// Gives back `bytes` charged with [`CapSystem::charge_space`]; a zombie that pays for
    /// nothing any more, and is not held, is released.
    pub fn refund_space<F: FnMut(Removal)>(
        &mut self,
        space: SpaceId,
        bytes: u64,
        mut on_removed: F,
    ) {
        self.refund(space, bytes, &mut on_removed);
    }

    /// Unlinks the capability at `addr` (re-parenting its children), clears the slot, reports
    /// it, and destroys its object if that was the last capability.
    fn remove(&mut self, addr: CapAddr, on_removed: &mut dyn FnMut(Removal)) {
        let Some(cap) = self.cap(addr).copied() else {
            return;
        };
        // Children move to the removed capability's place in its parent's list.
        let mut last_child = None;
        let mut next = cap.first_child;
        let mut budget = SPACES.saturating_mul(SLOTS);
        while let Some(child) = next {
            budget = match budget.checked_sub(1) {
                Some(b) => b,
                None => break,
            };
            let Some(child_cap) = self.cap_mut(child) else {
                break;
            };
            child_cap.parent = cap.parent;
            if cap.parent.is_none() {
                // Roots carry no sibling links.
                next = child_cap.next_sibling.take();
                child_cap.prev_sibling = None;
            } else {
                next = child_cap.next_sibling;
                last_child = Some(child);
            }
        }
        let (first, last) = match (cap.parent, cap.first_child, last_child) {
            (Some(_), Some(first), Some(last)) => (Some(first), Some(last)),
            _ => (cap.next_sibling, None),
        };
        // first..=last now stand where `addr` stood: between prev_sibling and next_sibling.
        if let Some(first) = first.filter(|_| last.is_some()) {
            if let Some(c) = self.cap_mut(first) {
                c.prev_sibling = cap.prev_sibling;
            }
        }
        if let Some(last) = last {
            if let Some(c) = self.cap_mut(last) {
                c.next_sibling = cap.next_sibling;
            }
        }
        let after_prev = first;
        let before_next = last.or(cap.prev_sibling);
        if let Some(n) = cap.next_sibling.and_then(|n| self.cap_mut(n)) {
            n.prev_sibling = before_next;
        }
        match cap.prev_sibling {
            Some(prev) => {
                if let Some(p) = self.cap_mut(prev) {
                    p.next_sibling = after_prev;
                }
            }
            None => {
                if let Some(p) = cap.parent.and_then(|p| self.cap_mut(p)) {
                    p.first_child = after_prev;
                }
            }
        }
        if let Some(slot) = self.slot_mut(addr) {
            *slot = None;
        }
        on_removed(Removal::Capability {
            addr,
            info: cap.info,
        });

        let Some(live) = self.live_object_mut(cap.info.object) else {
            return;
        };
        live.capabilities = live.capabilities.saturating_sub(1);
        if live.capabilities == 0 {
            self.destroy(cap.info.object, on_removed);
        }
    }

    /// Destroys a live object whose last capability is gone.
    fn destroy(&mut self, object: ObjectRef, on_removed: &mut dyn FnMut(Removal)) {
        let Some(entry) = usize::try_from(object.index)
            .ok()
            .and_then(|i| self.objects.get_mut(i))
        else {
            return;
        };
        let Some(live) = entry.live.take() else {
            return;
        };
        if !cfg!(feature = "mutant-generation-not-bumped") {
            match entry.generation.checked_add(1) {
                Some(next) => entry.generation = next,
                // Out of generations: never reuse the entry, so no reference can alias.
                None => entry.retired = true,
            }
        }
        on_removed(Removal::ObjectDestroyed {
            object,
            object_type: live.object_type,
        });
        match live.domain_space {
            // A domain keeps its charge until its space is released (see `reap`).
            Some(space) => {
                if let Some(info) = self.space_mut(space) {
                    info.state = SpaceState::Dying;
                }
            }
            None => {
                if !cfg!(feature = "mutant-quota-not-refunded") {
                    self.refund(live.charged_to, object_cost(live.object_type), on_removed);
                }
            }
        }
    }

    /// Empties every dying space, one capability at a time, until none is left; each becomes
    /// free (if nothing it paid for is alive) or a zombie.
    fn reap(&mut self, on_removed: &mut dyn FnMut(Removal)) {
        while let Some(index) = self
            .spaces
            .iter()
            .position(|space| space.state == SpaceState::Dying)
        {
            let Ok(id) = u16::try_from(index).map(SpaceId) else {
                return;
            };
            for slot in 0..SLOTS {
                let Ok(slot) = u16::try_from(slot) else {
                    break;
                };
                self.remove(CapAddr::new(id, slot), on_removed);
            }
            let Some(space) = self.space_mut(id) else {
                return;
            };
            space.state = SpaceState::Zombie;
            if space.used == 0 && !space.held {
                self.release(id, on_removed);
            }
        }
    }

    /// Gives `amount` back to `space`; a zombie that no longer pays for anything is released.
    fn refund(&mut self, space: SpaceId, amount: u64, on_removed: &mut dyn FnMut(Removal)) {
        let Some(info) = self.space_mut(space) else {
            return;
        };
        info.used = info.used.saturating_sub(amount);
        if info.state == SpaceState::Zombie && info.used == 0 && !info.held {
            self.release(space, on_removed);
        }
    }

    /// Frees the zombie `space` and refunds its creator, walking up while creators are zombies
    /// that this leaves owing nothing.
    fn release(&mut self, space: SpaceId, on_removed: &mut dyn FnMut(Removal)) {
        let mut current = space;
        for _ in 0..SPACES {
            let Some(info) = self.space_mut(current) else {
                return;
            };
            if info.state != SpaceState::Zombie || info.used != 0 || info.held {
                return;
            }
            let released = *info;
            *info = SpaceInfo::FREE;
            on_removed(Removal::SpaceReleased { space: current });
            let Some(parent) = released.parent else {
                return;
            };
            let charge = domain_charge(released.slots, released.quota).unwrap_or(u64::MAX);
            let Some(parent_info) = self.space_mut(parent) else {
                return;
            };
            parent_info.used = parent_info.used.saturating_sub(charge);
            current = parent;
        }
    }
}
