#!/usr/bin/env bash
# `make check-arm64`: prove edge/ on aarch64 (the Raspberry Pi 4/5 the product ships on) under QEMU
# user-mode emulation, on an x86-64 Debian 12 machine. See docs/arm64.md.
#
# Everything it makes lives in build/arm64/ (ignored), except the cross-built C extensions, which go
# beside the x86 ones as edge/_*.cpython-311-aarch64-linux-gnu.so (*.so is ignored; an x86 Python
# never loads them). The host gets apt packages only: qemu-user-static, the aarch64 cross compiler,
# and the arm64 architecture in dpkg (so `apt-get download` finds arm64 .debs; nothing arm64 is
# installed: Debian's arm64 Python 3.11 is unpacked into build/arm64/root with dpkg-deb -x).
# Idempotent; a second run reuses the sysroot, wheels and extensions and only re-runs the checks.
#
#   scripts/check-arm64.sh                 # everything
#   ARM64_ONLY=classify,tests scripts/check-arm64.sh   # a subset of: self,preprocess,classify,tests,bench,run
#   ARM64_CPUINFO=unshare                  # force how the Pi's /proc/cpuinfo is provided (sysroot|unshare)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO"
OUT="$REPO/build/arm64"
ROOT="$OUT/root"          # Debian arm64 Python 3.11 and its libraries, unpacked
SITE="$OUT/site"          # aarch64 wheels of the [edge] extra + pytest, installed by the host's pip
HOST_PY="$REPO/.venv/bin/python"
QEMU=qemu-aarch64-static
CPU=cortex-a72            # Raspberry Pi 4 (Pi 5 is Cortex-A76; the A72 is the baseline)
mkdir -p "$OUT"

log() { printf '\n== check-arm64: %s\n' "$*"; }
die() { printf 'check-arm64: error: %s\n' "$*" >&2; exit 1; }

[ -x "$HOST_PY" ] || die "no host venv at .venv (run make setup first; make check-arm64 does)"

