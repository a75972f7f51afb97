#!/usr/bin/env bash
# The sandbox agent's footprint: builds the static release binary (as the sandbox image
# ships it), checks that it is static, and measures its size and RSS (idle target
# ≤ 10 MiB) next to a baseline process in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/ironclaw-sandbox"
ldd "$bin" 2>&1 | grep -qE 'statically linked|not a dynamic executable' \
    || { echo "$bin is not static:"; ldd "$bin"; exit 1; }
echo "static: yes ($(stat -c %s "$bin") bytes)"
IRONCLAW_SANDBOX_BIN="$(realpath "$bin")" cargo bench -p ironclaw-e2e --bench sandbox_agent
