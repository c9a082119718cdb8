//! Guests' disks: virtio block devices served by other domains (docs/virtio.md).

use super::*;
use crate::manifest::file::DiskSection;
use crate::manifest::model::Disk;

/// Where a server sees the RAM of the first guest it serves; the next is a window further.
const FIRST_RAM_WINDOW: u64 = 0x40_0000_0000;
/// Bytes of guest-physical space each served guest's RAM gets in its server.
const RAM_WINDOW: u64 = 0x8_0000_0000;

impl Checker<'_> {
    /// Checks every domain's `disks`: a name whose three capabilities fit the server's
    /// boot-info page, a server that exists and is another domain, a size, at most
    /// `mica_abi::virtio::MAX_DEVICES` per guest, and room for the guest's RAM in the server
    /// (shared with it, so the server can walk the guest's queues).
    pub(crate) fn disks(
        &self,
        sections: &[DomainSection],
        domains: &[Domain],
        shares: usize,
        namespaces: &mut Namespaces,
    ) -> Result<Vec<Disk>, ManifestError> {
        let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
        let mut disks: Vec<Disk> = Vec::new();
        let mut served = vec![0u64; domains.len()];
        for (guest, d) in sections.iter().enumerate() {
            if d.disks.len() > mica_abi::virtio::MAX_DEVICES {
                let at = &d.disks[mica_abi::virtio::MAX_DEVICES].name;
                return Err(self.invalid(
                    at,
                    Problem::TooManyDisks {
                        guest: names[guest].to_owned(),
                        most: mica_abi::virtio::MAX_DEVICES,
                    },
                ));
            }
            for (slot, disk) in d.disks.iter().enumerate() {
                disks.push(self.disk(guest, slot as u32, disk, domains, &names, &mut served)?);
                if shares + disks.len() > MAX_SHARES {
                    return Err(
                        self.invalid(&disk.name, Problem::TooManyShares(shares + disks.len()))
                    );
                }
                let name = disk.name.get_ref();
                let server = disks.last().map_or(0, |x| x.server);
                for suffix in ["", "-events", "-ram"] {
                    let value = Spanned::new(disk.name.span(), format!("{name}{suffix}"));
                    self.claim_name(namespaces, server, names[server], &value)?;
                }
                // The guest's RAM is listed in the server's page only (SHARE_PEER_ONLY).
                namespaces.regions[server] += 1;
                if namespaces.regions[server] > MAX_REGIONS {
                    return Err(self.invalid(
                        &disk.name,
                        Problem::TooManyRegions {
                            domain: names[server].to_owned(),
                        },
                    ));
                }
            }
        }
        Ok(disks)
    }

    fn disk(
        &self,
        guest: usize,
        slot: u32,
        disk: &DiskSection,
        domains: &[Domain],
        names: &[&str],
        served: &mut [u64],
    ) -> Result<Disk, ManifestError> {
        let name = disk.name.get_ref();
        if name.len() > NAME_LEN - 7 || !is_valid_name(name) {
            return Err(self.invalid(&disk.name, Problem::BadDiskName(name.clone())));
        }
        let server = self.domain_named("server", &disk.server, names)?;
        if server == guest {
            return Err(self.invalid(
                &disk.server,
                Problem::DiskServedByItself {
                    disk: name.clone(),
                    guest: names[guest].to_owned(),
                },
            ));
        }
        let size_mib = *disk.size_mib.get_ref();
        let sectors = size_mib
            .checked_mul((1 << 20) / mica_abi::virtio::blk::SECTOR)
            .filter(|s| *s > 0)
            .ok_or_else(|| self.invalid(&disk.size_mib, Problem::DiskSize(name.clone())))?;
        // The guest's RAM below its last page, in the server's next window.
        let guest_layout = DomainLayout::new(domains[guest].memory_kib * 1024);
        let ram_bytes = guest_layout.ram_end() - PAGE_BYTES - DOMAIN_RAM_BASE;
        let server_layout = DomainLayout::new(domains[server].memory_kib * 1024);
        let ram_address = FIRST_RAM_WINDOW + served[server] * RAM_WINDOW;
        if ram_bytes > RAM_WINDOW || !server_layout.holds_shared_window(ram_address, ram_bytes) {
            let most = (mica_abi::layout::IPA_LIMIT - FIRST_RAM_WINDOW) / RAM_WINDOW;
            return Err(self.invalid(
                &disk.server,
                Problem::TooManyDisksServed {
                    server: names[server].to_owned(),
                    most: most as usize,
                },
            ));
        }
        served[server] += 1;
        Ok(Disk {
            name: name.clone(),
            guest,
            server,
            slot,
            sectors,
            ram_pages: (ram_bytes / PAGE_BYTES) as u32,
            ram_address,
        })
    }
}
