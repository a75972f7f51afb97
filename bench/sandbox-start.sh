#!/usr/bin/env bash
# Session start time and density under gVisor (issue #5). Builds the static agent (as
# the sandbox image ships it), then measures in one run, through the session manager and
# the runsc runtime the daemon uses:
#   - the floor: a bare `runsc --network=none run` of a trivial static binary;
#   - warm start (rootfs cached) and cold start (provisioned from the signed OCI layout
#     into an empty images dir), from "launch requested" to the agent's first heartbeat,
#     median of 20 each, and warm/floor (target <= 1.5x);
#   - one idle session's memory (RSS and PSS summed over its sentry, gofer and stubs);
#   - 20 concurrent launches: p50/p99 to heartbeat, total RSS/PSS once idle.
# Needs root, runsc (apt-get install -y runsc) and cc. Every container it starts is
# deleted at the end. Exits 1 (after reporting) if warm/floor is over the target.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release/ironclaw-sandbox"
ldd "$bin" 2>&1 | grep -qE 'statically linked|not a dynamic executable' \
    || { echo "$bin is not static:"; ldd "$bin"; exit 1; }
IRONCLAW_SANDBOX_BIN="$(realpath "$bin")" cargo bench -p ironclaw-e2e --bench sandbox_start
