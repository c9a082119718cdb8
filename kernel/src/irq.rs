//! The Irq object: a physical interrupt line handed to a domain, and where its occurrences go.
//!
//! An unbound line is masked. Bound to an event endpoint, each occurrence is delivered as an
//! event and the line stays active (no further occurrence) until the domain acknowledges it;
//! bound as a virtual interrupt, it is injected hardware-linked into the domain's virtual GIC
//! and the guest's own EOI deactivates it.
//!
//! Pure: [`IrqLines`] keeps the lines and their rules, and answers every change with the
//! [`LineAction`]s the interrupt controller must carry out, which the kernel applies in one
//! place (`Kernel::drive_lines`, `kernel/execute.rs`).

use mica_abi::Status;
use mica_caps::ObjectRef;

use crate::domain::DomainId;
use crate::evtchn::EndpointId;

/// Most interrupt lines handed out.
pub const MAX_IRQS: usize = 32;
// Line indices travel as `u8` ([`IrqLines::routed_to`]).
const _: () = assert!(MAX_IRQS <= 256);

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
struct IrqLine {
    /// The Irq object.
    object: ObjectRef,
    /// GIC INTID.
    intid: u32,
    /// Where occurrences go.
    route: IrqRoute,
    /// Delivered as an event and not yet acknowledged.
    active: bool,
}

/// What the physical interrupt controller must do because a line changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineAction {
    /// Unmask the line, routed to this physical CPU.
    Enable {
        /// GIC INTID.
        intid: u32,
        /// The CPU it is routed to.
        cpu: usize,
    },
    /// Mask the line.
    Disable(u32),
    /// Deactivate the line (end the occurrence left active).
    Deactivate(u32),
}

/// The actions of one change of one line (at most two).
pub type LineActions = heapless::Vec<LineAction, 2>;

/// Where an occurrence of a line goes ([`IrqLines::occurrence`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occurrence {
    /// No domain owns the line, or it is unbound: masked now, deactivated.
    Nobody,
    /// Line `line` is bound to event endpoint `EndpointId`.
    Event(usize, EndpointId),
    /// Line `line` is injected into a domain's virtual GIC.
    Virtual {
        /// The line.
        line: usize,
        /// The domain.
        domain: DomainId,
        /// Its vCPU index.
        vcpu: u16,
    },
}

/// Every physical interrupt line handed to a domain.
#[derive(Clone, Debug, Default)]
pub struct IrqLines {
    lines: heapless::Vec<IrqLine, MAX_IRQS>,
}

impl IrqLines {
    /// No lines.
    pub const fn new() -> Self {
        IrqLines {
            lines: heapless::Vec::new(),
        }
    }

    /// Whether `intid` may be handed out: `NoFreeSlot` when every line is taken or it is
    /// handed out already. No side effect.
    pub fn check_add(&self, intid: u32) -> Result<(), Status> {
        if self.lines.is_full() || self.lines.iter().any(|l| l.intid == intid) {
            return Err(Status::NoFreeSlot);
        }
        Ok(())
    }

    /// Hands out `intid` as Irq object `object`: masked until it is bound.
    pub fn add(&mut self, object: ObjectRef, intid: u32) -> Result<LineActions, Status> {
        self.check_add(intid)?;
        let line = IrqLine {
            object,
            intid,
            route: IrqRoute::Unbound,
            active: false,
        };
        self.lines.push(line).map_err(|_| Status::NoFreeSlot)?;
        Ok(actions(&[LineAction::Disable(intid)]))
    }

    /// The line whose Irq object `object` is.
    pub fn find(&self, object: ObjectRef) -> Option<usize> {
        self.lines.iter().position(|l| l.object == object)
    }

    /// Routes line `line` to `route`, its occurrences to physical CPU `cpu`.
    pub fn bind(&mut self, line: usize, route: IrqRoute, cpu: usize) -> LineActions {
        let Some(l) = self.lines.get_mut(line) else {
            return LineActions::new();
        };
        l.route = route;
        actions(&[LineAction::Enable {
            intid: l.intid,
            cpu,
        }])
    }

    /// The domain acknowledges the occurrence of line `line` delivered as an event:
    /// `WrongState` if none is waiting for it.
    pub fn ack(&mut self, line: usize) -> Result<LineActions, Status> {
        let l = self.lines.get_mut(line).ok_or(Status::StaleCapability)?;
        if !l.active {
            return Err(Status::WrongState);
        }
        l.active = false;
        Ok(actions(&[LineAction::Deactivate(l.intid)]))
    }

    /// Unbinds line `line`: masked, and deactivated if an occurrence was left active.
    pub fn release(&mut self, line: usize) -> LineActions {
        let Some(l) = self.lines.get_mut(line) else {
            return LineActions::new();
        };
        l.route = IrqRoute::Unbound;
        let mut out = actions(&[LineAction::Disable(l.intid)]);
        if core::mem::take(&mut l.active) {
            let _ = out.push(LineAction::Deactivate(l.intid));
        }
        out
    }

    /// The Irq object `object` was destroyed: its line is released and forgotten.
    pub fn remove(&mut self, object: ObjectRef) -> LineActions {
        let Some(line) = self.find(object) else {
            return LineActions::new();
        };
        let out = self.release(line);
        self.lines.swap_remove(line);
        out
    }

