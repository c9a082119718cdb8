# Mica: the user-facing entry points. `make run` boots the default system under QEMU;
# `make test` runs everything CI checks. Both install what they need first.

CARGO      ?= cargo
ARM_TARGET := aarch64-unknown-none
X86_TARGET := x86_64-unknown-none
BUILD      := build
HYP_ELF    := target/$(ARM_TARGET)/release/mica-aarch64
HYP_IMAGE  := $(BUILD)/aarch64/mica.img
# The toolstack's build: release for `make run`, `make smoke` and the benches; `make test`
# boots its scenarios with a debug build, which reuses most of what `host-test` compiled
# (13 s on a clean clone, against about 100 s for a release build; the toolstack's work in
# the scenarios is small). Only `release` and `debug` are values cargo's directories know.
TOOLSTACK_PROFILE ?= release
MICA       := target/$(TOOLSTACK_PROFILE)/mica
SCENARIO   ?=
SMOKE_JOBS ?= 1

# Crates that only build for bare metal are excluded from host builds.
HOST_EXCLUDE := --exclude mica-boot --exclude mica-guest-hello --exclude mica-guest-smp \
	--exclude mica-guest-spinner --exclude mica-guest-attacker --exclude mica-guest-scrub --exclude mica-guest-irq \
	--exclude mica-guest-ping --exclude mica-guest-pong --exclude mica-guest-sharer \
	--exclude mica-guest-peek --exclude mica-guest-flooder --exclude mica-guest-drainer \
	--exclude mica-guest-bench
# The test guests (docs/domains.md).
GUESTS := -p mica-guest-hello -p mica-guest-smp -p mica-guest-spinner -p mica-guest-attacker -p mica-guest-irq \
	-p mica-guest-scrub -p mica-guest-ping -p mica-guest-pong -p mica-guest-sharer \
	-p mica-guest-peek -p mica-guest-flooder -p mica-guest-drainer \
	-p mica-guest-bench
# The scheduling policy domain (services/sched-domain) builds like the guests; worker is
# the scheduler scenarios' load.
HOST_EXCLUDE += --exclude mica-service-sched --exclude mica-guest-worker
GUESTS += -p mica-service-sched -p mica-guest-worker
# The control domain (services/ctl) too; its library (protocol, pool) is host-tested.
GUESTS += -p mica-service-ctl
# The isolation scenarios' attack guest (docs/security.md).
HOST_EXCLUDE += --exclude mica-guest-intruder
GUESTS += -p mica-guest-intruder
# The PL031 driver domain of the irq-passthrough scenario.
HOST_EXCLUDE += --exclude mica-guest-rtc
GUESTS += -p mica-guest-rtc
# The blk-ram scenario: a virtio-blk front end and the device domain that serves its disk.
HOST_EXCLUDE += --exclude mica-guest-blkfront --exclude mica-service-vda
GUESTS += -p mica-guest-blkfront -p mica-service-vda
# The block service's driver of a real disk (a [[drive]]); scenario blk-persist.
HOST_EXCLUDE += --exclude mica-service-blk
GUESTS += -p mica-service-blk
# The blk-hostile scenario's attacker of its own virtio disk.
HOST_EXCLUDE += --exclude mica-guest-blkhostile
GUESTS += -p mica-guest-blkhostile
# The guest of `make bench-xen` has no allocator, so it builds and is linted on its own: built
# with the guests, it would get zerocopy's `alloc` feature (which virtio-drivers in mica-rt
# turns on), and a binary that links `alloc` needs a global allocator. Its Xen build
# (`--features xen`) goes to a target directory of its own, apart from its Mica build.
HOST_EXCLUDE += --exclude mica-guest-nullbench
NULLBENCH := -p mica-guest-nullbench
XEN_GUEST_TARGET := $(BUILD)/xen/target
# Library crates that must also build for each bare-metal target.
ARM_LIBS := -p mica-abi -p mica-caps -p mica-kernel -p mica-hal-arm -p mica-rt -p mica-linux-guest \
	-p mica-virtqueue
X86_LIBS := -p mica-abi -p mica-caps -p mica-kernel -p mica-hal-x86 -p mica-rt

.PHONY: all setup build hypervisor toolstack run test fmt-check clippy host-test smoke \
        verify-kani verify-mutants verify-mutants-ci fuzz clean bench bench-xen tcb readme

all: build

setup:
	@scripts/setup.sh

# Each long step says what it is first (the first build takes a few minutes; README).
toolstack: setup
	@echo "make: [1/3] the host toolstack, $(MICA) (the first time about a minute, after the crates download)"
	$(CARGO) build $(if $(filter release,$(TOOLSTACK_PROFILE)),--release) -p mica

