#!/usr/bin/env bash
# verify/mutants.sh: shows that the harnesses in mica-verify catch deliberately planted bugs.
#
# Each `mutant-*` feature of mica-caps and mica-kernel plants exactly one bug. For each, this
# runs the mica-verify tests with that feature on (for a kernel mutant, the lifecycle harness);
# the mutant is "caught" when the tests FAIL. Any mutant that survives means a harness is too
# weak, and the script exits non-zero.
# Usage: verify/mutants.sh [crate/feature...]
#        (default: every mutant-* feature of caps/Cargo.toml and kernel/Cargo.toml)
set -u
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/mutants}"

if [ "$#" -gt 0 ]; then
    mutants=("$@")
else
    mapfile -t mutants < <(
        sed -n 's/^\(mutant-[a-z0-9-]*\) *= *\[\].*/mica-caps\/\1/p' caps/Cargo.toml
        sed -n 's/^\(mutant-[a-z0-9-]*\) *= *\[\].*/mica-kernel\/\1/p' kernel/Cargo.toml
    )
fi
if [ "${#mutants[@]}" -eq 0 ]; then
    echo "no mutant features found in caps/Cargo.toml or kernel/Cargo.toml" >&2
    exit 2
fi

caught=0
missed=0
for mutant in "${mutants[@]}"; do
    name="${mutant#*/mutant-}"
    tests=()
    case "$mutant" in
        mica-kernel/*) tests=(--test lifecycle_properties) ;;
    esac
    log="$(mktemp)"
    # Build first so a compile error is not mistaken for a caught mutant.
    if ! cargo test -p mica-verify --features "$mutant" "${tests[@]}" --no-run >"$log" 2>&1; then
        echo "mutant $name: BUILD FAILED"
        tail -20 "$log"
        missed=$((missed + 1))
        rm -f "$log"
        continue
    fi
    if cargo test -p mica-verify --features "$mutant" "${tests[@]}" >"$log" 2>&1; then
        echo "mutant $name: MISSED"
        missed=$((missed + 1))
    else
        why="$(grep -m1 -o 'I[0-9][^:]*\|broken at step [0-9]*: [^(]*' "$log" || true)"
        echo "mutant $name: caught${why:+ ($why)}"
        caught=$((caught + 1))
    fi
    rm -f "$log"
done

echo "mutants: $caught caught, $missed missed, ${#mutants[@]} total"
[ "$missed" -eq 0 ]
