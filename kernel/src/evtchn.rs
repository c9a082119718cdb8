//! The EventChannel object: pairs of endpoints and what a send, bind, mask or close does.
//!
//! Pure bookkeeping, no memory access: each operation returns the [`Delivery`] the kernel must
//! perform (set a bit in the receiver's event page, maybe wake its vCPU), so the state machine
//! is tested and model-checked on its own (`verify/`). An endpoint is *open* while its object
//! lives; when the last capability to it goes, the kernel calls [`Channels::close`] and sends
//! from the other side fail with `PeerClosed`. Events sent before the receiving endpoint is
//! bound are latched (one bit: events coalesce, as they do in the page) and delivered at bind.

use mica_abi::Status;
use mica_caps::ObjectRef;

use crate::ids::DomainId;

/// Index of an endpoint in the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EndpointId(pub u16);

/// Where events for an endpoint go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The receiving domain.
    pub domain: DomainId,
    /// Its event-page port.
    pub port: u16,
    /// The vCPU (index in the domain) to wake.
    pub vcpu: u16,
}

/// What the kernel must do after an operation: set `port` pending in `domain`'s event page
/// and, if `wake`, wake vCPU `vcpu` and raise its upcall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Where.
    pub binding: Binding,
    /// Whether to wake (false: masked, the bit is set but nobody is disturbed).
    pub wake: bool,
}

/// One endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Its kernel object.
    pub object: ObjectRef,
    /// The other end.
    pub peer: EndpointId,
    /// Its object still lives.
    pub open: bool,
    /// Where its events go.
    pub binding: Option<Binding>,
    /// Upcall masked.
    pub masked: bool,
    /// An event arrived before binding.
    pub latched: bool,
    /// An event was delivered while masked (unmask wakes).
    pub pending_while_masked: bool,
}

/// Every endpoint in the system.
#[derive(Clone, Debug)]
pub struct Channels<const N: usize> {
    endpoints: [Option<Endpoint>; N],
}

impl<const N: usize> Default for Channels<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Channels<N> {
    /// No channels.
    pub const fn new() -> Self {
        Channels {
            endpoints: [None; N],
        }
    }

    /// The endpoint `id`, if it exists.
    pub fn get(&self, id: EndpointId) -> Option<&Endpoint> {
        self.endpoints.get(id.0 as usize)?.as_ref()
    }

    fn get_mut(&mut self, id: EndpointId) -> Option<&mut Endpoint> {
        self.endpoints.get_mut(id.0 as usize)?.as_mut()
    }

    /// Whether two free endpoint entries exist (check before creating the objects).
    pub fn has_room(&self) -> bool {
        self.endpoints.iter().filter(|e| e.is_none()).count() >= 2
    }

