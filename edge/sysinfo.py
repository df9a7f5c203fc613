"""Facts about the machine a benchmark ran on, so numbers are never quoted without context.

Reads Linux sysfs/procfs only (and ``vcgencmd`` on a Raspberry Pi when present); every probe is
optional, so it works in containers and on other systems with fewer fields.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str:
    info = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware"):
        for line in info.splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _vcgencmd(*args: str) -> str | None:
    exe = shutil.which("vcgencmd")
    if not exe:
        return None
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=2).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


#: CPU features that change inference speed several-fold: x86 vector extensions, ARM NEON and dot products.
NOTABLE_FEATURES = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx512vbmi",
    "avx512_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "i8mm",
    "sve",
)


def cpu_features() -> list[str]:
    """The notable features this CPU reports (``flags`` on x86, ``Features`` on ARM), in a fixed order."""
    text = _read("/proc/cpuinfo") or ""
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return [f for f in NOTABLE_FEATURES if f in flags]


def machine_info() -> dict[str, Any]:
    """CPU, cores, governor, memory, OS, Python, and Raspberry Pi temperature/throttling."""
    mem = _read("/proc/meminfo") or ""
    total_kb = next((int(line.split()[1]) for line in mem.splitlines() if line.startswith("MemTotal")), 0)
    temp = _read("/sys/class/thermal/thermal_zone0/temp")
    info: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_features": " ".join(cpu_features()) or "none of " + " ".join(NOTABLE_FEATURES),
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "max_freq_mhz": (int(f) // 1000)
        if (f := _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"))
        else None,
        "memory_gib": round(total_kb / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "board": _read("/proc/device-tree/model"),
        "temperature_c": round(int(temp) / 1000, 1) if temp and temp.lstrip("-").isdigit() else None,
        "throttled": _vcgencmd("get_throttled"),
    }
    return {k: v for k, v in info.items() if v is not None}
