#!/usr/bin/env bash
# Installs what building and testing Mica needs, when it is missing: the Rust targets
# and components of rust-toolchain.toml, and QEMU (Debian packages, as root).
# Idempotent and quiet when everything is already there.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1 || ! command -v rustup >/dev/null 2>&1; then
    say "Rust (rustup, cargo) is not installed. Install rustup from your distribution"
    say "(Debian: apt-get install rustup) or from the Rust project, then run this again."
    exit 1
fi

# rust-toolchain.toml names the toolchain; make sure its targets and components exist.
installed_targets=$(rustup target list --installed 2>/dev/null || true)
for t in aarch64-unknown-none x86_64-unknown-none; do
    if ! grep -qx "$t" <<<"$installed_targets"; then
        say "adding Rust target $t"
        rustup target add "$t" >&2
    fi
done
installed_components=$(rustup component list --installed 2>/dev/null || true)
for c in rustfmt clippy; do
    if ! grep -q "^$c" <<<"$installed_components"; then
        say "adding Rust component $c"
        rustup component add "$c" >&2
    fi
done

pkgs=""
if ! command -v qemu-system-aarch64 >/dev/null 2>&1 || ! command -v qemu-system-x86_64 >/dev/null 2>&1; then
    pkgs="qemu-system-arm qemu-system-x86"
fi
# dtc: the tests decompile every device tree Mica generates for a guest and want no warning.
if ! command -v dtc >/dev/null 2>&1; then
    pkgs="${pkgs:+$pkgs }device-tree-compiler"
fi
if [ -n "$pkgs" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing $pkgs"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >&2
        # --no-install-recommends: the recommended qemu-utils conflicts with newer ones.
        apt-get install -y -q --no-install-recommends $pkgs >&2
    else
        say "missing: $pkgs. As root on Debian/Ubuntu run:"
        say "  apt-get install -y --no-install-recommends $pkgs"
        exit 1
    fi
fi
