"""The README's compose commands on a real Docker engine, as a user runs them (`make compose-test`).

scripts/compose_test.sh starts a private dockerd, makes stand-in base images
tagged as .env pins them and a wheelhouse for offline builds, then runs this
module (tests/deploy/conftest.py collects it only then: FRAMECAST_COMPOSE_TEST=1).

In a copy of the tree (so the shared working tree is never written), the
README's commands run one by one: the Grafana secret, `up -d --build` with the
project's own Dockerfiles, `--scale edge=3`, the GPU override (its `config`:
there is no NVIDIA runtime here), `down -v`. Grafana stays out through its
profile (`COMPOSE_PROFILES=`); its dashboard is proven by running every panel
query against the compose Prometheus. Builds take the wheels with
`PIP_NO_INDEX=1`; host ports are free ones (`FRAMECAST_HTTP_PORT`,
`PROMETHEUS_PORT`), as a user with port 8000 taken would set them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from tools.native_stack import ALERTS_YML, PrometheusAPI, http_get
from tools.render_dashboard import QueryResult, evaluate, plot, summary
from tools.viewers import ViewerPool

from framecast.dev.embedded import free_port
from tests.deploy.conftest import ROOT
from tests.deploy.test_compose import README_COMMANDS, readme_compose_commands
from tests.support.browser import headless_chromium, open_page
from tests.support.timing import scaled, wait_until

ARTIFACTS = ROOT / "tests" / "artifacts"
PROJECT = "framecast"  # the copy's folder name, so Compose's project name
SERVICES = {"redis", "redis-exporter", "inference", "edge", "lb", "prometheus"}  # Grafana: profile left out
JOBS = {"edge", "inference", "redis", "prometheus"}
FAILOVER_LIMIT_S = 3.0
# alerts a planned scale-down must never fire
AVAILABILITY_ALERTS = ("FramecastEdgeReplicaDown", "FramecastNoEdgeReplicas", "FramecastInferenceDown",
                       "FramecastNoFramesPublished", "FramecastRedisDown", "FramecastRedisExporterDown")


def log_time(what: str, seconds: float) -> None:
    """A step's time, in the times file compose_test.sh prints at the end."""
    line = f"compose-test:   {what:<40} {seconds:6.1f} s"
    print(line)
    times = os.environ.get("FRAMECAST_COMPOSE_TIMES")
    if times:
        with open(times, "a") as f:
            f.write(line + "\n")


@dataclass
class Stack:
    project_dir: Path
    env: dict[str, str]
    http_port: int
    prometheus: PrometheusAPI
    start: float
    figures: dict[str, Any] = field(default_factory=dict)
    down_done: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws/demo"

    def sh(self, command: str, timeout: float = 900, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A README command (or another compose command) in the project folder, as a user's shell runs it."""
        done = subprocess.run(["bash", "-c", compose_cli(command)], cwd=self.project_dir, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"`{command}` exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        return done

    def containers(self, service: str | None = None, *, all_states: bool = False) -> list[dict[str, Any]]:
        """`docker inspect` of the project's containers (of one service)."""
        args = ["docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={PROJECT}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        if all_states:
            args.append("-a")
        ids = subprocess.run(args, env=self.env, text=True, capture_output=True, check=True, timeout=60).stdout.split()
        if not ids:
            return []
        out = subprocess.run(["docker", "inspect", *ids], env=self.env, text=True, capture_output=True, check=True,
                             timeout=60).stdout
        return list(json.loads(out))

    def health(self) -> dict[str, list[str]]:
        """service -> each container's health (or state, without a healthcheck)."""
        states: dict[str, list[str]] = {}
        for c in self.containers():
            service = c["Config"]["Labels"]["com.docker.compose.service"]
            health = c["State"].get("Health")
            states.setdefault(service, []).append(health["Status"] if health else c["State"]["Status"])
        return states

    def logs(self) -> str:
        return self.sh("docker compose logs --no-color --tail 40", check=False).stdout[-20000:]


def compose_cli(command: str) -> str:
    """The command for the Compose this run has: `docker compose` (v2) as written, or v1's `docker-compose`."""
    if os.environ.get("FRAMECAST_COMPOSE", "docker compose") == "docker-compose":
        return command.replace("docker compose ", "docker-compose ")
    return command


def copy_tree(dest: Path) -> None:
    """The working tree's files (tracked and untracked, not ignored), as a user's checkout has them.

    FRAMECAST_COMPOSE_TREE=HEAD (or another commit) takes that commit instead: a tree shared with
    others' unfinished edits still tests a consistent state.
    """
    rev = os.environ.get("FRAMECAST_COMPOSE_TREE", "worktree")
    if rev != "worktree":
        archive = subprocess.run(["git", "archive", "--format=tar", rev], cwd=ROOT, capture_output=True, check=True,
                                 timeout=120).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True, timeout=120)
        return
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True, timeout=60).stdout.decode().split("\0")
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def add_wheels(project_dir: Path) -> None:
    wheels = Path(os.environ.get("FRAMECAST_COMPOSE_WHEELS", "/var/cache/framecast-compose/wheels"))
    found = sorted(wheels.glob("*.whl"))
    assert found, f"no wheels in {wheels}: scripts/compose_test.sh downloads them"
    for wheel in found:
        target = project_dir / "docker" / "wheels" / wheel.name
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)


