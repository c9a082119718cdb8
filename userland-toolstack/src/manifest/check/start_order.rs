//! When domains start: `after` links, start cycles, and links between domains that never run
//! together.

use super::*;

impl Checker<'_> {
    /// Fails if domains wait for each other's destruction in a cycle (none would start).
    pub(crate) fn check_start_cycles(
        &self,
        sections: &[DomainSection],
        domains: &[Domain],
    ) -> Result<(), ManifestError> {
        for (first, d) in domains.iter().enumerate() {
            let mut path = vec![first];
            let mut start = d.start;
            while let Start::AfterDestroyOf(next) = start {
                if next == first {
                    let mut names: Vec<&str> =
                        path.iter().map(|&i| domains[i].name.as_str()).collect();
                    names.push(&d.name);
                    let at = sections[first]
                        .after
                        .as_ref()
                        .map_or_else(|| self.at(&sections[first].name), |a| self.at(a));
                    return Err(ManifestError::Invalid {
                        at,
                        problem: Box::new(Problem::StartCycle {
                            cycle: names.join(" -> "),
                        }),
                    });
                }
                if path.contains(&next) {
                    // A cycle that does not include `first`: reported from one of its members.
                    break;
                }
                path.push(next);
                start = domains[next].start;
            }
        }
        Ok(())
    }
}

impl Checker<'_> {
    /// Fails if a channel or shared region links two domains that never exist together:
    /// one waits (through its `after` chain) for the other's destruction. The kernel wires
    /// a link only while both its domains exist, so such a capability would be granted to
    /// nobody. Runs after the channels and shares are checked, so every name resolves.
    pub(crate) fn links_meet(
        &self,
        channels: &[ChannelSection],
        shares: &[SharedSection],
        domains: &[Domain],
    ) -> Result<(), ManifestError> {
        let index = |name: &Spanned<String>| {
            domains
                .iter()
                .position(|d| d.name == *name.get_ref())
                .expect("checked before")
        };
        let links = channels
            .iter()
            .map(|c| ("channel", &c.name, &c.a.domain, &c.b.domain))
            .chain(
                shares
                    .iter()
                    .map(|s| ("shared region", &s.name, &s.owner, &s.peer)),
            );
        for (what, name, first, second) in links {
            for (later, earlier) in [(second, first), (first, second)] {
                if let Some(chain) = waits_for(domains, index(later), index(earlier)) {
                    return Err(self.invalid(
                        later,
                        Problem::NeverTogether {
                            what,
                            name: name.get_ref().clone(),
                            earlier: earlier.get_ref().clone(),
                            later: later.get_ref().clone(),
                            chain,
                        },
                    ));
                }
            }
        }
        Ok(())
    }
}

/// If `later` starts only after `earlier` is destroyed (its `after` chain reaches it), the
/// chain as `later after X after earlier`. Chains have no cycles (checked before).
pub(crate) fn waits_for(domains: &[Domain], later: usize, earlier: usize) -> Option<String> {
    let mut chain = vec![domains[later].name.as_str()];
    let mut at = later;
    while let Start::AfterDestroyOf(next) = domains[at].start {
        chain.push(&domains[next].name);
        if next == earlier {
            return Some(chain.join(" after "));
        }
        at = next;
    }
    None
}
