"""A fresh Debian root made with mmdebstrap, and programs run inside it as a systemd unit would.

No systemd runs in the root: `as_unit` reads the installed unit file and starts its ExecStart
with chroot(1) as the unit's User, in its WorkingDirectory, with its EnvironmentFile's values
substituted, so the test starts exactly the command line systemd would.
"""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path


def os_codename() -> str:
    for line in Path("/etc/os-release").read_text(encoding="utf-8").splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    raise AssertionError("/etc/os-release has no VERSION_CODENAME: the package is built for this release")


def deb_field(deb: Path, field: str) -> str:
    return subprocess.run(["dpkg-deb", "--field", str(deb), field], check=True, capture_output=True,
                          text=True).stdout.strip()


def depends_names(deb: Path) -> list[str]:
    """The package names of the .deb's Depends (first alternative, versions dropped)."""
    return [part.split("|")[0].split("(")[0].strip() for part in deb_field(deb, "Depends").split(",")]


def make_root(path: Path, packages: list[str], timeout: float = 1200) -> None:
    """A minimal Debian root of this machine's release, from Debian's mirror."""
    done = subprocess.run(
        ["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(packages)}", os_codename(), str(path)],
        capture_output=True, text=True, timeout=timeout,
    )
    assert done.returncode == 0, f"mmdebstrap failed:\n{done.stderr[-3000:]}"


def in_root(root: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """A command run as root inside the root (dpkg, getent, ...)."""
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})


def read_unit(path: Path) -> configparser.ConfigParser:
    """A systemd unit file's sections (a repeated key: the last one)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    # The documented way to keep keys' case; typeshed declares optionxform a method, not an attribute.
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser


def unit(root: Path, name: str) -> configparser.ConfigParser:
    """An installed unit of the root."""
    return read_unit(root / "lib/systemd/system" / name)


def _environment_file(root: Path, service: configparser.SectionProxy) -> dict[str, str]:
    values: dict[str, str] = {}
    spec = service.get("EnvironmentFile")
    if spec is None:
        return values
    path = root / spec.lstrip("-").lstrip("/")
    if not path.exists() and spec.startswith("-"):
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = " ".join(shlex.split(value))
    return values


def unit_command(root: Path, name: str, *extra: str) -> list[str]:
    """chroot + the unit's User and WorkingDirectory + its ExecStart ($VAR split as systemd does)."""
    service = unit(root, name)["Service"]
    env = _environment_file(root, service)
    argv: list[str] = []
    for word in shlex.split(service["ExecStart"].replace("\\\n", " ")):
        if word.startswith("$"):
            argv.extend(env.get(word[1:], "").split())
        else:
            argv.append(word)
    user, group = service["User"], service.get("Group", service["User"])
    return ["chroot", f"--userspec={user}:{group}", str(root),
            "env", "-i", "-C", service.get("WorkingDirectory", "/"), "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
            *argv, *extra]