def readme_steps() -> list[str]:
    """The README's commands, checked to be the ones this test knows how to run."""
    commands = readme_compose_commands()
    assert commands == README_COMMANDS, "the README's compose commands changed: update README_COMMANDS and this test"
    return commands


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    steps = readme_steps()
    project_dir = tmp_path_factory.mktemp("compose") / PROJECT
    project_dir.mkdir()
    copy_tree(project_dir)
    add_wheels(project_dir)
    http_port, prom_port = free_port(), free_port()
    env = {**os.environ, "COMPOSE_PROFILES": "", "PIP_NO_INDEX": "1", "FRAMECAST_HTTP_PORT": str(http_port),
           "PROMETHEUS_PORT": str(prom_port), "GRAFANA_PORT": str(free_port())}
    s = Stack(project_dir, env, http_port, PrometheusAPI(f"http://127.0.0.1:{prom_port}"), time.time())
    # an earlier run that died keeps its containers in the cached data-root: start clean
    s.sh("docker compose down -v --remove-orphans", check=False)
    try:
        secret, up = steps[0], steps[1]
        s.sh(secret)
        assert (project_dir / "grafana" / "admin-password").stat().st_size >= 16
        t = time.monotonic()
        s.sh(up, timeout=scaled(900))
        log_time(f"`{up}`", time.monotonic() - t)
        # every service has a healthcheck (redis-exporter's is in docker-compose.yml, the framecast
        # images carry theirs): healthy, not merely running
        t = time.monotonic()
        wait_until("every service healthy", lambda: set(s.health()) == SERVICES and all(
            v == "healthy" for vs in s.health().values() for v in vs), 180, interval=1.0)
        log_time("up -> every service healthy", time.monotonic() - t)
        s.start = time.time()
        yield s
    except BaseException:
        print(s.logs())
        raise
    finally:
        if not s.down_done:
            s.sh("docker compose down -v --remove-orphans", check=False, timeout=300)


@pytest.fixture(scope="module")
def viewers(stack: Stack) -> Iterator[tuple[ViewerPool, ...]]:
    """Acking viewers through the load balancer for the whole run: JPEG (auto, low) and H.264 (auto)."""
    with ViewerPool(stack.ws_url, 3) as auto, ViewerPool(stack.ws_url, 2, tier="low") as low, \
            ViewerPool(stack.ws_url, 2, codecs=("h264", "jpeg")) as video:
        pools = (auto, low, video)
        t = time.monotonic()
        wait_until("7 viewers receiving frames through the load balancer",
                   lambda: sum(len(p.connected()) for p in pools) == 7, 120)
        log_time("7 viewers receiving", time.monotonic() - t)
        yield pools


def test_every_service_is_healthy(stack: Stack) -> None:
    states = stack.health()
    assert set(states) == SERVICES, f"grafana must be left out by its profile: {sorted(states)}"
    assert all(v == "healthy" for vs in states.values() for v in vs), states
    assert len(states["edge"]) == 1


def test_the_edge_image_runs_the_compiled_hot_path(stack: Stack) -> None:
    out = stack.sh("docker compose exec -T edge python -c "
                   "'from framecast.edge import hotpath; print(hotpath.describe())'").stdout
    assert out.startswith("compiled (mypyc, 6 modules)"), out
    assert "edge hot path: compiled" in stack.sh("docker compose logs --no-color edge").stdout


def test_http_through_the_load_balancer(stack: Stack) -> None:
    for path in ("/", "/healthz", "/readyz", "/streams"):
        status, _ = http_get(stack.url + path, timeout=5)
        assert status == 200, path
    wait_until("the demo stream live", lambda: any(s["stream"] == "demo" and s["live"] for s in json.loads(
        http_get(stack.url + "/streams")[1])["streams"]), 60)
    status, body = http_get(stack.url + "/snapshot/demo.jpg", timeout=5)
    assert status == 200 and body[:2] == b"\xff\xd8"
    assert http_get(stack.url + "/metrics")[0] == 404  # Prometheus scrapes replicas, never the LB


