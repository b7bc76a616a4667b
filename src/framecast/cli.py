"""`framecast` command line: watch a stream live, probe what a link carries, mint a viewer token.

    framecast watch http://127.0.0.1:8000 --stream demo --duration 10 --json
    framecast probe http://127.0.0.1:8000 --token "$FRAMECAST_TOKEN"
    framecast streams http://127.0.0.1:8000
    FRAMECAST_AUTH_SECRET=... framecast token --stream demo --ttl 3600

Bad input (URL, unreachable edge, unknown stream) prints one line on stderr and
exits non-zero: 2 for usage errors, 1 for everything else. Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import framecast
from framecast import constants as C

try:
    from framecast.client import (
        ClientError,
        ProbeResult,
        ProtocolError,
        ReceivedFrame,
        StatsSnapshot,
        Subscription,
        list_streams,
        probe,
    )
except ImportError as _exc:  # `pip install framecast` without the client extra: main() says which extra
    _CLIENT_MISSING: ImportError | None = _exc
else:
    _CLIENT_MISSING = None

DEFAULT_URL = C.DEFAULT_EDGE_URL

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="framecast", description="Watch framecast streams, measure links, mint viewer tokens.")
    parser.add_argument("--version", action="version", version=f"framecast {framecast.__version__}")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info",
                        help="client log messages on stderr (reconnects at info; default info)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    watch = sub.add_parser("watch", help="show a stream's live FPS, latency, bandwidth and drops",
                           description="Subscribe to a stream and show live FPS, latency percentiles, kbit/s, "
                                       "tier and drops. Latency = arrival - capture time: it assumes this "
                                       "host's clock agrees with the inference host's (same host, or NTP).")
    watch.add_argument("url", nargs="?", default=DEFAULT_URL,
                       help=f"edge URL (http:// or ws://; default {DEFAULT_URL})")
    watch.add_argument("--stream", default=None, help=f"stream name (default {C.DEFAULT_STREAM})")
    watch.add_argument("--client-id", default="", help="identifies this viewer in the edge's logs")
    watch.add_argument("--tier", default="auto", help="tier name to pin, or 'auto' (default)")
    watch.add_argument("--max-fps", type=_positive, default=None, help="cap the frame rate the edge sends")
    watch.add_argument("--codecs", default="jpeg",
                       help="codecs to accept, best first: 'jpeg' (default) or 'h264,jpeg' for video tiers")
    watch.add_argument("--duration", type=_positive, default=None, help="stop after this many seconds")
    watch.add_argument("--frames", type=_count, default=None, help="stop after this many frames")
    watch.add_argument("--save", metavar="DIR", default=None,
                       help="write every JPEG into DIR (H.264 tiers: appended to DIR/STREAM-TIER.h264)")
    watch.add_argument("--json", action="store_true", help="print one JSON summary at the end (nothing else)")
    watch.add_argument("--no-reconnect", action="store_true", help="exit when the connection closes")
    watch.add_argument("--wait", type=float, default=5.0, metavar="SECONDS",
                       help="wait this long for a stream that is starting (the edge does not know it yet, or "
                            "is not up yet) before giving up (default 5; 0: fail at once)")
    watch.add_argument("--window", type=_positive, default=5.0, help="seconds of history for live stats (5)")
    watch.add_argument("--token", default=os.environ.get("FRAMECAST_TOKEN", ""),
                       help="viewer token (default: $FRAMECAST_TOKEN); sent in the hello, never in the URL")

    st = sub.add_parser("streams", help="list the streams an edge serves",
                        description="List the edge's streams (GET /streams): tiers, FPS, live or stalled, viewers.")
    st.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"edge URL (default {DEFAULT_URL})")
    st.add_argument("--json", action="store_true", help="print the edge's list as JSON")
    st.add_argument("--token", default=os.environ.get("FRAMECAST_TOKEN", ""),
                    help="bearer token when the edge has auth on (default: $FRAMECAST_TOKEN)")

    pr = sub.add_parser("probe", help="measure RTT and throughput; say which tier and FPS the link carries",
                        description="Bandwidth test: RTT from small HTTP requests, each tier's delivered FPS "
                                    "with per-frame acks, and a burst of snapshot downloads for raw throughput.")
    pr.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"edge URL (default {DEFAULT_URL})")
    pr.add_argument("--stream", default=None, help=f"stream name (default {C.DEFAULT_STREAM})")
    pr.add_argument("--seconds-per-tier", type=_positive, default=2.0, help="measure each tier this long (2)")
    pr.add_argument("--burst-seconds", type=float, default=1.5, help="snapshot burst length, 0 to skip (1.5)")
    pr.add_argument("--json", action="store_true", help="print the result as JSON")
    pr.add_argument("--token", default=os.environ.get("FRAMECAST_TOKEN", ""),
                    help="viewer token when the edge has auth on (default: $FRAMECAST_TOKEN)")
    pr.add_argument("--codecs", default="h264,jpeg",
                    help="codecs whose tiers to measure, best first (default 'h264,jpeg', as browsers get; "
                         "'jpeg' for a JPEG-only viewer)")
    pr.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                    help="a line on stderr per step while measuring (auto: when stderr is a terminal)")

    tk = sub.add_parser("token", help="mint a viewer token from the edge's secret ($FRAMECAST_AUTH_SECRET)",
                        description="Print a viewer token (HS256 JWT) signed with the secret the edge is configured "
                                    "with: FRAMECAST_AUTH_SECRET in the environment, as for the edge.")
    tk.add_argument("--stream", action="append", default=None,
                    help="a stream the token may watch (repeat for several; default: every stream)")
    tk.add_argument("--ttl", type=_positive, default=3600.0, help="seconds until the token expires (3600)")
    tk.add_argument("--subject", default="viewer", help="who the token is for (its `sub` claim; default viewer)")
    return parser


# -- watch -------------------------------------------------------------------

def _summary(sub: Subscription, saved: int, last: ReceivedFrame | None) -> dict[str, Any]:
    s = sub.stats.summary(time.monotonic())
    return {
        "url": sub.url,
        "stream": sub.stream,
        "client_id": sub.client_id,
        "server": sub.hello.server if sub.hello else "",
        "tier": sub.tier,
        "codec": last.codec if last else None,
        "codecs": list(sub.codecs),
        "tiers": [t.name for t in sub.tiers],
        "width": last.width if last else None,
        "height": last.height if last else None,
        **s.to_dict(),
        "reconnects": sub.reconnects,
        "tier_changes": sub.tier_changes,
        "acks_sent": sub.acks_sent,
        "state": sub.state,
        "close_code": sub.close_code,
        "saved": saved,
    }


def _append(path: str, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def _status_line(sub: Subscription, snap: StatsSnapshot, elapsed: float) -> str:
    return (f"t={elapsed:6.1f}s fps={snap.fps:5.1f} latency p50={snap.latency_p50_ms:6.1f} "
            f"p95={snap.latency_p95_ms:6.1f} ms {snap.kbit_s:8.0f} kbit/s tier={sub.tier or '-'} "
            f"frames={snap.frames} dropped={snap.dropped} state={sub.state}")


def _rich_table(sub: Subscription, last: ReceivedFrame | None, elapsed: float) -> Any:
    from rich.table import Table

    snap = sub.stats.snapshot(time.monotonic())
    state_style = {"live": "green", "stalled": "yellow", "reconnecting": "yellow", "draining": "yellow"}
    table = Table(title=f"framecast · {sub.stream} · {sub.url}", title_justify="left", show_header=False,
                  box=None, padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("state", f"[{state_style.get(sub.state, 'red')}]{sub.state}[/]")
    table.add_row("fps", f"{snap.fps:.1f}")
    table.add_row("latency p50 / p95 / p99", f"{snap.latency_p50_ms:.1f} / {snap.latency_p95_ms:.1f} / "
                                             f"{snap.latency_p99_ms:.1f} ms")
    table.add_row("bandwidth", f"{snap.kbit_s:,.0f} kbit/s")
    detail = "" if last is None else (f" ({last.width}x{last.height} q{last.quality})" if last.codec == "jpeg"
                                      else f" ({last.width}x{last.height} {last.codec})")
    table.add_row("tier", f"{sub.tier or '-'}{detail}")
    table.add_row("frames / dropped", f"{snap.frames} / {snap.dropped}")
    table.add_row("reconnects", str(sub.reconnects))
    table.add_row("elapsed", f"{elapsed:.1f} s (stats over last {snap.window_s:g} s)")
    return table


async def _watch(args: argparse.Namespace) -> int:
    save_dir = args.save
    if save_dir:
        try:
            os.makedirs(save_dir, exist_ok=True)
        except OSError as exc:
            raise ClientError(f"cannot create --save directory {save_dir!r}: {exc.strerror}") from None
    sub = Subscription(args.url, stream=args.stream, tier=args.tier, client_id=args.client_id,
                       max_fps=args.max_fps or 0.0, token=args.token, reconnect=not args.no_reconnect,
                       stats_window_s=args.window, codecs=args.codecs, start_wait_s=max(0.0, args.wait))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    saved = 0
    last: ReceivedFrame | None = None
    started = time.monotonic()

    async def consume() -> None:
        nonlocal saved, last
        async for frame in sub:
            last = frame
            if save_dir:
                if frame.codec == "jpeg":
                    path = os.path.join(save_dir, f"{sub.stream}-{frame.frame_id:010d}.jpg")
                    write = frame.save
                else:  # Annex B access units concatenate into a stream ffplay/ffmpeg can read
                    path = os.path.join(save_dir, f"{sub.stream}-{frame.tier_name}.{frame.codec}")
                    write = functools.partial(_append, data=frame.payload)
                try:
                    await asyncio.to_thread(write, path)
                except OSError as exc:
                    raise ClientError(f"cannot write {path}: {exc.strerror or exc}") from None
                saved += 1
            if args.frames and sub.stats.frames >= args.frames:
                return

    async def display() -> None:
        if sys.stdout.isatty():
            from rich.live import Live

            with Live(_rich_table(sub, last, 0.0), refresh_per_second=4, transient=False) as live:
                while True:
                    await asyncio.sleep(0.25)
                    live.update(_rich_table(sub, last, time.monotonic() - started))
        else:
            while True:
                await asyncio.sleep(1.0)
                snap = sub.stats.snapshot(time.monotonic())
                print(_status_line(sub, snap, time.monotonic() - started), flush=True)

    await sub.open()
    consumer = asyncio.create_task(consume())
    stopper = asyncio.create_task(stop.wait())
    shower = None if args.json else asyncio.create_task(display())
    try:
        await asyncio.wait({consumer, stopper}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (consumer, stopper, shower):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (stopper, shower) if t is not None), return_exceptions=True)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await consumer  # re-raises what ended it (connection lost, protocol error)
        finally:
            await sub.close()
    summary = _summary(sub, saved, last)
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        lat = summary["latency_ms"]
        print(f"{summary['frames']} frames in {summary['duration_s']:.1f} s: {summary['fps']:.1f} fps, latency "
              f"p50 {lat['p50']:.1f} / p95 {lat['p95']:.1f} / p99 {lat['p99']:.1f} ms, {summary['kbit_s']:,.0f} "
              f"kbit/s, {summary['dropped']} dropped, {summary['reconnects']} reconnects, first frame "
              f"{summary['first_frame_ms']} ms", flush=True)
    if summary["frames"] == 0:
        print(f"framecast: error: no frames received from stream {sub.stream!r}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


# -- probe -------------------------------------------------------------------

def _print_probe(result: ProbeResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)  # pipes get 120 columns, not 80
    rtt = result.rtt_ms
    console.print(f"[bold]framecast probe[/] {result.url} stream [bold]{result.stream}[/]")
    console.print(f"RTT (HTTP, {rtt['samples']:.0f} samples): min {rtt['min']:.2f} ms, p50 {rtt['p50']:.2f} ms; "
                  f"connect {result.connect_ms:.0f} ms, first frame {result.first_frame_ms} ms")
    if result.throughput_method == "snapshot-burst":
        b = result.burst
        console.print(f"throughput: {result.throughput_mbit_s:,.1f} Mbit/s ({b['requests']} snapshots of "
                      f"{b['frame_bytes'] / 1000:.1f} kB over {b['connections']} connections in {b['seconds']} s)")
    else:
        console.print(f"throughput: at least {result.throughput_mbit_s:,.2f} Mbit/s (delivered stream rate; "
                      f"no snapshot burst: {result.burst.get('status', 'skipped')})")
    table = Table("tier", "size", "frame kB", "fps delivered", "kbit/s", "latency p50/p95 ms", "link fps")
    for t in result.tiers:
        table.add_row(t.name, f"{t.width}x{t.height} q{t.quality}", f"{t.frame_bytes / 1000:.1f}", f"{t.fps:.1f}",
                      f"{t.kbit_s:,.0f}", f"{t.latency_p50_ms:.1f} / {t.latency_p95_ms:.1f}",
                      "-" if t.link_fps is None else f"{t.link_fps:,.0f}")
    console.print(table)
    if result.recommended_tier:
        console.print(f"source {result.source_fps:.1f} fps → this link carries tier [bold]{result.recommended_tier}"
                      f"[/] at [bold]{result.recommended_fps:.1f} fps[/]")


def _progress(message: str) -> None:
    print(f"probe: {message}", file=sys.stderr, flush=True)


async def _probe(args: argparse.Namespace) -> int:
    result = await probe(args.url, stream=args.stream, seconds_per_tier=args.seconds_per_tier,
                         burst_seconds=max(0.0, args.burst_seconds), token=args.token, codecs=args.codecs,
                         on_progress=_progress if args.progress == "always" or (
                             args.progress == "auto" and sys.stderr.isatty()) else None)
    if args.json:
        print(json.dumps(result.to_dict()), flush=True)
    else:
        _print_probe(result)
    if not result.recommended_tier:
        print(f"framecast: error: no frames received from stream {result.stream!r}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


# -- streams -----------------------------------------------------------------

async def _streams(args: argparse.Namespace) -> int:
    streams = await asyncio.to_thread(list_streams, args.url, token=args.token)
    if args.json:
        print(json.dumps(streams), flush=True)
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table("stream", "state", "fps", "tiers", "viewers", "source")
    for s in streams:
        tiers = ", ".join(f"{t.get('name')} {t.get('width')}x{t.get('height')}" for t in s.get("tiers", [])
                          if isinstance(t, dict))
        table.add_row(str(s.get("stream", "?")), "live" if s.get("live", True) else "stalled",
                      f"{s.get('fps', 0):g}", tiers, str(s.get("viewers", "")), str(s.get("source", "")))
    Console(width=None if sys.stdout.isatty() else 120).print(table)
    if not streams:
        print("framecast: no streams yet (is an inference service publishing?)", file=sys.stderr)
    return EXIT_OK


# -- token -------------------------------------------------------------------

async def _token(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from framecast.edge.settings import EdgeSettings
    from framecast.settings import settings_error

    try:
        secret = EdgeSettings().auth_secret  # the edge's own setting, read the way the edge reads it
    except ValidationError as exc:
        raise ClientError(settings_error(EdgeSettings, exc)) from None
    if not secret:
        raise ClientError("no secret configured: set FRAMECAST_AUTH_SECRET to the edge's secret")
    try:
        from framecast.edge.auth import make_token
    except ImportError as exc:
        raise ClientError(f"minting tokens needs PyJWT: pip install 'framecast[client]' (missing: {exc.name})"
                          ) from None
    print(make_token(secret, args.stream or "*", ttl_s=args.ttl, subject=args.subject), flush=True)
    return EXIT_OK


def _configure_logging(level: str) -> None:
    """Client log lines (reconnects, edge errors) on stderr; a rich live table redraws above them."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s framecast: %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("framecast")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors, --help and --version: argparse already printed its line
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if _CLIENT_MISSING is not None:
        print(f"framecast: error: {_CLIENT_MISSING}", file=sys.stderr)
        return EXIT_ERROR
    _configure_logging(args.log_level)
    runner = {"watch": _watch, "probe": _probe, "streams": _streams, "token": _token}[args.command]
    try:
        return asyncio.run(runner(args))
    except (ClientError, ProtocolError) as exc:
        print(f"framecast: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
