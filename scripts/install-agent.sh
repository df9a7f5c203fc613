#!/usr/bin/env bash
# Install (or remove) the shelfscan agent as a systemd service. Idempotent: running it again
# upgrades the code and units and leaves configuration, secrets, bundles and the outbox alone.
#
#   sudo scripts/install-agent.sh [--bundle DIR] [--no-enable]
#   sudo scripts/install-agent.sh --uninstall [--purge]
#   DESTDIR=/tmp/root scripts/install-agent.sh --no-enable      # staged install into a scratch root
#
# Layout: /opt/shelfscan/venv (edge extra only: no TensorFlow), /etc/shelfscan/agent.toml (+ .example,
# agent.env for secrets), /var/lib/shelfscan/bundles/current -> a bundle, /etc/systemd/system units.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DESTDIR="${DESTDIR:-}"
PYTHON="${PYTHON:-python3}"
ENABLE=1 UNINSTALL=0 PURGE=0 BUNDLE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --destdir) DESTDIR="$2"; shift ;;
    --bundle) BUNDLE="$2"; shift ;;
    --no-enable) ENABLE=0 ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
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

echo "== venv $OPT/venv (edge extra only)"
mkdir -p "$OPT"
[ -x "$OPT/venv/bin/python" ] || "$PYTHON" -m venv "$OPT/venv"
"$OPT/venv/bin/python" -m pip install -q --upgrade pip
"$OPT/venv/bin/python" -m pip install -q --upgrade "$REPO[edge]"

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
