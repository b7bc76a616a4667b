"""Behind the shipped load balancer (real nginx, deploy/nginx/nginx.conf) with the compose stack's proxy setting
(`FRAMECAST_FORWARDED_ALLOW_IPS='*'`): a client that writes its own X-Forwarded-For cannot pass the per-address
viewer limit."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tools.native_stack import Nginx

from framecast import constants as C
from tests.reliability.conftest import Stack, stack_running
from tests.reliability.support import Viewer, stop_viewers
from tests.security.support import attacker_address, watch_attack
from tests.support.timing import wait_until_async

PER_IP = 5
SPOOFERS = 20


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        pytest.fail("nginx is not installed (apt-get install nginx): the proxy test needs the real load balancer")
    return binary


class AppendingNginx(Nginx):
    """The shipped nginx.conf, except that X-Forwarded-For appends to what the client sent
    (`$proxy_add_x_forwarded_for`, nginx's common default): the edge must hold either way."""

    def _configure(self, port: int) -> None:
        super()._configure(port)
        text = self.config_path.read_text()
        text = re.sub(r"(proxy_set_header X-Forwarded-For )\S+;", r"\1$proxy_add_x_forwarded_for;", text)
        assert "$proxy_add_x_forwarded_for" in text
        self.config_path.write_text(text)


@pytest.fixture(scope="module")
def edge_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("security-proxy")
    with stack_running(workdir, edge_args=["--forwarded-allow-ips", "*", "--viewers-per-ip", str(PER_IP)]) as stack:
        yield stack


@pytest.mark.parametrize("variant", ["shipped", "appending"])
async def test_spoofed_forwarded_for_does_not_pass_the_per_address_limit(edge_stack: Stack, nginx_bin: str,
                                                                         variant: str, tmp_path: Path) -> None:
    stack = edge_stack
    lb = (Nginx if variant == "shipped" else AppendingNginx)([f"127.0.0.1:{stack.port}"], tmp_path,
                                                             binary=nginx_bin).start()
    try:
        await _spoof(stack, lb, variant)
    finally:
        lb.stop()


async def _spoof(stack: Stack, lb: Nginx, variant: str) -> None:
    url = f"ws://127.0.0.1:{lb.port}/ws/{C.DEFAULT_STREAM}"
    spoofers = [Viewer(url, headers={"X-Forwarded-For": f"198.51.100.{i}, 10.0.0.{i}"},
                       local_host=attacker_address()) for i in range(SPOOFERS)]

    async def attack() -> Counter[str]:
        for v in spoofers:
            v.start()
        await wait_until_async("every spoofer admitted or refused",
                               lambda: all(v.frames or v.closed for v in spoofers), 30)
        await stop_viewers(spoofers)
        return Counter("admitted" if v.frames else f"closed {v.close_code}" for v in spoofers)

    outcome, figures = await watch_attack(stack, f"forwarded_for_spoofing_{variant}", attack, viewer_url=url)
    figures.extra.update(outcome)
    figures.record()
    assert outcome["admitted"] == PER_IP, outcome
    assert outcome[f"closed {C.CLOSE_TRY_AGAIN_LATER}"] == SPOOFERS - PER_IP, outcome

