//! Smoke scenario files: one TOML file per scenario, parsed strictly and compiled once.
//!
//! A scenario is data (STYLE.md §8): the QEMU configuration and the transcript it must
//! produce. Unknown fields are errors, so a misspelt key fails loudly instead of silently
//! testing less; regexes are compiled when the file is loaded, so a bad pattern is reported
//! with its file before anything boots.

use crate::dtb::DtbEdits;
use crate::judge::{ExitMode, Expectations};
use crate::manifest::Machine;
use crate::qemu::{MachineConfig, MachineOverrides};
use regex::Regex;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The default per-scenario time limit.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// Why a scenario file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The scenario file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML for the scenario schema.
    #[error("{path}:{line}:{column}: {message}")]
    Toml {
        /// The scenario file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A regex does not compile.
    #[error("{path}: expect.{field}: bad regex /{pattern}/: {source}")]
    Regex {
        /// The scenario file.
        path: PathBuf,
        /// `lines`, `any_order` or `never`.
        field: &'static str,
        /// The pattern.
        pattern: String,
        /// The compiler's message.
        source: regex::Error,
    },
    /// A `[[step]]` is unusable.
    #[error("{path}: {source}")]
    Step {
        /// The scenario file.
        path: PathBuf,
        /// What is wrong.
        source: crate::steps::StepError,
    },
    /// A field has a value outside its range.
    #[error("{path}: {field}: {problem}")]
    Invalid {
        /// The scenario file.
        path: PathBuf,
        /// The field.
        field: &'static str,
        /// What is wrong and what to do.
        problem: &'static str,
    },
}

/// The `[qemu]` table: how the machine is configured. `smp`, `memory` and `append` override
/// the system manifest's `[machine]` (with `system`) or the defaults of `mica run`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct QemuSection {
    /// `-smp`: number of CPUs.
    #[serde(default)]
    pub smp: Option<u32>,
    /// `-m`: memory size, as QEMU spells it (`512M`, `1G`).
    #[serde(default)]
    pub memory: Option<String>,
    /// `-append`: the boot arguments (land in `/chosen/bootargs`).
    #[serde(default)]
    pub append: Option<String>,
    /// Device-tree nodes to remove (name before `@`), as `mica run --remove-dtb-node`.
    #[serde(default)]
    pub remove_dtb_nodes: Vec<String>,
    /// Reserve all RAM in the device tree, as `mica run --break-dtb-memory`.
    #[serde(default)]
    pub break_dtb_memory: bool,
    /// Further QEMU arguments, verbatim.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

fn one() -> u32 {
    1
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// The `[expect]` table, as written (regexes still text).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExpectSection {
    /// Regexes that must match lines in this order.
    #[serde(default)]
    pub lines: Vec<String>,
    /// Regexes that must each match some line.
    #[serde(default)]
    pub any_order: Vec<String>,
    /// Regexes that fail the scenario on any match.
    #[serde(default)]
    pub never: Vec<String>,
    /// `kill` (default) or `poweroff`.
    #[serde(default)]
    pub exit: ExitMode,
}

/// A scenario file, as written.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// One line saying what the scenario shows.
    pub description: String,
    /// Whole-scenario limit in seconds (default 60).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// The image to boot; defaults to the hypervisor image given to `mica smoke`.
    #[serde(default)]
    pub image: Option<PathBuf>,
    /// How many times the machine boots (default 1): before each boot but the last, it runs
    /// until the kernel reports that every domain has ended, then is powered off, and boots
    /// again on the same drives.
    #[serde(default = "one")]
    pub boots: u32,
    /// With `boots`: the serial line after which a boot but the last is cut off (the power
    /// pulled, whatever still runs), instead of the kernel's line that every domain has ended.
    #[serde(default)]
    pub power_off_after: Option<String>,
    /// A system manifest to build with the hypervisor image and boot (instead of `image`).
    #[serde(default)]
    pub system: Option<PathBuf>,
    /// The machine.
    #[serde(default)]
    pub qemu: QemuSection,
    /// The transcript it must produce.
    pub expect: ExpectSection,
    /// `mica ctl` steps run once `expect` has matched (crate::steps).
    #[serde(default)]
    pub step: Vec<crate::steps::StepSection>,
    /// A document that shows this run (crate::doc_transcript).
    #[serde(default)]
    pub doc: Option<crate::doc_transcript::DocSection>,
}

