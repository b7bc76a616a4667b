"""`make run`: the whole stack on one machine, on embedded defaults.

Starts an embedded Valkey (unless FRAMECAST_REDIS_URL names a Redis to use),
the inference service and one edge, as child processes in their own process
groups; prints where to look once the stream is live (a progress line while the
model loads); and on Ctrl-C / SIGTERM, or when any child dies, stops everything
it started so that no process is left behind. Killed itself (SIGKILL, its
terminal gone), it takes its children along: each gets SIGTERM from the kernel
when the launcher dies (Linux parent-death signal).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field

from framecast import constants as C
from framecast.dev.embedded import EmbeddedRedis, parent_death_preexec

STOP_TIMEOUT_S = 8.0
PROGRESS_EVERY_S = 5.0


@dataclass
class Stack:
    """The processes of one local stack, stopped together."""

    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    redis: EmbeddedRedis | None = None

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, env=env, start_new_session=True, preexec_fn=parent_death_preexec())
        self.children.append((name, proc))
        return proc

    def first_exited(self) -> tuple[str, int] | None:
        for name, proc in self.children:
            code = proc.poll()
            if code is not None:
                return name, code
        return None

    def stop(self) -> None:
        for _, proc in self.children:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for _, proc in self.children:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        if self.redis is not None:
            self.redis.stop()


def wait_http_ok(url: str, timeout: float, alive: Stack) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive.first_exited() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def stream_live(base: str, stream: str, token: str = "") -> bool:
    """Whether the edge lists `stream` as live (its source publishes)."""
    request = urllib.request.Request(f"{base}/streams", headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            body = json.loads(resp.read())
    except (OSError, ValueError):
        return False
    return any(s.get("stream") == stream and s.get("live") for s in body.get("streams", []))


def wait_stream_live(base: str, stream: str, alive: Stack, token: str = "") -> bool:
    """Wait (no time limit: a model may take minutes to load) until `stream` is live; False if a child died."""
    started = time.monotonic()
    next_line = started
    while not stream_live(base, stream, token):
        if alive.first_exited() is not None:
            return False
        now = time.monotonic()
        if now >= next_line:
            print(f"framecast: edge up at {base}/; waiting for the inference service to publish {stream!r} "
                  f"(loading the model) ... {now - started:.0f} s", flush=True)
            next_line = now + PROGRESS_EVERY_S
        time.sleep(0.2)
    return True


def _terminate(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="framecast-run", description=__doc__.splitlines()[0],
                                epilog="Service settings come from FRAMECAST_* variables (see README).")
    p.add_argument("--edge-host", default=os.environ.get("FRAMECAST_HOST", C.DEFAULT_EDGE_HOST))
    p.add_argument("--edge-port", type=int, default=int(os.environ.get("FRAMECAST_PORT", C.DEFAULT_EDGE_PORT)))
    p.add_argument("--inference-metrics-port", type=int, default=C.DEFAULT_INFERENCE_METRICS_PORT)
    p.add_argument("--stream", default=os.environ.get("FRAMECAST_STREAM", C.DEFAULT_STREAM))
    p.add_argument("--redis-maxmemory", default="256mb")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    stack = Stack()
    env = dict(os.environ)
    code = 0
    try:
        if not env.get("FRAMECAST_REDIS_URL"):
            stack.redis = EmbeddedRedis(maxmemory=args.redis_maxmemory, die_with_parent=True).start()
            env["FRAMECAST_REDIS_URL"] = stack.redis.url
            print(f"framecast: embedded Valkey at {stack.redis.url} (maxmemory {args.redis_maxmemory}, noeviction)",
                  flush=True)
        else:
            print(f"framecast: using Redis at {env['FRAMECAST_REDIS_URL']}", flush=True)
        py = sys.executable
        stack.spawn("inference", [py, "-m", "framecast.inference", "--stream", args.stream,
                                  "--metrics-port", str(args.inference_metrics_port)], env)
        stack.spawn("edge", [py, "-m", "framecast.edge", "--host", args.edge_host, "--port", str(args.edge_port)],
                    env)
        base = f"http://{args.edge_host}:{args.edge_port}"
        if not wait_http_ok(f"{base}/healthz", 60, stack):
            exited = stack.first_exited()
            print(f"framecast: start-up failed ({exited[0]} exited with {exited[1]})" if exited
                  else "framecast: edge did not become healthy within 60 s", file=sys.stderr)
            return 1
        token = ""
        if env.get("FRAMECAST_AUTH_SECRET"):  # /streams wants a token when auth is on
            from framecast.edge.auth import make_token

            token = make_token(env["FRAMECAST_AUTH_SECRET"], "*", ttl_s=3600, subject="framecast-run")
        if not wait_stream_live(base, args.stream, stack, token):
            exited = stack.first_exited()
            print(f"framecast: start-up failed ({exited[0]} exited with {exited[1]})" if exited
                  else "framecast: start-up failed", file=sys.stderr)
            return 1
        print(f"\n  viewer          {base}/?stream={args.stream}\n"
              f"  frames (ws)     ws://{args.edge_host}:{args.edge_port}/ws/{args.stream}\n"
              f"  edge metrics    {base}/metrics\n"
              f"  infer. metrics  http://127.0.0.1:{args.inference_metrics_port}/metrics\n"
              f"  CLI viewer      .venv/bin/framecast watch {base} --stream {args.stream}\n\n"
              "  Ctrl-C stops everything.\n", flush=True)
        while True:
            exited = stack.first_exited()
            if exited is not None:
                print(f"framecast: {exited[0]} exited with code {exited[1]}; stopping the stack", file=sys.stderr)
                code = 1
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\nframecast: stopping", flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
