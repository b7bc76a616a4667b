"""Scale-out, natively: Valkey + inference + 3 edge replicas behind real nginx + Prometheus.

The compose topology (`docker compose up --scale edge=3`) as processes:
viewers connect through nginx (least_conn) and spread over the replicas;
each replica runs its own bus readers; Prometheus scrapes all three
directly. Then one replica is SIGKILLed: only its viewers drop, and they
reconnect through nginx to the survivors while the others never notice.
Last, a rolling restart: SIGTERM drains a second replica (its viewers get
1012 and reconnect through nginx) and every viewer ends on the last one.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from tools.native_stack import NativeStack
from tools.viewers import ViewerPool, ViewerState

from tests.deploy.conftest import replicas_behind_nginx
from tests.support.metrics import metric, scrape
from tests.support.timing import scaled, wait_until

VIEWERS = 12


def _viewers_by_instance(stack: NativeStack) -> dict[str, float]:
    assert stack.prometheus is not None
    rows = stack.prometheus.query('sum by (instance) (framecast_edge_viewers{job="edge"})')
    return {r["metric"]["instance"]: float(r["value"][1]) for r in rows}


@pytest.mark.timeout(scaled(240))
def test_three_replicas_behind_nginx_survive_losing_one(prometheus_bin: str, nginx_bin: str) -> None:
    with replicas_behind_nginx(3) as stack:
        assert stack.nginx is not None and stack.prometheus is not None
        prom = stack.prometheus
        names = [p.name for p in stack.edge_procs]
        with ViewerPool(f"ws://127.0.0.1:{stack.nginx.port}/ws/demo", VIEWERS) as pool:
            wait_until("all viewers receiving", lambda: len(pool.connected()) == VIEWERS, 40)

            # --- spread: nginx least_conn puts viewers on every replica ----------------------
            spread = Counter(s.server for s in pool.states)
            assert set(spread) == set(names), spread
            assert min(spread.values()) >= VIEWERS // 3 - 2, f"uneven spread {spread}"
            # the replicas' own gauges agree with what the viewers were told in hello
            for name, port in zip(names, stack.edge_ports, strict=True):
                exposition = scrape(f"http://127.0.0.1:{port}")
                assert metric(exposition, "framecast_edge_viewers") == spread[name]
                assert metric(exposition, "framecast_edge_bus_readers") >= 1, f"{name} runs no bus reader"
            # --- Prometheus scrapes every replica itself, and sees the same spread -----------
            wait_until("prometheus sees 3 edges up",
                       lambda: prom.up("edge") == {t: 1.0 for t in stack.edge_targets}, 20)
            wait_until("prometheus viewer gauges match",
                       lambda: sum(_viewers_by_instance(stack).values()) == VIEWERS, 20)
            per_instance = _viewers_by_instance(stack)
            assert all(per_instance[t] == spread[n] for t, n in zip(stack.edge_targets, names, strict=True))

            # --- SIGKILL one replica ----------------------------------------------------------
            victim = max(spread, key=lambda n: spread[n])
            index = names.index(victim)
            on_victim = [s for s in pool.states if s.server == victim]
            others = [s for s in pool.states if s.server != victim]
            frames_before = {s.index: s.frames for s in others}
            stack.edge_procs[index].kill()
            t_kill = time.monotonic()

            def moved(s: ViewerState) -> bool:
                return s.connects >= 2 and s.server in names and s.server != victim and s.frames_since_connect > 0

            wait_until("the victim's viewers reconnect through nginx to the survivors",
                       lambda: all(moved(s) for s in on_victim), 30)
            reconnect_s = time.monotonic() - t_kill
            # the others never noticed: one connection each, still receiving
            wait_until("the other viewers keep receiving",
                       lambda: all(s.frames > frames_before[s.index] + 5 for s in others), 20)
            assert all(s.connects == 1 for s in others), [(s.index, s.connects, s.last_error) for s in others]
            assert all(s.servers[-1] != victim for s in on_victim)

            # --- Prometheus: the victim is down, the survivors carry every viewer -------------
            victim_target = stack.edge_targets[index]
            wait_until("prometheus sees the victim down", lambda: prom.up("edge").get(victim_target) == 0.0, 20)
            survivors = [t for t in stack.edge_targets if t != victim_target]
            wait_until("survivors carry all viewers",
                       lambda: sum(v for t, v in _viewers_by_instance(stack).items() if t in survivors) == VIEWERS,
                       20)

            # --- a rolling restart: SIGTERM drains a survivor, its viewers move to the last one ---
            drained = next(n for n in names if n != victim)
            d_index = names.index(drained)
            on_drained = [s for s in pool.states if s.server == drained]
            assert on_drained
            t_term = time.monotonic()
            stack.edge_procs[d_index].terminate()
            last = next(n for n in names if n not in (victim, drained))

            def drained_over(s: ViewerState) -> bool:
                return s.server == last and s.frames_since_connect > 0

            wait_until("the drained replica's viewers move to the last one",
                       lambda: all(drained_over(s) for s in on_drained), 30)
            drain_s = time.monotonic() - t_term
            assert stack.edge_procs[d_index].wait(scaled(15)) == 0, "a drained edge exits 0"
            assert sum(1 for s in pool.states if s.server == last and s.frames_since_connect > 0) == VIEWERS
            print(f"spread {dict(spread)}; killed {victim} with {len(on_victim)} viewers: all reconnected within "
                  f"{reconnect_s:.2f}s; drained {drained} (SIGTERM) with {len(on_drained)} viewers: all on {last} "
                  f"within {drain_s:.2f}s")
