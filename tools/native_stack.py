"""The compose topology, run natively: real Valkey, inference, edge replicas, nginx, Prometheus.

Docker has no engine on the development and CI machines, so tests and the
dashboard renderer start the same services as processes on loopback ports,
with configurations rendered from the files compose ships:

- nginx from deploy/nginx/nginx.conf (tools/render_nginx.py),
- Prometheus from prometheus/prometheus.yml: the same jobs and rule file,
  the DNS discovery of edge replicas replaced by their static loopback
  targets, a short scrape interval,
- Redis metrics from the real redis_exporter (Debian's prometheus-redis-exporter,
  or the binary FRAMECAST_REDIS_EXPORTER names); only where none is installed,
  tools/redis_exporter.py, a stand-in with the same metric names (tests say so,
  and fail under CI=true).

Every process runs in its own session and is stopped (SIGTERM, then SIGKILL
after a deadline) by the owner; nothing waits with a bare sleep: readiness is
polled against a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import redis
import yaml  # type: ignore[import-untyped]
from tests.support.procs import Service, http_ok
from tests.support.timing import wait_until

from framecast.bus import Keys
from framecast.dev.embedded import free_port
from tools.render_nginx import NGINX_CONF, render_native

ROOT = Path(__file__).resolve().parents[1]

PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
ALERTS_YML = ROOT / "prometheus" / "alerts.yml"
def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


# --- configurations rendered from the shipped files --------------------------------------------


def render_prometheus(edge_targets: list[str], inference_targets: list[str], redis_targets: list[str],
                      *, scrape_interval: str = "1s", rules: Path = ALERTS_YML) -> dict[str, Any]:
    """prometheus/prometheus.yml with static loopback targets in place of Docker DNS discovery."""
    conf: dict[str, Any] = yaml.safe_load(PROMETHEUS_YML.read_text())
    conf["global"]["scrape_interval"] = scrape_interval
    conf["global"]["evaluation_interval"] = scrape_interval
    conf["global"]["scrape_timeout"] = scrape_interval
    conf["rule_files"] = [str(rules)]
    targets = {"edge": edge_targets, "inference": inference_targets, "redis": redis_targets}
    for job in conf["scrape_configs"]:
        name = job["job_name"]
        if name in targets:
            for key in ("dns_sd_configs", "static_configs"):
                job.pop(key, None)
            job["static_configs"] = [{"targets": targets[name]}]
        elif name == "prometheus":
            job["static_configs"] = [{"targets": ["PROMETHEUS_SELF"]}]
    return conf



def _start_on_a_free_port(current: Callable[[], Service], configure: Callable[[int], None], what: str,
                          ready: Callable[[], bool], timeout: float, attempts: int) -> None:
    """Start a server; when its free port was taken before it bound, configure another port and retry."""
    for attempt in range(attempts):
        proc = current()  # `configure` builds a new Service for the new port
        proc.start()
        try:
            wait_until(what, ready, timeout, alive=proc.dead)
            return
        except RuntimeError:
            if attempt + 1 == attempts or not port_clash(proc):
                raise
            proc.stop()  # closes its log
            configure(free_port())

class PrometheusAPI:
    """Prometheus' HTTP API (queries, targets), for a local process or any URL."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        status, body = http_get(url, timeout=10)
        obj = json.loads(body)
        if status != 200 or obj.get("status") != "success":
            raise RuntimeError(f"prometheus {path} {params}: HTTP {status}: {obj.get('error', body[:300])}")
        return obj["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self.api("query", **params)
        result = data["result"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result)

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step}")
        return list(data["result"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets")["activeTargets"])

    def up(self, job: str) -> dict[str, float]:
        return {r["metric"]["instance"]: float(r["value"][1]) for r in self.query(f'up{{job="{job}"}}')}


def port_clash(proc: Service) -> bool:
    """Whether `proc` died because its port was taken between free_port() and its bind."""
    return proc.dead() is not None and "address already in use" in proc.log_tail().lower()


class LoopbackServer:
    """A server binary on a free loopback port: `_configure(port)` builds its Service, `start()` polls
    `ready_path` and, when the port was taken before the server bound it, configures another and retries."""

    what = "server"
    ready_path = "/"
    ready_timeout = 30.0
    proc: Service
    url: str

    def _configure(self, port: int) -> None:
        raise NotImplementedError

    def start(self, attempts: int = 3) -> Self:
        _start_on_a_free_port(lambda: self.proc, self._configure, f"{self.what} ready",
                              lambda: http_ok(f"{self.url}{self.ready_path}"), self.ready_timeout, attempts)
        return self

    def stop(self) -> None:
        self.proc.stop()


class Prometheus(PrometheusAPI, LoopbackServer):
    """A real Prometheus on a free loopback port, with its TSDB in a temporary directory."""

    what, ready_path, ready_timeout = "prometheus", "/-/ready", 30.0

    def __init__(self, config: dict[str, Any], workdir: Path, binary: str = "prometheus") -> None:
        super().__init__("")
        self.config, self.workdir, self.binary = config, workdir, binary
        self.config_path = workdir / "prometheus.yml"
        self.tsdb = workdir / "tsdb"
        self.tsdb.mkdir(exist_ok=True)
        self._configure(free_port())

    def _configure(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = json.loads(json.dumps(self.config))
        for job in config["scrape_configs"]:
            for sc in job.get("static_configs", []):
                sc["targets"] = [f"127.0.0.1:{port}" if t == "PROMETHEUS_SELF" else t for t in sc["targets"]]
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc = Service("prometheus", python=False, log_dir=self.workdir,
                            args=[self.binary, f"--config.file={self.config_path}",
                                  f"--storage.tsdb.path={self.tsdb}", f"--web.listen-address=127.0.0.1:{port}",
                                  "--log.level=warn", "--storage.tsdb.retention.time=1h"])



class Nginx(LoopbackServer):
    """Real nginx, configured by rendering deploy/nginx/nginx.conf with static upstreams."""

    what, ready_path, ready_timeout = "nginx", "/lb-health", 15.0

    def __init__(self, upstreams: list[str], workdir: Path, binary: str = "nginx") -> None:
        self.upstreams, self.binary = upstreams, binary
        self.workdir = workdir / "nginx-root"
        self.workdir.mkdir(exist_ok=True)
        os.chmod(workdir, 0o755)  # nginx workers (nobody) need to traverse to their temp dirs
        os.chmod(self.workdir, 0o755)
        self.config_path = self.workdir / "nginx.conf"
        self._logdir = workdir
        self._configure(free_port())

    def _configure(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_path.write_text(render_native(NGINX_CONF.read_text(), self.upstreams, f"127.0.0.1:{port}",
                                                  self.workdir))
        self.proc = Service("nginx", python=False, log_dir=self._logdir,
                            args=[self.binary, "-e", "stderr", "-p", str(self.workdir), "-c",
                                  str(self.config_path), "-g", "daemon off;"])

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.binary, "-t", "-e", "stderr", "-p", str(self.workdir), "-c",
                               str(self.config_path)], capture_output=True, text=True, timeout=30)



REDIS_EXPORTER_NAMES = ("prometheus-redis-exporter", "redis_exporter")  # Debian's name, upstream's


def redis_exporter_binary() -> str | None:
    """The real exporter: FRAMECAST_REDIS_EXPORTER if set, else Debian's or upstream's binary on PATH, else None."""
    path = os.environ.get("FRAMECAST_REDIS_EXPORTER", "")
    if path:
        return shutil.which(path) or path
    for name in REDIS_EXPORTER_NAMES:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    return None


def start_redis_exporter(redis_url: str, workdir: Path, *, stand_in: bool | None = None) -> tuple[Service, int]:
    """The real redis_exporter when installed (redis_exporter_binary), else tools/redis_exporter.py (same names).

    stand_in=True forces the stand-in (its own test), False requires the real binary.
    """
    binary = None if stand_in else redis_exporter_binary()
    if stand_in is False and binary is None:
        raise FileNotFoundError(f"none of {REDIS_EXPORTER_NAMES} installed (Debian package prometheus-redis-exporter)")

    def args(port: int) -> list[str]:
        if binary:
            return [binary, f"--redis.addr={redis_url}", f"--web.listen-address=127.0.0.1:{port}"]
        return [sys.executable, str(ROOT / "tools" / "redis_exporter.py"), "--redis-url", redis_url,
                "--port", str(port)]

    return start_on_free_port("redis-exporter", args, "/metrics", workdir, 15)


# --- framecast services -------------------------------------------------------------------------


def start_on_free_port(name: str, args_for: Callable[[int], list[str]], probe_path: str, workdir: Path,
                       timeout: float, attempts: int = 3) -> tuple[Service, int]:
    """Start a service on a free port and poll `probe_path` until it answers 200.

    A port found free can be taken by someone else before the service binds it (an
    outgoing connection's ephemeral port): then the service exits with EADDRINUSE, and
    it is started again on another port.
    """
    for attempt in range(attempts):
        port = free_port()
        proc = Service(name, args_for(port), python=False).start(workdir)

        def answers(port: int = port) -> bool:
            return http_ok(f"http://127.0.0.1:{port}{probe_path}")

        try:
            wait_until(f"{name} {probe_path}", answers, timeout, alive=proc.dead)
            return proc, port
        except RuntimeError:
            if attempt + 1 == attempts or not port_clash(proc):
                raise
            proc.stop()  # closes its log
    raise AssertionError("unreachable")


def start_inference(redis_url: str, workdir: Path, *, name: str = "inference", stream: str = "demo",
                    extra: list[str] | None = None) -> tuple[Service, int]:
    def args(port: int) -> list[str]:
        return [sys.executable, "-m", "framecast.inference", "--redis-url", redis_url, "--stream", stream,
                "--metrics-port", str(port), *(extra or [])]

    proc, port = start_on_free_port(name, args, "/metrics", workdir, 60)
    # ready = the stream is announced (meta key), else viewers are refused with 4004 "unknown stream"
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        wait_until(f"stream {stream} announced", lambda: bool(client.exists(Keys().meta(stream))), 90,
                   alive=proc.dead)
    except BaseException:
        proc.stop()
        raise
    finally:
        client.close()
    return proc, port


def start_edge(redis_url: str, workdir: Path, *, name: str = "edge",
               extra: list[str] | None = None) -> tuple[Service, int]:
    def args(port: int) -> list[str]:
        return [sys.executable, "-m", "framecast.edge", "--redis-url", redis_url, "--host", "127.0.0.1",
                "--port", str(port), "--edge-id", name, *(extra or [])]

    return start_on_free_port(name, args, "/readyz", workdir, 30)


@dataclass
class NativeStack:
    """Valkey + inference + N edges (+ nginx) + redis exporter + Prometheus, all on loopback."""

    edges: int = 1
    with_nginx: bool = False
    inference_args: list[str] = field(default_factory=list)
    edge_args: list[str] = field(default_factory=list)
    scrape_interval: str = "1s"
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="framecast-stack-")))
    redis: Any = None
    inference: Service | None = None
    inference_port: int = 0
    edge_procs: list[Service] = field(default_factory=list)
    edge_ports: list[int] = field(default_factory=list)
    exporter: Service | None = None
    exporter_port: int = 0
    exporter_binary: str | None = None  # the real redis_exporter's path; None: the stand-in ran
    nginx: Nginx | None = None
    prometheus: Prometheus | None = None

    @property
    def edge_targets(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.edge_ports]

    def start(self) -> NativeStack:
        from framecast.dev.embedded import EmbeddedRedis

        try:
            self.redis = EmbeddedRedis(maxmemory="256mb").start()
            self.exporter_binary = redis_exporter_binary()
            self.exporter, self.exporter_port = start_redis_exporter(self.redis.url, self.workdir)
            self.inference, self.inference_port = start_inference(self.redis.url, self.workdir,
                                                                  extra=self.inference_args)
            for i in range(self.edges):
                proc, port = start_edge(self.redis.url, self.workdir, name=f"edge{i + 1}", extra=self.edge_args)
                self.edge_procs.append(proc)
                self.edge_ports.append(port)
            if self.with_nginx:
                self.nginx = Nginx(self.edge_targets, self.workdir).start()
            conf = render_prometheus(self.edge_targets, [f"127.0.0.1:{self.inference_port}"],
                                     [f"127.0.0.1:{self.exporter_port}"], scrape_interval=self.scrape_interval)
            self.prometheus = Prometheus(conf, self.workdir).start()
            # every target scraped once before traffic starts, so counters have a zero sample to rise from
            prom = self.prometheus
            wait_until("first scrape of every target",
                       lambda: (t := prom.targets()) != [] and all(x["health"] == "up" for x in t), 20)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for part in (self.prometheus, self.nginx):
            if part is not None:
                part.stop()
        for proc in [*self.edge_procs, self.inference, self.exporter]:
            if proc is not None:
                proc.stop()
        if self.redis is not None:
            self.redis.stop()

    def logs(self) -> str:
        procs = [p for p in (self.inference, *self.edge_procs, self.exporter) if p is not None]
        if self.nginx:
            procs.append(self.nginx.proc)
        if self.prometheus:
            procs.append(self.prometheus.proc)
        return "\n".join(f"--- {p.name} ---\n{p.log_tail()}" for p in procs)

    def cleanup(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> NativeStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.cleanup()
