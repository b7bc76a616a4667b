"""Emulated network link: netns + veth + tbf bottleneck + delay relay.

Layout (one link per context manager, names unique per pid and counter)::

    server (host netns, bound to HOST_ADDR)
      -> host-side veth  [tbf rate R, burst 32kb, latency 200ms]   bottleneck
      -> ns-side veth -> relay in the namespace (holds chunks RTT/2 each way)
      -> client in the namespace (connects to the relay on 127.0.0.1)

The bottleneck faces the server's own socket, so backlog builds where the
server can see it; the delay is added after it.  The server binds to the
host-side veth address (no iptables needed).  Everything created is removed on
exit, on error and at interpreter exit (atexit), in reverse order.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import selectors
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from bench.constants import COMMAND_TIMEOUT_S, RELAY_READY_TIMEOUT_S
from bench.relay import READY_LINE

NAME_PREFIX = "fcb"
SUBNET_FIRST_OCTETS = "10.213"
PREFIX_LEN = 30
TBF_BURST = "32kb"
TBF_LATENCY = "200ms"
MBIT = "mbit"
REQUIRED_TOOLS = ("ip", "tc")

_counter = itertools.count()
_SENT_RE = re.compile(r"Sent (\d+) bytes")


@dataclass(frozen=True)
class LinkSpec:
    """A link: bottleneck rate (Mbit/s) and round-trip propagation delay (ms)."""

    rate_mbit: float
    rtt_ms: float

    @property
    def one_way_delay_ms(self) -> float:
        return self.rtt_ms / 2.0


class LinkUnavailable(RuntimeError):
    """The emulated link cannot be built here (the message says why)."""


def unavailable_reason() -> str | None:
    """Why namespaces + tbf cannot be used here, or None if they can."""
    if sys.platform != "linux":
        return f"link emulation needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "link emulation needs root (ip netns, tc)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"link emulation needs {', '.join(missing)} (iproute2)"
    probe = f"{NAME_PREFIX}probe{os.getpid()}"
    try:
        _run(["ip", "netns", "add", probe])
    except LinkUnavailable as exc:
        return f"cannot create a network namespace: {exc}"
    _run_quiet(["ip", "netns", "del", probe])
    return None


def _run(argv: list[str]) -> None:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LinkUnavailable(f"{' '.join(argv)}: {exc}") from exc
    if result.returncode != 0:
        raise LinkUnavailable(f"{' '.join(argv)}: {result.stderr.strip()}")


def _run_quiet(argv: list[str]) -> None:
    try:
        subprocess.run(argv, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass


def tbf_args(device: str, rate_mbit: float, verb: str) -> list[str]:
    """The tc command that adds or changes the bottleneck on ``device``."""
    return [
        "tc", "qdisc", verb, "dev", device, "root", "tbf",
        "rate", f"{rate_mbit:g}{MBIT}", "burst", TBF_BURST, "latency", TBF_LATENCY,
    ]  # fmt: skip


def parse_tc_sent_bytes(text: str) -> int:
    """The ``Sent N bytes`` counter of ``tc -s qdisc show`` output."""
    match = _SENT_RE.search(text)
    if match is None:
        raise LinkUnavailable(f"no 'Sent N bytes' in tc output: {text[:200]!r}")
    return int(match.group(1))


def link_names(pid: int, index: int) -> tuple[str, str, str]:
    """(namespace, host-side veth, ns-side veth); veth names stay <= 15 chars."""
    tag = f"{pid % 100000}x{index % 100}"
    return f"{NAME_PREFIX}ns{tag}", f"{NAME_PREFIX}h{tag}", f"{NAME_PREFIX}n{tag}"


def link_addresses(pid: int, index: int) -> tuple[str, str]:
    """(host address, ns address) in a /30 unique to this pid and index."""
    third = pid % 250
    fourth = (index % 63) * 4
    base = f"{SUBNET_FIRST_OCTETS}.{third}"
    return f"{base}.{fourth + 1}", f"{base}.{fourth + 2}"


class EmulatedLink:
    """Context manager owning one namespace, veth pair, qdisc and its relays."""

    def __init__(self, spec: LinkSpec) -> None:
        index = next(_counter)
        self.spec = spec
        self.rate_mbit = spec.rate_mbit
        self.netns, self.host_dev, self.ns_dev = link_names(os.getpid(), index)
        self.host_addr, self.ns_addr = link_addresses(os.getpid(), index)
        self._relays: list[subprocess.Popen[str]] = []
        self._undo: list[list[str]] = []
        self._closed = False

    def __enter__(self) -> Self:
        atexit.register(self.close)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _build(self) -> None:
        ns, host, peer = self.netns, self.host_dev, self.ns_dev
        _run(["ip", "netns", "add", ns])
        self._undo.append(["ip", "netns", "del", ns])
        _run(["ip", "link", "add", host, "type", "veth", "peer", "name", peer])
        self._undo.append(["ip", "link", "del", host])
        _run(["ip", "link", "set", peer, "netns", ns])
        _run(["ip", "addr", "add", f"{self.host_addr}/{PREFIX_LEN}", "dev", host])
        _run(["ip", "link", "set", host, "up"])
        _run(["ip", "-n", ns, "addr", "add", f"{self.ns_addr}/{PREFIX_LEN}", "dev", peer])
        _run(["ip", "-n", ns, "link", "set", peer, "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        _run(tbf_args(host, self.rate_mbit, "add"))
        self._undo.append(["tc", "qdisc", "del", "dev", host, "root"])

    def set_rate(self, rate_mbit: float) -> None:
        """Change the bottleneck rate mid-run (tc qdisc change)."""
        _run(tbf_args(self.host_dev, rate_mbit, "change"))
        self.rate_mbit = rate_mbit

    def sent_bytes(self) -> int:
        """Bytes the bottleneck qdisc has sent so far (wire bytes, headers included)."""
        argv = ["tc", "-s", "qdisc", "show", "dev", self.host_dev, "root"]
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise LinkUnavailable(f"{' '.join(argv)}: {exc}") from exc
        return parse_tc_sent_bytes(result.stdout)

    def ns_argv(self, argv: list[str]) -> list[str]:
        """Prefix ``argv`` so that it runs inside the link's namespace."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def start_relay(self, target_port: int, log_path: Path, max_lifetime_s: float) -> int:
        """Start the delay relay in the namespace; return its local port there."""
        argv = self.ns_argv(
            [
                sys.executable, "-m", "bench.relay",
                "--target", f"{self.host_addr}:{target_port}",
                "--delay-ms", f"{self.spec.one_way_delay_ms:g}",
                "--max-lifetime-s", f"{max_lifetime_s:g}",
            ]
        )  # fmt: skip
        log = log_path.open("w")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, cwd=_repo_root())
        log.close()
        self._relays.append(proc)
        return _read_ready_port(proc)

    def close(self) -> None:
        """Stop relays and delete qdisc, veth and namespace (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for proc in self._relays:
            stop_process(proc)
        for argv in reversed(self._undo):
            _run_quiet(argv)
        atexit.unregister(self.close)


def read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """One line of a child's stdout, or "" if none arrives within ``timeout_s``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            return ""
    return proc.stdout.readline()


def _read_ready_port(proc: subprocess.Popen[str]) -> int:
    line = read_line(proc, RELAY_READY_TIMEOUT_S).split()
    if len(line) != 2 or line[0] != READY_LINE:
        raise LinkUnavailable(f"delay relay failed to start (exit {proc.poll()})")
    return int(line[1])


def stop_process(proc: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """Terminate a child we started, then kill it if it does not exit in time."""
    from bench.constants import PROCESS_STOP_TIMEOUT_S

    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(PROCESS_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(PROCESS_STOP_TIMEOUT_S)


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
