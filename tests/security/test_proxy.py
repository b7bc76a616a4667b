"""Behind the shipped load balancer (real nginx, deploy/nginx/nginx.conf) with the compose stack's proxy setting
(`FRAMECAST_FORWARDED_ALLOW_IPS='*'`): a client that writes its own X-Forwarded-For cannot pass the per-address
viewer limit."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.native_stack import Nginx

from framecast import constants as C
from tests.reliability.conftest import Stack, stack_running
from tests.reliability.support import Viewer, eventually, stop_viewers
from tests.security.support import attacker_address, watch_attack

PER_IP = 5
SPOOFERS = 20


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        pytest.fail("nginx is not installed (apt-get install nginx): the proxy test needs the real load balancer")
    return binary


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory, nginx_bin: str) -> Iterator[tuple[Stack, Nginx]]:
    workdir = tmp_path_factory.mktemp("security-proxy")
    with stack_running(workdir, edge_args=["--forwarded-allow-ips", "*", "--viewers-per-ip", str(PER_IP)]) as stack:
        lb = Nginx([f"127.0.0.1:{stack.port}"], workdir, binary=nginx_bin).start()
        try:
            yield stack, lb
        finally:
            lb.stop()


async def test_spoofed_forwarded_for_does_not_pass_the_per_address_limit(behind_nginx: tuple[Stack, Nginx]) -> None:
    stack, lb = behind_nginx
    url = f"ws://127.0.0.1:{lb.port}/ws/{C.DEFAULT_STREAM}"
    spoofers = [Viewer(url, headers={"X-Forwarded-For": f"198.51.100.{i}, 10.0.0.{i}"},
                       local_host=attacker_address()) for i in range(SPOOFERS)]

    async def attack() -> Counter[str]:
        for v in spoofers:
            v.start()
        await eventually(lambda: all(v.frames or v.closed for v in spoofers), 30, "every spoofer admitted or refused")
        await stop_viewers(spoofers)
        return Counter("admitted" if v.frames else f"closed {v.close_code}" for v in spoofers)

    outcome, figures = await watch_attack(stack, "forwarded_for_spoofing", attack, viewer_url=url)
    figures.extra.update(outcome)
    figures.record()
    assert outcome["admitted"] == PER_IP, outcome
    assert outcome[f"closed {C.CLOSE_TRY_AGAIN_LATER}"] == SPOOFERS - PER_IP, outcome

