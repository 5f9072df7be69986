"""A run launched the way a platform team launches work: `ray job submit` to a two-node
cluster started with `ray start` (token authentication on, the dashboard up), its log in
PostgreSQL, read back from this machine."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from baton import open_store
from baton.replay import verify
from tests.cli.test_cli import baton
from tests.cli.test_operations import until

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
SPEC = '''
import time
import baton


@baton.handler(capabilities=["echo"], replicas=2, num_cpus=0.5)
def echo(assignment: baton.Assignment) -> dict:
    time.sleep(0.05)
    return {"i": assignment.inputs["i"]}


spec = baton.Spec(goal="echo on a cluster", handlers=[echo],
                  tasks=[baton.Task(id=f"t{i}", capability="echo", inputs={"i": i})
                         for i in range(20)])
'''

SLOW_SPEC = SPEC.replace("time.sleep(0.05)", "time.sleep(0.5)").replace("range(20)",
                                                                        "range(60)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LoopbackCluster:
    """Two Ray nodes on this machine, started by `ray start` as an operator would; every
    process they start carries a marker in its environment, so they can all be stopped
    without touching any other Ray on the machine."""

    def __init__(self) -> None:
        self.temp = tempfile.mkdtemp(prefix="/tmp/bj")  # short: Ray's sockets live here
        self.marker = f"BATON_TEST_CLUSTER={secrets.token_hex(6)}"
        self.gcs, self.dashboard = free_port(), free_port()
        self.env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
                    "RAY_TMPDIR": self.temp, "RAY_AUTH_MODE": "token",
                    "RAY_AUTH_TOKEN": secrets.token_hex(16), "RAY_ADDRESS": "",
                    "RAY_USAGE_STATS_ENABLED": "0"}
        key, value = self.marker.split("=")
        self.env[key] = value

    def ray(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ray"), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)

    @staticmethod
    def own_ports() -> list[str]:
        """Ports of a node's agents: left to their defaults, nodes on one machine race for
        them, and a node whose job agent lost the race cannot run a job's driver."""
        return [f"--dashboard-agent-listen-port={free_port()}",
                f"--dashboard-agent-grpc-port={free_port()}",
                f"--runtime-env-agent-port={free_port()}",
                f"--metrics-export-port={free_port()}"]

    def start(self) -> None:
        head = self.ray("start", "--head", f"--port={self.gcs}", "--num-cpus=0",
                        *self.own_ports(),
                        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                        f"--dashboard-port={self.dashboard}",
                        f"--ray-client-server-port={free_port()}", "--disable-usage-stats")
        assert head.returncode == 0, head.stderr[-2000:]
        node = self.ray("start", f"--address=127.0.0.1:{self.gcs}", "--num-cpus=2",
                        *self.own_ports(),                        "--disable-usage-stats")
        assert node.returncode == 0, node.stderr[-2000:]

    def submit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`ray job submit` to the cluster, once its nodes' job agents are up (the
        dashboard refuses jobs for a few seconds after `ray start`)."""
        for _ in range(60):
            done = self.ray("job", "submit", f"--address=http://127.0.0.1:{self.dashboard}",
                            *args, timeout=300)
            if "No available agent to submit job" not in done.stderr:
                return done
            time.sleep(1)
        return done

    def run_job(self, spec: str, where: Path, store: str,
                run_id: str) -> subprocess.CompletedProcess[str]:
        """`ray job submit -- baton run spec.py` with the spec's text in a working dir of
        its own and the store's URL in the job's environment, as the README shows."""
        work = where / "job"
        work.mkdir()
        (work / "spec.py").write_text(spec)
        submitted = self.submit(
            f"--working-dir={work}",
            f"--runtime-env-json={json.dumps({'env_vars': {'BATON_STORE': store}})}",
            "--", "baton", "run", "spec.py", "--run-id", run_id)
        assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
        return submitted

    def job_ended(self, job: str, seconds: float = 120) -> str:
        """How a submitted job ended (succeeded, failed or stopped), waiting for it."""
        address = f"--address=http://127.0.0.1:{self.dashboard}"
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            status = self.ray("job", "status", address, job).stdout
            ended = re.search(rf"Job '{job}' (succeeded|failed|stopped)", status)
            if ended:
                return ended.group(1)
            time.sleep(1)
        return "still running"

    def add_node(self, *args: str) -> str:
        """Start one more node (its processes marked apart from the rest, so it can be
        taken away alone); the marker that stops it."""
        own = f"BATON_TEST_NODE={secrets.token_hex(6)}"
        key, value = own.split("=")
        started = subprocess.run(
            [str(BIN / "ray"), "start", f"--address=127.0.0.1:{self.gcs}",
             "--disable-usage-stats", *self.own_ports(), *args], env={**self.env, key: value},
            capture_output=True, text=True, timeout=180, check=False)
        assert started.returncode == 0, started.stderr[-2000:]
        return own

    def stop(self, marker_text: str = "") -> None:
        """Kill every process of the cluster, or of the one node `marker_text` marks."""
        marker = (marker_text or self.marker).encode() + b"\0"
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if marker in Path(f"/proc/{pid}/environ").read_bytes():
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                continue


@pytest.fixture
def cluster() -> Iterator[LoopbackCluster]:
    started = LoopbackCluster()
    try:
        started.start()
        yield started
    finally:
        started.stop()


@pytest.mark.slow
def test_a_run_submitted_with_ray_job_submit_completes_and_verifies(
    cluster: LoopbackCluster, postgres_url: str, tmp_path: Path
) -> None:
    """`ray job submit -- baton run spec.py` on a two-node cluster, the store's URL in the
    job's environment: the job succeeds without printing the password, the run is in
    PostgreSQL, and `baton status`, `show` and a replay from here find it complete."""
    submitted = cluster.run_job(SPEC, tmp_path, postgres_url, "submitted")
    password = str(urlparse(postgres_url).password)
    assert password not in submitted.stdout + submitted.stderr
    assert "20 accepted of 20" in submitted.stdout

    code, out, _ = baton("status", "submitted", "--store", postgres_url, "--json")
    assert code == 0 and json.loads(out)["status"] == "completed"
    code, out, _ = baton("show", "submitted", "--store", postgres_url, "--json")
    assert code == 0 and len(json.loads(out)["output"]) == 20
    with open_store(postgres_url) as store:
        assert verify(store, "submitted").reproduced


@pytest.mark.slow
def test_a_detached_run_outlives_the_node_that_launched_it(
    cluster: LoopbackCluster, postgres_url: str, tmp_path: Path
) -> None:
    """A job on a third node launches a detached run on PostgreSQL and ends; that node is
    then taken away, with whatever of the run Ray had placed on it (often the coordinator,
    which asks for no CPU: a new one then takes the run up from the log on another node).
    The run completes on the nodes left, and its log verifies."""
    launcher = cluster.add_node("--num-cpus=0", '--resources={"launcher": 1}')
    work = tmp_path / "job"
    work.mkdir()
    (work / "spec.py").write_text(SLOW_SPEC)
    submitted = cluster.submit(
        f"--working-dir={work}", '--entrypoint-resources={"launcher": 1}', "--no-wait",
        f"--runtime-env-json={json.dumps({'env_vars': {'BATON_STORE': postgres_url}})}",
        "--", "baton", "run", "spec.py", "--run-id", "outlives", "--detach")
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    [job] = re.findall(r"Job '(\w+)' submitted", submitted.stdout)
    assert cluster.job_ended(job) == "succeeded"  # the launch is over; the run is not

    with open_store(postgres_url) as store:
        until(lambda: store.state("outlives").accepted >= 3, seconds=60)
        assert store.state("outlives").status == "running"
        cluster.stop(launcher)
        code, out, _ = baton("wait", "outlives", "--timeout", "180", "--store",
                             postgres_url, "--json")
        assert code == 0, out
        assert json.loads(out)["status"] == "completed"
        assert verify(store, "outlives").reproduced


@pytest.mark.slow
def test_a_client_without_the_token_is_told_to_set_ray_auth_mode(
    cluster: LoopbackCluster, store_url: str, tmp_path: Path
) -> None:
    """`baton run --address` to a cluster with token authentication, from a shell without
    RAY_AUTH_MODE=token: exit 2 and one line that names RAY_AUTH_MODE=token."""
    (tmp_path / "spec.py").write_text(SPEC)
    env = {key: value for key, value in cluster.env.items()
           if key not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    done = subprocess.run(
        [str(BIN / "baton"), "run", str(tmp_path / "spec.py"), "--store", store_url,
         "--address", f"127.0.0.1:{cluster.gcs}"],
        env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "set RAY_AUTH_MODE=token" in line


@pytest.mark.slow
def test_baton_bench_quick_measures_a_two_node_cluster(
    cluster: LoopbackCluster, tmp_path: Path
) -> None:
    """`baton bench --quick --address` on two nodes: both nodes and their CPUs named, a
    row for 1 and for 2 replicas with Baton's and plain Ray's rates, and the chart drawn."""
    chart = tmp_path / "bench.png"
    done = subprocess.run(
        [str(BIN / "baton"), "bench", "--quick", "--address", f"127.0.0.1:{cluster.gcs}",
         "--json", "--chart", str(chart)],
        env=cluster.env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["cluster"] == {"nodes": 2, "cpus": 2.0}
    assert [row["replicas"] for row in report["rows"]] == [1, 2]
    for row in report["rows"]:
        assert row["baton"]["assignments"] == row["ray"]["assignments"] == 300
        assert row["baton"]["assignments_per_s"] > 0 and row["ray"]["assignments_per_s"] > 0
        assert row["events"] >= 3 * 300  # dispatched, received, validated
    assert chart.read_bytes().startswith(b"\x89PNG")


FRESH_SPEC = '''
import os
import sys

import baton


@baton.handler(capabilities=["where"], replicas=2, num_cpus=0.5)
def where(assignment: baton.Assignment) -> dict:
    return {"python": sys.executable, "baton": os.path.dirname(baton.__file__)}


spec = baton.Spec(goal="on a fresh node", handlers=[where],
                  tasks=[baton.Task(id=f"t{i}", capability="where") for i in range(8)])
'''


def fresh_node_venv(where: Path) -> Path:
    """What the README's cluster section has a node do: Baton's wheel (as `make wheel`
    builds it) installed with the cluster extra into an empty virtual environment; its
    dependencies held to this environment's versions, so the node's Ray is the head's."""
    wheels = where / "dist"
    subprocess.run([str(BIN / "pip"), "wheel", "--quiet", "--no-deps", "--wheel-dir",
                    str(wheels), str(REPO)], check=True, capture_output=True, timeout=600)
    [wheel] = wheels.glob("baton_ray-*.whl")
    pins = where / "constraints.txt"
    frozen = subprocess.run([str(BIN / "pip"), "freeze", "--exclude-editable"],
                            check=True, capture_output=True, text=True).stdout
    pins.write_text(frozen)
    venv = where / "node"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--constraint", str(pins),
         f"{wheel}[cluster]"], capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


