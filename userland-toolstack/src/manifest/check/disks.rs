//! Guests' disks: virtio block devices served by other domains (docs/virtio.md).

use super::*;
use crate::manifest::file::DiskSection;
use crate::manifest::model::{Disk, OnDrive};
use mica_abi::bootinfo::suffix;

/// Where a device domain sees the I/O region of the first disk it passes to a block service;
/// the next is a window further.
const FIRST_IO_WINDOW: u64 = 0x30_0000_0000;
/// Bytes of guest-physical space each I/O region gets in the device domain.
const IO_WINDOW: u64 = 0x100_0000;
/// Data slots of each disk's I/O region (`mica_abi::blkio`).
pub const IO_SLOTS: usize = 4;

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
        (drives, devices): (&[Drive], &[Device]),
        shares: usize,
        namespaces: &mut Namespaces,
    ) -> Result<Vec<Disk>, ManifestError> {
        let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
        let mut disks: Vec<Disk> = Vec::new();
        let mut written: Vec<&DiskSection> = Vec::new();
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
                let checked = self.disk(
                    (guest, slot as u32),
                    disk,
                    domains,
                    drives,
                    &names,
                    &mut served,
                )?;
                // The slot's registers are the kernel's to answer: no device of the guest's
                // may be passed through over them.
                let (window, _) = mica_abi::layout::devices::virtio_slot(slot as u32)
                    .expect("at most MAX_DEVICES slots, all within VIRTIO_SLOTS");
                if let Some(dev) = devices.iter().find(|d| {
                    d.domain == guest
                        && d.mmio_base < window + mica_abi::virtio::WINDOW
                        && window < d.mmio_base + d.mmio_size
                }) {
                    return Err(self.invalid(
                        &disk.name,
                        Problem::DiskSlotTaken {
                            disk: checked.name.clone(),
                            device: dev.name.clone(),
                            window,
                        },
                    ));
                }
                // Extents of one drive do not overlap.
                if let Some(on) = checked.on_drive {
                    let end = on.first_sector + checked.sectors;
                    let clash = disks.iter().zip(&written).find(|(o, _)| {
                        o.on_drive.is_some_and(|x| {
                            x.drive == on.drive
                                && x.first_sector < end
                                && on.first_sector < x.first_sector + o.sectors
                        })
                    });
                    if let Some((other, at)) = clash {
                        let problem = Problem::DiskOverlap {
                            disk: checked.name.clone(),
                            other: other.name.clone(),
                            other_line: self.line(&at.name),
                            drive: drives[on.drive].name.clone(),
                        };
                        return Err(match &disk.offset_mib {
                            Some(offset) => self.invalid(offset, problem),
                            None => self.invalid(&disk.name, problem),
                        });
                    }
                }
                disks.push(checked);
                written.push(disk);
                if shares + disks.len() > MAX_SHARES {
                    return Err(
                        self.invalid(&disk.name, Problem::TooManyShares(shares + disks.len()))
                    );
                }
                let name = disk.name.get_ref();
                let server = disks.last().map_or(0, |x| x.server);
                for ending in ["", suffix::EVENTS, suffix::RAM] {
                    let value = Spanned::new(disk.name.span(), format!("{name}{ending}"));
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
        (guest, slot): (usize, u32),
        disk: &DiskSection,
        domains: &[Domain],
        drives: &[Drive],
        names: &[&str],
        served: &mut [u64],
    ) -> Result<Disk, ManifestError> {
        let name = disk.name.get_ref();
        // Room for the longest name made from it (NAME-events) in a boot-info name.
        if name.len() > NAME_LEN - suffix::EVENTS.len() || !is_valid_name(name) {
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
        let on_drive = match (&disk.drive, &disk.offset_mib) {
            (None, None) => None,
            (None, Some(offset)) => {
                return Err(self.invalid(offset, Problem::DiskOffsetWithoutDrive(name.clone())))
            }
            (Some(drive), offset) => {
                let Some(index) = drives.iter().position(|d| d.name == *drive.get_ref()) else {
                    let known: Vec<&str> = drives.iter().map(|d| d.name.as_str()).collect();
                    return Err(self.invalid(
                        drive,
                        Problem::DiskNoSuchDrive {
                            disk: name.clone(),
                            drive: drive.get_ref().clone(),
                            drives: if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            },
                        },
                    ));
                };
                let offset_mib = offset.as_ref().map_or(0, |o| *o.get_ref());
                let end_mib = offset_mib.checked_add(size_mib);
                if end_mib.is_none_or(|end| end > drives[index].size_mib) {
                    let problem = Problem::DiskPastDrive {
                        disk: name.clone(),
                        offset_mib,
                        size_mib,
                        drive: drives[index].name.clone(),
                        drive_mib: drives[index].size_mib,
                    };
                    return Err(match offset {
                        Some(offset) => self.invalid(offset, problem),
                        None => self.invalid(drive, problem),
                    });
                }
                if drives[index].server == server {
                    return Err(self.invalid(
                        &disk.server,
                        Problem::DiskServedByDriveServer {
                            disk: name.clone(),
                            server: names[server].to_owned(),
                            drive: drives[index].name.clone(),
                        },
                    ));
                }
                Some(OnDrive {
                    drive: index,
                    first_sector: offset_mib * ((1 << 20) / mica_abi::virtio::blk::SECTOR),
                })
            }
        };
        served[server] += 1;
        Ok(Disk {
            on_drive,
            name: name.clone(),
            guest,
            server,
            slot,
            sectors,
            ram_pages: (ram_bytes / PAGE_BYTES) as u32,
            ram_address,
        })
    }

    /// For each disk on a drive, the channel and the I/O region (both `NAME-io`) between its
    /// server (the device domain: endpoint `NAME-blk`, region `NAME-io`) and the drive's server
    /// (the block service: endpoint `NAME`, region `NAME-io`, in its RAM from the top of its
    /// usable RAM down, one region per client, so it is in no guest's RAM).
    pub(crate) fn disk_io(
        &self,
        sections: &[DomainSection],
        disks: &[Disk],
        drives: &[Drive],
        domains: &[Domain],
        (channels, shares): (usize, &[Share]),
        namespaces: &mut Namespaces,
    ) -> Result<(Vec<Channel>, Vec<Share>), ManifestError> {
        let names: Vec<&str> = domains.iter().map(|d| d.name.as_str()).collect();
        let spans: Vec<&DiskSection> = sections.iter().flat_map(|d| d.disks.iter()).collect();
        let (mut new_channels, mut new_shares) = (Vec::new(), Vec::<Share>::new());
        let bytes = mica_abi::blkio::region_bytes(IO_SLOTS) as u64;
        let pages = (bytes / PAGE_BYTES) as u32;
        for (disk, at) in disks.iter().zip(spans) {
            let Some(on) = disk.on_drive else { continue };
            let (device, service) = (disk.server, drives[on.drive].server);
            let name = &disk.name;
            for (domain, ending) in [
                (device, suffix::BLK),
                (device, suffix::IO),
                (service, ""),
                (service, suffix::IO),
            ] {
                let value = Spanned::new(at.name.span(), format!("{name}{ending}"));
                self.claim_name(namespaces, domain, names[domain], &value)?;
            }
            for domain in [device, service] {
                namespaces.regions[domain] += 1;
                if namespaces.regions[domain] > MAX_REGIONS {
                    return Err(self.invalid(
                        &at.name,
                        Problem::TooManyRegions {
                            domain: names[domain].to_owned(),
                        },
                    ));
                }
            }
            if channels + new_channels.len() >= MAX_CHANNELS {
                return Err(self.invalid(
                    &at.name,
                    Problem::TooManyChannels(channels + new_channels.len() + 1),
                ));
            }
            if shares.len() + new_shares.len() + disks.len() >= MAX_SHARES {
                return Err(self.invalid(
                    &at.name,
                    Problem::TooManyShares(shares.len() + new_shares.len() + disks.len() + 1),
                ));
            }
            // The service's next region down from the top of its usable RAM.
            let below: u64 = new_shares
                .iter()
                .filter(|s| s.owner == service)
                .map(|s| s.size())
                .sum();
            let layout = DomainLayout::new(domains[service].memory_kib * 1024);
            let top = layout.usable_end() - DOMAIN_RAM_BASE;
            let owner_offset = top.checked_sub(below + bytes);
            let clear = |offset: u64| {
                shares.iter().filter(|s| s.owner == service).all(|s| {
                    offset + bytes <= s.owner_offset || s.owner_offset + s.size() <= offset
                })
            };
            let Some(owner_offset) = owner_offset.filter(|o| *o >= bytes && clear(*o)) else {
                return Err(self.invalid(
                    &at.name,
                    Problem::DiskIoDoesNotFit {
                        disk: name.clone(),
                        service: names[service].to_owned(),
                        kib: bytes / 1024,
                    },
                ));
            };
            let k = new_shares.iter().filter(|s| s.peer == device).count() as u64;
            let peer_address = FIRST_IO_WINDOW + k * IO_WINDOW;
            let peer_clear = shares.iter().filter(|s| s.peer == device).all(|s| {
                peer_address + bytes <= s.peer_address || s.peer_address + s.size() <= peer_address
            });
            if !peer_clear {
                return Err(self.invalid(
                    &at.name,
                    Problem::DiskIoWindowTaken {
                        disk: name.clone(),
                        device: names[device].to_owned(),
                        address: peer_address,
                    },
                ));
            }
            let io = format!("{name}{}", suffix::IO);
            new_channels.push(Channel {
                name: io.clone(),
                reason: format!("the requests of disk {name} to the block service"),
                a: Endpoint {
                    domain: device,
                    name: format!("{name}{}", suffix::BLK),
                },
                b: Endpoint {
                    domain: service,
                    name: name.clone(),
                },
            });
            new_shares.push(Share {
                name: io,
                reason: format!("the data slots of disk {name}"),
                owner: service,
                peer: device,
                pages,
                owner_offset,
                peer_address,
                peer_access: PeerAccess::ReadWrite,
            });
        }
        Ok((new_channels, new_shares))
    }
}
