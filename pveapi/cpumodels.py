"""Which host CPU flags a qemu guest's named CPU model needs, so it is only placed on nodes
whose CPU (node status `cpuinfo.flags`, the host's /proc/cpuinfo flags) can offer that model.

Flags are named as /proc/cpuinfo names them (QEMU's `pni` is `pni`, `sse4.1` is `sse4_1`).
The x86-64-v2/-v2-AES/v3/v4 sets are those of PVE's built-in models (qemu-server
CPUConfig.pm: `+popcnt;+pni;+sse4.1;...`); the named QEMU models are checked by their
level plus the flags that set them apart from it. This is a necessary check, not a complete
one: a model's other features (e.g. Skylake-Server's `pku`, the `EPYC` family's `clzero`), the
per-guest `flags=+x;-y` of the `cpu` option, custom models (`custom-NAME`) and models not
listed here are not checked; `host` is checked by CPU model instead (planner/constraints.py).
"""

from __future__ import annotations

from collections.abc import Mapping

_V2 = frozenset({"popcnt", "pni", "sse4_1", "sse4_2", "ssse3", "cx16", "lahf_lm"})
_V2_AES = _V2 | {"aes"}
_V3 = _V2_AES | {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
_V4 = _V3 | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
_BROADWELL = _V3 | {"adx", "rdseed"}
_SKYLAKE_SERVER = _V4 | {"adx", "rdseed", "clwb", "xsavec"}
_CASCADELAKE_SERVER = _SKYLAKE_SERVER | {"avx512_vnni"}
_EPYC = _V3 | {"adx", "rdseed", "sha_ni", "xsavec"}

# qemu `cpu` type -> host CPU flags the node must have.
CPU_MODEL_FLAGS: Mapping[str, frozenset[str]] = {
    "x86-64-v2": _V2,
    "x86-64-v2-AES": _V2_AES,
    "x86-64-v3": _V3,
    "x86-64-v4": _V4,
    "Haswell": _V3,
    "Haswell-noTSX": _V3,
    "Broadwell": _BROADWELL,
    "Broadwell-noTSX": _BROADWELL,
    "Skylake-Client": _BROADWELL | {"xsavec"},
    "Skylake-Server": _SKYLAKE_SERVER,
    "Cascadelake-Server": _CASCADELAKE_SERVER,
    "Icelake-Server": _CASCADELAKE_SERVER | {"avx512vbmi", "avx512_vbmi2", "gfni", "vaes", "vpclmulqdq"},
    "EPYC": _EPYC,
    "EPYC-Rome": _EPYC | {"clwb"},
    "EPYC-Milan": _EPYC | {"clwb", "pku", "vaes", "vpclmulqdq"},
    "EPYC-Genoa": _EPYC | {"clwb", "pku", "vaes", "vpclmulqdq"} | _V4,
}


def required_flags(cputype: str | None) -> frozenset[str] | None:
    """The host flags `cputype` needs, or None when it is not a model this table checks."""
    return None if cputype is None else CPU_MODEL_FLAGS.get(cputype)


def parse_flags(value: object) -> frozenset[str] | None:
    """`cpuinfo.flags` ("fpu vme de ...") as a set; None when absent or not text."""
    if not isinstance(value, str) or not value.strip():
        return None
    return frozenset(value.split())
