from typing import Any

import pytest

from planner.policy import GIB, Headroom, Policy
from pveapi.errors import ConfigError


def test_an_empty_block_gives_the_documented_defaults() -> None:
    assert Policy.from_mapping(None, "policy") == Policy()
    assert Policy().stop_below == Policy().trigger / 2


def test_values_sizes_and_per_node_headroom_are_read() -> None:
    policy = Policy.from_mapping(
        {
            "cpu_weight": 0.7,
            "memory_weight": 0.3,
            "trigger": 0.1,
            "target_imbalance": 0.02,
            "max_moves": 5,
            "migration_bandwidth": "1GiB",
            "memory_headroom": {"fraction": 0.15, "bytes": "4GiB"},
            "node_headroom": {"pve1": "16GiB", "pve2": {"fraction": 0.3}},
            "allow_local_disks": True,
        },
        "policy",
    )
    assert policy.cpu_weight == 0.7 and policy.max_moves == 5 and policy.stop_below == 0.02
    assert policy.migration_bandwidth == GIB
    assert policy.memory_headroom == Headroom(0.15, 4 * GIB)
    assert policy.headroom_for("pve1") == Headroom(0.0, 16 * GIB)
    # unset parts of an override come from the cluster-wide headroom
    assert policy.headroom_for("pve2") == Headroom(0.3, 4 * GIB)
    assert policy.headroom_for("pve3") == policy.memory_headroom
    assert policy.allow_local_disks is True


def test_sizes_are_binary_and_gb_is_decimal() -> None:
    def bandwidth(text: str | int) -> int:
        return Policy.from_mapping({"migration_bandwidth": text}, "policy").migration_bandwidth

    assert bandwidth("8G") == bandwidth("8GiB") == bandwidth("8gi") == 8 * GIB
    assert bandwidth("512M") == 512 * 2**20 and bandwidth("1.5K") == 1536
    assert bandwidth("8GB") == 8 * 10**9 and bandwidth("125MB") == 125_000_000
    assert bandwidth(1000) == 1000


def test_headroom_reserves_the_larger_of_fraction_and_bytes() -> None:
    assert Headroom(0.1, 8 * GIB).reserved(64 * GIB) == 8 * GIB
    assert Headroom(0.25, 8 * GIB).reserved(64 * GIB) == 16 * GIB


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"triger": 0.1}, "policy: unknown key(s) triger; allowed:"),
        ({"trigger": 2}, "policy.trigger: expected a number from 0 to 1, got 2"),
        ({"trigger": "high"}, "policy.trigger: expected a number from 0 to 1, got 'high'"),
        ({"max_moves": -1}, "policy.max_moves: expected a whole number from 0 to 100000, got -1"),
        ({"max_moves": True}, "policy.max_moves: expected a whole number from 0 to 100000, got True"),
        ({"migration_bandwidth": "fast"}, "policy.migration_bandwidth: expected a size such as 8GiB"),
        ({"migration_bandwidth": 0}, "policy.migration_bandwidth: expected a size per second above zero"),
        ({"allow_local_disks": "yes"}, "policy.allow_local_disks: expected true or false, got 'yes'"),
        ({"cpu_weight": 0, "memory_weight": 0}, "policy: cpu_weight and memory_weight cannot both be 0"),
        ({"trigger": 0.1, "target_imbalance": 0.2}, "policy.target_imbalance: must not be above trigger"),
        ({"node_headroom": {"pve1": {"fraction": 0.95}}}, "policy.node_headroom.pve1.fraction: expected a number from 0 to 0.9"),
        ({"memory_headroom": {"percent": 5}}, "policy.memory_headroom: unknown key(s) percent"),
        ("aggressive", "policy: expected a mapping, got str"),
        ({"min_gain": float("nan")}, "policy.min_gain: expected a number from 0 to 1, got nan"),
        ({"memory_weight": float("inf")}, "policy.memory_weight: expected a number from 0 to 1, got inf"),
        ({"migration_bandwidth": float("nan")}, "policy.migration_bandwidth: expected a size"),
        ({"node_headroom": {"pve1": "1e400G"}}, "policy.node_headroom.pve1: expected a size"),
        ({"pressure_weight": -1}, "policy.pressure_weight: expected a number from 0 to 10, got -1"),
        ({"pressure_weight": float("nan")}, "policy.pressure_weight: expected a number from 0 to 10, got nan"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Policy.from_mapping(data, "policy")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_search_effort_and_cost_budgets_are_read_and_bad_ones_refused() -> None:
    policy = Policy.from_mapping({"search": "thorough", "max_copy_per_node": "64GiB", "max_inflow": 2}, "policy")
    assert (policy.search, policy.max_copy_per_node, policy.max_inflow) == ("thorough", 64 * 1024**3, 2)
    with pytest.raises(ConfigError, match=r"policy.search: expected one of off, quick, thorough, got 'hard'"):
        Policy.from_mapping({"search": "hard"}, "policy")
    with pytest.raises(ConfigError, match=r"policy.max_inflow: expected a whole number from 1 to 100000, got 0"):
        Policy.from_mapping({"max_inflow": 0}, "policy")


def test_overrides_are_read_as_the_block_is_and_checked_against_the_rest_of_the_policy() -> None:
    # A what-if plan's trigger below the configured target_imbalance would start balancing at a
    # figure it is told to stop above: refused, as the same block in the config is.
    policy = Policy.from_mapping({"trigger": 0.2, "target_imbalance": 0.1, "memory_headroom": "8G"}, "policy")
    with pytest.raises(ConfigError, match=r"^plan overrides.trigger: must not be below target_imbalance \(0.1\), got 0.05$"):
        policy.overridden({"trigger": 0.05}, "plan overrides")
    with pytest.raises(ConfigError, match="^plan overrides.max_moves: expected a whole number from 0 to 100000"):
        policy.overridden({"max_moves": 10**8}, "plan overrides")
    # What is not overridden stays as configured.
    lower = policy.overridden({"max_moves": 3, "trigger": 0.15}, "plan overrides")
    assert (lower.max_moves, lower.trigger, lower.target_imbalance) == (3, 0.15, 0.1)
    assert lower.memory_headroom == Headroom(fraction=0.0, bytes=8 * GIB)
