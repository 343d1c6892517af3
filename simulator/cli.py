"""pvebalance-sim: serve a simulated Proxmox VE cluster over HTTPS (see docs/simulator.md)."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from pveapi.errors import ConfigError, PvebalanceError
from pveapi.logsetup import configure_logging

from .faults import load_faults_file
from .scenario import ALL_PRIVILEGES, Credential
from .validation import parse_start
from .server import Simulator


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pvebalance-sim", description="Serve a simulated Proxmox VE cluster over HTTPS.")
    p.add_argument("--scenario", default="demo", help="built-in name (demo, large), a YAML scenario or a JSON capture")
    p.add_argument("--listen", help="HOST:PORT to serve on (default 127.0.0.1:8006)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8006, help="0 picks a free port")
    p.add_argument("--seed", type=int)
    p.add_argument("--time-scale", type=float, help="virtual seconds per real second; 0 freezes the clock")
    p.add_argument("--start", help="virtual start time, epoch or ISO (default: now)")
    p.add_argument("--cert", help="TLS certificate (PEM); default: a self-signed one made at start")
    p.add_argument("--key", help="TLS key (PEM) for --cert")
    p.add_argument("--token", action="append", default=[], help="extra API token USER@REALM!NAME=VALUE (repeatable)")
    p.add_argument("--user", action="append", default=[], help="extra user USER@REALM=PASSWORD for ticket login")
    p.add_argument("--faults", help="YAML/JSON file with a list of faults")
    p.add_argument("--admin-token", help="require 'Authorization: Bearer TOKEN' on /_sim/")
    p.add_argument("--auth-failure-delay", type=float, default=0.0, help="seconds before a 401 (real PVE: 3)")
    p.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
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
        options: dict[str, Any] = {
            "host": host, "port": port, "seed": args.seed, "time_scale": args.time_scale,
            "start": parse_start(args.start, "--start"), "cert": args.cert, "key": args.key,
            "tokens": [parse_token(t) for t in args.token] + [parse_user(u) for u in args.user],
            "admin_token": args.admin_token,
            "auth_failure_delay": args.auth_failure_delay,
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