hypervisor: setup
	@echo "make: [2/3] the hypervisor and the domains for $(ARM_TARGET), and the x86_64 binary (the first time about a minute)"
	$(CARGO) build --release --target $(ARM_TARGET) -p mica-boot --bin mica-aarch64
	$(CARGO) build --release --target $(ARM_TARGET) $(GUESTS)
	$(CARGO) build --release --target $(ARM_TARGET) $(NULLBENCH)
	$(CARGO) build --release --target $(X86_TARGET) -p mica-boot --bin mica-x86_64

$(HYP_IMAGE): toolstack hypervisor
	@echo "make: [3/3] the bootable image $@"
	@mkdir -p $(dir $@)
	$(MICA) image $(HYP_ELF) -o $@

build: $(HYP_IMAGE)

## Boot the default system (images/default.toml) under QEMU; Ctrl-A X quits QEMU.
run: build
	$(MICA) run images/default.toml --hypervisor $(HYP_IMAGE)

## Everything CI checks (the smoke scenarios with the debug toolstack: TOOLSTACK_PROFILE above).
test: fmt-check clippy host-test verify-kani verify-mutants-ci
	$(MAKE) smoke TOOLSTACK_PROFILE=debug

fmt-check: setup
	$(CARGO) fmt --all --check

clippy: setup
	$(CARGO) clippy --workspace $(HOST_EXCLUDE) --all-targets -- -D warnings
	$(CARGO) clippy --target $(ARM_TARGET) $(ARM_LIBS) -- -D warnings
	$(CARGO) clippy --target $(ARM_TARGET) -p mica-boot --bin mica-aarch64 -- -D warnings
	$(CARGO) clippy --target $(ARM_TARGET) $(GUESTS) -- -D warnings
	$(CARGO) clippy --target $(ARM_TARGET) $(NULLBENCH) -- -D warnings
	$(CARGO) clippy --target $(ARM_TARGET) $(NULLBENCH) --features xen -- -D warnings
	$(CARGO) clippy --target $(X86_TARGET) $(X86_LIBS) -- -D warnings
	$(CARGO) clippy --target $(X86_TARGET) -p mica-boot --bin mica-x86_64 -- -D warnings

host-test: setup
	$(CARGO) test --workspace $(HOST_EXCLUDE) --exclude mica-verify
	# The verification harnesses print what they explored (state counts): show it.
	$(CARGO) test -p mica-verify -- --nocapture

## Boot every scenario in tests/smoke (or only SCENARIO=name) and check its transcript,
## SMOKE_JOBS at a time (one: on the 2-core machine two were no faster; docs/testing.md).
smoke: build
	$(MICA) smoke --hypervisor $(HYP_IMAGE) --jobs $(SMOKE_JOBS) $(if $(SCENARIO),--scenario $(SCENARIO))

## Boot the default system as `make run` does, run the README's `mica ctl` session against it
## (tests/smoke/readme.toml) and write both transcripts into README.md. `cargo test -p mica`
## checks README.md against the scenario's regexes.
readme: build
	$(MICA) smoke --hypervisor $(HYP_IMAGE) --scenario readme --update-docs

## Deterministic cost figures under QEMU -icount and idle host CPU (bench/*.toml); writes
## bench/results.json and docs/PERFORMANCE.md. Not part of `make test`: timing never is.
bench: build
	$(MICA) bench --hypervisor $(HYP_IMAGE)

## The same bare-metal guest under Mica and under Xen 4.17 (Debian's package, downloaded
## into build/xen at run time), same QEMU machine, -icount; writes bench/xen-results.json and
## docs/PERFORMANCE.md. Not part of `make test`.
bench-xen: build
	$(CARGO) build --release --target $(ARM_TARGET) $(NULLBENCH) --features xen \
		--target-dir $(XEN_GUEST_TARGET)
	$(MICA) bench-xen --hypervisor $(HYP_IMAGE) \
		--xen-guest $(XEN_GUEST_TARGET)/$(ARM_TARGET)/release/nullbench

## Source lines that run privileged (per architecture) against those in domains; writes
## docs/PERFORMANCE.md.
tcb: toolstack
	$(MICA) tcb

## Every Kani proof (docs/verification.md), one result and time per harness; installs Kani
## through ../shared/tools/kani/install.sh when it is missing.
verify-kani: setup
	bash verify/kani.sh

## Build each crate with each planted bug and show the tests and the Kani proofs catch every one.
verify-mutants: setup
	bash verify/mutants.sh

## What `make test` runs of it: every mutant for the tests, the two quickest Kani mutants and a
## check that the others' features and harnesses exist (verify/mutants.sh, KANI_QUICK).
verify-mutants-ci: setup
	MUTANTS_KANI=quick bash verify/mutants.sh

## Coverage-guided fuzzing of capability operations (nightly + cargo-fuzz; not in CI).
fuzz:
	cd verify/fuzz && $(CARGO) +nightly fuzz run caps_ops -- -max_total_time=60

clean:
	$(CARGO) clean
	rm -rf $(BUILD)