def test_frames_reach_acking_viewers(stack: Stack, viewers: tuple[ViewerPool, ...]) -> None:
    before = sum(p.total_frames() for p in viewers)
    wait_until("more frames", lambda: sum(p.total_frames() for p in viewers) > before + 50, 30)
    # acks reach the edge: its glass-to-glass histogram counts them
    wait_until("acks counted by the edge", lambda: float(stack.prometheus.query(
        "sum(framecast_edge_glass_to_glass_seconds_count)")[0]["value"][1]) > 0, 60, interval=1.0)
    assert all(s.last_error == "" or s.frames > 0 for p in viewers for s in p.states)


def test_page_in_chromium(stack: Stack, viewers: tuple[ViewerPool, ...]) -> None:
    with headless_chromium(required=True) as browser:
        page, errors = open_page(browser, stack.url + "/")
        page.wait_for_function("() => { const s = window.framecastStats; return s && s.framesDrawn >= 10; }",
                               timeout=scaled(60) * 1000)
        stats = page.evaluate("window.framecastStats")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "compose-viewer.png"))
    assert stats["state"] == "live" and stats["stream"] == "demo", stats
    assert not errors, errors


def test_prometheus_targets_and_rules(stack: Stack) -> None:
    def jobs_up() -> bool:
        targets = stack.prometheus.targets()
        return {t["labels"]["job"] for t in targets if t["health"] == "up"} == JOBS and all(
            t["health"] == "up" for t in targets)

    wait_until("every job's targets up", jobs_up, 60, interval=1.0)
    rules = [r for g in stack.prometheus.api("rules")["groups"] for r in g["rules"]]
    shipped = {r["alert"] for g in yaml.safe_load(ALERTS_YML.read_text())["groups"] for r in g["rules"]}
    assert {r["name"] for r in rules} == shipped
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]


def test_real_redis_exporter_series(stack: Stack) -> None:
    def value(expr: str) -> float:
        result = stack.prometheus.query(expr)
        return float(result[0]["value"][1]) if result else float("nan")

    wait_until("redis_up == 1", lambda: value("redis_up") == 1, 60, interval=1.0)
    assert value("redis_memory_max_bytes") == 512 * 1024 * 1024  # REDIS_MAXMEMORY in .env
    assert value("redis_connected_clients") >= 3  # inference, edge, exporter
    assert value('count(redis_commands_total{cmd="xadd"})') == 1  # the bus: frames XADDed
    build = stack.prometheus.query("redis_exporter_build_info")
    assert build and build[0]["metric"].get("version"), build


def _edge_names(stack: Stack) -> dict[str, str]:
    """Running edge containers: hostname -> container id."""
    return {c["Config"]["Hostname"]: c["Id"] for c in stack.containers("edge") if c["State"]["Running"]}


def _replica(server: str) -> str:
    """The container hostname in an edge's name (`host-pid`, its hello's `server`)."""
    return server.rsplit("-", 1)[0]


