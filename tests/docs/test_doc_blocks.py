"""Every shell and YAML block of the README and the program docs, run as a reader would run it.

Blocks are taken from the Markdown itself, so a doc cannot rot. A block that is not meant to
run here is marked in the Markdown with an HTML comment on the line before its fence,
`<!-- not run: why -->` (commands for a Proxmox node, the demo and test suite themselves, a
service that runs forever, a fragment of a larger file); every other block runs, and this
test fails on one it cannot tell how to run.

The cluster is the simulator, behind a real exporter and a real Prometheus (demoloop's
LocalStack). The docs' example names are swapped for the stack's: `pve1.example.com` for the
simulator's address, `/etc/pvebalance/...` for files in the work directory (secrets hold the
token the simulator accepts; the CA is the simulator's), `http://prometheus:9090` for the
stack's Prometheus. A YAML block whose first line is `# NAME` is saved as NAME before any
block runs, so the blocks that use it (`--config pvebalance.yml`, `rules_file: rules.yaml`)
find it whichever document is run first.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from demoloop.processes import free_port, http_ok, wait_until
from demoloop.stack import LocalStack, prometheus_installed
from simulator.scenario import ALL_PRIVILEGES, Credential

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DOCS = ["README.md", "docs/controller.md", "docs/exporter.md", "docs/rules.md", "docs/demo.md"]
SECRET = "0d0c5000-0000-4000-8000-00000000d0c5"
# The users and tokens the docs create (README, docs/proxmox-permissions.md, docs/exporter.md).
DOC_TOKENS = [("pvebalance@pve", "monitor"), ("pvebalance@pve", "balancer"), ("monitor@pve", "exporter")]
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>[\w-]*)\s*$")
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<why>.+?)\s*-->")
RUNNABLE = {"sh", "bash", "yaml"}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    text: str
    not_run: str | None  # why, when marked

    @property
    def name(self) -> str | None:
        first = self.text.splitlines()[0] if self.text else ""
        match = re.fullmatch(r"#\s*([\w.-]+\.ya?ml)\s*", first)
        return match.group(1) if match else None


def blocks(doc: str) -> list[Block]:
    lines = (ROOT / doc).read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, start = opening.group("indent"), index
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        body = "\n".join(line[len(indent):] for line in lines[start + 1:end]) + "\n"
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = NOT_RUN.search(previous)
        found.append(Block(doc, start + 1, opening.group("lang"), body, marker.group("why") if marker else None))
        index = end + 1
    return found


class Walkthrough:
    """The stack, the work directory the reader works in, and how to run each kind of block."""

    def __init__(self, stack: LocalStack, workdir: Path) -> None:
        self.stack, self.workdir = stack, workdir
        sim = stack.sim
        self.replacements = [
            ("/etc/pvebalance/pve-root-ca.pem", str(sim.cert_path)),
            ("/etc/pvebalance/", f"{workdir}/etc/"),
            ("https://127.0.0.1:8006/_sim", sim.admin_url),
            ("/var/lib/prometheus/metrics2", f"{workdir}/metrics2"),
            ("/var/lib/pvebalance/", f"{workdir}/"),
            ("pve1.example.com", f"127.0.0.1:{sim.port}"),
            ("lab1.example.com", f"127.0.0.1:{sim.port}"),
            ("http://prometheus:9090", str(stack.prometheus_url)),
            (".venv/bin/", f"{BIN}/"),
            ("bash scripts/", f"bash {ROOT}/scripts/"),
        ]
        (workdir / "etc").mkdir()
        self.env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "REQUESTS_CA_BUNDLE": str(sim.cert_path),
                    "PVEBALANCE_CONFIG": str(workdir / "pvebalance.yml"),
                    # The blocks use the default state file: keep it in this run's own directory,
                    # never the machine's /var/lib/pvebalance (which may hold another cluster's).
                    "STATE_DIRECTORY": str(workdir / "state")}

    def localize(self, text: str) -> str:
        for example, here in self.replacements:
            text = text.replace(example, here)
        for secret in re.findall(rf"{re.escape(str(self.workdir))}/etc/[\w.-]+", text):
            path = Path(secret)
            if not path.exists():
                path.write_text(SECRET + "\n", encoding="utf-8")
                path.chmod(0o600)
        return text

    def run(self, block: Block) -> None:
        text = self.localize(block.text)
        if block.lang in ("sh", "bash"):
            self.shell(text)
            return
        data = yaml.safe_load(text)
        path = self.workdir / (block.name or f"block-{Path(block.doc).stem}-{block.line}.yml")
        path.write_text(text, encoding="utf-8")
        if block.name == "rules.yaml":
            return  # read by the controller config that names it (rules_file), run next
        if "proxmox" in data:
            self.shell(f"pvebalance --config {path} plan")
        elif set(data) == {"rules"}:
            config = self.workdir / f"rules-{block.line}.yml"
            controller = yaml.safe_load(self.localize((self.workdir / "pvebalance.yml").read_text(encoding="utf-8")))
            config.write_text(yaml.safe_dump({**controller, "rules_file": None, **data}), encoding="utf-8")
            self.shell(f"pvebalance --config {config} plan")
        elif "default" in data:
            self.exporter(path)
        elif "scrape_configs" in data:
            self.shell(f"promtool check config {path}")
        else:
            pytest.fail(f"{block.doc}:{block.line}: no way to run this YAML block; mark it <!-- not run: why -->")

    def shell(self, script: str) -> None:
        # Output to a file, not a pipe: a process the block leaves in the background (`... &`)
        # would hold a pipe open after the block ended.
        output = self.workdir / "block-output.txt"
        with output.open("w", encoding="utf-8") as out:
            process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=self.workdir, env=self.env,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                process.wait(timeout=600)
            finally:
                try:
                    os.killpg(process.pid, signal.SIGTERM)  # what the block left in the background
                except ProcessLookupError:
                    pass
        text = output.read_text(encoding="utf-8")
        assert process.returncode == 0, f"exit {process.returncode}:\n{script}\n---\n{text}"

    def exporter(self, config: Path) -> None:
        port = free_port()
        process = subprocess.Popen([str(BIN / "pvebalance-exporter"), f"--config.file={config}",
                                    f"--web.listen-address=127.0.0.1:{port}"], env=self.env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), "exporter", 30, process)
            metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
            assert re.search(r"^pvebalance_exporter_scrape_success\{[^}]*\} 1\.0$", metrics, re.M), metrics[-2000:]
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walkthrough]:
    if not prometheus_installed():
        pytest.skip("needs prometheus and promtool (scripts/setup.sh test installs them)")
    root = tmp_path_factory.mktemp("docs")
    tokens = [Credential(user, SECRET, {"/": ALL_PRIVILEGES}, name) for user, name in DOC_TOKENS]
    stack = LocalStack(root / "stack", "demo", tokens=tokens)
    (root / "stack").mkdir()
    try:
        stack.start_simulator()
        stack.start_exporter()
        stack.start_prometheus()
        (root / "reader").mkdir()
        walkthrough = Walkthrough(stack, root / "reader")
        # The files the README's walk-through has the reader write, which the docs then use.
        for block in (b for doc in DOCS for b in blocks(doc) if b.name and b.not_run is None):
            assert block.name is not None
            (root / "reader" / block.name).write_text(walkthrough.localize(block.text), encoding="utf-8")
        yield walkthrough
    finally:
        stack.close()


def test_every_runnable_block_is_found_and_marked_blocks_say_why() -> None:
    for doc in DOCS:
        found = [b for b in blocks(doc) if b.lang in RUNNABLE]
        assert found, f"{doc}: no shell or YAML block found: is the parser broken?"
        for block in found:
            assert block.not_run is None or len(block.not_run) > 10, f"{doc}:{block.line}: say why it is not run"


@pytest.mark.parametrize("doc", DOCS)
def test_doc_blocks_run_as_written(doc: str, walkthrough: Walkthrough) -> None:
    ran = 0
    for block in blocks(doc):
        if block.lang not in RUNNABLE or block.not_run is not None:
            continue
        try:
            walkthrough.run(block)
        except AssertionError as exc:
            raise AssertionError(f"{doc}:{block.line}: {exc}") from None
        ran += 1
    assert ran or doc == "docs/demo.md", f"{doc}: no block ran"
