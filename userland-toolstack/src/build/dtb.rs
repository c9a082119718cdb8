//! Rewrite a device tree blob: drop named nodes, or take all RAM away from the guest.
//!
//! Smoke scenarios boot the hypervisor on a deliberately broken device tree (no usable RAM,
//! a missing device) to check that it fails with a clear message instead of hanging. We read
//! the DTB QEMU would generate (`fdt`), copy every node and property verbatim into a new
//! blob (`vm-fdt`) while leaving out or adding what the scenario asks for, and the runner
//! loads that blob into guest RAM itself (see [`crate::bootloader`]): handing it to QEMU
//! with `-dtb` would not do, because QEMU 7.2's arm boot code (`arm_load_dtb`) deletes every
//! `memory` / `memory@...` node of a `-dtb` file and adds its own for `-m`.
//!
//! So removing the memory node really leaves the guest without one, and
//! [`DtbEdits::reserve_all_memory`] covers every RAM range with a `/reserved-memory` `no-map`
//! child and a `/memreserve/` entry, which leaves the guest a memory node but no usable
//! memory.
//!
//! [`add_to_node`] copies a tree the same way and adds properties and child nodes to one of
//! its top-level nodes: `mica bench-xen` gives Xen its dom0less configuration in `/chosen`.

use vm_fdt::{FdtReserveEntry, FdtWriter};

/// Why a device tree could not be rewritten.
#[derive(Debug, thiserror::Error)]
pub enum DtbError {
    /// The input is not a device tree blob the `fdt` crate accepts.
    #[error("not a valid device tree blob: {0:?}")]
    Parse(fdt::FdtError),
    /// A node asked to be removed is not there.
    #[error("the device tree has no node named `{0}` (compared with the part of each node name before `@`)")]
    NoSuchNode(String),
    /// The root node cannot be removed.
    #[error("the root node cannot be removed")]
    RemoveRoot,
    /// There is no memory node to reserve.
    #[error(
        "the device tree has no memory node (device_type = \"memory\") whose RAM could be reserved"
    )]
    NoMemory,
    /// A `reg` or cells property is malformed.
    #[error("malformed `{property}` property in node `{node}`")]
    BadProperty {
        /// The node's name.
        node: String,
        /// The property's name.
        property: &'static str,
    },
    /// A property to add is already there.
    #[error("node `{node}` already has a `{property}` property")]
    PropertyExists {
        /// The node's name.
        node: String,
        /// The property's name.
        property: String,
    },
    /// The writer refused the output.
    #[error("cannot write the device tree: {0}")]
    Write(vm_fdt::Error),
}

/// What to change in a device tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DtbEdits {
    /// Remove every node whose name before `@` equals one of these (with its subtree).
    pub remove_nodes: Vec<String>,
    /// Cover every RAM range of every memory node with a `/reserved-memory` `no-map` child
    /// and a `/memreserve/` entry, so that no RAM is left usable.
    pub reserve_all_memory: bool,
}

impl DtbEdits {
    /// Whether these edits change anything (if not, no DTB needs to be generated).
    pub fn is_empty(&self) -> bool {
        self.remove_nodes.is_empty() && !self.reserve_all_memory
    }
}

/// Properties and child nodes to add to a device tree ([`add_to_node`]); also a child node
/// itself, with its `name` (`module@46000000`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewNode {
    /// The node's name; unused for the node [`add_to_node`] adds to.
    pub name: String,
    /// Properties, in order, with their raw values ([`cells`], [`string`], [`strings`]).
    pub properties: Vec<(String, Vec<u8>)>,
    /// Child nodes, in order.
    pub children: Vec<NewNode>,
}

impl NewNode {
    /// A node with no properties or children yet.
    pub fn new(name: impl Into<String>) -> NewNode {
        NewNode {
            name: name.into(),
            ..NewNode::default()
        }
    }

    /// Adds a property.
    pub fn property(mut self, name: impl Into<String>, value: Vec<u8>) -> NewNode {
        self.properties.push((name.into(), value));
        self
    }

    /// Adds a child node.
    pub fn child(mut self, child: NewNode) -> NewNode {
        self.children.push(child);
        self
    }

    fn write_properties(&self, out: &mut FdtWriter) -> Result<(), DtbError> {
        for (name, value) in &self.properties {
            out.property(name, value).map_err(DtbError::Write)?;
        }
        Ok(())
    }