/// What a scenario boots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Boot {
    /// An image as it is.
    Image(PathBuf),
    /// A system manifest, built with this hypervisor image first.
    System {
        /// The manifest.
        manifest: PathBuf,
        /// The hypervisor Image to build it with.
        hypervisor: PathBuf,
    },
}

/// A loaded, checked scenario, ready to run.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The file stem.
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// What it shows.
    pub description: String,
    /// Whole-scenario limit in seconds.
    pub timeout_secs: u64,
    /// How many times the machine boots ([`ScenarioFile::boots`]).
    pub boots: u32,
    /// Where a boot but the last ends ([`ScenarioFile::power_off_after`]).
    pub power_off_after: Option<Regex>,
    /// What it boots.
    pub boot: Boot,
    /// The `[qemu]` values given (they beat the manifest's `[machine]`).
    pub overrides: MachineOverrides,
    /// DTB edits.
    pub dtb_edits: DtbEdits,
    /// More QEMU arguments.
    pub extra_args: Vec<String>,
    /// What the transcript must show.
    pub expect: Expectations,
    /// `mica ctl` steps, run once `expect` has matched.
    pub steps: Vec<crate::steps::Step>,
    /// The document that shows this run, if any.
    pub doc: Option<crate::doc_transcript::DocSection>,
}

fn compile(
    path: &Path,
    field: &'static str,
    patterns: &[String],
) -> Result<Vec<Regex>, ScenarioError> {
    patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|source| ScenarioError::Regex {
                path: path.to_owned(),
                field,
                pattern: p.clone(),
                source,
            })
        })
        .collect()
}

impl Scenario {
    /// Parses scenario text; `path` names it in errors and gives the scenario its name.
    pub fn parse(path: &Path, text: &str, default_image: &Path) -> Result<Self, ScenarioError> {
        let file: ScenarioFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or(0, |span| span.start).min(text.len());
            let before = &text[..at];
            ScenarioError::Toml {
                path: path.to_owned(),
                line: before.matches('\n').count() + 1,
                column: before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1,
                message: e.message().trim().to_owned(),
            }
        })?;
        let invalid = |field, problem| ScenarioError::Invalid {
            path: path.to_owned(),
            field,
            problem,
        };
        if file.timeout_secs == 0 {
            return Err(invalid("timeout_secs", "must be at least 1"));
        }
        if !(1..=4).contains(&file.boots) {
            return Err(invalid("boots", "must be 1 to 4"));
        }
        if file.qemu.smp == Some(0) {
            return Err(invalid("qemu.smp", "must be at least 1"));
        }
        if file
            .qemu
            .memory
            .as_ref()
            .is_some_and(|m| m.trim().is_empty())
        {
            return Err(invalid("qemu.memory", "must be a size such as \"512M\""));
        }
        let boot = match (file.image, file.system) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "system",
                    "give `image` (an image to boot) or `system` (a manifest to build with the --hypervisor image), not both",
                ))
            }
            (Some(image), None) => Boot::Image(image),
            (None, Some(manifest)) => Boot::System {
                manifest,
                hypervisor: default_image.to_owned(),
            },
            (None, None) => Boot::Image(default_image.to_owned()),
        };
        let expect = Expectations {
            lines: compile(path, "lines", &file.expect.lines)?,
            any_order: compile(path, "any_order", &file.expect.any_order)?,
            never: compile(path, "never", &file.expect.never)?,
            exit: file.expect.exit,
        };
        let steps = file
            .step
            .iter()
            .enumerate()
            .map(|(i, s)| crate::steps::Step::from_section(i + 1, s))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| ScenarioError::Step {
                path: path.to_owned(),
                source,
            })?;
        if !steps.is_empty() && expect.exit == ExitMode::Poweroff {
            return Err(invalid(
                "step",
                "steps run against a running system: leave out exit = \"poweroff\"",
            ));
        }
        if expect.exit == ExitMode::Kill && expect.lines.is_empty() && expect.any_order.is_empty() {
            return Err(invalid(
                "expect",
                "nothing to wait for: give `lines` or `any_order`, or `exit = \"poweroff\"`",
            ));
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Scenario {
            name,
            path: path.to_owned(),
            description: file.description,
            timeout_secs: file.timeout_secs,
            boots: file.boots,
            power_off_after: compile(path, "power_off_after", file.power_off_after.as_slice())?
                .into_iter()
                .next(),
            boot,
            overrides: MachineOverrides {
                smp: file.qemu.smp,
                memory: file.qemu.memory,
                append: file.qemu.append,
            },
            dtb_edits: DtbEdits {
                remove_nodes: file.qemu.remove_dtb_nodes,
                reserve_all_memory: file.qemu.break_dtb_memory,
            },
            extra_args: file.qemu.extra_args,
            expect,
            steps,
            doc: file.doc,
        })
    }

    /// The machine that boots `image` (the scenario's, or the one built from its system),
    /// `system` being the manifest's `[machine]` when there is one: `[qemu]` values first,
    /// then the manifest's, then the defaults ([`MachineConfig::new`]).
    pub fn machine(&self, image: PathBuf, system: Option<&Machine>) -> MachineConfig {
        MachineConfig {
            dtb_edits: self.dtb_edits.clone(),
            extra_args: self.extra_args.clone(),
            ..MachineConfig::new(image, system, &self.overrides)
        }
    }

    /// Reads and parses the scenario file at `path`.
    pub fn load(path: &Path, default_image: &Path) -> Result<Self, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, default_image)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