    /// Records a channel between the endpoint objects `a` and `b`.
    pub fn create(
        &mut self,
        a: ObjectRef,
        b: ObjectRef,
    ) -> Result<(EndpointId, EndpointId), Status> {
        let mut free = self
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| e.is_none())
            .map(|(i, _)| i);
        let (Some(ia), Some(ib)) = (free.next(), free.next()) else {
            return Err(Status::OutOfMemory);
        };
        let (ea, eb) = (EndpointId(ia as u16), EndpointId(ib as u16));
        let fresh = |object, peer| Endpoint {
            object,
            peer,
            open: true,
            binding: None,
            masked: false,
            latched: false,
            pending_while_masked: false,
        };
        self.endpoints[ia] = Some(fresh(a, eb));
        self.endpoints[ib] = Some(fresh(b, ea));
        Ok((ea, eb))
    }

    /// The open endpoint whose object is `object`.
    pub fn find(&self, object: ObjectRef) -> Option<EndpointId> {
        self.endpoints
            .iter()
            .position(|e| e.is_some_and(|e| e.open && e.object == object))
            .map(|i| EndpointId(i as u16))
    }

    /// Routes `id`'s events to `binding`; delivers a latched event.
    pub fn bind(&mut self, id: EndpointId, binding: Binding) -> Result<Option<Delivery>, Status> {
        // Another open endpoint bound to the same port of the same domain (the endpoint's own
        // binding does not count: rebinding its port to another vCPU is fine).
        let port_taken = self.endpoints.iter().enumerate().any(|(i, e)| {
            i != id.0 as usize
                && e.is_some_and(|e| {
                    e.open
                        && e.binding
                            .is_some_and(|b| b.domain == binding.domain && b.port == binding.port)
                })
        });
        let e = self
            .get_mut(id)
            .filter(|e| e.open)
            .ok_or(Status::StaleCapability)?;
        if e.binding == Some(binding) {
            return Ok(None);
        }
        if port_taken {
            return Err(Status::SlotOccupied);
        }
        e.binding = Some(binding);
        if e.latched {
            e.latched = false;
            if e.masked {
                e.pending_while_masked = true;
            }
            return Ok(Some(Delivery {
                binding,
                wake: !e.masked,
            }));
        }
        Ok(None)
    }

    /// A send on `id`: the delivery to its peer, `None` if latched, or `PeerClosed`.
    pub fn send(&mut self, id: EndpointId) -> Result<Option<Delivery>, Status> {
        let peer = self
            .get(id)
            .filter(|e| e.open)
            .ok_or(Status::StaleCapability)?
            .peer;
        let p = self
            .get_mut(peer)
            .filter(|p| p.open)
            .ok_or(Status::PeerClosed)?;
        match p.binding {
            None => {
                p.latched = true;
                Ok(None)
            }
            Some(binding) => {
                if p.masked {
                    p.pending_while_masked = true;
                }
                Ok(Some(Delivery {
                    binding,
                    wake: !p.masked,
                }))
            }
        }
    }

    /// An event raised on `id` itself by the kernel (an interrupt bound to it): delivered to
    /// its own binding, latched if unbound.
    pub fn raise(&mut self, id: EndpointId) -> Result<Option<Delivery>, Status> {
        let e = self
            .get_mut(id)
            .filter(|e| e.open)
            .ok_or(Status::StaleCapability)?;
        match e.binding {
            None => {
                e.latched = true;
                Ok(None)
            }
            Some(binding) => {
                if e.masked {
                    e.pending_while_masked = true;
                }
                Ok(Some(Delivery {
                    binding,
                    wake: !e.masked,
                }))
            }
        }
    }

    /// Masks or unmasks `id`'s upcall; unmasking after a masked delivery wakes.
    pub fn mask(&mut self, id: EndpointId, masked: bool) -> Result<Option<Delivery>, Status> {
        let e = self
            .get_mut(id)
            .filter(|e| e.open)
            .ok_or(Status::StaleCapability)?;
        e.masked = masked;
        if !masked && e.pending_while_masked {
            e.pending_while_masked = false;
            if let Some(binding) = e.binding {
                return Ok(Some(Delivery {
                    binding,
                    wake: true,
                }));
            }
        }
        Ok(None)
    }

    /// The endpoint whose object was `object` is gone: its side is closed, and the entry pair
    /// is freed once both sides are.
    pub fn close(&mut self, object: ObjectRef) {
        let Some(id) = self
            .endpoints
            .iter()
            .position(|e| e.is_some_and(|e| e.object == object))
        else {
            return;
        };
        let peer = match self.endpoints[id].as_mut() {
            Some(e) => {
                e.open = false;
                e.binding = None;
                e.peer
            }
            None => return,
        };
        let peer_closed = self.get(peer).is_none_or(|p| !p.open);
        if peer_closed {
            self.endpoints[id] = None;
            if let Some(slot) = self.endpoints.get_mut(peer.0 as usize) {
                *slot = None;
            }
        }
    }

    /// Forgets every binding into `domain` (it is being destroyed or restarted).
    pub fn unbind_domain(&mut self, domain: DomainId) {
        for e in self.endpoints.iter_mut().flatten() {
            if e.binding.is_some_and(|b| b.domain == domain) {
                e.binding = None;
            }
        }
    }

    /// Live endpoint entries (for accounting and tests).
    pub fn len(&self) -> usize {
        self.endpoints.iter().flatten().count()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(i: u32) -> ObjectRef {
        ObjectRef {
            index: i,
            generation: 0,
        }
    }
    const RX: Binding = Binding {
        domain: DomainId(2),
        port: 5,
        vcpu: 0,
    };

    #[test]
    fn send_to_a_bound_endpoint_delivers_and_wakes() {
        let mut c: Channels<4> = Channels::new();
        let (a, b) = c.create(obj(1), obj(2)).unwrap();
        assert_eq!(c.bind(b, RX), Ok(None));
        assert_eq!(
            c.send(a),
            Ok(Some(Delivery {
                binding: RX,
                wake: true
            }))
        );
        assert_eq!(c.send(b), Ok(None), "a's side is unbound: latched");
        let back = Binding {
            domain: DomainId(1),
            port: 0,
            vcpu: 0,
        };
        assert_eq!(
            c.bind(a, back),
            Ok(Some(Delivery {
                binding: back,
                wake: true
            })),
            "latched event delivered"
        );
    }

    #[test]
    fn masking_suppresses_wakes_but_not_pending() {
        let mut c: Channels<4> = Channels::new();
        let (a, b) = c.create(obj(1), obj(2)).unwrap();
        c.bind(b, RX).unwrap();
        assert_eq!(c.mask(b, true), Ok(None));
        assert_eq!(
            c.send(a),
            Ok(Some(Delivery {
                binding: RX,
                wake: false
            }))
        );
        assert_eq!(
            c.mask(b, false),
            Ok(Some(Delivery {
                binding: RX,
                wake: true
            }))
        );
        assert_eq!(c.mask(b, false), Ok(None), "only once");
    }

    #[test]
    fn a_closed_peer_refuses_and_both_closed_frees() {
        let mut c: Channels<4> = Channels::new();
        let (a, b) = c.create(obj(1), obj(2)).unwrap();
        c.close(obj(2));
        assert_eq!(c.send(a), Err(Status::PeerClosed));
        assert_eq!(c.find(obj(2)), None);
        assert_eq!(c.find(obj(1)), Some(a));
        assert_eq!(c.bind(b, RX), Err(Status::StaleCapability));
        c.close(obj(1));
        assert!(c.is_empty());
        assert!(c.create(obj(3), obj(4)).is_ok());
    }

    #[test]
    fn ports_are_not_shared_and_the_table_is_bounded() {
        let mut c: Channels<4> = Channels::new();
        let (_, b) = c.create(obj(1), obj(2)).unwrap();
        let (_, d) = c.create(obj(3), obj(4)).unwrap();
        c.bind(b, RX).unwrap();
        assert_eq!(c.bind(d, RX), Err(Status::SlotOccupied));
        assert!(!c.has_room());
        assert_eq!(c.create(obj(5), obj(6)), Err(Status::OutOfMemory));
        c.unbind_domain(DomainId(2));
        assert_eq!(c.bind(d, RX), Ok(None));
    }
}