    fn write_children(&self, out: &mut FdtWriter) -> Result<(), DtbError> {
        for child in &self.children {
            let handle = out.begin_node(&child.name).map_err(DtbError::Write)?;
            child.write_properties(out)?;
            child.write_children(out)?;
            out.end_node(handle).map_err(DtbError::Write)?;
        }
        Ok(())
    }
}

/// A property value of 32-bit big-endian cells (`<0x0 0x1800>`).
pub fn cells(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A string property value (NUL-terminated).
pub fn string(value: &str) -> Vec<u8> {
    strings(&[value])
}

/// A string-list property value (`"a", "b"`: each NUL-terminated).
pub fn strings(values: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// The name of the node added under `/reserved-memory` for each RAM range.
pub const RESERVED_NODE_NAME: &str = "mica-no-ram";

/// Cell counts in force for a node's children.
#[derive(Clone, Copy, Debug)]
struct Cells {
    address: usize,
    size: usize,
}

impl Cells {
    /// The devicetree specification's defaults when a node says nothing.
    const DEFAULT: Cells = Cells {
        address: 2,
        size: 1,
    };

    fn of(node: &fdt::node::FdtNode<'_, '_>, inherited: Cells) -> Result<Cells, DtbError> {
        let mut cells = inherited;
        for prop in node.properties() {
            let field = match prop.name {
                "#address-cells" => &mut cells.address,
                "#size-cells" => &mut cells.size,
                _ => continue,
            };
            *field = be_u32(prop.value).ok_or_else(|| DtbError::BadProperty {
                node: node.name.to_owned(),
                property: if prop.name == "#address-cells" {
                    "#address-cells"
                } else {
                    "#size-cells"
                },
            })? as usize;
        }
        Ok(cells)
    }
}

fn be_u32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

/// Reads a number of `cells` 32-bit big-endian cells.
fn read_cells(bytes: &[u8], cells: usize) -> u64 {
    bytes.chunks(4).take(cells).fold(0u64, |acc, c| {
        (acc << 32) | u64::from(be_u32(c).unwrap_or(0))
    })
}

/// Encodes `value` in `cells` 32-bit big-endian cells.
fn write_cells(out: &mut Vec<u8>, value: u64, cells: usize) {
    for i in (0..cells).rev() {
        let cell = if i >= 2 {
            0
        } else {
            (value >> (32 * i)) as u32
        };
        out.extend_from_slice(&cell.to_be_bytes());
    }
}

/// The part of a node name before the unit address.
fn base_name(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

/// Every (address, size) range of every root-level memory node.
fn memory_ranges(tree: &fdt::Fdt<'_>, root_cells: Cells) -> Result<Vec<(u64, u64)>, DtbError> {
    let root = tree.find_node("/").ok_or(DtbError::NoMemory)?;
    let mut ranges = Vec::new();
    for node in root.children() {
        let is_memory = node
            .property("device_type")
            .and_then(|p| p.as_str())
            .is_some_and(|t| t == "memory")
            || base_name(node.name) == "memory";
        if !is_memory {
            continue;
        }
        let Some(reg) = node.property("reg") else {
            continue;
        };
        let entry = 4 * (root_cells.address + root_cells.size);
        if entry == 0 || reg.value.len() % entry != 0 {
            return Err(DtbError::BadProperty {
                node: node.name.to_owned(),
                property: "reg",
            });
        }
        for e in reg.value.chunks(entry) {
            let (a, s) = e.split_at(4 * root_cells.address);
            let size = read_cells(s, root_cells.size);
            if size != 0 {
                ranges.push((read_cells(a, root_cells.address), size));
            }
        }
    }
    if ranges.is_empty() {
        return Err(DtbError::NoMemory);
    }
    Ok(ranges)
}

/// State of one rewrite.
struct Rewriter<'e> {
    edits: &'e DtbEdits,
    removed: Vec<usize>,
    ram: Vec<(u64, u64)>,
    saw_reserved_memory: bool,
    /// What to add to which top-level node, and whether that node was found.
    addition: Option<(&'e str, &'e NewNode)>,
    added: bool,
}

impl Rewriter<'_> {
    fn copy_node(
        &mut self,
        out: &mut FdtWriter,
        node: fdt::node::FdtNode<'_, '_>,
        depth: usize,
        cells: Cells,
    ) -> Result<(), DtbError> {
        let name = if depth == 0 { "" } else { node.name };
        let handle = out.begin_node(name).map_err(DtbError::Write)?;
        for prop in node.properties() {
            out.property(prop.name, prop.value)
                .map_err(DtbError::Write)?;
        }
        let addition = self
            .addition
            .filter(|(parent, _)| depth == 1 && node.name == *parent)
            .map(|(_, new)| new);
        if let Some(new) = addition {
            if let Some((name, _)) = new
                .properties
                .iter()
                .find(|(name, _)| node.property(name).is_some())
            {
                return Err(DtbError::PropertyExists {
                    node: node.name.to_owned(),
                    property: name.clone(),
                });
            }
            new.write_properties(out)?;
        }
        let child_cells = Cells::of(&node, cells)?;
        for child in node.children() {
            let base = base_name(child.name);
            if let Some(i) = self.edits.remove_nodes.iter().position(|n| n == base) {
                self.removed[i] += 1;
                continue;
            }
            self.copy_node(out, child, depth + 1, child_cells)?;
        }
        if let Some(new) = addition {
            new.write_children(out)?;
            self.added = true;
        }
        let is_reserved_memory = depth == 1 && node.name == "reserved-memory";
        if is_reserved_memory && self.edits.reserve_all_memory {
            self.saw_reserved_memory = true;
            self.add_reservations(out, child_cells)?;
        }
        if depth == 0 && self.edits.reserve_all_memory && !self.saw_reserved_memory {
            let rm = out.begin_node("reserved-memory").map_err(DtbError::Write)?;
            let cells = Cells {
                address: child_cells.address,
                size: child_cells.size.max(1),
            };
            out.property_u32("#address-cells", cells.address as u32)
                .map_err(DtbError::Write)?;
            out.property_u32("#size-cells", cells.size as u32)
                .map_err(DtbError::Write)?;
            out.property_null("ranges").map_err(DtbError::Write)?;
            self.add_reservations(out, cells)?;
            out.end_node(rm).map_err(DtbError::Write)?;
        }
        out.end_node(handle).map_err(DtbError::Write)
    }

    /// Adds one `no-map` child per RAM range to the open `/reserved-memory` node.
    fn add_reservations(&self, out: &mut FdtWriter, cells: Cells) -> Result<(), DtbError> {
        for &(address, size) in &self.ram {
            let child = out
                .begin_node(&format!("{RESERVED_NODE_NAME}@{address:x}"))
                .map_err(DtbError::Write)?;
            let mut reg = Vec::new();
            write_cells(&mut reg, address, cells.address);
            write_cells(&mut reg, size, cells.size);
            out.property("reg", &reg).map_err(DtbError::Write)?;
            out.property_null("no-map").map_err(DtbError::Write)?;
            out.end_node(child).map_err(DtbError::Write)?;
        }
        Ok(())
    }
}

/// Returns a copy of `dtb` with `edits` applied; everything else is copied verbatim
/// (the root's properties, every other node and property, `/memreserve/` entries and the
/// boot CPU id).
pub fn rewrite(dtb: &[u8], edits: &DtbEdits) -> Result<Vec<u8>, DtbError> {
    copy_tree(dtb, edits, None)
}

/// Returns a copy of `dtb` in which the top-level node named `parent` (`chosen`) also has
/// `addition`'s properties (after its own) and children (after its own); everything else is
/// copied verbatim, as by [`rewrite`]. The node must exist; a property it already has is an
/// error.
pub fn add_to_node(dtb: &[u8], parent: &str, addition: &NewNode) -> Result<Vec<u8>, DtbError> {
    copy_tree(dtb, &DtbEdits::default(), Some((parent, addition)))
}

fn copy_tree(
    dtb: &[u8],
    edits: &DtbEdits,
    addition: Option<(&str, &NewNode)>,
) -> Result<Vec<u8>, DtbError> {
    let tree = fdt::Fdt::new(dtb).map_err(DtbError::Parse)?;
    if edits.remove_nodes.iter().any(|n| n.is_empty() || n == "/") {
        return Err(DtbError::RemoveRoot);
    }
    let root = tree
        .find_node("/")
        .ok_or(DtbError::Parse(fdt::FdtError::BadPtr))?;
    let root_cells = Cells::of(&root, Cells::DEFAULT)?;
    let ram = if edits.reserve_all_memory {
        memory_ranges(&tree, root_cells)?
    } else {
        Vec::new()
    };

    let mut reservations = Vec::new();
    for r in tree.memory_reservations() {
        reservations.push((r.address() as u64, r.size() as u64));
    }
    if !ram.is_empty() {
        // vm-fdt refuses overlapping reservations: merge the RAM ranges into the
        // existing ones, each overlapping group becoming its union.
        reservations.extend_from_slice(&ram);
        reservations.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for (a, s) in reservations {
            match merged.last_mut() {
                Some((ma, ms)) if a <= *ma + *ms => *ms = (*ms).max(a + s - *ma),
                _ => merged.push((a, s)),
            }
        }
        reservations = merged;
    }
    let entries = reservations
        .iter()
        .map(|&(a, s)| FdtReserveEntry::new(a, s))
        .collect::<Result<Vec<_>, _>>()
        .map_err(DtbError::Write)?;
    let mut out = FdtWriter::new_with_mem_reserv(&entries).map_err(DtbError::Write)?;
    // boot_cpuid_phys is at offset 28 of the header; fdt::Fdt::new checked the header is there.
    out.set_boot_cpuid_phys(be_u32(&dtb[28..32]).unwrap_or(0));

    let mut rewriter = Rewriter {
        edits,
        removed: vec![0; edits.remove_nodes.len()],
        ram,
        saw_reserved_memory: false,
        addition,
        added: false,
    };
    rewriter.copy_node(&mut out, root, 0, Cells::DEFAULT)?;
    if let Some(i) = rewriter.removed.iter().position(|&n| n == 0) {
        return Err(DtbError::NoSuchNode(edits.remove_nodes[i].clone()));
    }
    if let Some((parent, _)) = addition.filter(|_| !rewriter.added) {
        return Err(DtbError::NoSuchNode(parent.to_owned()));
    }
    out.finish().map_err(DtbError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small virt-like tree: root props, /memreserve/, cpus, memory, a uart and chosen.
    fn sample() -> Vec<u8> {
        let mut w =
            FdtWriter::new_with_mem_reserv(&[FdtReserveEntry::new(0x4800_0000, 0x1000).unwrap()])
                .unwrap();
        w.set_boot_cpuid_phys(1);
        let root = w.begin_node("").unwrap();
        w.property_string("compatible", "linux,dummy-virt").unwrap();
        w.property_string("model", "test-virt").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        let cpus = w.begin_node("cpus").unwrap();
        w.property_u32("#address-cells", 1).unwrap();
        w.property_u32("#size-cells", 0).unwrap();
        for i in 0..2u32 {
            let cpu = w.begin_node(&format!("cpu@{i}")).unwrap();
            w.property_string("device_type", "cpu").unwrap();
            w.property_u32("reg", i).unwrap();
            w.end_node(cpu).unwrap();
        }
        w.end_node(cpus).unwrap();
        let mem = w.begin_node("memory@40000000").unwrap();
        w.property_string("device_type", "memory").unwrap();
        w.property_array_u64("reg", &[0x4000_0000, 0x2000_0000])
            .unwrap();
        w.end_node(mem).unwrap();
        let uart = w.begin_node("pl011@9000000").unwrap();
        w.property_array_u64("reg", &[0x900_0000, 0x1000]).unwrap();
        w.property_phandle(0x8000).unwrap();
        w.end_node(uart).unwrap();
        let chosen = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "mica.poweroff_after_ms=500")
            .unwrap();
        w.end_node(chosen).unwrap();
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn names(tree: &fdt::Fdt<'_>) -> Vec<String> {
        tree.all_nodes().map(|n| n.name.to_owned()).collect()
    }

    #[test]
    fn no_edits_round_trip_is_identical() {
        let dtb = sample();
        assert_eq!(rewrite(&dtb, &DtbEdits::default()).unwrap(), dtb);
    }

    #[test]
    fn removes_named_nodes_and_keeps_everything_else() {
        let dtb = sample();
        let edits = DtbEdits {
            remove_nodes: vec!["memory".to_owned(), "cpu".to_owned()],
            reserve_all_memory: false,
        };
        let out = rewrite(&dtb, &edits).unwrap();
        let tree = fdt::Fdt::new(&out).unwrap();
        assert_eq!(names(&tree), ["/", "cpus", "pl011@9000000", "chosen"]);
        assert_eq!(tree.root().model(), "test-virt");
        assert_eq!(
            tree.find_node("/pl011")
                .unwrap()
                .property("phandle")
                .unwrap()
                .value,
            0x8000u32.to_be_bytes()
        );
        assert_eq!(tree.chosen().bootargs(), Some("mica.poweroff_after_ms=500"));
        let resv: Vec<_> = tree
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size()))
            .collect();
        assert_eq!(resv, [(0x4800_0000, 0x1000)]);
        assert_eq!(be_u32(&out[28..32]), Some(1), "boot CPU id kept");
    }

    #[test]
    fn unknown_node_is_an_error() {
        let edits = DtbEdits {
            remove_nodes: vec!["nosuch".to_owned()],
            reserve_all_memory: false,
        };
        let err = rewrite(&sample(), &edits).unwrap_err();
        assert!(matches!(err, DtbError::NoSuchNode(ref n) if n == "nosuch"));
        let root = DtbEdits {
            remove_nodes: vec!["/".to_owned()],
            reserve_all_memory: false,
        };
        assert!(matches!(
            rewrite(&sample(), &root),
            Err(DtbError::RemoveRoot)
        ));
    }

    #[test]
    fn additions_go_after_what_the_node_has() {
        let addition = NewNode::new("chosen")
            .property("extra", string("x"))
            .child(NewNode::new("child@1").property("reg", cells(&[0, 1])));
        let out = add_to_node(&sample(), "chosen", &addition).unwrap();
        let tree = fdt::Fdt::new(&out).unwrap();
        let chosen = tree.find_node("/chosen").unwrap();
        let props: Vec<&str> = chosen.properties().map(|p| p.name).collect();
        assert_eq!(props, ["bootargs", "extra"]);
        let child = tree.find_node("/chosen/child@1").unwrap();
        assert_eq!(
            child.property("reg").unwrap().value,
            [0, 0, 0, 0, 0, 0, 0, 1]
        );
        assert_eq!(strings(&["a", "bc"]), b"a\0bc\0");
        assert!(matches!(
            add_to_node(&sample(), "nosuch", &addition),
            Err(DtbError::NoSuchNode(n)) if n == "nosuch"
        ));
        let clash = NewNode::new("chosen").property("bootargs", string("y"));
        assert!(matches!(
            add_to_node(&sample(), "chosen", &clash),
            Err(DtbError::PropertyExists { .. })
        ));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        assert!(matches!(
            rewrite(b"not a dtb at all, really not", &DtbEdits::default()),
            Err(DtbError::Parse(_))
        ));
    }

    #[test]
    fn reserve_all_memory_covers_every_ram_range() {
        let edits = DtbEdits {
            remove_nodes: Vec::new(),
            reserve_all_memory: true,
        };
        let out = rewrite(&sample(), &edits).unwrap();
        let tree = fdt::Fdt::new(&out).unwrap();
        assert!(tree.find_node("/memory").is_some(), "memory node kept");
        let rm = tree.find_node("/reserved-memory").unwrap();
        let child = rm.children().next().unwrap();
        assert_eq!(child.name, "mica-no-ram@40000000");
        assert!(child.property("no-map").is_some());
        let reg: Vec<_> = child.reg().unwrap().collect();
        assert_eq!(reg[0].starting_address as u64, 0x4000_0000);
        assert_eq!(reg[0].size, Some(0x2000_0000));
        let resv: Vec<_> = tree
            .memory_reservations()
            .map(|r| (r.address() as u64, r.size()))
            .collect();
        assert_eq!(
            resv,
            [(0x4000_0000, 0x2000_0000)],
            "merged with the one inside RAM"
        );
    }

    #[test]
    fn reserve_all_memory_without_memory_node_fails() {
        let without = rewrite(
            &sample(),
            &DtbEdits {
                remove_nodes: vec!["memory".to_owned()],
                reserve_all_memory: false,
            },
        )
        .unwrap();
        let edits = DtbEdits {
            remove_nodes: Vec::new(),
            reserve_all_memory: true,
        };
        assert!(matches!(rewrite(&without, &edits), Err(DtbError::NoMemory)));
    }
}
