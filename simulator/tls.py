"""A self-signed certificate for the simulator, made with the `openssl` CLI (Debian has it).

The openssl CLI avoids a dependency (e.g. `cryptography`) for one certificate at start-up.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from pathlib import Path

from pveapi.errors import ConfigError


def make_self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """Write cert.pem and key.pem valid for localhost, 127.0.0.1 and `host`; return their paths."""
    if shutil.which("openssl") is None:
        raise ConfigError("openssl is needed to make the simulator's certificate: install the Debian package "
                          "openssl, or pass --cert and --key")
    cert, key = directory / "cert.pem", directory / "key.pem"
    names = {"DNS:localhost", "IP:127.0.0.1", "IP:::1"}
    if host and host not in ("0.0.0.0", "::"):
        try:
            ipaddress.ip_address(host)
            names.add(f"IP:{host}")
        except ValueError:
            names.add(f"DNS:{host}")
    result = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", "/CN=pvebalance-sim",
         "-addext", "subjectAltName=" + ",".join(sorted(names)), "-addext", "basicConstraints=critical,CA:TRUE"],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise ConfigError(f"openssl could not make the simulator's certificate: {last}")
    return cert, key