description = "four CPUs come up and tick"
timeout_secs = 30
[qemu]
smp = 4
memory = "1G"
append = "mica.poweroff_after_ms=500"
remove_dtb_nodes = ["pl061"]
break_dtb_memory = true
extra_args = ["-d", "guest_errors"]
[expect]
lines = ['Mica .* 4 CPUs online', 'powering off']
any_order = ['cpu 1: tick', 'cpu 2: tick']
never = ['panic', 'EL2 exception']
exit = "poweroff"
"#;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(
            Path::new("tests/smoke/boot-smp4.toml"),
            text,
            Path::new("build/aarch64/mica.img"),
        )
    }

    /// The machine of a scenario that boots an image.
    fn machine(s: &Scenario) -> MachineConfig {
        let Boot::Image(image) = &s.boot else {
            panic!("{:?}", s.boot)
        };
        s.machine(image.clone(), None)
    }

    #[test]
    fn parses_every_field() {
        let s = parse(FULL).unwrap();
        let m = machine(&s);
        assert_eq!(s.name, "boot-smp4");
        assert_eq!(s.description, "four CPUs come up and tick");
        assert_eq!(s.timeout_secs, 30);
        assert_eq!(m.image, Path::new("build/aarch64/mica.img"));
        assert_eq!(m.smp, 4);
        assert_eq!(m.memory, "1G");
        assert_eq!(m.append.as_deref(), Some("mica.poweroff_after_ms=500"));
        assert_eq!(m.dtb_edits.remove_nodes, ["pl061"]);
        assert!(m.dtb_edits.reserve_all_memory);
        assert_eq!(m.extra_args, ["-d", "guest_errors"]);
        assert_eq!(s.expect.lines.len(), 2);
        assert_eq!(s.expect.any_order.len(), 2);
        assert_eq!(s.expect.never[1].as_str(), "EL2 exception");
        assert_eq!(s.expect.exit, ExitMode::Poweroff);
    }

    #[test]
    fn defaults_apply() {
        let s =
            parse("description = \"d\"\nimage = \"other.img\"\n[expect]\nlines = ['x']\n").unwrap();
        let m = machine(&s);
        assert_eq!(s.timeout_secs, DEFAULT_TIMEOUT_SECS);
        assert_eq!(m.image, Path::new("other.img"));
        assert_eq!(m.smp, 2);
        assert_eq!(m.memory, "512M");
        assert_eq!(m.append, None);
        assert!(m.dtb_edits.is_empty());
        assert_eq!(s.expect.exit, ExitMode::Kill);
    }

    #[test]
    fn a_system_is_built_with_the_hypervisor_and_qemu_values_win() {
        let s = parse(
            "description = \"d\"\nsystem = \"images/two-guests.toml\"\n[qemu]\nsmp = 1\n\
             [expect]\nlines = ['x']\n",
        )
        .unwrap();
        assert_eq!(
            s.boot,
            Boot::System {
                manifest: PathBuf::from("images/two-guests.toml"),
                hypervisor: PathBuf::from("build/aarch64/mica.img"),
            }
        );
        let system = Machine {
            cpus: 2,
            memory_mib: 256,
            boot_args: Some("a=1".to_owned()),
        };
        let m = s.machine(PathBuf::from("/tmp/built.img"), Some(&system));
        assert_eq!(m.image, Path::new("/tmp/built.img"));
        assert_eq!((m.smp, m.memory.as_str()), (1, "256M"));
        assert_eq!(m.append.as_deref(), Some("a=1"));
        let err = parse(
            "description = \"d\"\nsystem = \"a.toml\"\nimage = \"b.img\"\n\
             [expect]\nlines = ['x']\n",
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ScenarioError::Invalid {
                field: "system",
                ..
            }
        ));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err =
            parse("description = \"d\"\n[qemu]\nsmpp = 4\n[expect]\nlines = ['x']\n").unwrap_err();
        assert!(matches!(err, ScenarioError::Toml { .. }));
        assert!(err.to_string().contains("smpp"), "{err}");
        assert!(
            err.to_string()
                .starts_with("tests/smoke/boot-smp4.toml:3:1: "),
            "{err}"
        );
        let err = parse("description = \"d\"\ntimeout = 3\n[expect]\nlines = ['x']\n").unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
    }

    #[test]
    fn boots_default_to_one_and_are_bounded() {
        let base = "description = \"d\"\n[expect]\nlines = ['x']\n";
        assert_eq!(parse(base).unwrap().boots, 1);
        assert_eq!(parse(&format!("boots = 3\n{base}")).unwrap().boots, 3);
        for bad in [0, 5] {
            let err = parse(&format!("boots = {bad}\n{base}")).unwrap_err();
            assert!(err.to_string().contains("boots"), "{err}");
        }
        let cut = parse(&format!("boots = 2\npower_off_after = '^done$'\n{base}")).unwrap();
        assert!(cut.power_off_after.is_some_and(|re| re.is_match("done")));
        assert!(parse(&format!("power_off_after = '('\n{base}")).is_err());
    }

    #[test]
    fn missing_required_fields_are_rejected() {
        assert!(parse("[expect]\nlines = ['x']\n").is_err());
        assert!(parse("description = \"d\"\n").is_err());
    }

    #[test]
    fn bad_exit_mode_is_rejected() {
        let err =
            parse("description = \"d\"\n[expect]\nlines = ['x']\nexit = \"reboot\"\n").unwrap_err();
        assert!(err.to_string().contains("reboot"), "{err}");
    }

    #[test]
    fn bad_regex_names_field_and_pattern() {
        let err = parse("description = \"d\"\n[expect]\nlines = ['ok']\nnever = ['(unclosed']\n")
            .unwrap_err();
        assert!(
            matches!(err, ScenarioError::Regex { field: "never", ref pattern, .. } if pattern == "(unclosed")
        );
    }

    #[test]
    fn nonsense_values_are_rejected() {
        let err =
            parse("description = \"d\"\ntimeout_secs = 0\n[expect]\nlines = ['x']\n").unwrap_err();
        assert!(matches!(
            err,
            ScenarioError::Invalid {
                field: "timeout_secs",
                ..
            }
        ));
        let err =
            parse("description = \"d\"\n[qemu]\nsmp = 0\n[expect]\nlines = ['x']\n").unwrap_err();
        assert!(matches!(
            err,
            ScenarioError::Invalid {
                field: "qemu.smp",
                ..
            }
        ));
        let err = parse("description = \"d\"\n[expect]\nnever = ['x']\n").unwrap_err();
        assert!(matches!(
            err,
            ScenarioError::Invalid {
                field: "expect",
                ..
            }
        ));
        let err =
            parse("description = \"d\"\ntimeout_secs = -1\n[expect]\nlines = ['x']\n").unwrap_err();
        assert!(matches!(err, ScenarioError::Toml { .. }));
    }
}