# -- 1. host tools (apt) -------------------------------------------------------------------------
need_pkgs=()
command -v "$QEMU" >/dev/null || need_pkgs+=(qemu-user-static)
command -v aarch64-linux-gnu-gcc >/dev/null || need_pkgs+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/include/stdio.h ] || need_pkgs+=(libc6-dev-arm64-cross)
arm64_known=1
dpkg --print-foreign-architectures | grep -qx arm64 || arm64_known=0
if [ ${#need_pkgs[@]} -gt 0 ] || [ $arm64_known = 0 ]; then
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    || die "need root with apt-get to install ${need_pkgs[*]:-} and add dpkg architecture arm64"
  log "apt: adding arm64, installing ${need_pkgs[*]:-nothing}"
  dpkg --add-architecture arm64
  apt-get update -qq
  if [ ${#need_pkgs[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  fi
fi
# The dpkg architecture was added by someone else but the lists were never fetched for it.
if ! apt-cache show python3.11:arm64 >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "apt has no arm64 package lists (run apt-get update as root)"
  apt-get update -qq
fi

# -- 2. sysroot: Debian's arm64 python3.11 and its runtime closure, unpacked (not installed) ------
# The closure of `apt-cache depends --recurse python3.11:arm64`, less what a Python process never
# loads (dpkg, perl, tar, install-info, *-dev other than the Python headers).
DEBS_ARM64=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11 libpython3.11
  libpython3.11-dev libc6 libgcc-s1 libstdc++6 gcc-12-base libexpat1 zlib1g libssl3 libffi8 libbz2-1.0
  liblzma5 libsqlite3-0 libncursesw6 libtinfo6 libuuid1 libdb5.3 libreadline8 libcrypt1 libnsl2 libtirpc3
  libgssapi-krb5-2 libk5crypto3 libkeyutils1 libkrb5-3 libkrb5support0 libcom-err2 libzstd1 libmd0
  libselinux1 libpcre2-8-0 libacl1)
DEBS_ALL=(media-types)
args=()
for p in "${DEBS_ARM64[@]}"; do args+=("$p:arm64"); done
args+=("${DEBS_ALL[@]}")
uris="$(apt-get download --print-uris "${args[@]}" 2>/dev/null)" || die "apt-get download --print-uris failed for the arm64 sysroot"
key="$(printf '%s\n' "$uris" | cut -d" " -f2 | sort | sha256sum | cut -c1-16)"  # names carry versions
if [ "$(cat "$ROOT/.stamp" 2>/dev/null)" != "$key" ]; then
  log "sysroot: downloading and unpacking ${#args[@]} arm64 packages into build/arm64/root"
  rm -rf "$ROOT" "$OUT/debs" "$OUT/pycache"
  mkdir -p "$OUT/debs" "$ROOT"
  # apt's _apt sandbox user cannot write here; downloading as root is fine (nothing is installed).
  (cd "$OUT/debs" && apt-get download -q "${args[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
  [ "$(ls "$OUT"/debs/*.deb | wc -l)" = "${#args[@]}" ] || die "not every arm64 .deb was downloaded (see above)"
  for deb in "$OUT"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
  [ -x "$ROOT/usr/bin/python3.11" ] || die "sysroot has no usr/bin/python3.11"
  echo "$key" >"$ROOT/.stamp"
fi

# -- 3. aarch64 wheels, pinned to the host venv's versions ----------------------------------------
# The [edge] extra of pyproject.toml (read from it: a dependency added there is checked here too) plus
# what the emulated tests import; each at the host venv's version, so both sides run the same code.
TEST_PKGS=(pytest pytest-timeout hypothesis jsonschema)
"$HOST_PY" - "$REPO/pyproject.toml" "${TEST_PKGS[@]}" >"$OUT/requirements.txt.new" <<'EOF'
import re, sys, tomllib
from importlib.metadata import PackageNotFoundError, version
edge = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["edge"]
names = [re.match(r"[A-Za-z0-9_.-]+", d).group(0) for d in edge if "python_version < '3.11'" not in d]
for name in dict.fromkeys(names + sys.argv[2:]):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        sys.exit(f"check-arm64: {name} is not in the host venv (make setup installs it)")
EOF
mv "$OUT/requirements.txt.new" "$OUT/requirements.txt"
key="$(sha256sum "$OUT/requirements.txt" | cut -c1-16)"
if [ "$(cat "$SITE/.stamp" 2>/dev/null)" != "$key" ]; then
  log "wheels: aarch64 cp311 wheels into build/arm64/site"
  plats=(--platform manylinux2014_aarch64)
  for minor in $(seq 17 36); do plats+=(--platform "manylinux_2_${minor}_aarch64"); done  # glibc 2.36 = bookworm
  rm -rf "$SITE"
  "$HOST_PY" -m pip install -q --disable-pip-version-check --no-warn-script-location --target "$SITE" \
    "${plats[@]}" --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
    --only-binary=:all: -r "$OUT/requirements.txt" >"$OUT/pip.log" 2>&1 \
    || { grep -v "is ignored: it is neither" "$OUT/pip.log" >&2; die "pip could not install the aarch64 wheels"; }
  echo "$key" >"$SITE/.stamp"
fi

# -- 4. the C extensions, cross-compiled like setup.py builds them on the device (-O3) ------------
INC=(-I"$ROOT/usr/include/python3.11" -idirafter "$ROOT/usr/include")  # pyconfig.h: aarch64-linux-gnu/python3.11/
for mod in _resample; do
  src="edge/$mod.c" so="edge/$mod.cpython-311-aarch64-linux-gnu.so"
  if [ ! -e "$so" ] || [ "$src" -nt "$so" ] || [ "$0" -nt "$so" ]; then
    log "cross-compiling $src"
    aarch64-linux-gnu-gcc -O3 -Wall -shared -fPIC "${INC[@]}" "$src" -o "$so.tmp" -lm || die "cross-build of $src failed"
    mv "$so.tmp" "$so"
  fi
done

# -- 5. the emulated interpreter, and the Raspberry Pi 4's /proc/cpuinfo --------------------------
# QEMU 7.2 shows the guest the host's /proc/cpuinfo (x86 "AMD EPYC"); XNNPACK's cpuinfo library then
# finds no ARM cores and LiteRT segfaults in allocate_tensors. Two ways to show a Pi's instead:
#   sysroot: qemu -L ROOT looks every guest path up under ROOT first, so ROOT/proc/cpuinfo wins
#            (no privileges needed; relies on QEMU's path remapping of open/openat).
#   unshare: a private mount namespace with the fake file bind-mounted on /proc/cpuinfo (root).
# The first that verifiably works is used; if neither does, stop with the reason.
"$HOST_PY" - "$OUT/cpuinfo" <<'EOF'
import sys
cores = [
    f"processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
    f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n"
    for n in range(4)
]
tail = "Hardware\t: BCM2835\nRevision\t: c03111\nSerial\t\t: 100000000badc0de\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n"
open(sys.argv[1], "w").write("\n".join(cores) + "\n" + tail)
EOF
mkdir -p "$ROOT/proc" "$OUT/bin" "$OUT/pycache"
WRAPPER="$OUT/bin/python3.11"
write_wrapper() {  # $1: sysroot|unshare
  cat >"$WRAPPER" <<EOF
#!/bin/sh
# Generated by scripts/check-arm64.sh: Debian's aarch64 python3.11 under QEMU as a Cortex-A72 with a
# Raspberry Pi 4's /proc/cpuinfo ($1). Usable as sys.executable: tests re-run it in subprocesses.
export PYTHONHOME="$ROOT/usr" PYTHONNOUSERSITE=1 PYTHONPYCACHEPREFIX="$OUT/pycache"
case ":\${PYTHONPATH:-}:" in *":$SITE:"*) ;; *) export PYTHONPATH="\${PYTHONPATH:+\$PYTHONPATH:}$SITE" ;; esac
EOF
  if [ "$1" = unshare ]; then
    cat >>"$WRAPPER" <<EOF
if [ "\$(sed -n 's/^CPU part[[:space:]]*: //p' /proc/cpuinfo | head -n1)" != 0xd08 ]; then
  exec unshare -m sh -c 'mount --bind "\$0" /proc/cpuinfo && exec "\$@"' "$OUT/cpuinfo" "\$0" "\$@"
fi
EOF
  fi
  cat >>"$WRAPPER" <<EOF
exec $(command -v "$QEMU") -cpu $CPU -L "$ROOT" -0 "\$0" "$ROOT/usr/bin/python3.11" "\$@"
EOF
  chmod +x "$WRAPPER"
}
probe() {
  "$WRAPPER" -c "
import platform, sys
part = [l.split(':')[1].strip() for l in open('/proc/cpuinfo') if l.startswith('CPU part')]
sys.exit(0 if platform.machine() == 'aarch64' and part[:1] == ['0xd08'] else 1)" 2>/dev/null
}
modes=("${ARM64_CPUINFO:-sysroot}")
[ -z "${ARM64_CPUINFO:-}" ] && modes=(sysroot unshare)
chosen=""
for mode in "${modes[@]}"; do
  if [ "$mode" = sysroot ]; then cp "$OUT/cpuinfo" "$ROOT/proc/cpuinfo"; else rm -f "$ROOT/proc/cpuinfo"; fi
  write_wrapper "$mode"
  if probe; then chosen=$mode; break; fi
  echo "check-arm64: /proc/cpuinfo via $mode: the emulated process still sees the host's CPU" >&2
done
[ -n "$chosen" ] || die "cannot give the emulated process a Raspberry Pi /proc/cpuinfo (tried: ${modes[*]}).
  LiteRT/XNNPACK would segfault on the host's x86 /proc/cpuinfo. Needs QEMU's -L path remapping
  (qemu-user-static 7.2) or root with unshare -m (mount namespaces; containers may need CAP_SYS_ADMIN)."
log "emulated interpreter: $WRAPPER (cpuinfo via $chosen)"

# -- 6. the checks -----------------------------------------------------------------------------------
export ARM64_PYTHON="$WRAPPER"
exec "$HOST_PY" "$REPO/scripts/arm64/check.py" "$@"
