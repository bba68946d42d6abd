"""Fixtures: a real lars-agent on free loopback ports, and helpers to read
its /metrics and /routes, or to play a silent or fake agent.

The agent binary is $LARS_BUILD_DIR/bin/lars-agent and its plugins
$LARS_BUILD_DIR/plugins; LARS_BUILD_DIR defaults to build-test at the
repository root (a relative value is taken from the repository root too).
"""

import contextlib
import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(HERE.parent))  # the package under test, not an installed one

import lars  # noqa: E402

WORKERS = 3
# Below the kernel's ephemeral range (32768+), so client sockets of
# parallel tests do not take them between our check and the agent's bind.
PORT_LOW, PORT_HIGH = 12000, 32000
READY_TIMEOUT = 5.0
START_ATTEMPTS = 4

# The routes every test uses (libconfig). Each test has modules of its own,
# so tests do not disturb each other's node statistics.
ROUTES = """
    { modid = 1; cmdid = 1; hosts = ( "127.0.0.1:9001", "127.0.0.1:9002" ); },
    { modid = 2; cmdid = 1; hosts = (
        { addr = "127.0.0.1:9001"; weight = 200; zone = "az1"; tags = ( "canary=1" ); },
        "127.0.0.1:9002",
        "[::1]:9003",
        { addr = "192.168.1.1:9004"; draining = true; } ); },
    { modid = 3; cmdid = 1; hosts = (
        "127.0.0.1:9301", "127.0.0.1:9302", "127.0.0.1:9303", "127.0.0.1:9304",
        "127.0.0.1:9305", "127.0.0.1:9306", "127.0.0.1:9307", "127.0.0.1:9308" ); },
    { modid = 4; cmdid = 1; hosts = ( "[::1]:9003" ); },
    { modid = 5; cmdid = 1; hosts = ( "127.0.0.1:9501" ); },
    { modid = 6; cmdid = 1; hosts = ( "127.0.0.1:9601", "[::1]:9602", "192.168.1.1:9603" ); },
    { modid = 7; cmdid = 1; hosts = ( "127.0.0.1:9701" ); },
    { modid = -5; cmdid = 0; hosts = ( "127.0.0.1:9801" ); }
"""

CONF = """
agent: {
    listen = "127.0.0.1";
    udp_base_port = %(base)d;
    workers = %(workers)d;
    plugin_dir = "%(plugins)s";
    cache_dir = "";
    stats_listen = "127.0.0.1:%(stats)d";
    log_level = "info";
};
policy: { plugin = "lb_lars"; };
policies = ( { modid = 3; cmdid = 1; plugin = "lb_ring"; } );
dns: { plugin = "dns_static"; routes = ( %(routes)s ); };
reporter: { plugin = "report_log"; report_interval = 10; path = "-"; };
"""


def build_dir():
    d = Path(os.environ.get("LARS_BUILD_DIR") or "build-test")
    return d if d.is_absolute() else REPO / d


def _binds(kind, port):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", port))
        return s
    except OSError:
        s.close()
        return None


