//! What one object's change means for the others: the effects the kernel's tables return and
//! `Kernel::apply` (`kernel/execute.rs`) carries out, in order, in one place.
//!
//! The capability system reports what a revoke, delete or object destruction removed
//! ([`Removal`]); an event channel says what to deliver ([`Delivery`]); a domain's end is a
//! sequence of steps, each queued behind the effects of the one before: its vCPUs stop
//! ([`Effect::EndDomain`]); once none runs its objects are destroyed, which queues their
//! removals ([`Effect::Dismantle`]); only after those have been applied — every mapping of its
//! memory in other domains undone — are its tables, records and RAM freed and its id let go
//! ([`Effect::Release`]). Effects that arise while effects are being applied join the queue,
//! so nothing recurses, however deep the tree of domains a domain created.

use mica_caps::Removal;

use crate::evtchn::Delivery;
use crate::ids::DomainId;
use crate::memmap::PhysRange;

/// One thing the kernel must do because of a change elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// A capability went or an object was destroyed: undo what it made possible.
    Removed(Removal),
    /// An event to set in its receiver's event page (and maybe wake it).
    Deliver(Delivery),
    /// A domain ends: it is marked dying and its vCPUs leave their CPUs.
    EndDomain(DomainId),
    /// A dying domain none of whose vCPUs is on a CPU: destroy its objects.
    Dismantle(DomainId),
    /// A dismantled domain whose objects' removals have been applied: free what remains and
    /// let go of its id.
    Release(DomainId),
    /// The control domain's memory pool, once no capability to it is left: scrub and free it.
    FreePool(PhysRange),
}