@pytest.mark.slow
def test_the_readme_cluster_section_works_on_a_fresh_node(
    postgres_url: str, tmp_path: Path
) -> None:
    """As the README says: a node with only Baton's wheel installed joins the cluster;
    the store's password is in a password file on the nodes, so the job's environment
    holds a URL without it; `ray job submit -- baton run` completes, its workers running
    on the fresh node from the wheel, and `ray job list` shows no password."""
    venv = fresh_node_venv(tmp_path)
    parts = urlparse(postgres_url)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"{parts.hostname}:{parts.port}:{parts.path.lstrip('/')}:"
                        f"{parts.username}:{parts.password}\n")
    passfile.chmod(0o600)
    bare = parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()
    cluster = LoopbackCluster()
    cluster.env["PGPASSFILE"] = str(passfile)
    cluster.env.pop("PGPASSWORD", None)
    try:
        head = cluster.ray("start", "--head", f"--port={cluster.gcs}", "--num-cpus=0",
                           *cluster.own_ports(), "--include-dashboard=true",
                           "--dashboard-host=127.0.0.1", f"--dashboard-port={cluster.dashboard}",
                           f"--ray-client-server-port={free_port()}", "--disable-usage-stats")
        assert head.returncode == 0, head.stderr[-2000:]
        node_env = {**cluster.env, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
        node = subprocess.run(
            [str(venv / "bin" / "ray"), "start", f"--address=127.0.0.1:{cluster.gcs}",
             "--num-cpus=2", *cluster.own_ports(), "--disable-usage-stats"],
            env=node_env, capture_output=True, text=True, timeout=180, check=False)
        assert node.returncode == 0, node.stderr[-2000:]
        cluster.run_job(FRESH_SPEC, tmp_path, bare, "fresh")
        listed = cluster.ray("job", "list", f"--address=http://127.0.0.1:{cluster.dashboard}")
        assert str(parts.password) not in listed.stdout + listed.stderr
        assert "BATON_STORE" in listed.stdout  # the URL is there, without the password
    finally:
        cluster.stop()
    code, out, _ = baton("show", "fresh", "--store", postgres_url, "--json")
    assert code == 0, out
    outputs = json.loads(out)["output"]
    assert len(outputs) == 8
    assert {str(Path(o["python"]).parent) for o in outputs.values()} == {str(venv / "bin")}
    assert all(o["baton"].startswith(str(venv)) for o in outputs.values())
    with open_store(postgres_url) as store:
        assert verify(store, "fresh").reproduced
