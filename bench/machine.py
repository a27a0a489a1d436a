"""The CPU facts every bench result is printed with (AVX2-only machines are ~2.5x slower than AVX-512/AMX ones)."""
from __future__ import annotations

from pathlib import Path


def cpu_flags() -> str:
    """The CPU's avx*/amx* flags, sorted and space-separated, as `grep -o 'avx[^ ]*' /proc/cpuinfo` would tell."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = {f for line in text.splitlines() if line.startswith("flags")
             for f in line.split(":", 1)[1].split() if f.startswith(("avx", "amx"))}
    return " ".join(sorted(flags)) or "no avx"
