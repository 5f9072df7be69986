"""`baton bench`: Baton beside plain Ray on the same work, and its mistakes refused."""

from __future__ import annotations

import json

import pytest

from baton import open_store
from baton.replay import verify
from tests.cli.test_cli import baton


@pytest.mark.parametrize("args, says", [
    (["--replicas", "0,2"], "each count must be at least 1"),
    (["--replicas", "two"], "counts separated by commas"),
    (["--workload", "mapreduce"], "choose one of echo, dag, chaos"),
])
def test_bad_bench_options_are_refused_before_anything_starts(args: list[str],
                                                              says: str) -> None:
    """Exit 2 and one line saying what to fix; no cluster is started for it."""
    code, _, err = baton("bench", *args)
    assert code == 2 and says in err, err


@pytest.mark.slow
@pytest.mark.usefixtures("ray_cluster")
def test_bench_runs_the_chaos_workload_beside_plain_ray(store_url: str) -> None:
    """`baton bench --workload chaos --json`: a row per replica count with both rates,
    latency percentiles in order, and the seeded crashes and wrong answers retried on
    both sides (more calls than tasks); the runs kept in --store verify."""
    code, out, err = baton("bench", "--workload", "chaos", "--tasks", "200",
                           "--replicas", "1,2", "--seed", "7", "--store", store_url, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["cluster"]["cpus"] == 2 and report["options"]["workload"] == "chaos"
    assert [row["replicas"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        for side in ("baton", "ray"):
            m = row[side]
            assert m["assignments_per_s"] > 0 and m["p50_s"] <= m["p95_s"] <= m["p99_s"]
            assert m["assignments"] > 200  # some first attempts crashed or answered wrong
        assert row["baton"]["assignments"] == row["ray"]["assignments"]  # the same seed
        assert row["ratio"] == pytest.approx(
            row["baton"]["assignments_per_s"] / row["ray"]["assignments_per_s"])
        with open_store(store_url) as store:
            assert store.state(row["run_id"]).accepted == 200
            assert verify(store, row["run_id"]).reproduced
