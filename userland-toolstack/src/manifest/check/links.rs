//! Names in each domain's boot-info namespace, channels and shared regions.

use super::*;

/// Whether `name` can be a channel, endpoint or shared-region name: 1..=23 bytes of `a-z`,
/// `0-9`, `-`.
pub fn is_valid_capability_name(name: &str) -> bool {
    name.len() <= MAX_CAP_NAME_LEN && is_valid_name(name)
}

/// The names each domain's boot-info page will list, with the line each is written on, and
/// how many shared regions each domain owns or maps.
pub(crate) struct Namespaces {
    pub(crate) names: Vec<Vec<(String, usize)>>,
    pub(crate) regions: Vec<usize>,
}

impl Namespaces {
    pub(crate) fn new(domains: usize) -> Namespaces {
        Namespaces {
            names: vec![Vec::new(); domains],
            regions: vec![0; domains],
        }
    }
}

/// A shared region checked so far, for overlap errors.
pub(crate) struct Placed {
    pub(crate) line_of_offset: usize,
    pub(crate) line_of_address: usize,
}

impl Checker<'_> {
    pub(crate) fn line<T>(&self, value: &Spanned<T>) -> usize {
        self.at(value).position.map_or(0, |p| p.line)
    }

    /// The index of the domain `value` names (`field` is the key, for the error).
    pub(crate) fn domain_named(
        &self,
        field: &'static str,
        value: &Spanned<String>,
        names: &[&str],
    ) -> Result<usize, ManifestError> {
        names
            .iter()
            .position(|n| n == value.get_ref())
            .ok_or_else(|| {
                self.invalid(
                    value,
                    Problem::UnknownDomain {
                        field,
                        name: value.get_ref().clone(),
                        known: names.join(", "),
                    },
                )
            })
    }

    pub(crate) fn capability_name(
        &self,
        what: &'static str,
        value: &Spanned<String>,
    ) -> Result<String, ManifestError> {
        if is_valid_capability_name(value.get_ref()) {
            Ok(value.get_ref().clone())
        } else {
            Err(self.invalid(
                value,
                Problem::BadCapabilityName {
                    what,
                    name: value.get_ref().clone(),
                },
            ))
        }
    }

    pub(crate) fn reason(
        &self,
        what: &'static str,
        name: &Spanned<String>,
        reason: &Option<Spanned<String>>,
    ) -> Result<String, ManifestError> {
        let problem = Problem::MissingReason {
            what,
            name: name.get_ref().clone(),
        };
        match reason {
            Some(r) if !r.get_ref().trim().is_empty() => Ok(r.get_ref().clone()),
            Some(r) => Err(self.invalid(r, problem)),
            None => Err(self.invalid(name, problem)),
        }
    }

    /// Adds `value` to the boot-info names of domain `domain` (named `domain_name`).
    pub(crate) fn claim_name(
        &self,
        namespaces: &mut Namespaces,
        domain: usize,
        domain_name: &str,
        value: &Spanned<String>,
    ) -> Result<(), ManifestError> {
        let names = &mut namespaces.names[domain];
        if let Some((_, first_line)) = names.iter().find(|(n, _)| n == value.get_ref()) {
            return Err(self.invalid(
                value,
                Problem::DuplicateCapability {
                    domain: domain_name.to_owned(),
                    name: value.get_ref().clone(),
                    first_line: *first_line,
                },
            ));
        }
        if names.len() == MAX_CAPS {
            return Err(self.invalid(
                value,
                Problem::TooManyCapabilities {
                    domain: domain_name.to_owned(),
                },
            ));
        }
        names.push((value.get_ref().clone(), self.line(value)));
        Ok(())
    }

    /// Checks the `[[channel]]` tables against the domains.
    pub(crate) fn channels(
        &self,
        sections: &[ChannelSection],
        names: &[&str],
        namespaces: &mut Namespaces,
    ) -> Result<Vec<Channel>, ManifestError> {
        if sections.len() > MAX_CHANNELS {
            return Err(self.invalid(
                &sections[MAX_CHANNELS].name,
                Problem::TooManyChannels(sections.len()),
            ));
        }
        let mut channels = Vec::with_capacity(sections.len());
        for (i, c) in sections.iter().enumerate() {
            let name = self.capability_name("channel name", &c.name)?;
            if let Some(first) = sections[..i].iter().find(|e| *e.name.get_ref() == name) {
                return Err(self.invalid(
                    &c.name,
                    Problem::DuplicateChannel {
                        name,
                        first_line: self.line(&first.name),
                    },
                ));
            }
            let reason = self.reason("channel", &c.name, &c.reason)?;
            let mut ends = Vec::with_capacity(2);
            for end in [&c.a, &c.b] {
                let domain = self.domain_named("domain", &end.domain, names)?;
                let endpoint = self.capability_name("endpoint", &end.endpoint)?;
                ends.push(Endpoint {
                    domain,
                    name: endpoint,
                });
            }
            let [a, b] = <[Endpoint; 2]>::try_from(ends).expect("two ends");
            if a.domain == b.domain {
                return Err(self.invalid(
                    &c.b.domain,
                    Problem::ChannelToItself {
                        channel: name,
                        domain: names[a.domain].to_owned(),
                    },
                ));
            }
            self.claim_name(namespaces, a.domain, names[a.domain], &c.a.endpoint)?;
            self.claim_name(namespaces, b.domain, names[b.domain], &c.b.endpoint)?;
            channels.push(Channel { name, reason, a, b });
        }
        Ok(channels)
    }

    /// Checks the `[[shared]]` tables against the domains and each other.
    pub(crate) fn shares(
        &self,
        sections: &[SharedSection],
        names: &[&str],
        domains: &[Domain],
        namespaces: &mut Namespaces,
    ) -> Result<Vec<Share>, ManifestError> {
        if sections.len() > MAX_SHARES {
            return Err(self.invalid(
                &sections[MAX_SHARES].name,
                Problem::TooManyShares(sections.len()),
            ));
        }
        let mut shares: Vec<Share> = Vec::with_capacity(sections.len());
        let mut placed: Vec<Placed> = Vec::with_capacity(sections.len());
        for s in sections {
            let name = self.capability_name("shared region name", &s.name)?;
            let reason = self.reason("shared region", &s.name, &s.reason)?;
            let owner = self.domain_named("owner", &s.owner, names)?;
            let peer = self.domain_named("peer", &s.peer, names)?;
            if owner == peer {
                return Err(self.invalid(
                    &s.peer,
                    Problem::ShareWithItself {
                        name,
                        domain: names[owner].to_owned(),
                    },
                ));
            }
            let pages = *s.pages.get_ref();
            if pages == 0 {
                return Err(self.invalid(&s.pages, Problem::SharePages));
            }
            let size_kib = u64::from(pages) * (PAGE_BYTES / 1024);

            // In the owner: whole pages of its RAM, below its boot-info page.
            let offset_kib = *s.owner_offset_kib.get_ref();
            if !offset_kib.is_multiple_of(PAGE_BYTES / 1024) {
                return Err(
                    self.invalid(&s.owner_offset_kib, Problem::OwnerOffsetAlign(offset_kib))
                );
            }
            let end_kib = offset_kib.saturating_add(size_kib);
            let owner_kib = domains[owner].memory_kib;
            let owner_layout = DomainLayout::new(owner_kib * 1024);
            // The kernel's rule (`DomainLayout`): below the owner's boot-info page.
            if !owner_layout.holds(DOMAIN_RAM_BASE + offset_kib * 1024, size_kib * 1024) {
                return Err(self.invalid(
                    &s.owner_offset_kib,
                    Problem::ShareOutsideOwner {
                        offset_kib,
                        end_kib,
                        owner: names[owner].to_owned(),
                        owner_kib,
                        least_kib: end_kib.saturating_add(PAGE_BYTES / 1024),
                    },
                ));
            }
            for (other, at) in shares.iter().zip(&placed) {
                let other_offset_kib = other.owner_offset / 1024;
                let other_end_kib = other_offset_kib + other.size() / 1024;
                if other.owner == owner && offset_kib < other_end_kib && other_offset_kib < end_kib
                {
                    return Err(self.invalid(
                        &s.owner_offset_kib,
                        Problem::ShareOverlap {
                            offset_kib,
                            end_kib,
                            owner: names[owner].to_owned(),
                            other: other.name.clone(),
                            other_offset_kib,
                            other_end_kib,
                            other_line: at.line_of_offset,
                        },
                    ));
                }
            }

            // In the peer: above its RAM, below the end of its address space, and clear
            // of every other region mapped into it.
            let address = *s.peer_address.get_ref();
            if !address.is_multiple_of(PAGE_BYTES) {
                return Err(self.invalid(&s.peer_address, Problem::PeerAddressAlign(address)));
            }
            let size = size_kib * 1024;
            let end = address.saturating_add(size);
            let peer_layout = DomainLayout::new(domains[peer].memory_kib * 1024);
            let ram_end = peer_layout.ram_end();
            // The kernel's rule: above the peer's RAM, inside its guest-physical space.
            if !peer_layout.holds_shared_window(address, size) {
                return Err(self.invalid(
                    &s.peer_address,
                    Problem::PeerAddressRange {
                        address,
                        end,
                        peer: names[peer].to_owned(),
                        ram_end,
                        suggestion: ram_end.next_multiple_of(DOMAIN_RAM_BASE),
                    },
                ));
            }
            for (other, at) in shares.iter().zip(&placed) {
                let other_end = other.peer_address + other.size();
                if other.peer == peer && address < other_end && other.peer_address < end {
                    return Err(self.invalid(
                        &s.peer_address,
                        Problem::PeerAddressOverlap {
                            address,
                            end,
                            peer: names[peer].to_owned(),
                            other: other.name.clone(),
                            other_address: other.peer_address,
                            other_end,
                            other_line: at.line_of_address,
                        },
                    ));
                }
            }

            for domain in [owner, peer] {
                self.claim_name(namespaces, domain, names[domain], &s.name)?;
                namespaces.regions[domain] += 1;
                if namespaces.regions[domain] > MAX_REGIONS {
                    return Err(self.invalid(
                        &s.name,
                        Problem::TooManyRegions {
                            domain: names[domain].to_owned(),
                        },
                    ));
                }
            }
            placed.push(Placed {
                line_of_offset: self.line(&s.owner_offset_kib),
                line_of_address: self.line(&s.peer_address),
            });
            shares.push(Share {
                name,
                reason,
                owner,
                peer,
                pages,
                owner_offset: offset_kib * 1024,
                peer_address: address,
                peer_access: s.peer_access,
            });
        }
        Ok(shares)
    }
}
