//! Event channels: the hypercalls that create, bind, signal and mask them, and a domain's
//! event page (deliveries are `interrupts.rs`'s).

use super::*;

impl<H: Hal> Kernel<H> {
    /// `evtchn_create`.
    pub(super) fn invoke_evtchn_create(
        &mut self,
        caller: DomainId,
        mica_abi::args::EvtchnCreate { dst_a, dst_b }: mica_abi::args::EvtchnCreate,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let (dst_a, dst_b) = (dst_a.0, dst_b.0);
        // Check: two distinct empty slots and room in the endpoint table.
        if dst_a == dst_b {
            return Err(Status::InvalidArgument);
        }
        for slot in [dst_a, dst_b] {
            if self.caps.identify(space, slot).is_ok() {
                return Err(Status::SlotOccupied);
            }
        }
        if !self.channels.has_room() {
            return Err(Status::OutOfMemory);
        }
        self.check_fair_share(caller, Share::Endpoints)?;
        // Act.
        let a = self
            .caps
            .create_object(space, dst_a, ObjectType::EventChannel, None)?;
        let b = match self
            .caps
            .create_object(space, dst_b, ObjectType::EventChannel, None)
        {
            Ok(b) => b,
            Err(e) => {
                let _ = self.caps.delete(space, dst_a, |_| {});
                return Err(e);
            }
        };
        self.channels.create(a, b)?;
        Ok([0; 3])
    }

    /// `evtchn_bind`.
    pub(super) fn invoke_evtchn_bind(
        &mut self,
        caller: DomainId,
        mica_abi::args::EvtchnBind {
            endpoint,
            port,
            vcpu,
        }: mica_abi::args::EvtchnBind,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let (port, vcpu) = (port.0, vcpu.0);
        let info =
            self.caps
                .lookup(space, endpoint.0, ObjectType::EventChannel, Rights::RECEIVE)?;
        let id = self
            .channels
            .find(info.object)
            .ok_or(Status::StaleCapability)?;
        let d = self.domain(caller).ok_or(Status::StaleCapability)?;
        if vcpu as usize >= d.vcpus.len() {
            return Err(Status::InvalidArgument);
        }
        if d.event_page.is_none() {
            return Err(Status::WrongState);
        }
        let binding = crate::evtchn::Binding {
            domain: caller,
            port,
            vcpu,
        };
        if let Some(delivery) = self.channels.bind(id, binding)? {
            self.apply([Effect::Deliver(delivery)]);
        }
        Ok([0; 3])
    }

    /// `evtchn_send`.
    pub(super) fn invoke_evtchn_send(
        &mut self,
        caller: DomainId,
        mica_abi::args::EvtchnSend { endpoint }: mica_abi::args::EvtchnSend,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let info = self
            .caps
            .lookup(space, endpoint.0, ObjectType::EventChannel, Rights::SEND)?;
        let id = self
            .channels
            .find(info.object)
            .ok_or(Status::StaleCapability)?;
        if let Some(delivery) = self.channels.send(id)? {
            self.apply([Effect::Deliver(delivery)]);
        }
        Ok([0; 3])
    }

    /// `evtchn_mask`.
    pub(super) fn invoke_evtchn_mask(
        &mut self,
        caller: DomainId,
        mica_abi::args::EvtchnMask { endpoint, masked }: mica_abi::args::EvtchnMask,
    ) -> Result<[u64; 3], Status> {
        let space = caller.space();
        let info =
            self.caps
                .lookup(space, endpoint.0, ObjectType::EventChannel, Rights::RECEIVE)?;
        let id = self
            .channels
            .find(info.object)
            .ok_or(Status::StaleCapability)?;
        if let Some(delivery) = self.channels.mask(id, masked)? {
            self.apply([Effect::Deliver(delivery)]);
        }
        Ok([0; 3])
    }

    /// `event_page_set`.
    pub(super) fn invoke_event_page_set(
        &mut self,
        caller: DomainId,
        mica_abi::args::EventPageSet { ipa }: mica_abi::args::EventPageSet,
    ) -> Result<[u64; 3], Status> {
        let d = self.domain(caller).ok_or(Status::StaleCapability)?;
        let last = ipa.checked_add(FRAME_SIZE - 1).ok_or(Status::OutOfRange)?;
        if d.mappings.translate_writable(ipa).is_none()
            || d.mappings.translate_writable(last).is_none()
        {
            return Err(Status::OutOfRange);
        }
        if let Some(d) = self.domain_mut(caller) {
            d.event_page = Some(ipa);
        }
        Ok([0; 3])
    }
}
