"""`pvebalance-exporter`: serve Proxmox VE metrics; `pvebalance-exporter backfill`: write history."""

from __future__ import annotations

import argparse
import ctypes
import gc
import math
import os
import platform
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import structlog

from pveapi.client import PveClient
from pveapi.errors import ApiError, ConfigError, ErrorKind, PvebalanceError
from pveapi.logsetup import configure_logging
from pveapi.progress import Progress
from pveapi.settings import Secret
from pveapi.values import HOUR, YEAR, count, number
from pveapi.version import version_text

from .backfill import SimClock, backfill
from .collectors import CollectorOptions
from .config import ExporterConfig, load_config
from .http import ExporterApp, ServeOptions, make_http_server

PROG = "pvebalance-exporter"
DEFAULT_LISTEN = "0.0.0.0:19221"
DEFAULT_CONFIG = Path("/etc/pvebalance/exporter.yml")
# A 10,000-guest scrape allocates about 125,000 samples that live until the answer is sent. At
# CPython's default gen0 threshold (700) that runs ~240 young and 2 full collections per scrape
# (0.17-0.21 s of CPU, measured); at 50,000 about 3 young ones (0.06 s). Cycles are still
# collected, in larger batches.
GC_THRESHOLDS = (50_000, 10, 10)
# glibc gives threads that allocate their own malloc arenas (up to 8 per core), and each arena
# keeps what a 20 MB answer left in it; with a thread per request, 20 concurrent scrapers of a
# 10,000-guest cluster left the exporter at 406 MiB (bench/exporter.py). Two arenas bound that.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number, from glibc's malloc.h
# Bounds of the scrape flags: Prometheus' own scrape timeouts are seconds to minutes; more
# workers than this per target only queue at the API.
MIN_SCRAPE_TIMEOUT, MAX_SCRAPE_TIMEOUT = 0.5, 3600.0
MAX_WORKERS = 256

log = structlog.get_logger("pvebalance.exporter")


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=version_text(PROG))
    parser.add_argument(
        "--config.file", dest="config_file", type=Path, default=None,
        help=f"YAML modules of credentials (default {DEFAULT_CONFIG} if it exists, else the PVE_* environment)",
    )
    parser.add_argument("--log.format", dest="log_format", choices=("json", "console", "auto"), default="auto",
                        help="json, console, or auto: console on a terminal, JSON otherwise (default auto)")
    parser.add_argument("--log.level", dest="log_level", choices=("debug", "info", "warning", "error"), default="info")
    parser.add_argument("--collector.pressure", dest="collector_pressure", action=argparse.BooleanOptionalAction,
                        default=False, help="PSI per node from rrddata and per running guest from its node's guest lists (PVE 9): "
                        "one more call per node and guest type (default off)")
    parser.add_argument("--collector.config", dest="collector_config", action=argparse.BooleanOptionalAction,
                        default=False, help="guest onboot from each guest's config: one more call per guest (default off)")
    parser.add_argument("--collector.deprecated", dest="collector_deprecated", action=argparse.BooleanOptionalAction,
                        default=True, help="prometheus-pve-exporter's deprecated byte gauges pve_network_*_bytes and "
                        "pve_disk_*_bytes beside the _total counters (default on, as it does)")
    parser.add_argument("--collector.zeros", dest="collector_zeros", action=argparse.BooleanOptionalAction,
                        default=True, help="prometheus-pve-exporter's 0-valued series: pve_ha_state and pve_lock_state "
                        "for every state not held, pve_disk_usage_bytes of qemu guests (default on, as it does; "
                        "--no-collector.zeros drops about 200,000 samples at 10,000 guests)")
    parser.add_argument("--collector.replication", dest="collector_replication", action=argparse.BooleanOptionalAction,
                        default=True, help="pve_replication_*: the job list once a minute, plus one call per scrape "
                        "for each node holding a replicated guest (default on, as prometheus-pve-exporter does)")
    parser.add_argument("--collector.qdevice", dest="collector_qdevice", action=argparse.BooleanOptionalAction,
                        default=True, help="pve_qdevice_*: one call per scrape with a QDevice configured, every 5 "
                        "minutes without (default on, as prometheus-pve-exporter does)")


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Proxmox VE metrics for Prometheus. `pvebalance-exporter backfill --help` for history.",
    )
    parser.add_argument("--web.listen-address", dest="listen", default=DEFAULT_LISTEN,
                        help=f"address to serve /metrics, /pve and /health on (default {DEFAULT_LISTEN})")
    parser.add_argument("--scrape.timeout", dest="scrape_timeout", type=float, default=9.0,
                        help="seconds a scrape may take; lowered to Prometheus' own timeout when it sends one (default 9)")
    parser.add_argument("--scrape.max-workers", dest="max_workers", type=int, default=16,
                        help="parallel API calls per target (default 16)")
    _common_flags(parser)
    return parser


