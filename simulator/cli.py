"""pvebalance-sim: serve a simulated Proxmox VE cluster over HTTPS (see docs/simulator.md)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

import requests

from pveapi.errors import ConfigError, PvebalanceError
from pveapi.logsetup import configure_logging
from pveapi.values import number
from pveapi.version import version_text

from .faults import load_faults_file
from .scenario import ALL_PRIVILEGES, Credential
from .server import Simulator
from .validation import MAX_TIME_SCALE, parse_start


def parse_token(text: str) -> Credential:
    """`USER@REALM!NAME=VALUE` -> a full-privilege token."""
    tokenid, sep, value = text.partition("=")
    user, bang, name = tokenid.partition("!")
    if not (sep and bang and "@" in user and name and value):
        raise ConfigError(f"--token: expected USER@REALM!NAME=VALUE, e.g. root@pam!bench=secret, got {tokenid!r}")
    return Credential(user, value, {"/": ALL_PRIVILEGES}, name)


def parse_user(text: str) -> Credential:
    """`USER@REALM=PASSWORD` -> a full-privilege user for ticket login."""
    user, sep, password = text.partition("=")
    if not (sep and "@" in user and password):
        raise ConfigError(f"--user: expected USER@REALM=PASSWORD, e.g. root@pam=secret, got {user!r}")
    return Credential(user, password, {"/": ALL_PRIVILEGES})


TOKENS_ENV = "PVEBALANCE_SIM_TOKENS"
USERS_ENV = "PVEBALANCE_SIM_USERS"
ADMIN_TOKEN_ENV = "PVEBALANCE_SIM_ADMIN_TOKEN"


def _secret_lines(files: list[str], env_var: str, what: str) -> list[str]:
    """Credentials from files (one a line; `#` comments) and a whitespace-separated environment variable."""
    lines: list[str] = []
    for name in files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--{what}-file {name}: cannot read it: {exc.strerror}") from None
        lines += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lines + os.environ.get(env_var, "").split()


def _admin_token(token_file: str | None, token: str | None = None) -> str | None:
    if token_file:
        lines = _secret_lines([token_file], "", "admin-token")
        if len(lines) != 1:
            raise ConfigError(f"--admin-token-file {token_file}: expected one line with the token")
        return lines[0]
    return token or os.environ.get(ADMIN_TOKEN_ENV) or None


def _bounded(value: float | None, flag: str, high: float) -> float | None:
    return None if value is None else number(value, flag, 0, high)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pvebalance-sim", description="Serve a simulated Proxmox VE cluster over HTTPS.")
    p.add_argument("--version", action="version", version=version_text("pvebalance-sim"))
    p.add_argument("--scenario", default="demo", help="built-in name (demo, large), a YAML scenario or a JSON capture")
    p.add_argument("--listen", help="HOST:PORT to serve on (default 127.0.0.1:8006)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8006, help="0 picks a free port")
    p.add_argument("--seed", type=int)
    p.add_argument("--time-scale", type=float, help="virtual seconds per real second; 0 freezes the clock")
    p.add_argument("--start", help="virtual start time, epoch or ISO (default: now)")
    p.add_argument("--cert", help="TLS certificate (PEM); default: a self-signed one made at start")
    p.add_argument("--key", help="TLS key (PEM) for --cert")
    p.add_argument("--token-file", action="append", default=[],
                   help=f"file of extra API tokens, USER@REALM!NAME=VALUE one a line (also ${TOKENS_ENV})")
    p.add_argument("--user-file", action="append", default=[],
                   help=f"file of extra users USER@REALM=PASSWORD for ticket login (also ${USERS_ENV})")
    p.add_argument("--token", action="append", default=[],
                   help="extra API token USER@REALM!NAME=VALUE; visible in ps: throwaway secrets only")
    p.add_argument("--user", action="append", default=[],
                   help="extra user USER@REALM=PASSWORD; visible in ps: throwaway secrets only")
    p.add_argument("--pve-version", help="the Proxmox VE version every node reports, e.g. 9.0.10 (for captures)")
    p.add_argument("--faults", help="YAML/JSON file with a list of faults")
    p.add_argument("--admin-token-file", help=f"file holding the token /_sim/ requires (also ${ADMIN_TOKEN_ENV})")
    p.add_argument("--admin-token", help="require 'Authorization: Bearer TOKEN' on /_sim/; visible in ps")
    p.add_argument("--auth-failure-delay", type=float, default=0.0, help="seconds before a 401 (real PVE: 3)")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    p.add_argument("--log-level", default="info")
    return p


def pveum_main(argv: list[str]) -> int:
    """`pvebalance-sim pveum --url URL user add ...`: one pveum command posted to /_sim/pveum."""
    p = argparse.ArgumentParser(prog="pvebalance-sim pveum",
                                description="Apply a pveum command (user add, user token add, acl modify, acl delete, "
                                            "role add) to a running simulator.")
    p.add_argument("--url", required=True, help="the simulator, e.g. https://127.0.0.1:8006")
    p.add_argument("--ca", help="its certificate (the start event's `cert`); default: the system's CAs")
    p.add_argument("--admin-token-file", help=f"the admin token, if it needs one (also ${ADMIN_TOKEN_ENV})")
    p.add_argument("command", nargs=argparse.REMAINDER, help="the pveum command, e.g. user add ops@pve")
    args = p.parse_args(argv)
    try:
        token = _admin_token(args.admin_token_file)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        url = f"{args.url.rstrip('/')}/_sim/pveum"
        if args.ca and not Path(args.ca).is_file():
            raise ConfigError(f"--ca {args.ca}: no such file; pass the `cert` path of the simulator's start event")
        try:
            answer = requests.post(url, json={"command": "pveum " + shlex.join(args.command)}, headers=headers,
                                   verify=args.ca or True, timeout=30)
            body = answer.json()
        except (requests.RequestException, OSError, ValueError) as exc:
            # the class names the failure (refused, TLS, no scheme...); requests' text is a paragraph
            raise ConfigError(f"{url}: no simulator answered ({type(exc).__name__}) - check --url "
                              "(the `url` of the simulator's start event, without /api2/json) and --ca") from None
        if answer.status_code != 200:
            raise ConfigError(str(body.get("error") if isinstance(body, dict) else body))
    except PvebalanceError as exc:
        print(f"pvebalance-sim pveum: {exc}", file=sys.stderr)
        return 2
    if body.get("data") is not None:
        print(json.dumps(body["data"], indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["pveum"]:
        return pveum_main(argv[1:])
    args = build_parser().parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        host, port = args.host, args.port
        if args.listen:
            host, _, port_text = args.listen.rpartition(":")
            if not host or not port_text.isdigit():
                raise ConfigError(f"--listen: expected HOST:PORT, got {args.listen!r}")
            port = int(port_text)
        if args.cert and not args.key:
            raise ConfigError("--cert needs --key (the certificate's private key)")
        if args.pve_version is not None and not re.match(r"^\d+\.\d+\.\d+$", args.pve_version):
            raise ConfigError(f"--pve-version: expected a version like 9.0.10, got {args.pve_version!r}")
        tokens = args.token + _secret_lines(args.token_file, TOKENS_ENV, "token")
        users = args.user + _secret_lines(args.user_file, USERS_ENV, "user")
        options: dict[str, Any] = {
            "host": host, "port": port, "seed": args.seed,
            "time_scale": _bounded(args.time_scale, "--time-scale", MAX_TIME_SCALE),
            "start": parse_start(args.start, "--start"), "cert": args.cert, "key": args.key,
            "tokens": [parse_token(t) for t in tokens] + [parse_user(u) for u in users],
            "admin_token": _admin_token(args.admin_token_file, args.admin_token), "pve_version": args.pve_version,
            "auth_failure_delay": _bounded(args.auth_failure_delay, "--auth-failure-delay", 60),
            "faults": load_faults_file(args.faults) if args.faults else [],
        }
        try:
            simulator = Simulator(args.scenario, **options)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from None
    except PvebalanceError as exc:
        print(f"pvebalance-sim: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: simulator.stop())
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
