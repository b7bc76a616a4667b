from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import framecast
import framecast.client
from framecast import constants as C
from framecast.client import ReceivedFrame
from framecast.protocol import FrameHeader

ROOT = Path(__file__).resolve().parents[3]


def test_top_level_reexports() -> None:
    for name in ("connect", "connect_sync", "Subscription", "ReceivedFrame"):
        assert getattr(framecast, name) is getattr(framecast.client, name)


def test_public_names_exist() -> None:
    for name in framecast.client.__all__:
        assert hasattr(framecast.client, name), name


def test_connect_takes_explicit_keywords() -> None:
    # every option by name (no **options): a misspelt keyword fails at the call and in mypy --strict
    for fn in (framecast.client.connect, framecast.client.connect_sync):
        params = inspect.signature(fn).parameters
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()), fn
        sub_params = set(inspect.signature(framecast.client.Subscription).parameters)
        assert set(params) <= sub_params, set(params) - sub_params
        assert {"max_fps", "token", "codecs", "decode_video", "ack", "reconnect_timeout"} <= set(params)
    with pytest.raises(TypeError, match="max_fsp"):
        framecast.connect("http://127.0.0.1:1", max_fsp=3)  # type: ignore[call-arg]


def test_mypy_sees_the_real_connect(tmp_path: Path) -> None:
    """`framecast.connect` is typed through the package (not a module __getattr__ returning Any)."""
    api = pytest.importorskip("mypy.api", reason="mypy is a dev dependency")
    script = tmp_path / "use_connect.py"
    script.write_text("import framecast\n\n"
                      "async def main() -> None:\n"
                      "    async with framecast.connect('http://127.0.0.1:8000', max_fsp=3) as sub:\n"
                      "        reveal_type(sub)\n")
    out, _, rc = api.run([str(script), "--strict", "--no-incremental", "--follow-imports=silent",
                          "--config-file", str(ROOT / "pyproject.toml")])
    assert rc == 1, out
    assert 'Unexpected keyword argument "max_fsp"' in out, out
    assert "framecast.client.subscription.Subscription" in out, out


def test_received_frame_payload_repr_and_deprecated_jpeg() -> None:
    header = FrameHeader(tier=0, codec=C.CODEC_JPEG, frame_id=7, capture_us=1, publish_us=2, width=4, height=2,
                         quality=80, payload_len=6)
    frame = ReceivedFrame(header=header, payload=b"\xff\xd8SECRET", received_us=3, received_at=0.0, stream="demo",
                          tier_name="high", message_bytes=60)
    assert "SECRET" not in repr(frame) and "payload=" not in repr(frame) and "frame_id=7" in repr(frame)
    with pytest.warns(DeprecationWarning, match="use ReceivedFrame.payload"):
        assert frame.jpeg == frame.payload


BLOCK_WEBSOCKETS = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "websockets" or name.startswith("websockets."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Block())
"""


@pytest.mark.parametrize(("code", "expect_rc"), [
    ("from framecast.cli import main; sys.exit(main(['watch']))", 1),
    ("import framecast; framecast.connect", 1),
])
def test_without_the_client_extra_the_message_names_it(code: str, expect_rc: int) -> None:
    # `pip install framecast` without [client]: no websockets (blocked here); a message, not a bare ImportError
    done = subprocess.run([sys.executable, "-c", BLOCK_WEBSOCKETS + code], capture_output=True, text=True,
                          timeout=60, cwd=ROOT)
    assert done.returncode == expect_rc, done.stderr
    assert "pip install 'framecast[client]'" in done.stderr and "websockets" in done.stderr, done.stderr
