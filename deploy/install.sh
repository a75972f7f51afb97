#!/usr/bin/env bash
# Installs (or upgrades) the IronClaw control plane on a Debian host with systemd:
# the binaries, a sandbox image signed with a fresh key, a trust policy pinning that
# key, the state dir, /etc/ironclaw/ironclaw.env and the systemd unit; then starts the
# daemon and prints the first owner token once. Safe to run again (that is how you
# upgrade). Step by step, and what each file is: docs/deployment.md.
#
#   deploy/install.sh [--bin-dir DIR] [--sandbox-bin FILE] [--api-addr ADDR]
#                     [--sign-key KEY] [--root DIR] [--dry-run]
#
# --root DIR installs everything under DIR instead of / and skips what touches the
# running system (apt-get, systemctl, tailscale); tests use it. --dry-run prints what
# would be done and changes nothing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

BIN_DIR="$repo/target/release"
SANDBOX_BIN=""
API_ADDR=""
SIGN_KEY=""
ROOT=""
DRY_RUN=0
API_PORT=8787

usage() {
    cat <<EOF
usage: $0 [options]

  --bin-dir DIR      where ironclaw-controlplane and ironctl are
                     (default: $repo/target/release)
  --sandbox-bin FILE the statically linked ironclaw-sandbox (default: DIR/ironclaw-sandbox,
                     else $repo/target/x86_64-unknown-linux-gnu/release/ironclaw-sandbox)
  --api-addr ADDR    the API's address (default: the tailnet IPv4 from
                     \`tailscale ip -4\`, else 127.0.0.1; port $API_PORT). Never 0.0.0.0.
  --sign-key KEY     sign the image with this ECDSA P-256 key (its public half must be
                     beside it as .pub) instead of a fresh key made and deleted here
  --root DIR         install under DIR; skip apt-get, systemctl and tailscale
  --dry-run          print what would be done; change nothing
  -h, --help         this text
EOF
}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}
say() { echo "==> $*"; }
note() { echo "    $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --bin-dir) BIN_DIR="${2:?--bin-dir needs a directory}"; shift 2 ;;
    --sandbox-bin) SANDBOX_BIN="${2:?--sandbox-bin needs a file}"; shift 2 ;;
    --api-addr) API_ADDR="${2:?--api-addr needs an address}"; shift 2 ;;
    --sign-key) SIGN_KEY="${2:?--sign-key needs a key file}"; shift 2 ;;
    --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done

# --- Where things go (every path below is under $ROOT) ---------------------------
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || die "--root $ROOT: not a directory (create it first)"
    ROOT="$(cd "$ROOT" && pwd)"
    [ "$ROOT" != / ] || ROOT=""
fi
BIN_DEST="$ROOT/usr/local/bin"
LIB_DEST="$ROOT/usr/local/lib/ironclaw"
IMAGE_DEST="$LIB_DEST/sandbox-image"
CONF_DIR="$ROOT/etc/ironclaw"
ENV_FILE="$CONF_DIR/ironclaw.env"
POLICY="$CONF_DIR/trust-policy.json"
PUB_KEY="$CONF_DIR/image-signing.pub"
STATE_DIR="$ROOT/var/lib/ironclaw"
UNIT_NAME=ironclaw-controlplane.service
UNIT_DEST="$ROOT/etc/systemd/system/$UNIT_NAME"
FIRST_TOKEN="$STATE_DIR/first-owner-token"

# Runs a command, or only prints it with --dry-run.
run() {
    if [ "$DRY_RUN" = 1 ]; then
        echo "    [dry-run] $*"
    else
        "$@"
    fi
}

# --- Preconditions ------------------------------------------------------------------
[ "$(uname -s)" = Linux ] || die "IronClaw runs sandboxes with gVisor, which needs Linux"
if [ -z "$ROOT" ] && [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "run as root (runsc and the daemon need it), or pass --root DIR to stage an install"
fi
for b in ironclaw-controlplane ironctl; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b is missing or not executable; build it with \`cargo build --release -p ironclaw-controlplane -p ironctl\` or pass --bin-dir"
done
if [ -z "$SANDBOX_BIN" ]; then
    if [ -f "$BIN_DIR/ironclaw-sandbox" ]; then
        SANDBOX_BIN="$BIN_DIR/ironclaw-sandbox"
    else
        SANDBOX_BIN="$repo/target/x86_64-unknown-linux-gnu/release/ironclaw-sandbox"
    fi
fi
[ -f "$SANDBOX_BIN" ] || die "$SANDBOX_BIN is missing: build the static agent with RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p ironclaw-sandbox, or pass --sandbox-bin"
if [ -n "$SIGN_KEY" ]; then
    [ -f "$SIGN_KEY" ] || die "--sign-key $SIGN_KEY: no such file"
    [ -f "${SIGN_KEY%.key}.pub" ] || die "--sign-key $SIGN_KEY: its public key ${SIGN_KEY%.key}.pub is missing"
fi
[ -f "$here/$UNIT_NAME" ] || die "$here/$UNIT_NAME is missing (run install.sh from the IronClaw source tree)"
[ -f "$here/ironclaw.env.example" ] || die "$here/ironclaw.env.example is missing"
IRONCTL="$BIN_DIR/ironctl"

systemd_running() { [ -d /run/systemd/system ] && [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; }

# --- gVisor --------------------------------------------------------------------------
say "gVisor (runsc)"
if command -v runsc >/dev/null 2>&1; then
    note "found $(command -v runsc): $(runsc --version 2>/dev/null | head -n1)"
elif [ -n "$ROOT" ]; then
    note "runsc is not installed; skipped with --root (apt-get install -y runsc on the real host)"
else
    run apt-get update -qq
    run apt-get install -y -qq runsc
fi

# --- API address ---------------------------------------------------------------------
say "API address"
if [ -z "$API_ADDR" ]; then
    ip=""
    if [ -z "$ROOT" ] && command -v tailscale >/dev/null 2>&1; then
        ip="$(timeout 10 tailscale ip -4 2>/dev/null | head -n1 || true)"
        if [[ ! "$ip" =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]]; then
            note "tailscale is installed but not up (no tailnet IPv4); using loopback"
            ip=""
        fi
    fi
    if [ -n "$ip" ]; then
        API_ADDR="$ip:$API_PORT"
        note "tailnet address $API_ADDR (only tailnet peers can reach the API)"
    else
        API_ADDR="127.0.0.1:$API_PORT"
        note "loopback $API_ADDR (no Tailscale: reach it from this host, or over an SSH tunnel)"
    fi
fi
# Strict: the value is written into the env file, so nothing but an IPv4 or a
# bracketed IPv6 address and a port gets through (no `|`, `&`, spaces or newlines).
# %q: a refused value is shown escaped, never printed raw to the terminal.
[[ "$API_ADDR" =~ ^([0-9]{1,3}(\.[0-9]{1,3}){3}|\[[0-9a-fA-F:]+\]):([0-9]{1,5})$ ]] ||
    die "--api-addr $(printf %q "$API_ADDR"): expected IPv4:PORT or [IPv6]:PORT, e.g. 127.0.0.1:$API_PORT"
api_ip="${API_ADDR%:*}"
api_port="${BASH_REMATCH[3]}"
[ $((10#$api_port)) -ge 1 ] && [ $((10#$api_port)) -le 65535 ] ||
    die "--api-addr $API_ADDR: the port must be 1-65535"
api_public=1
if [[ "$api_ip" == \[* ]]; then
    h="${api_ip#[}"
    h="${h%]}"
    h="${h,,}"
    [[ ! "$h" =~ ^[0:]+$ ]] || die "--api-addr $API_ADDR listens on every interface; use the tailnet IP or 127.0.0.1"
    # Loopback (::1) or unique local (fc00::/7, which holds Tailscale's fd7a:115c:a1e0::/48).
    if [[ "$h" =~ ^[0:]*:0*1$ || "$h" =~ ^f[cd][0-9a-f]{2}: ]]; then api_public=0; fi
else
    IFS=. read -r o1 o2 o3 o4 <<<"$api_ip"
    for o in "$o1" "$o2" "$o3" "$o4"; do
        # No leading zeros: the daemon refuses them (they read as octal elsewhere).
        [[ "$o" =~ ^(0|[1-9][0-9]*)$ ]] && [ "$o" -le 255 ] ||
            die "--api-addr $API_ADDR: $api_ip is not an IPv4 address"
    done
    [ "$api_ip" != 0.0.0.0 ] || die "--api-addr $API_ADDR listens on every interface; use the tailnet IP or 127.0.0.1"
    # Loopback, RFC 1918, or 100.64.0.0/10 (carrier-grade NAT: Tailscale's range).
    if [ "$o1" = 127 ] || [ "$o1" = 10 ] ||
        { [ "$o1" = 172 ] && [ "$o2" -ge 16 ] && [ "$o2" -le 31 ]; } ||
        { [ "$o1" = 192 ] && [ "$o2" = 168 ]; } ||
        { [ "$o1" = 100 ] && [ "$o2" -ge 64 ] && [ "$o2" -le 127 ]; }; then
        api_public=0
    fi
fi
if [ "$api_public" = 1 ]; then
    echo "install.sh: WARNING: --api-addr $API_ADDR is not a loopback, private (RFC 1918), tailnet (100.64.0.0/10) or unique local address: the API may be reachable from the internet. Prefer the tailnet IP or 127.0.0.1." >&2
fi

# --- Binaries ------------------------------------------------------------------------
say "binaries"
run install -d -m 0755 "$BIN_DEST" "$LIB_DEST"
run install -m 0755 "$BIN_DIR/ironclaw-controlplane" "$BIN_DEST/ironclaw-controlplane"
run install -m 0755 "$BIN_DIR/ironctl" "$BIN_DEST/ironctl"
run install -m 0755 "$SANDBOX_BIN" "$LIB_DEST/ironclaw-sandbox"
note "$BIN_DEST/{ironclaw-controlplane,ironctl}, $LIB_DEST/ironclaw-sandbox"

# --- Directories ---------------------------------------------------------------------
say "directories"
run install -d -m 0755 "$CONF_DIR"
if [ -d "$STATE_DIR" ]; then
    # Never loosened. The daemon itself sets 0711 (traverse only) when it runs runsc.
    mode="$(stat -c %a "$STATE_DIR")"
    if [ $((8#$mode & 8#066)) != 0 ]; then
        note "$STATE_DIR had mode $mode; it holds keys: chmod 700"
        run chmod 0700 "$STATE_DIR"
    fi
    note "$STATE_DIR exists (kept)"
else
    run install -d -m 0700 "$STATE_DIR"
    [ "$DRY_RUN" = 1 ] || note "$STATE_DIR (0700)"
fi

# --- Environment file ----------------------------------------------------------------
say "environment file"
if [ -e "$ENV_FILE" ]; then
    mode="$(stat -c %a "$ENV_FILE")"
    if [ "$mode" != 600 ] && [ "$mode" != 400 ]; then
        note "$ENV_FILE had mode $mode; it holds secrets: chmod 600"
        run chmod 0600 "$ENV_FILE"
    fi
    current="$(sed -n 's/^IRONCLAW_API_ADDR=//p' "$ENV_FILE" | tail -n1)"
    note "$ENV_FILE exists: kept as it is (IRONCLAW_API_ADDR=${current:-unset})"
    if [ -n "$current" ] && [ "$current" != "$API_ADDR" ]; then
        note "this run chose $API_ADDR; edit $ENV_FILE if that is what you want"
    fi
elif [ "$DRY_RUN" = 1 ]; then
    echo "    [dry-run] write $ENV_FILE (0600) from ironclaw.env.example with IRONCLAW_API_ADDR=$API_ADDR"
else
    tmp="$(mktemp "$CONF_DIR/.ironclaw.env.XXXXXX")"
    # The example, with its IRONCLAW_API_ADDR line replaced by the validated address
    # (printed as data: no sed expression is built from it).
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
        IRONCLAW_API_ADDR=*) printf 'IRONCLAW_API_ADDR=%s\n' "$API_ADDR" ;;
        *) printf '%s\n' "$line" ;;
        esac
    done <"$here/ironclaw.env.example" >"$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$ENV_FILE"
    note "$ENV_FILE (0600): add your provider key and channel secrets there"
fi

# --- Sandbox image, signing key, trust policy ------------------------------------------
say "sandbox image"
keys=""
cleanup() { [ -z "$keys" ] || rm -rf "$keys"; }
trap cleanup EXIT
if [ -n "$SIGN_KEY" ]; then
    key="$SIGN_KEY"
    pub="${SIGN_KEY%.key}.pub"
    note "signing with $key"
elif [ "$DRY_RUN" = 1 ]; then
    key="<fresh key>"
    pub="<fresh key>.pub"
    echo "    [dry-run] ironctl image keygen --out <temporary dir>"
else
    # A fresh key per install, deleted once the image is signed: the only thing it ever
    # signs is this image, and there is no private key left on the host to steal. The
    # policy trusts its public half only.
    keys="$(mktemp -d)"
    "$IRONCTL" image keygen --out "$keys/k" >/dev/null
    key="$keys/k/image-signing.key"
    pub="$keys/k/image-signing.pub"
fi
if [ "$DRY_RUN" = 1 ]; then
    echo "    [dry-run] ironctl image build --sandbox-bin $SANDBOX_BIN --out $IMAGE_DEST --sign-key $key"
    echo "    [dry-run] install $pub → $PUB_KEY; write $POLICY (if missing)"
else
    rm -rf "$IMAGE_DEST.new" "$IMAGE_DEST.old"
    built="$("$IRONCTL" --json image build --sandbox-bin "$SANDBOX_BIN" --out "$IMAGE_DEST.new" --sign-key "$key")" ||
        die "building the sandbox image failed (above)"
    digest="$(printf '%s' "$built" | grep -o '"manifest_digest": *"sha256:[0-9a-f]*"' | grep -o 'sha256:[0-9a-f]*')"
    [ -n "$digest" ] || die "ironctl image build did not report a manifest digest: $built"
    install -m 0644 "$pub" "$PUB_KEY.new"
    mv -f "$PUB_KEY.new" "$PUB_KEY"
    if [ -e "$IMAGE_DEST" ]; then mv "$IMAGE_DEST" "$IMAGE_DEST.old"; fi
    mv "$IMAGE_DEST.new" "$IMAGE_DEST"
    rm -rf "$IMAGE_DEST.old"
    chmod -R go-w "$IMAGE_DEST"
    note "$IMAGE_DEST: manifest $digest, signed"
    if [ -e "$POLICY" ]; then
        if grep -q '"image-signing.pub"' "$POLICY"; then
            note "$POLICY exists and trusts $PUB_KEY (kept)"
        else
            note "warning: $POLICY exists (kept) but does not name image-signing.pub: the daemon will refuse this image unless the policy trusts it"
        fi
    else
        tmp="$(mktemp "$CONF_DIR/.trust-policy.XXXXXX")"
        cat >"$tmp" <<'EOF'
{
  "version": 1,
  "cosign_keys": [
    { "name": "install", "path": "image-signing.pub" }
  ]
}
EOF
        chmod 0644 "$tmp"
        mv -f "$tmp" "$POLICY"
        note "$POLICY: trusts images signed by $PUB_KEY"
    fi
fi
cleanup
keys=""

# --- systemd unit --------------------------------------------------------------------
say "systemd unit"
run install -d -m 0755 "$(dirname "$UNIT_DEST")"
run install -m 0644 "$here/$UNIT_NAME" "$UNIT_DEST"
note "$UNIT_DEST"

if [ "$DRY_RUN" = 1 ] && [ -n "$ROOT" ]; then
    say "dry run done: nothing was changed under $ROOT"
    exit 0
fi
if [ -n "$ROOT" ]; then
    say "done (staged under $ROOT; systemctl skipped)"
    exit 0
fi
if [ "$DRY_RUN" = 1 ]; then
    echo "    [dry-run] systemctl daemon-reload; systemctl enable $UNIT_NAME; (re)start it; print the first owner token"
    exit 0
fi
if ! systemd_running; then
    say "systemd is not running as PID 1 here: start the daemon yourself"
    note "set -a; . $ENV_FILE; set +a"
    note "$(sed -n '/^ExecStart=/,/[^\\]$/p' "$UNIT_DEST" | sed 's/^ExecStart=//; s/\\$//' | tr -s ' \n' ' ')"
    note "its first start prints the owner token once"
    exit 0
fi

say "starting $UNIT_NAME"
first_start=1
[ ! -s "$STATE_DIR/tokens" ] || first_start=0
systemctl daemon-reload
systemctl enable --quiet "$UNIT_NAME"
if systemctl is-active --quiet "$UNIT_NAME"; then
    note "running: restarting to pick up the new binaries and image"
    systemctl restart "$UNIT_NAME"
else
    systemctl start "$UNIT_NAME" || die "$UNIT_NAME did not start: journalctl -u $UNIT_NAME -n 50"
fi

# The daemon writes the first owner token to its stdout, which the unit appends to
# $FIRST_TOKEN (root-only; not the journal). Show it once, then delete it.
token=""
if [ "$first_start" = 1 ]; then
    for _ in $(seq 1 150); do
        token="$(grep -o '^    [^ ].*' "$FIRST_TOKEN" 2>/dev/null | head -n1 | tr -d ' ' || true)"
        [ -z "$token" ] || break
        systemctl is-active --quiet "$UNIT_NAME" || break
        sleep 0.2
    done
fi
# Wait for the API to accept connections (the first start provisions the image).
api_host="${API_ADDR%:*}"
api_host="${api_host#[}"
api_host="${api_host%]}"
api_up=0
for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/$api_host/${API_ADDR##*:}") 2>/dev/null; then
        api_up=1
        break
    fi
    systemctl is-active --quiet "$UNIT_NAME" || break
    sleep 0.2
done
systemctl is-active --quiet "$UNIT_NAME" || die "$UNIT_NAME stopped: journalctl -u $UNIT_NAME -n 50"
[ "$api_up" = 1 ] || note "warning: the API is not answering on $API_ADDR yet: journalctl -u $UNIT_NAME -n 50"
if [ -n "$token" ]; then
    rm -f "$FIRST_TOKEN"
    say "the first owner token (shown once, store it now; it is not kept anywhere in clear):"
    echo
    echo "    $token"
    echo
elif [ "$first_start" = 1 ]; then
    note "no owner token yet: look in $FIRST_TOKEN once the daemon has started, then delete it"
else
    [ -s "$FIRST_TOKEN" ] || rm -f "$FIRST_TOKEN"
    note "existing state: the owner token was shown at the first install (mint more: ironctl token create NAME --role admin)"
fi
say "installed. Check it:"
note "export IRONCLAW_ADDR=http://$API_ADDR IRONCLAW_API_TOKEN=<owner token>"
note "ironctl status; ironctl doctor; journalctl -u $UNIT_NAME -f"
