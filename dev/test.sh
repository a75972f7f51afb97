#!/usr/bin/env bash
# Runs every test, including the live gVisor ones: installs what they need (gVisor's
# runsc from Debian, the C toolchain for the vendored OpenSSL), builds the static
# sandbox agent they launch, then `cargo test --workspace`. Run as root on Debian (the
# live tests launch real sandboxes). Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v runsc >/dev/null || need+=(runsc)
command -v cc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v perl >/dev/null || need+=(perl)
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi

# The agent is the only program in a rootfs with no dynamic loader: it must be static.
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox

cargo test --workspace "$@"
