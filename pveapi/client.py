"""One connection to one cluster, through proxmoxer, with every call bounded and observed."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from proxmoxer import ProxmoxAPI
from requests.adapters import HTTPAdapter

from .errors import ApiError
from .inventory import Inventory, check_consistent, parse_resources
from .settings import ConnectionSettings
from .translate import translate

# Called after every API call with (endpoint template, seconds, error or None); the exporter
# and controller count calls and errors by template from it.
CallObserver = Callable[[str, float, ApiError | None], None]

_TEMPLATES = (
    (re.compile(r"/tasks/UPID:[^/]+"), "/tasks/{upid}"),
    (re.compile(r"^/nodes/[^/]+"), "/nodes/{node}"),
    (re.compile(r"/(qemu|lxc)/\d+"), r"/\1/{vmid}"),
    (re.compile(r"^/pools/[^/]+"), "/pools/{poolid}"),
)


def endpoint_template(path: str) -> str:
    """`/nodes/pve1/qemu/100/status/current` -> `/nodes/{node}/qemu/{vmid}/status/current`.

    Keeps metric label cardinality bounded whatever the cluster size.
    """
    path = "/" + path.strip("/")
    for pattern, replacement in _TEMPLATES:
        path = pattern.sub(replacement, path)
    return path


class PveClient:
    def __init__(
        self, settings: ConnectionSettings, observer: CallObserver | None = None, pool_size: int = 10
    ) -> None:
        """`pool_size`: connections kept open to the API; at least the number of threads that
        call this client at once, or requests opens and drops a connection per extra call."""
        self.settings = settings
        self._observer = observer
        self._pool_size = pool_size
        self._api: ProxmoxAPI | None = None
        self._lock = threading.Lock()

    def _connect(self) -> ProxmoxAPI:
        # Ticket login happens inside ProxmoxAPI(); connect lazily so a cluster that is down
        # at start-up is an ApiError on the first call, not a crash.
        with self._lock:
            if self._api is None:
                s = self.settings
                auth: dict[str, Any] = (
                    {"token_name": s.token_name, "token_value": s.token_value.reveal()}
                    if s.token_name and s.token_value
                    else {"password": s.password.reveal() if s.password else ""}
                )
                api = ProxmoxAPI(s.host, user=s.user, verify_ssl=s.verify_ssl, timeout=s.timeout, **auth)
                adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self._pool_size)
                api._store["session"].mount("https://", adapter)  # proxmoxer has no option for it
                self._api = api
            return self._api

    def _call(self, method: str, path: str, params: dict[str, Any]) -> Any:
        template = endpoint_template(path)
        started = time.monotonic()
        error: ApiError | None = None
        try:
            api = self._connect() if self._api is None else self._api
            return getattr(api(path.strip("/")), method)(**params)
        except Exception as exc:  # noqa: BLE001 - translate() re-raises what it does not know
            error = translate(exc, template)
            raise error from None
        finally:
            if self._observer is not None:
                self._observer(template, time.monotonic() - started, error)

    # `path` is positional-only: a parameter may itself be named path (GET /access/permissions).
    def get(self, path: str, /, **params: Any) -> Any:
        return self._call("get", path, params)

    def post(self, path: str, /, **data: Any) -> Any:
        return self._call("post", path, data)

    def put(self, path: str, /, **data: Any) -> Any:
        return self._call("put", path, data)

    def delete(self, path: str, /, **params: Any) -> Any:
        return self._call("delete", path, params)

    def resources(self) -> Inventory:
        """The cluster's inventory, refused (ApiError) unless every figure is possible and the
        entries agree with each other: nothing is planned or checked on an impossible answer."""
        return check_consistent(parse_resources(self.get("/cluster/resources")))
