#!/usr/bin/env bash
# verify/kani.sh: runs every Kani proof of the workspace and prints each harness's result and
# time (docs/verification.md lists what each proves, its bounds and its time).
#
# Installs Kani first when it is missing, through the bundle next to the repository
# (../shared/tools/kani/install.sh, as CI clones the repository beside shared/). Jobs run two
# at a time (KANI_JOBS): CBMC is single-threaded, and the machines have 2 cores.
# Usage: verify/kani.sh ["package [harness-prefix...]"...]   (default: every job, below)
set -u
cd "$(dirname "$0")/.."

# Jobs: a package with `#[cfg(kani)] mod proofs`, optionally harness-name filters (prefixes),
# and after a `|`, options passed to CBMC. Two run at a time, each in its own target
# directory, the longest first, so the two slots finish together (times: docs/verification.md). Every
# harness of every package must be in one job (checked below).
jobs=(
    "mica-abi hypercall_encode_"
    "mica-abi sysimage_ bootinfo_ ring_ text_"
    "mica-rt"
    "mica-caps"
    # The decoder's harnesses take seconds: with the vGIC's, one build fewer.
    "mica-hal-arm vgic_ mmio_"
    "mica-abi hypercall_decode_ hypercall_function_"
    # The page-table harnesses index 512-entry tables at constant positions: tracked entry by
    # entry they take seconds; as whole arrays (CBMC's default above 64 elements) CBMC ran
    # out of memory.
    "mica-hal-arm stage2_ | --max-field-sensitivity-array-size 1024"
)
if [ "$#" -gt 0 ]; then
    jobs=("$@")
fi
slots="${KANI_JOBS:-2}"

KANI_INSTALL="${KANI_INSTALL:-../shared/tools/kani/install.sh}"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if ! cargo kani --version >/dev/null 2>&1; then
    if [ ! -x "$KANI_INSTALL" ]; then
        echo "verify-kani: Kani is not installed and $KANI_INSTALL is missing" >&2
        exit 2
    fi
    "$KANI_INSTALL" || exit 2
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
start=$(date +%s)

# One `cargo kani` per job (builds take cargo's lock in turn; CBMC runs in parallel).
# `-Z stubbing`: the parser proofs replace the UTF-8 check of names with a model.
verify() {
    local n="$1" spec="$2" package t0 filters=() cbmc=() f
    read -r package words <<<"${spec%%|*}"
    for f in $words; do
        filters+=(--harness "proofs::$f")
    done
    if [[ "$spec" == *"|"* ]]; then
        read -r -a cbmc <<<"${spec#*|}"
        cbmc=(-Z unstable-options --cbmc-args "${cbmc[@]}")
    fi
    t0=$(date +%s)
    # Its own target directory: jobs of one package then run side by side (in one directory,
    # two `cargo kani` runs of a package race on its goto binaries: goto-instrument failed).
    CARGO_TARGET_DIR="target/kani-jobs/$n" \
        cargo kani -Z stubbing -p "$package" "${filters[@]}" --output-format terse "${cbmc[@]}" \
        >"$logs/$n.log" 2>&1
    echo "$? $(($(date +%s) - t0))" >"$logs/$n.status"
}
# Start the next job whenever a slot is free.
for n in "${!jobs[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$slots" ]; do
        wait -n || true
    done
    verify "$n" "${jobs[$n]}" &
done
wait

failed=0
summary=()
for n in "${!jobs[@]}"; do
    log="$logs/$n.log"
    package="${jobs[$n]%% *}"
    read -r status seconds <"$logs/$n.status"
    # Pair each "Checking harness X..." with the result and time that follow it.
    while IFS=$'\t' read -r harness result time; do
        summary+=("$(printf '%-12s %-62s %-7s %6ss' "$package" "$harness" "$result" "$time")")
        [ "$result" = ok ] || failed=$((failed + 1))
    done < <(awk '
        /^Checking harness / { h = $3; sub(/\.\.\.$/, "", h); sub(/^proofs::/, "", h); r = "FAILED" }
        /^VERIFICATION:- SUCCESSFUL/ { r = "ok" }
        /^Verification Time: / { t = $3; sub(/s$/, "", t); printf "%s\t%s\t%.1f\n", h, r, t; h = "" }
        /^VERIFICATION:- FAILED/ && h != "" { r = "FAILED" }
    ' "$log")
    if [ "$status" -ne 0 ]; then
        echo "verify-kani: cargo kani -p ${jobs[$n]} failed (exit $status); its output:"
        grep -E "^(error|Failed Checks|VERIFICATION|Checking harness)|memory" -A2 "$log" | head -40
        failed=$((failed + 1))
    fi
    echo "verify-kani: ${jobs[$n]}: done in $seconds s (build included)"
done

# With the default jobs, every harness in the sources must have run.
if [ "$#" -eq 0 ]; then
    declared="$(grep -h -A4 '#\[kani::proof\]' ./*/src/proofs.rs |
        sed -n 's/^fn \([a-z0-9_]*\)().*/\1/p' | sort)"
    ran="$(printf '%s\n' "${summary[@]}" | awk '{ print $2 }' | sort)"
    missing="$(comm -23 <(echo "$declared") <(echo "$ran"))"
    if [ -n "$missing" ]; then
        echo "verify-kani: harnesses no job ran:" $missing
        failed=$((failed + 1))
    fi
fi

echo
printf '%-12s %-62s %-7s %7s\n' "package" "harness" "result" "time"
printf '%s\n' "${summary[@]}"
echo "verify-kani: ${#summary[@]} harnesses, $failed failed, $(($(date +%s) - start)) s in all"
[ "$failed" -eq 0 ]
