//! The machine's drives (`[[drive]]`, docs/manifest.md) as QEMU gets them: each host file,
//! created sparse at the drive's size when it is missing, attached as a `virtio-blk-device`
//! on the virtio-mmio transport the builder gave its server
//! ([`crate::manifest::drive_transport`], named with `bus=`).

use crate::manifest::Drive;
use std::path::PathBuf;

/// Why a drive's file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The file could not be created, sized or inspected.
    #[error("drive `{name}`: {file}: {source}")]
    Io {
        /// The drive.
        name: String,
        /// Its file.
        file: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is smaller than the drive.
    #[error("drive `{name}`: {file} holds {bytes} bytes, less than the drive's size_mib = {size_mib}: give a larger file, or remove it to have a new one made")]
    TooSmall {
        /// The drive.
        name: String,
        /// Its file.
        file: PathBuf,
        /// The file's size.
        bytes: u64,
        /// The drive's size.
        size_mib: u64,
    },
}

/// Makes each drive's file if it is missing (sparse, `size_mib` long; its directory too) and
/// checks that an existing one is at least that long. Returns the lines to tell the user.
pub fn prepare(drives: &[Drive]) -> Result<Vec<String>, DriveError> {
    let mut said = Vec::new();
    for d in drives {
        let io = |source| DriveError::Io {
            name: d.name.clone(),
            file: d.file.clone(),
            source,
        };
        let want = d.size_mib << 20;
        match std::fs::metadata(&d.file) {
            Ok(meta) if meta.len() < want => {
                return Err(DriveError::TooSmall {
                    name: d.name.clone(),
                    file: d.file.clone(),
                    bytes: meta.len(),
                    size_mib: d.size_mib,
                })
            }
            Ok(_) => said.push(format!(
                "drive {}: {} (kept from before)",
                d.name,
                d.file.display()
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = d.file.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                let file = std::fs::File::create_new(&d.file).map_err(io)?;
                file.set_len(want).map_err(io)?;
                said.push(format!(
                    "drive {}: {} created, {} MiB, sparse",
                    d.name,
                    d.file.display(),
                    d.size_mib
                ));
            }
            Err(e) => return Err(io(e)),
        }
    }
    Ok(said)
}

/// QEMU's arguments for the drives, in order: a raw block backend per file and a
/// `virtio-blk-device` on it (QEMU honours the guest's flushes with its default cache mode).
pub fn qemu_args(drives: &[Drive]) -> Vec<String> {
    let mut args = Vec::new();
    for d in drives {
        let file = d.file.display().to_string().replace(',', ",,");
        args.push("-drive".to_owned());
        args.push(format!(
            "if=none,id=drive-{},format=raw,file={file}",
            d.name
        ));
        args.push("-device".to_owned());
        args.push(format!(
            "virtio-blk-device,drive=drive-{},bus=virtio-mmio-bus.{}",
            d.name, d.transport
        ));
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(file: PathBuf, size_mib: u64) -> Drive {
        Drive {
            name: "disk0".to_owned(),
            file,
            size_mib,
            server: 0,
            transport: 30,
        }
    }

    #[test]
    fn a_missing_file_is_made_sparse_and_a_short_one_refused() {
        let dir = std::env::temp_dir().join(format!("mica-drives-{}", std::process::id()));
        let file = dir.join("sub/disk.img");
        let said = prepare(&[drive(file.clone(), 4)]).unwrap();
        assert!(said[0].contains("created, 4 MiB"), "{said:?}");
        assert_eq!(std::fs::metadata(&file).unwrap().len(), 4 << 20);
        // Kept as it is the second time, whatever it holds.
        std::fs::write(&file, vec![7u8; 5 << 20]).unwrap();
        assert!(prepare(&[drive(file.clone(), 4)]).unwrap()[0].contains("kept"));
        assert_eq!(std::fs::read(&file).unwrap().len(), 5 << 20);
        assert!(matches!(
            prepare(&[drive(file.clone(), 8)]),
            Err(DriveError::TooSmall { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_drive_is_a_raw_backend_and_a_virtio_blk_device() {
        let args = qemu_args(&[drive(PathBuf::from("a,b.img"), 1)]);
        assert_eq!(
            args,
            [
                "-drive",
                "if=none,id=drive-disk0,format=raw,file=a,,b.img",
                "-device",
                "virtio-blk-device,drive=drive-disk0,bus=virtio-mmio-bus.30"
            ]
        );
    }
}
