"""CPU and storage compatibility through the simulator: the emptiest node is not taken when the
guest cannot run there."""

from __future__ import annotations

from collections.abc import Callable

from controller.config import Config
from controller.cycle import run_cycle
from controller.executor import Executor
from pveapi.client import PveClient
from tests.controller.conftest import Watch
from tests.support.sim import running_simulator

INTEL = "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
SCENARIO = {
    "name": "compat", "seed": 3,
    "nodes": [{"name": "amd1", "cores": 16, "memory": "64GiB"},
              {"name": "intel1", "cores": 32, "memory": "128GiB", "model": INTEL},  # empty and big: the best target
              {"name": "amd2", "cores": 16, "memory": "64GiB"}],
    "storages": [{"name": "ceph", "type": "rbd", "shared": True},
                 {"name": "nfs-amd", "type": "nfs", "shared": True, "nodes": ["amd1", "amd2"]}],
    "guests": [
        {"vmid": 100, "node": "amd1", "cputype": "host", "cpus": 4, "memory": "8GiB", "storage": "ceph"},
        {"vmid": 101, "node": "amd1", "cpus": 4, "memory": "8GiB", "storage": "nfs-amd"},
        {"vmid": 102, "node": "amd1", "cpus": 4, "memory": "8GiB", "storage": "ceph"},
        {"vmid": 103, "node": "amd2", "cpus": 4, "memory": "8GiB", "storage": "ceph"},
    ],
}


def test_cpu_host_and_storage_keep_guests_off_incompatible_nodes_and_the_plan_says_why(
    make_config: Callable[..., Config]
) -> None:
    with running_simulator(SCENARIO, time_scale=0) as sim:
        config = make_config(sim, rules={"maintenance": ["amd1"]}, apply={"poll_interval": 5})
        client = PveClient(config.proxmox)
        cycle = run_cycle(client, None, config)
        targets = {m.vmid: m.target for m in cycle.plan.moves}
        assert targets[100] == "amd2" and targets[101] == "amd2" and targets[102] == "intel1", targets
        notes = "\n".join(cycle.plan.notes)
        assert "guest 100 (vm100) may not go to intel1: cpu: host needs CPU model" in notes and INTEL in notes
        assert "guest 101 (vm101) may not go to intel1: storage nfs-amd is not available on intel1" in notes
        watch = Watch(sim, client)
        report = Executor(client, cycle.rules, config.policy, config.apply, sleep=watch.sleep).apply(cycle.plan, cycle.model)
        assert report.count("succeeded") == len(cycle.plan.moves), report.outcomes
        placement = sim.placement()
        assert placement[100] == "amd2" and placement[101] == "amd2" and placement[102] == "intel1"
        assert watch.problems == []


LOCAL = {
    "name": "local-room", "seed": 3,
    "nodes": [{"name": "n1", "cores": 16, "memory": "64GiB"},
              {"name": "n2", "cores": 32, "memory": "128GiB"},  # empty and big, but its local disk is nearly full
              {"name": "n3", "cores": 16, "memory": "64GiB"}],
    "storages": [{"name": "local-lvm", "type": "lvmthin", "shared": False, "size": "500GiB"},
                 {"name": "ceph", "type": "rbd", "shared": True}],
    "guests": [
        {"vmid": 100, "node": "n1", "cpus": 4, "memory": "8GiB", "disk": "100GiB", "local_disks": True},
        {"vmid": 101, "node": "n2", "cpus": 1, "memory": "1GiB", "disk": "450GiB", "local_disks": True,
         "status": "stopped", "tags": ["plb_ignore"]},  # fills n2's local-lvm: 50 GiB free
        {"vmid": 102, "node": "n3", "cpus": 4, "memory": "8GiB", "storage": "ceph"},
    ],
}


def test_a_guest_moved_with_local_disks_goes_only_where_its_local_storage_has_room(
    make_config: Callable[..., Config]
) -> None:
    with running_simulator(LOCAL, time_scale=0) as sim:
        config = make_config(sim, rules={"maintenance": ["n1"]}, policy={"allow_local_disks": True},
                             apply={"poll_interval": 5})
        client = PveClient(config.proxmox)
        cycle = run_cycle(client, None, config)
        assert {m.vmid: m.target for m in cycle.plan.moves}[100] == "n3", cycle.plan.moves
        assert ("guest 100 (vm100) may not go to n2: local storage local-lvm on n2 has 50.0 GiB free, "
                "its disks there need 100.0 GiB") in cycle.plan.notes, cycle.plan.notes
        watch = Watch(sim, client)
        report = Executor(client, cycle.rules, config.policy, config.apply, sleep=watch.sleep).apply(cycle.plan, cycle.model)
        assert report.count("succeeded") == len(cycle.plan.moves), report.outcomes
        assert sim.placement()[100] == "n3" and watch.problems == []


WESTMERE_FLAGS = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 "
                  "ht syscall nx lm constant_tsc pni pclmulqdq ssse3 cx16 sse4_1 sse4_2 popcnt aes lahf_lm")
NAMED = {
    "name": "named-cpu", "seed": 3,
    "nodes": [{"name": "amd1", "cores": 16, "memory": "64GiB"},  # AMD EPYC 7313: x86-64-v3, no AVX-512
              {"name": "old1", "cores": 32, "memory": "128GiB", "model": "Intel(R) Xeon(R) CPU X5670 @ 2.93GHz",
               "cpu_flags": WESTMERE_FLAGS},  # empty and big, but only x86-64-v2-AES
              {"name": "intel1", "cores": 16, "memory": "64GiB", "model": INTEL},  # Ice Lake: x86-64-v4
              {"name": "intel2", "cores": 16, "memory": "64GiB", "model": INTEL}],
    "storages": [{"name": "ceph", "type": "rbd", "shared": True}],
    "guests": [
        {"vmid": 100, "node": "amd1", "cputype": "x86-64-v3", "cpus": 4, "memory": "8GiB"},
        {"vmid": 101, "node": "intel1", "cputype": "Skylake-Server", "cpus": 4, "memory": "8GiB"},
        {"vmid": 102, "node": "amd1", "cpus": 4, "memory": "8GiB"},
    ],
}


def test_a_named_cpu_model_goes_only_to_nodes_whose_cpu_flags_offer_it_and_the_plan_says_why(
    make_config: Callable[..., Config]
) -> None:
    with running_simulator(NAMED, time_scale=0) as sim:
        config = make_config(sim, rules={"maintenance": ["amd1", "intel1"]}, apply={"poll_interval": 5})
        client = PveClient(config.proxmox)
        cycle = run_cycle(client, None, config)
        targets = {m.vmid: m.target for m in cycle.plan.moves}
        assert targets == {100: "intel2", 101: "intel2", 102: "old1"}, targets
        notes = "\n".join(cycle.plan.notes)
        assert ("guest 100 (vm100) may not go to old1: cpu: x86-64-v3 needs CPU flags abm avx avx2 bmi1 bmi2 f16c fma "
                "movbe xsave, which old1 lacks") in notes, notes
        assert "guest 101 (vm101) may not go to old1: cpu: Skylake-Server needs CPU flags" in notes
        assert "avx512f" in notes.split("guest 101")[1]
        watch = Watch(sim, client)
        report = Executor(client, cycle.rules, config.policy, config.apply, sleep=watch.sleep).apply(cycle.plan, cycle.model)
        assert report.count("succeeded") == 3, report.outcomes
        assert {v: sim.placement()[v] for v in targets} == targets and watch.problems == []
