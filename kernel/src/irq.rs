//! The Irq object: a physical interrupt line handed to a domain, and where its occurrences go.
//!
//! An unbound line is masked. Bound to an event endpoint, each occurrence is delivered as an
//! event and the line stays active (no further occurrence) until the domain acknowledges it;
//! bound as a virtual interrupt, it is injected hardware-linked into the domain's virtual GIC
//! and the guest's own EOI deactivates it.

use mica_caps::ObjectRef;

use crate::domain::DomainId;
use crate::evtchn::EndpointId;

/// Most interrupt lines handed out.
pub const MAX_IRQS: usize = 32;

/// Where a line's occurrences go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqRoute {
    /// Nowhere: the line is masked.
    Unbound,
    /// As an event on this endpoint.
    Event(EndpointId),
    /// Into this domain's virtual GIC, for this vCPU.
    Virtual {
        /// The domain.
        domain: DomainId,
        /// Its vCPU index.
        vcpu: u16,
    },
}

/// One line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqLine {
    /// The Irq object.
    pub object: ObjectRef,
    /// GIC INTID.
    pub intid: u32,
    /// Where occurrences go.
    pub route: IrqRoute,
    /// Delivered as an event and not yet acknowledged.
    pub active: bool,
}

/// What the HAL must do with an occurrence after the kernel handled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqOutcome {
    /// Deactivate it now (nobody took it; the line is masked from now on).
    Deactivate,
    /// Leave it active: an acknowledgement or the guest's EOI deactivates it.
    LeaveActive,
}

/// An operation on an Irq capability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqOp {
    /// Deliver as events on this endpoint slot.
    BindEvent {
        /// Endpoint slot.
        endpoint: u16,
    },
    /// Inject into the caller's virtual GIC for this vCPU.
    BindVirtual {
        /// vCPU index.
        vcpu: u16,
    },
    /// Deactivate after an event delivery.
    Ack,
    /// Mask and unbind.
    Unbind,
}
