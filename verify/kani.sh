#!/usr/bin/env bash
# verify/kani.sh: runs every Kani proof of the workspace and prints each harness's result and
# time (docs/verification.md lists what each proves, its bounds and its time).
#
# Installs Kani first when it is missing, through the bundle next to the repository
# (../shared/tools/kani/install.sh, as CI clones the repository beside shared/). Packages are
# verified two at a time (KANI_JOBS): CBMC is single-threaded, and the machines have 2 cores.
# Usage: verify/kani.sh [package...]   (default: every package with proofs, below)
set -u
cd "$(dirname "$0")/.."

# Packages with `#[cfg(kani)] mod proofs`, the longest first so the two slots finish together.
packages=(mica-abi mica-caps mica-hal-arm mica-rt)
if [ "$#" -gt 0 ]; then
    packages=("$@")
fi
jobs="${KANI_JOBS:-2}"

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

# One `cargo kani` per package (builds take cargo's lock in turn; CBMC runs in parallel).
# `-Z stubbing`: the parser proofs replace the UTF-8 check of names with a model.
verify() {
    local package="$1" t0
    t0=$(date +%s)
    cargo kani -Z stubbing -p "$package" --output-format terse >"$logs/$package.log" 2>&1
    echo "$? $(($(date +%s) - t0))" >"$logs/$package.status"
}
for package in "${packages[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n
    done
    verify "$package" &
done
wait

failed=0
summary=()
for package in "${packages[@]}"; do
    log="$logs/$package.log"
    read -r status seconds <"$logs/$package.status"
    # Pair each "Checking harness X..." with the result and time that follow it.
    while IFS=$'\t' read -r harness result time; do
        summary+=("$(printf '%-12s %-62s %-7s %6ss' "$package" "$harness" "$result" "$time")")
        [ "$result" = ok ] || failed=$((failed + 1))
    done < <(awk '
        /^Checking harness / { h = $3; sub(/\.\.\.$/, "", h); sub(/^proofs::/, "", h) }
        /^VERIFICATION:- SUCCESSFUL/ { r = "ok" }
        /^VERIFICATION:- FAILED/ { r = "FAILED" }
        /^Verification Time: / { t = $3; sub(/s$/, "", t); printf "%s\t%s\t%.1f\n", h, r, t }
    ' "$log")
    if [ "$status" -ne 0 ]; then
        echo "verify-kani: cargo kani -p $package failed (exit $status); its output:"
        grep -E "^(error|Failed Checks|VERIFICATION|Checking harness)" -A2 "$log" | head -40
        failed=$((failed + 1))
    fi
    echo "verify-kani: $package done in $seconds s (build included)"
done

echo
printf '%-12s %-62s %-7s %7s\n' "package" "harness" "result" "time"
printf '%s\n' "${summary[@]}"
echo "verify-kani: ${#summary[@]} harnesses, $failed failed, $(($(date +%s) - start)) s in all"
[ "$failed" -eq 0 ]
