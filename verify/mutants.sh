#!/usr/bin/env bash
# verify/mutants.sh: shows that the harnesses catch deliberately planted bugs.
#
# Each `mutant-*` cargo feature plants exactly one bug in the crate that declares it. Two tiers
# must catch them; any mutant that survives means a harness is too weak, and the script exits
# non-zero:
#
# - tests: every `mutant-*` feature of mica-caps and mica-kernel, with the mica-verify tests
#   (for a kernel mutant, the lifecycle harness); caught when the tests FAIL;
# - Kani: every mutant in KANI_MUTANTS below, with the one Kani proof that must report it
#   (docs/verification.md); caught when Kani reports VERIFICATION FAILED. Every proof family
#   has at least one.
#
# Usage: verify/mutants.sh [crate/feature...]   (default: every mutant of both tiers but
# KANI_EXTRA, which runs only when named; with MUTANTS_KANI=quick, of the Kani tier only
# KANI_QUICK: what `make test` runs)
set -u
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/mutants}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# crate/feature  harness (in that crate)  [| options for CBMC, as in verify/kani.sh]
KANI_MUTANTS=(
    # Capabilities (caps/src/proofs.rs): every capability mutant is caught by the tests tier
    # above; one of them by its proof here too (the others: KANI_EXTRA, below).
    "mica-caps/mutant-generation-not-bumped caps_destroy_then_create_refunds_and_refuses_stale_references"
    # Hypercall decoding (abi/src/proofs.rs).
    "mica-abi/mutant-slot-truncated hypercall_decode_any_registers"
    # System image and boot-info parsers (abi/src/proofs.rs, rt/src/proofs.rs).
    "mica-abi/mutant-device-window-unchecked sysimage_records_obey_placement"
    "mica-abi/mutant-retain-caps-unclamped bootinfo_any_page"
    "mica-rt/mutant-bootinfo-counts-unclamped bootinfo_any_page_validates_to_usable_counts"
    # SPSC ring (abi/src/proofs.rs, rt/src/proofs.rs).
    "mica-abi/mutant-ring-mask-off-by-one ring_hostile_indices_stay_inside"
    "mica-rt/mutant-ring-length-trusted ring_hostile_peer_cannot_move_accesses_outside"
    # A64 load/store decoder (hal-arm/src/proofs.rs).
    "mica-hal-arm/mutant-mmio-register-field-too-wide mmio_any_instruction_decodes_safely"
    # vGIC register handlers (hal-arm/src/proofs.rs).
    "mica-hal-arm/mutant-vgic-write-forgets-maybe vgic_distributor_write_keeps_the_bookkeeping"
    # Stage-2 mapper (hal-arm/src/proofs.rs).
    "mica-hal-arm/mutant-stage2-overwrites-mappings stage2_map_keeps_mappings_disjoint | --max-field-sensitivity-array-size 1024"
)

# Run only when named on the command line: caught by the tests tier too, and by these proofs
# (57 s and 100 s at session 9), which `make test`'s 30 minutes cannot spare every time.
KANI_EXTRA=(
    "mica-caps/mutant-rights-not-intersected caps_derive_never_amplifies"
    "mica-caps/mutant-revoke-skips-grandchildren caps_revoke_removes_exactly_the_descendants"
)

# What `make test` runs of the Kani tier (MUTANTS_KANI=quick): the two mutants whose proofs
# take seconds (ring-mask-off-by-one 23-27 s, mmio-register-field-too-wide 7-11 s), so every
# CI run shows a Kani mutant still builds and is caught; the capability mutants are caught by
# the tests tier in every run too. `make verify-mutants` runs the whole list above (about 7
# minutes of the 30 `make test` may take; the runtime's and the capabilities' Kani mutants,
# 70-100 s of CBMC each, only there). The others' features and harnesses are checked to
# exist in every run (below).
KANI_QUICK=(
    mica-abi/mutant-ring-mask-off-by-one
    mica-hal-arm/mutant-mmio-register-field-too-wide
)

selected=("$@")
if [ "${#selected[@]}" -gt 0 ]; then
    KANI_MUTANTS+=("${KANI_EXTRA[@]}")
elif [ "${MUTANTS_KANI:-all}" = quick ]; then
    quick=()
    for entry in "${KANI_MUTANTS[@]}"; do
        for q in "${KANI_QUICK[@]}"; do
            [ "${entry%% *}" = "$q" ] && quick+=("$entry")
        done
    done
    # The rest are not run here, but each must still name a feature its crate declares and a
    # harness its proofs define (a renamed one would otherwise only show in the full run). The
    # mutants are `cfg!(feature = ...)` branches, compiled either way by clippy and the tests.
    for entry in "${KANI_MUTANTS[@]}"; do
        feature="${entry%% *}"
        [[ " ${KANI_QUICK[*]} " == *" $feature "* ]] && continue
        read -r _ harness <<<"${entry%%|*}"
        crate="${feature%%/*}"
        dir="$(cargo metadata --no-deps --format-version 1 2>/dev/null |
            grep -o "\"manifest_path\":\"[^\"]*\"" | sed 's/.*:"\(.*\)\/Cargo.toml"/\1/' |
            while read -r d; do grep -q "^name = \"$crate\"" "$d/Cargo.toml" && echo "$d"; done)"
        if [ -z "$dir" ] || ! grep -q "^${feature#*/} *=" "$dir/Cargo.toml" ||
            ! grep -q "^fn $harness()" "$dir/src/proofs.rs"; then
            echo "mutant ${feature#*/mutant-} (kani, not run here): its feature or harness $harness is gone" >&2
            exit 1
        fi
    done
    KANI_MUTANTS=("${quick[@]}")