def _backfill_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} backfill",
        description="Write TSDB blocks of simulated history for Prometheus (simulator only; see docs/exporter.md).",
    )
    parser.add_argument("--sim-admin-url", required=True, help="the simulator's admin API, e.g. https://127.0.0.1:8006/_sim")
    parser.add_argument("--sim-admin-token-env", default=None,
                        help="environment variable holding the simulator's --admin-token, if it has one")
    parser.add_argument("--module", default=None, help="config module to connect with (default: the default module)")
    parser.add_argument("--hours", type=float, default=24.0, help="history to write, up to --end (default 24)")
    parser.add_argument("--step", type=float, default=60.0, help="seconds between samples (default 60)")
    parser.add_argument("--end", type=float, default=None, metavar="EPOCH",
                        help="Unix time of the last sample (default, and latest allowed: the simulator's now or "
                             "the wall clock, whichever is earlier)")
    parser.add_argument("--output", type=Path, required=True, help="Prometheus' data directory (--storage.tsdb.path)")
    parser.add_argument("--promtool", default="promtool", help="promtool binary (default: promtool on the PATH)")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=VALUE",
                        help="add a label to every sample, e.g. job=pve and instance=HOST:PORT as live scrapes "
                             "will carry them (repeatable)")
    _common_flags(parser)
    return parser


def _config_path(given: Path | None) -> Path | None:
    if given is not None:
        return given
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() or not os.environ.get("PVE_USER") else None


def _collector_options(args: argparse.Namespace) -> CollectorOptions:
    return CollectorOptions(pressure=args.collector_pressure, config=args.collector_config,
                            deprecated=args.collector_deprecated, zeros=args.collector_zeros,
                            replication=args.collector_replication, qdevice=args.collector_qdevice)


def bound_malloc_arenas() -> None:
    """At most MALLOC_ARENAS malloc arenas for the threads started from now on (glibc only)."""
    if platform.libc_ver()[0] == "glibc":
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, MALLOC_ARENAS)


