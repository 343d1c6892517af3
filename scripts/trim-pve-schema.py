"""Derive simulator/schema/pve-<version>-trimmed.json from Proxmox VE's published API schema.

Source: the pve-docs API viewer data (`api-viewer/apidata.js` of pve-docs 9.1.3), flattened to
one object keyed by path (the project's copy lives outside the repository, in
../shared/pve-api-schema/pve-9.1.3.json). Kept: the endpoints the simulator serves (its route
table, `{kind}` expanded to qemu and lxc) plus `POST /access/ticket`; per method the
`parameters`, `returns`, `permissions`, `proxyto` and `protected`. Dropped: descriptions and
other prose, which only make the copy bigger.

    python scripts/trim-pve-schema.py ../shared/pve-api-schema/pve-9.1.3.json 9.1.3
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from simulator import api  # noqa: E402,F401 - importing registers the routes
from simulator.routing import ROUTES  # noqa: E402

KEPT = ("parameters", "returns", "permissions", "proxyto", "protected")
PROSE = {"description", "verbose_description", "typetext", "title", "format_description"}
EXTRA = [("POST", "/access/ticket")]


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in PROSE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def endpoints() -> list[tuple[str, str]]:
    served = [(r.method, r.template.replace("{kind}", kind))
              for r in ROUTES for kind in (("qemu", "lxc") if "{kind}" in r.template else ("",))]
    return sorted(set(served + EXTRA))


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    source, version = Path(argv[1]), argv[2]
    schema = json.loads(source.read_text(encoding="utf-8"))
    trimmed: dict[str, Any] = {"_source": f"pve-docs {version} api-viewer/apidata.js ({source.name}), "
                                          "trimmed by scripts/trim-pve-schema.py", "_version": version, "paths": {}}
    for method, path in endpoints():
        info = schema.get(path, {}).get(method)
        if info is None:
            print(f"{method} {path}: not in {source}", file=sys.stderr)
            return 2
        trimmed["paths"].setdefault(path, {})[method] = _strip({k: info.get(k) for k in KEPT})
    out = ROOT / "simulator" / "schema" / f"pve-{version}-trimmed.json"
    out.write_text(json.dumps(trimmed, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{out.relative_to(ROOT)}: {sum(len(m) for m in trimmed['paths'].values())} endpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