def test_scale_out_failover_and_planned_scale_down(stack: Stack, viewers: tuple[ViewerPool, ...]) -> None:
    scale = README_COMMANDS[2]
    t = time.monotonic()
    stack.sh(scale, timeout=scaled(300))
    command_s = time.monotonic() - t
    wait_until("3 edge targets up", lambda: sum(v == 1 for v in stack.prometheus.up("edge").values()) == 3, 60,
               interval=0.5)
    targets_s = time.monotonic() - t
    edges = _edge_names(stack)
    assert len(edges) == 3
    # new viewers: least_conn sends them to the new replicas (the first one keeps the earlier viewers)
    with ViewerPool(stack.ws_url, 6) as more:
        pools = (*viewers, more)

        def per_replica() -> dict[str, int]:
            return {name: sum(1 for p in pools for s in p.connected() if _replica(s.server) == name) for name in edges}

        try:
            wait_until("viewers on every replica", lambda: min(per_replica().values()) > 0, 60)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: {per_replica()}, servers seen {[s.server for p in pools for s in p.states]}"
                                 ) from None
        every_s = time.monotonic() - t
        spread = sorted(per_replica().values())
        log_time(f"`{scale}` command", command_s)
        log_time("  -> 3 edge targets up in Prometheus", targets_s)
        log_time("  -> viewers on every replica", every_s)
        stack.figures["scale_out"] = {"command_s": round(command_s, 1), "three_targets_up_s": round(targets_s, 1),
                                      "viewers_on_every_replica_s": round(every_s, 1), "viewers_per_replica": spread}

        # failover: `docker stop` one replica (SIGTERM: it drains, its viewers get 1012 and reconnect)
        receiving = [s for p in pools for s in p.connected()]
        victim = max(edges, key=lambda n: sum(1 for p in pools for s in p.connected() if _replica(s.server) == n))
        moved = [s for p in pools for s in p.connected() if _replica(s.server) == victim]
        assert moved
        t = time.monotonic()
        stop = subprocess.Popen(["docker", "stop", edges[victim]], env=stack.env, stdout=subprocess.DEVNULL)
        try:
            wait_until("the stopped replica's viewers receiving from the others",
                       lambda: all(_replica(s.server) != victim and s.frames_since_connect > 0 for s in moved), 30,
                       interval=0.05)
            failover_s = time.monotonic() - t
        finally:
            stop.wait(60)
        lost: list[tuple[int, list[str], int, str]] = []

        def none_lost() -> bool:
            now = {id(c) for p in pools for c in p.connected()}
            lost[:] = [(s.index, s.servers, s.frames_since_connect, s.last_error) for s in receiving
                       if id(s) not in now]
            return not lost

        try:
            wait_until("every viewer receiving again", none_lost, 30)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}: not receiving now: {lost}") from None
        log_time(f"failover of {len(moved)} viewers after `docker stop`", failover_s)
        stack.figures["failover"] = {"viewers": len(moved), "seconds": round(failover_s, 2)}
        assert failover_s <= FAILOVER_LIMIT_S

    # a planned scale-down: no availability alert may fire (FramecastEdgeReplicaDown waits 30 s; DNS drops
    # a removed replica within 5 s). Load alerts (latency, lag, drops) may go pending on a busy 2-core
    # machine: they are recorded, not judged here
    down_from = time.time()
    t = time.monotonic()
    stack.sh("docker compose up -d --scale edge=1", timeout=scaled(300))
    wait_until("1 edge target", lambda: len(stack.prometheus.up("edge")) == 1, 60, interval=0.5)
    log_time("`up -d --scale edge=1` -> 1 edge target", time.monotonic() - t)
    # the alert's `for` is 30 s: watch past it (a window to observe, not a readiness wait)
    wait_until("the alert's `for` elapsed", lambda: time.time() - down_from > 40, 60, interval=1.0)
    availability = "|".join(AVAILABILITY_ALERTS)
    fired = stack.prometheus.query_range(f'ALERTS{{alertstate="firing", alertname=~"{availability}"}}', down_from,
                                         time.time(), 1.0)
    assert not fired, [f["metric"] for f in fired]
    wait_until("viewers back to receiving", lambda: sum(len(p.connected()) for p in viewers) == 7, 30)
    stack.figures["alert_states_seen"] = sorted({f'{r["metric"]["alertname"]} {r["metric"]["alertstate"]}'
                                                 for r in stack.prometheus.query_range("ALERTS", stack.start,
                                                                                       time.time(), 1.0)})


def test_every_dashboard_query_returns_data(stack: Stack, viewers: tuple[ViewerPool, ...]) -> None:
    """Grafana is not run: each panel query, with the dashboard's variables, against the compose Prometheus."""
    results: list[QueryResult] = []

    def every_panel_has_data() -> bool:
        nonlocal results
        results = evaluate(stack.prometheus, stack.start, time.time(), step=1.0)
        return all(r.finite_points() > 0 for r in results)

    try:
        wait_until("every panel query returning data", every_panel_has_data, 60, interval=2.0)
    except TimeoutError:
        pass  # the assertion below names the empty ones
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    plot(results, ARTIFACTS / "compose-dashboard.png", title="framecast on docker compose (queries run by Prometheus)")
    (ARTIFACTS / "compose-dashboard.json").write_text(json.dumps(summary(results), indent=1))
    empty = [f"{r.panel} [{r.ref}]: {r.expr}" for r in results if r.finite_points() == 0]
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
    assert len(results) >= 40
    tiers = {k for r in results if r.panel.startswith("Delivered FPS by tier") for k in r.last_values()}
    assert any(t.startswith("video") for t in tiers), tiers  # the H.264 viewers' tiers


def test_gpu_override_command_resolves(stack: Stack) -> None:
    """No NVIDIA runtime here: the README's GPU command is resolved (`config`), not started."""
    gpu = README_COMMANDS[3]
    assert gpu.endswith(" up -d --build")
    done = stack.sh(gpu.removesuffix(" up -d --build") + " config")
    inference = yaml.safe_load(done.stdout)["services"]["inference"]
    assert inference["build"]["args"]["TORCH_INDEX_URL"].startswith("https://download.pytorch.org/whl/cu")


def test_down_removes_every_container_network_and_volume(stack: Stack) -> None:
    down = README_COMMANDS[-1]
    t = time.monotonic()
    stack.sh(down, timeout=scaled(300))
    stack.down_done = True
    log_time(f"`{down}`", time.monotonic() - t)
    label = f"label=com.docker.compose.project={PROJECT}"
    for kind in (["ps", "-a", "-q"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
        left = subprocess.run(["docker", *kind, "--filter", label], env=stack.env, text=True, capture_output=True,
                              check=True, timeout=60).stdout.split()
        assert not left, f"docker {' '.join(kind)}: {left}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "compose-figures.json").write_text(json.dumps(stack.figures, indent=1))
    print(json.dumps(stack.figures))