def serve(args: argparse.Namespace) -> int:
    bound_malloc_arenas()
    scrape_timeout = number(args.scrape_timeout, "--scrape.timeout", low=MIN_SCRAPE_TIMEOUT, high=MAX_SCRAPE_TIMEOUT)
    max_workers = count(args.max_workers, "--scrape.max-workers", low=1, high=MAX_WORKERS)
    config_path = _config_path(args.config_file)
    config = load_config(config_path)
    check_credentials(config)
    app = ExporterApp(config, ServeOptions(_collector_options(args), scrape_timeout, max_workers))
    server = make_http_server(args.listen, app)
    gc.set_threshold(*GC_THRESHOLDS)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, lambda _signum, _frame: threading.Thread(
        target=reload, args=(app, config_path), name="reload", daemon=True).start())
    log.info(
        "exporter_started", listen=args.listen,
        modules={name: module.settings.host for name, module in config.modules.items()},
        pressure=args.collector_pressure, config=args.collector_config,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.close()
        log.info("exporter_stopped")
    return 0


def reload(app: ExporterApp, path: Path | None) -> None:
    """SIGHUP (systemctl reload): the config file and its secrets files again, for the next
    scrape; a bad file is one error event and the exporter goes on with the config it has."""
    try:
        config = load_config(path)
    except PvebalanceError as exc:
        log.error("config_reload_failed", error=str(exc), hint="still serving with the previous config; fix the file and reload again")
        return
    app.reload(config)
    log.info("config_reloaded", modules={name: module.settings.host for name, module in config.modules.items()})
    check_credentials(config)


def check_credentials(config: ExporterConfig) -> None:
    """One call at start with the default module (the one /metrics scrapes), so a wrong token
    is one log line at once rather than a silent `scrape_success 0` later. The exporter serves
    either way: the token may be fixed, or the cluster come back, without a restart."""
    module = config.default_module
    where = {"module": module.name, "host": module.settings.host}
    try:
        answer = PveClient(module.settings, pool_size=1).get("/version")
    except ApiError as exc:
        if exc.kind in (ErrorKind.AUTH, ErrorKind.PERMISSION):
            log.error("credentials_refused", **where, error=str(exc),
                      hint="fix the module's user, token_name and secret; scrapes answer scrape_success 0 until then")
        else:
            log.warning("credentials_unchecked", **where, error=str(exc))
        return
    found = answer.get("version", "?") if isinstance(answer, dict) else "?"
    log.info("credentials_ok", **where, pve_version=found)


def _label(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name) or name.startswith("__"):
        raise PvebalanceError(f"--label {text!r}: expected NAME=VALUE with a Prometheus label name, e.g. job=pve")
    return name, value


def run_backfill(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args.config_file))
    settings = config.module(args.module).settings
    token = None
    if args.sim_admin_token_env:
        value = os.environ.get(args.sim_admin_token_env)
        if not value:
            raise PvebalanceError(f"--sim-admin-token-env: environment variable {args.sim_admin_token_env} is not set")
        token = Secret(value)
    labels = dict(_label(text) for text in args.label)
    hours = number(args.hours, "--hours", 0, YEAR / HOUR)
    step = number(args.step, "--step", 0.001, YEAR)
    sim_now, _ = SimClock(args.sim_admin_url, settings.verify_ssl, token).get()
    # Prometheus stamps live scrapes with the wall clock: history past it (a simulator running
    # faster than real time is ahead) would make the first live samples "out of bounds".
    latest = min(sim_now, time.time())
    if args.end is None and latest < hours * HOUR:
        raise ConfigError(f"--hours: {hours:g} h of history would start before 1970 (the simulator's clock is at "
                          f"{latest:.0f}); ask for fewer hours or start the simulator later")
    end = latest if args.end is None else args.end
    if not math.isfinite(end) or not hours * HOUR <= end <= latest:
        raise ConfigError(f"--end: expected a Unix time from {hours * HOUR:.0f} (--hours after 1970) to {latest:.0f} "
                          f"(the simulator's now or the wall clock, whichever is earlier), got {end:g}")
    with Progress("backfill", unit="steps") as progress:

        def on_step(done: int, total: int, at: float) -> None:
            note = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at)) if done < total else "promtool: writing blocks"
            progress.update(done, note, total)

        report = backfill(
            settings, args.sim_admin_url, end - hours * HOUR, end, step, args.output,
            _collector_options(args), args.promtool, token, labels, on_step=on_step,
        )
    print(
        f"wrote {report.samples} samples ({report.steps} steps from "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(report.start))} to "
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(report.end))} UTC) as TSDB blocks in {args.output}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    backfilling = bool(argv) and argv[0] == "backfill"
    args = (_backfill_parser() if backfilling else _serve_parser()).parse_args(argv[1:] if backfilling else argv)
    configure_logging(args.log_format, args.log_level)
    try:
        return run_backfill(args) if backfilling else serve(args)
    except PvebalanceError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