fi
wanted() {
    [ "${#selected[@]}" -eq 0 ] && return 0
    local m
    for m in "${selected[@]}"; do
        [ "$m" = "$1" ] && return 0
    done
    return 1
}

mapfile -t test_mutants < <(
    sed -n 's/^\(mutant-[a-z0-9-]*\) *= *\[\].*/mica-caps\/\1/p' caps/Cargo.toml
    sed -n 's/^\(mutant-[a-z0-9-]*\) *= *\[\].*/mica-kernel\/\1/p' kernel/Cargo.toml
)
if [ "${#test_mutants[@]}" -eq 0 ]; then
    echo "no mutant features found in caps/Cargo.toml or kernel/Cargo.toml" >&2
    exit 2
fi

caught=0
missed=0
total=0
for mutant in "${test_mutants[@]}"; do
    wanted "$mutant" || continue
    total=$((total + 1))
    name="${mutant#*/mutant-}"
    tests=()
    case "$mutant" in
        mica-kernel/*) tests=(--test lifecycle_properties) ;;
    esac
    log="$(mktemp)"
    # Build first so a compile error is not mistaken for a caught mutant.
    if ! cargo test -p mica-verify --features "$mutant" "${tests[@]}" --no-run >"$log" 2>&1; then
        echo "mutant $name (tests): BUILD FAILED"
        tail -20 "$log"
        missed=$((missed + 1))
        rm -f "$log"
        continue
    fi
    if cargo test -p mica-verify --features "$mutant" "${tests[@]}" >"$log" 2>&1; then
        echo "mutant $name (tests): MISSED"
        missed=$((missed + 1))
    else
        why="$(grep -m1 -o 'I[0-9][^:]*\|broken at step [0-9]*: [^(]*' "$log" || true)"
        echo "mutant $name (tests): caught${why:+ ($why)}"
        caught=$((caught + 1))
    fi
    rm -f "$log"
done

kani_wanted=0
for entry in "${KANI_MUTANTS[@]}"; do
    wanted "${entry%% *}" && kani_wanted=1
done
if [ "$kani_wanted" -eq 1 ] && ! cargo kani --version >/dev/null 2>&1; then
    "${KANI_INSTALL:-../shared/tools/kani/install.sh}" || exit 2
fi
# Two at a time, like verify/kani.sh (CBMC is single-threaded; builds take cargo's lock in
# turn). Each job writes its verdict line to its own file; they are counted in order below.
kani_logs="$(mktemp -d)"
trap 'rm -rf "$kani_logs"' EXIT
kani_mutant() {
    local n="$1" entry="$2" feature harness package name log cbmc=() t0 t1 why
    read -r feature harness <<<"${entry%%|*}"
    if [[ "$entry" == *"|"* ]]; then
        read -r -a cbmc <<<"${entry#*|}"
        cbmc=(-Z unstable-options --cbmc-args "${cbmc[@]}")
    fi
    package="${feature%%/*}"
    name="${feature#*/mutant-}"
    log="$kani_logs/$n.log"
    t0=$(date +%s)
    cargo kani -Z stubbing -p "$package" --features "$feature" --harness "proofs::$harness" --exact \
        --output-format terse "${cbmc[@]}" >"$log" 2>&1
    t1=$(date +%s)
    if grep -q '^VERIFICATION:- FAILED' "$log"; then
        # The failed check's message, or its place when Kani could not keep the message (it
        # prints a placeholder for messages formatted at run time).
        why="$(grep '^Failed Checks: ' "$log" | grep -v -m1 'placeholder message' |
            sed 's/^Failed Checks: //')"
        if [ -z "$why" ]; then
            why="$(grep -m1 -A1 '^Failed Checks: ' "$log" | sed -n 's/^ *File: //p')"
        fi
        echo "caught mutant $name (kani $harness): caught in $((t1 - t0)) s${why:+ ($why)}"
    elif grep -q '^VERIFICATION:- SUCCESSFUL' "$log"; then
        echo "missed mutant $name (kani $harness): MISSED"
    else
        echo "missed mutant $name (kani $harness): BUILD OR RUN FAILED"
        grep -E '^error' -A5 "$log" | head -20
    fi >"$kani_logs/$n.verdict"
}
for n in "${!KANI_MUTANTS[@]}"; do
    entry="${KANI_MUTANTS[$n]}"
    wanted "${entry%% *}" || continue
    while [ "$(jobs -rp | wc -l)" -ge "${KANI_JOBS:-2}" ]; do
        wait -n
    done
    kani_mutant "$n" "$entry" &
done
wait
for n in "${!KANI_MUTANTS[@]}"; do
    verdict="$kani_logs/$n.verdict"
    [ -f "$verdict" ] || continue
    total=$((total + 1))
    read -r word _ <"$verdict"
    case "$word" in
        caught) caught=$((caught + 1)) ;;
        *) missed=$((missed + 1)) ;;
    esac
    cut -d' ' -f2- "$verdict"
done

echo "mutants: $caught caught, $missed missed, $total total"
[ "$missed" -eq 0 ] && [ "$total" -gt 0 ]
