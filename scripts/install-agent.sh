#!/usr/bin/env bash
# Install (or remove) the shelfscan agent as a systemd service. Idempotent: running it again
# upgrades the code and units and leaves configuration, secrets, bundles and the outbox alone.
#
#   sudo scripts/install-agent.sh [--bundle DIR] [--no-enable] [--system-site-packages]
#   sudo scripts/install-agent.sh --uninstall [--purge]
#   DESTDIR=/tmp/root scripts/install-agent.sh --no-enable      # staged install into a scratch root
#
# Layout: /opt/shelfscan/venv (edge extra only: no TensorFlow), /etc/shelfscan/agent.toml (+ .example,
# agent.env for secrets), /var/lib/shelfscan/bundles/current -> a bundle, /etc/systemd/system units.
# --system-site-packages: the venv also sees Debian's python3-picamera2 (Pi Camera Module), and numpy is
# pinned to the system's version, which that package was built against. Kept on re-runs.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
PYTHON="${PYTHON:-python3}"
ENABLE=1 UNINSTALL=0 PURGE=0 BUNDLE="" SYSTEM_SITE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) DESTDIR="$2"; shift ;;
    --bundle) BUNDLE="$2"; shift ;;
    --no-enable) ENABLE=0 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --system-site-packages) SYSTEM_SITE=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install-agent.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

OPT="$DESTDIR/opt/shelfscan"; ETC="$DESTDIR/etc/shelfscan"; STATE="$DESTDIR/var/lib/shelfscan"
UNITS="$DESTDIR/etc/systemd/system"
live() { [ -z "$DESTDIR" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; }

if [ "$UNINSTALL" = 1 ]; then
  if live; then systemctl disable --now shelfscan-agent.service 2>/dev/null || true; fi
  rm -f "$UNITS/shelfscan-agent.service" "$UNITS/shelfscan-agent@.service" "$UNITS/shelfscan-bench.service"
  rm -rf "$OPT"
  if [ "$PURGE" = 1 ]; then rm -rf "$ETC" "$STATE"; fi
  if live; then systemctl daemon-reload; fi
  echo "shelfscan agent removed$([ "$PURGE" = 1 ] && echo ' (configuration and state purged)' || echo '; kept /etc/shelfscan and /var/lib/shelfscan')"
  exit 0
fi

# ai-edge-litert (LiteRT) has wheels for 64-bit platforms only: a 32-bit userland (Raspberry Pi OS
# armhf, also under a 64-bit kernel, where uname says aarch64) cannot run the agent. Say so before pip does.
platform="$("$PYTHON" -c 'import platform, struct; print(platform.machine(), 8 * struct.calcsize("P"))')" || {
  echo "install-agent.sh: cannot run $PYTHON (set PYTHON=/path/to/python3)" >&2; exit 2; }
case "$platform" in
  *\ 32|armv6l\ *|armv7l\ *|armv8l\ *)
    echo "install-agent.sh: ${platform% *} with a ${platform#* }-bit Python is not supported: ai-edge-litert has" \
      "no 32-bit ARM wheels; install a 64-bit OS (Raspberry Pi OS 64-bit, Bookworm or later)" >&2
    exit 2 ;;
esac

echo "== venv $OPT/venv (edge extra only)"
mkdir -p "$OPT"
if [ ! -x "$OPT/venv/bin/python" ]; then
  "$PYTHON" -m venv $([ "$SYSTEM_SITE" = 1 ] && echo --system-site-packages) "$OPT/venv"
elif [ "$SYSTEM_SITE" = 1 ]; then
  sed -i 's/^include-system-site-packages = .*/include-system-site-packages = true/' "$OPT/venv/pyvenv.cfg"
fi
constraints="$(mktemp)"; trap 'rm -f "$constraints"' EXIT
if grep -q '^include-system-site-packages = true' "$OPT/venv/pyvenv.cfg"; then
  # Debian's python3-picamera2 (and simplejpeg under it) are built against the system numpy: a newer
  # numpy in the venv would shadow it and break their import. Pin the venv to the system's version.
  system_numpy="$("$OPT/venv/bin/python" -I -c 'import sys, importlib.metadata as md
outside = [p for p in sys.path if p and not p.startswith(sys.prefix)]
print(next((d.version for d in md.Distribution.discover(name="numpy", path=outside)), ""))')"
  if [ -n "$system_numpy" ]; then
    echo "numpy==$system_numpy" > "$constraints"
    echo "   system site packages: numpy pinned to the system's $system_numpy"
  fi
fi
"$OPT/venv/bin/python" -m pip install -q --upgrade pip
"$OPT/venv/bin/python" -m pip install -q --upgrade -c "$constraints" "$REPO[edge]"
if ! "$OPT/venv/bin/python" -I -c 'import edge._resample' 2>/dev/null; then
  echo "   note: the C extensions were not built (no C compiler?): the agent runs the slower Pillow/numpy" \
    "fallback (same results); apt install gcc python3-dev, then run this script again"
fi
if grep -q '^include-system-site-packages = true' "$OPT/venv/pyvenv.cfg" \
    && ! "$OPT/venv/bin/python" -I -c 'import picamera2' 2>/dev/null; then
  echo "   note: picamera2 is not importable: apt install python3-picamera2 for source.kind = \"picamera2\""
fi

echo "== configuration $ETC"
mkdir -p "$ETC" "$STATE/bundles"
"$OPT/venv/bin/shelfscan-agent" config --example > "$ETC/agent.toml.example"
if [ ! -f "$ETC/agent.toml" ]; then
  sed -e 's|^state_dir = .*|state_dir = "/var/lib/shelfscan"|' "$ETC/agent.toml.example" > "$ETC/agent.toml"
  echo "   wrote $ETC/agent.toml: edit [source] and [mqtt], then: systemctl restart shelfscan-agent"
fi
if [ ! -f "$ETC/agent.env" ]; then
  (umask 077; printf '# secrets for the agent, e.g.\n# SHELFSCAN_MQTT_PASSWORD=...\n' > "$ETC/agent.env")
fi

if [ -n "$BUNDLE" ]; then
  name="$(basename "$BUNDLE")"
  rm -rf "$STATE/bundles/$name.new" && cp -r "$BUNDLE" "$STATE/bundles/$name.new"
  rm -rf "$STATE/bundles/$name" && mv "$STATE/bundles/$name.new" "$STATE/bundles/$name"
  ln -sfn "$name" "$STATE/bundles/current.new" && mv -T "$STATE/bundles/current.new" "$STATE/bundles/current"
  echo "   bundles/current -> $name"
fi

echo "== systemd units $UNITS"
mkdir -p "$UNITS"
install -m 0644 "$REPO/systemd/shelfscan-agent.service" "$REPO/systemd/shelfscan-agent@.service" \
  "$REPO/systemd/shelfscan-bench.service" "$UNITS/"
if live; then
  systemctl daemon-reload
  if [ "$ENABLE" = 1 ]; then systemctl enable --now shelfscan-agent.service; fi
fi
echo "shelfscan agent installed"