def free_udp_ports(n, keep=False):
    """A base port whose n consecutive UDP ports bind on 127.0.0.1. With
    keep, also the bound sockets (the caller closes them)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(PORT_LOW, PORT_HIGH - n)
        socks = []
        for i in range(n):
            s = _binds(socket.SOCK_DGRAM, base + i)
            if s is None:
                break
            socks.append(s)
        if len(socks) == n:
            if keep:
                return base, socks
            for s in socks:
                s.close()
            return base
        for s in socks:
            s.close()
    raise RuntimeError("no %d free consecutive UDP ports" % n)


def free_tcp_port():
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(PORT_LOW, PORT_HIGH)
        s = _binds(socket.SOCK_STREAM, port)
        if s is not None:
            s.close()
            return port
    raise RuntimeError("no free TCP port")


def _die_with_parent():
    # The agent dies with the test run (PR_SET_PDEATHSIG = 1, SIGKILL):
    # a killed pytest leaves no agent behind holding ports.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


class Agent:
    """A running lars-agent: its ports, a client factory and its stats."""

    def __init__(self, proc, base, stats, workdir):
        self.proc = proc
        self.base = base
        self.stats = stats
        self.workdir = workdir
        self.workers = WORKERS

    def client(self, timeout=0.5):
        return lars.Client(base_port=self.base, workers=self.workers,
                           timeout=timeout)

    def http(self, path):
        url = "http://127.0.0.1:%d%s" % (self.stats, path)
        with urllib.request.urlopen(url, timeout=2) as rsp:
            return rsp.read().decode()

    def metric(self, name, labels=""):
        """The value of one series of /metrics, e.g.
        metric("lars_requests_total", '{type="report"}')."""
        want = name + labels
        for line in self.http("/metrics").splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        raise KeyError(want)

    def nodes(self, modid, cmdid):
        """The module's nodes as /routes shows them: {"ip:port": node}."""
        for m in json.loads(self.http("/routes"))["modules"]:
            if m["modid"] == modid and m["cmdid"] == cmdid:
                return {n["node"]: n for n in m["nodes"]}
        return {}

    def log(self):
        return (self.workdir / "stderr").read_text(errors="replace")


def _ready(agent, deadline):
    """True once every worker answers (any answer: NoSuchModule is one)."""
    with agent.client(timeout=0.2) as c:
        while time.monotonic() < deadline:
            if agent.proc.poll() is not None:
                return False
            try:
                for w in range(WORKERS):
                    # Module 1000000+w lands on each worker once.
                    with contextlib.suppress(lars.NoSuchModule):
                        c.get_route(1000000 + w, 0)
                agent.http("/healthz")
                return True
            except (lars.Error, OSError):
                time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def agent(tmp_path_factory):
    """One agent for the session (tests use modules of their own); stopped
    with SIGTERM at teardown, and it must exit cleanly."""
    bd = build_dir()
    binary = bd / "bin" / "lars-agent"
    if not os.access(binary, os.X_OK):
        pytest.fail("no lars-agent at %s: build the C tree, or set "
                    "LARS_BUILD_DIR to a build directory" % binary,
                    pytrace=False)
    workdir = tmp_path_factory.mktemp("agent")
    ag = None
    for _ in range(START_ATTEMPTS):
        # Ports are free when checked; another process may take them
        # before the agent binds, so a start that fails is retried.
        base, stats = free_udp_ports(WORKERS), free_tcp_port()
        conf = workdir / "agent.conf"
        conf.write_text(CONF % {"base": base, "workers": WORKERS,
                                "plugins": bd / "plugins", "stats": stats,
                                "routes": ROUTES})
        with open(workdir / "stdout", "wb") as out, \
                open(workdir / "stderr", "wb") as err:
            proc = subprocess.Popen([str(binary), "-f", "-c", str(conf)],
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, preexec_fn=_die_with_parent)
        ag = Agent(proc, base, stats, workdir)
        if _ready(ag, time.monotonic() + READY_TIMEOUT):
            break
        proc.kill()
        proc.wait()
        ag = None
    if ag is None:
        pytest.fail("lars-agent did not start; its log:\n" +
                    (workdir / "stderr").read_text(errors="replace"),
                    pytrace=False)
    yield ag
    ag.proc.send_signal(signal.SIGTERM)
    try:
        rc = ag.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        ag.proc.kill()
        ag.proc.wait()
        pytest.fail("lars-agent did not stop within 5 s of SIGTERM")
    assert rc == 0, "lars-agent exited with %d; its log:\n%s" % (rc, ag.log())


@pytest.fixture
def client(agent):
    with agent.client() as c:
        yield c


def wait_for(predicate, timeout=2.0, interval=0.02):
    """Polls predicate() until true or timeout: the agent counts reports
    asynchronously (no answer tells us when)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


@pytest.fixture
def silent_ports():
    """WORKERS consecutive UDP ports bound by us and never answered."""
    base, socks = free_udp_ports(WORKERS, keep=True)
    yield base, socks
    for s in socks:
        s.close()
