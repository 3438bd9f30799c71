"""`--engine ray --ray-address`: a head and a second node process on the loopback address, each with its own
CPU, run one precompute whose agent actors must land on both nodes; the bytes are the local engine's.

Every address passed is 127.0.0.1 (Ray itself advertises it as this machine's own interface address, as
it does for any loopback address). The two `ray start --block` processes are the test's own (their process
groups are ended in teardown), so no other Ray on the machine is touched (`ray stop` would end every Ray of the user).
"""
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port

import au_agent_cli

pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'au-agent[ray]')")

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")


# The cluster's own token (Ray 2.60 authenticates by token): every process of the test passes it, whatever
# ~/.ray/auth_token holds or an earlier ray.init left in the environment.
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_ADDRESS": ""}


def _start(args, log: Path) -> subprocess.Popen:
    return subprocess.Popen([RAY, "start", "--block", "--disable-usage-stats", *args], stdout=log.open("wb"),
                            stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, **AUTH})


def _wait_for_nodes(address: str, n: int, timeout: float = 120) -> None:
    probe = ("import sys, time, ray\n"
             "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
             "deadline = time.time() + float(sys.argv[3])\n"
             "while sum(x['Alive'] for x in ray.nodes()) < int(sys.argv[2]) and time.time() < deadline:\n"
             "    time.sleep(0.5)\n"
             "sys.exit(0 if sum(x['Alive'] for x in ray.nodes()) >= int(sys.argv[2]) else 1)\n")
    run = subprocess.run([sys.executable, "-c", probe, address, str(n), str(timeout)], capture_output=True, text=True,
                         timeout=timeout + 60, env={**os.environ, **AUTH})
    assert run.returncode == 0, f"the {n}-node cluster did not come up: {run.stderr[-2000:]}"


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    port = free_port()
    address = f"127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("ray_logs")
    temp_dir = f"/tmp/ray_au_{port}"  # short: Ray's socket paths must fit in 107 bytes
    procs = []
    try:
        procs.append(_start(["--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "1",
                             "--num-gpus", "0", "--include-dashboard", "false", "--temp-dir", temp_dir,
                             "--resources", json.dumps({"head_node": 1})], logs / "head.log"))
        _wait_for_nodes(address, 1)
        procs.append(_start(["--address", address, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                             "--num-gpus", "0", "--resources", json.dumps({"second_node": 1})], logs / "node.log"))
        _wait_for_nodes(address, 2)
        yield address
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.time() + 10
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_two_node_cluster_writes_the_local_bytes(two_nodes, samples, tmp_path, tiny_adapter, tiny_clip):
    common = ["--openface-dir", str(samples / "openface"), "--clip-model", str(tiny_clip), "--agent",
              str(tiny_adapter), "--max-new-tokens", "6"]
    local = tmp_path / "local"
    assert au_agent_cli.main(["-q", "precompute", *common, "--out", str(local), "--cache-dir",
                              str(tmp_path / "c_local")]) == 0

    out = tmp_path / "ray"
    env = {**os.environ, **AUTH, "PYTHONPATH": str(Path(au_agent_cli.__file__).parents[1])}
    # Two agent actors of one CPU each on a cluster of two one-CPU nodes: one actor on each node.
    run = subprocess.run([sys.executable, "-m", "au_agent_cli", "-q", "precompute", *common, "--out", str(out),
                          "--cache-dir", str(tmp_path / "c_ray"), "--engine", "ray", "--ray-address", two_nodes,
                          "--ray-actors", "2"], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    files = sorted(p.name for p in local.iterdir())
    assert files == sorted(p.name for p in out.iterdir())
    assert len([f for f in files if not f.startswith(".")]) == 2 * 12 + 1  # + the hidden output marker
    assert all((out / name).read_bytes() == (local / name).read_bytes() for name in files)