    /// The lines injected into domain `domain`'s virtual GIC: what its end releases, one
    /// [`release`](Self::release) each.
    pub fn routed_to(&self, domain: DomainId) -> heapless::Vec<u8, MAX_IRQS> {
        let to =
            |l: &IrqLine| matches!(l.route, IrqRoute::Virtual { domain: d, .. } if d == domain);
        (0..self.lines.len())
            .filter(|&line| to(&self.lines[line]))
            .map(|line| line as u8)
            .collect()
    }

    /// Where an occurrence of `intid` goes.
    pub fn occurrence(&self, intid: u32) -> Occurrence {
        let Some(line) = self.lines.iter().position(|l| l.intid == intid) else {
            return Occurrence::Nobody;
        };
        match self.lines[line].route {
            IrqRoute::Unbound => Occurrence::Nobody,
            IrqRoute::Event(ep) => Occurrence::Event(line, ep),
            IrqRoute::Virtual { domain, vcpu } => Occurrence::Virtual { line, domain, vcpu },
        }
    }

    /// An occurrence of line `line` was delivered as an event: it stays active until the
    /// domain acknowledges it.
    pub fn delivered(&mut self, line: usize) {
        if let Some(l) = self.lines.get_mut(line) {
            l.active = true;
        }
    }
}

fn actions(list: &[LineAction]) -> LineActions {
    list.iter().copied().collect()
}

/// What the HAL must do with an occurrence after the kernel handled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqOutcome {
    /// Deactivate it now (nobody took it; the line is masked from now on).
    Deactivate,
    /// Leave it active: an acknowledgement or the guest's EOI deactivates it.
    LeaveActive,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(i: u16) -> ObjectRef {
        ObjectRef {
            index: i.into(),
            generation: 1,
        }
    }

    #[test]
    fn a_line_is_masked_until_bound_and_taken_once() {
        let mut lines = IrqLines::new();
        assert_eq!(
            lines.add(object(1), 40).unwrap().as_slice(),
            &[LineAction::Disable(40)]
        );
        assert_eq!(lines.check_add(40), Err(Status::NoFreeSlot));
        assert_eq!(lines.occurrence(40), Occurrence::Nobody);
        assert_eq!(lines.occurrence(41), Occurrence::Nobody);
        let line = lines.find(object(1)).unwrap();
        let route = IrqRoute::Event(EndpointId(3));
        let enable = LineAction::Enable { intid: 40, cpu: 2 };
        assert_eq!(lines.bind(line, route, 2).as_slice(), &[enable]);
        assert_eq!(lines.occurrence(40), Occurrence::Event(line, EndpointId(3)));
    }

    #[test]
    fn an_event_occurrence_stays_active_until_acknowledged_or_released() {
        let mut lines = IrqLines::new();
        lines.add(object(1), 40).unwrap();
        lines.bind(0, IrqRoute::Event(EndpointId(0)), 0);
        assert_eq!(
            lines.ack(0),
            Err(Status::WrongState),
            "nothing to acknowledge"
        );
        lines.delivered(0);
        assert_eq!(
            lines.ack(0).unwrap().as_slice(),
            &[LineAction::Deactivate(40)]
        );
        assert_eq!(lines.ack(0), Err(Status::WrongState), "once");
        lines.delivered(0);
        let released = lines.release(0);
        assert_eq!(
            released.as_slice(),
            &[LineAction::Disable(40), LineAction::Deactivate(40)]
        );
        assert_eq!(lines.occurrence(40), Occurrence::Nobody);
        assert_eq!(
            lines.remove(object(1)).as_slice(),
            &[LineAction::Disable(40)]
        );
        assert_eq!(lines.find(object(1)), None);
        assert_eq!(lines.check_add(40), Ok(()));
    }

    #[test]
    fn a_domains_end_releases_only_the_lines_injected_into_it() {
        let mut lines = IrqLines::new();
        for (i, intid) in [40, 41, 42].into_iter().enumerate() {
            lines.add(object(i as u16), intid).unwrap();
        }
        let (a, b) = (DomainId(1), DomainId(2));
        lines.bind(0, IrqRoute::Virtual { domain: a, vcpu: 0 }, 0);
        lines.bind(1, IrqRoute::Virtual { domain: b, vcpu: 1 }, 1);
        lines.bind(2, IrqRoute::Virtual { domain: a, vcpu: 1 }, 1);
        assert_eq!(lines.routed_to(a).as_slice(), &[0, 2]);
        let released: Vec<LineAction> = [0, 2].into_iter().flat_map(|l| lines.release(l)).collect();
        assert_eq!(
            released.as_slice(),
            &[LineAction::Disable(40), LineAction::Disable(42)]
        );
        let virtual_b = Occurrence::Virtual {
            line: 1,
            domain: b,
            vcpu: 1,
        };
        assert_eq!(lines.occurrence(41), virtual_b);
        assert_eq!(lines.occurrence(42), Occurrence::Nobody);
    }

    #[test]
    fn every_line_can_be_handed_out_and_no_more() {
        let mut lines = IrqLines::new();
        for i in 0..MAX_IRQS as u32 {
            lines.add(object(i as u16), 32 + i).unwrap();
        }
        assert_eq!(lines.add(object(999), 1000), Err(Status::NoFreeSlot));
        let virtual_1 = IrqRoute::Virtual {
            domain: DomainId(1),
            vcpu: 0,
        };
        for line in 0..MAX_IRQS {
            assert_eq!(lines.bind(line, virtual_1, 0).len(), 1);
        }
        assert_eq!(lines.routed_to(DomainId(1)).len(), MAX_IRQS);
    }
}
