"""Real multi-process Redis topologies for the failover tests: a 3-master 3-replica Cluster, and Sentinel.

Every server is Debian's `redis-server` (or `redis-sentinel`) on a loopback
port, started through `framecast.dev.embedded.EmbeddedRedis` (the one way tests
start a Redis process); the cluster is formed by `redis-cli --cluster create`,
as an operator would. Readiness is polled against deadlines.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.crc import key_slot

from framecast.dev.embedded import EmbeddedRedis, free_port
from tests.deploy.conftest import require_binary
from tests.support.timing import scaled, wait_until

# a node is marked failing after this long unanswered; its replica then takes over (~2 s on loopback)
NODE_TIMEOUT_MS = 1000


def debian_binary(name: str) -> str:
    """Path of a Debian Redis tool, or a skip naming its package (a failure under CI=true, tests/conftest.py)."""
    return require_binary(name, "redis-sentinel" if name == "redis-sentinel" else
                          "redis-tools" if name.startswith("redis-cli") else "redis-server")


@dataclass
class RedisClusterNodes:
    """Six `redis-server --cluster-enabled yes` processes joined as 3 masters with one replica each."""

    masters: int = 3
    replicas: int = 1
    nodes: list[EmbeddedRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisClusterNodes:
        try:
            return self._start()
        except BaseException:
            self.stop()  # a half-formed cluster must not outlive a failed start
            raise

    def _start(self) -> RedisClusterNodes:
        binary = debian_binary("redis-server")
        cli = debian_binary("redis-cli")
        for _ in range(self.masters * (1 + self.replicas)):
            # cluster-require-full-coverage no: while one master fails over, the others keep serving
            # the cluster bus port is given: the default (port + 10000) is past 65535 for high ephemeral ports
            self.nodes.append(EmbeddedRedis(binary=binary, maxmemory="64mb", extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(free_port()),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--cluster-require-full-coverage", "no"]).start())
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=scaled(60))
        wait_until("cluster_state:ok with every replica attached", self.healthy, 30)
        return self

    def client(self, node: EmbeddedRedis) -> redis.Redis:
        return redis.Redis(port=node.port, socket_timeout=2)

    def healthy(self) -> bool:
        """Every node says cluster_state:ok, and each master has its replicas."""
        if any(self.client(n).cluster("info").get("cluster_state") != "ok" for n in self.nodes):
            return False
        shards = self._slots()
        return len({m for _, _, m, _ in shards}) == self.masters and all(len(r) >= self.replicas
                                                                         for _, _, _, r in shards)

    def _slots(self) -> list[tuple[int, int, int, list[int]]]:
        """(first slot, last slot, master port, replica ports) as a live node sees them."""
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                try:
                    raw = self.client(n).execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
                except (redis.RedisError, OSError):
                    continue
                return [(int(r[0]), int(r[1]), int(r[2][1]), [int(x[1]) for x in r[3:]]) for r in raw]
        raise AssertionError("no cluster node answers")

    def master_ports(self) -> list[int]:
        return sorted({m for _, _, m, _ in self._slots()})

    def master_of_key(self, key: str) -> int:
        slot = key_slot(key.encode())
        for first, last, master, _ in self._slots():
            if first <= slot <= last:
                return master
        raise AssertionError(f"slot {slot} of {key} has no master")

    def node(self, port: int) -> EmbeddedRedis:
        return next(n for n in self.nodes if n.port == port)

    def kill_master(self, port: int) -> None:
        self.node(port).kill()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@dataclass
class SentinelGroup:
    """A master, a replica of it and three `redis-sentinel` processes watching it (quorum 2)."""

    service: str = "framecast"
    master: EmbeddedRedis | None = None
    replica: EmbeddedRedis | None = None
    sentinel_ports: list[int] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workdir: str = ""
    down_after_ms: int = 1000

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports) + f"/{self.service}"

    def start(self) -> SentinelGroup:
        try:
            return self._start()
        except BaseException:
            self.stop()  # no server or sentinel outlives a failed start
            raise

    def _start(self) -> SentinelGroup:
        binary = debian_binary("redis-server")
        sentinel = debian_binary("redis-sentinel")
        self.master = EmbeddedRedis(binary=binary, maxmemory="64mb").start()
        self.replica = EmbeddedRedis(binary=binary, maxmemory="64mb",
                                     extra_args=["--replicaof", "127.0.0.1", str(self.master.port)]).start()
        self.workdir = tempfile.mkdtemp(prefix="framecast-sentinel-")
        for i in range(3):
            port = free_port()
            conf = Path(self.workdir) / f"sentinel-{i}.conf"  # a sentinel rewrites its config: one file each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.workdir}\nlogfile {self.workdir}/sentinel-{i}.log\n"
                f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.service} 10000\n"
                f"sentinel parallel-syncs {self.service} 1\n")
            self.sentinels.append(subprocess.Popen([sentinel, str(conf)], stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL, start_new_session=True))
            self.sentinel_ports.append(port)
        wait_until("three sentinels that know the master, its replica and each other", self.ready, 30)
        return self

    def _ask(self, port: int, *args: str) -> object:
        return redis.Redis(port=port, socket_timeout=2).execute_command(*args)  # type: ignore[no-untyped-call]

    def ready(self) -> bool:
        assert self.master is not None
        for port in self.sentinel_ports:
            state = redis.Redis(port=port, socket_timeout=2).sentinel_master(self.service)
            assert isinstance(state, dict)
            if int(str(state["num-slaves"])) < 1 or int(str(state["num-other-sentinels"])) < 2:
                return False
        return self.replica is not None and \
            redis.Redis(port=self.replica.port).info("replication").get("master_link_status") == "up"

    def master_port(self) -> int:
        """The master's port as the first answering sentinel names it."""
        for port in self.sentinel_ports:
            try:
                host_port = self._ask(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
                return int(host_port[1])  # type: ignore[index]
            except (redis.RedisError, OSError):
                continue
        raise AssertionError("no sentinel answers")

    def stop(self) -> None:
        for p in self.sentinels:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for server in (self.replica, self.master):
            if server is not None:
                server.stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
