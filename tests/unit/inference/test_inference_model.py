"""The built-in model, the plug-in loader (module factories, TorchScript files) and the tensor contract."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from framecast.inference.model import InferenceEngine, ModelError, NeuralField, load_engine, load_module
from framecast.inference.modelspec import preflight

W, H = 96, 64


class Halve(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A package `fc_plugin` in a temporary directory on sys.path."""
    pkg = tmp_path / "fc_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "models.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Invert(nn.Module):
            def forward(self, x):
                return 1.0 - x

        class Shrink(nn.Module):
            def forward(self, x):
                return x[:, :, ::2, ::2]

        def invert():
            return Invert()

        def shrink():
            return Shrink()

        def needs_args(width):
            return Invert()

        def not_a_module():
            return "hello"

        NOT_CALLABLE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("fc_plugin")]:
        del sys.modules[name]


def frame() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def test_builtin_model_keeps_shape_range_and_moves() -> None:
    model = NeuralField()
    x = torch.rand(1, 3, H, W)
    with torch.inference_mode():
        a, b = model(x), model(x)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert not torch.equal(a, b)  # animated over time


def test_builtin_engine_round_trip() -> None:
    engine = load_engine("builtin", "cpu", W, H)
    out = engine(frame())
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert engine.info.model == "builtin" and engine.info.device == "cpu" and engine.info.dtype == "float32"


def test_identity_conversion_is_exact() -> None:
    """uint8 -> float [0, 1] -> uint8 must not shift colours (rounding, channel order)."""
    engine = InferenceEngine(nn.Identity(), "identity", torch.device("cpu"), W, H)
    img = frame()
    assert np.array_equal(engine(img), img)


class ChannelsLastIdentity(nn.Identity):
    channels_last = True


def test_identity_conversion_is_exact_channels_last() -> None:
    engine = InferenceEngine(ChannelsLastIdentity(), "identity", torch.device("cpu"), W, H)
    img = frame()
    assert np.array_equal(engine(img), img)


def test_builtin_model_does_not_depend_on_memory_format() -> None:
    x = torch.rand(1, 3, H, W)
    with torch.inference_mode():
        a = NeuralField()(x)
        b = NeuralField()(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(a, b, atol=1e-6)


def test_module_factory(plugin_dir: Path) -> None:
    engine = load_engine("fc_plugin.models:invert", "cpu", W, H)
    img = frame()
    assert np.abs(engine(img).astype(int) - (255 - img.astype(int))).max() <= 1
    assert engine.info.model == "fc_plugin.models:invert"


@pytest.mark.parametrize(("spec", "message"), [
    ("fc_plugin.models:shrink", "output shape"),
    ("fc_plugin.models:needs_args", "must take no arguments"),
    ("fc_plugin.models:not_a_module", "expected a torch.nn.Module"),
    ("fc_plugin.models:NOT_CALLABLE", "not callable"),
    ("fc_plugin.models:missing", "has no attribute 'missing'"),
    ("fc_plugin.nowhere:factory", "cannot import fc_plugin.nowhere"),
    ("no_such_package_xyz.models:factory", "cannot import"),
    ("justaname", "expected builtin"),
])
def test_bad_plugins_name_the_problem(plugin_dir: Path, spec: str, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        load_engine(spec, "cpu", W, H)


def test_torchscript_file(tmp_path: Path) -> None:
    path = tmp_path / "halve.pt"
    with pytest.warns(DeprecationWarning):  # TorchScript is deprecated in torch 2.10+, still supported
        torch.jit.script(Halve()).save(str(path))  # type: ignore[no-untyped-call]
    engine = load_engine(str(path), "cpu", W, H)
    img = frame()
    assert np.abs(engine(img).astype(int) - img.astype(int) // 2).max() <= 1
    assert engine.info.model == "halve.pt"


def test_torchscript_missing_or_garbage(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_module(str(tmp_path / "missing.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip archive")
    with pytest.raises(ModelError, match="not a TorchScript file"):
        load_module(str(garbage))


def test_model_that_raises(plugin_dir: Path) -> None:
    (plugin_dir / "fc_plugin" / "broken.py").write_text(
        "from torch import nn\nclass B(nn.Module):\n    def forward(self, x):\n        raise RuntimeError('boom')\n"
        "def make():\n    return B()\n")
    with pytest.raises(ModelError, match=r"failed on a 1x3x64x96 float32 input.*boom"):
        load_engine("fc_plugin.broken:make", "cpu", W, H)


@pytest.mark.gpu  # skips where CUDA is present: allowed in CI like the CUDA tests
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_requested_without_cuda() -> None:
    with pytest.raises(ModelError, match="CUDA is not available"):
        load_engine("builtin", "cuda", W, H)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("fp16", [False, True])
def test_cuda_engine(fp16: bool) -> None:
    engine = load_engine("builtin", "cuda", 1280, 720, fp16=fp16)
    img = np.zeros((720, 1280, 3), np.uint8)
    out = engine(img)
    assert out.shape == (720, 1280, 3) and out.dtype == np.uint8
    assert engine.info.device.startswith("cuda") and engine.info.dtype == ("float16" if fp16 else "float32")
    assert engine.gpu_memory()[0] > 0
    cpu = load_engine("builtin", "cpu", 1280, 720)
    # same seeded weights on both devices: the pictures agree up to rounding (the CPU path upsamples the
    # field in 8 bits, CUDA in float)
    assert np.abs(cpu(img).astype(int) - out.astype(int)).mean() < (3.0 if fp16 else 2.0)


def test_torch_export_file(tmp_path: Path) -> None:
    path = tmp_path / "halve.pt2"
    torch.export.save(torch.export.export(Halve(), (torch.rand(1, 3, H, W),)), str(path))
    engine = load_engine(str(path), "cpu", W, H)
    img = frame()
    assert np.abs(engine(img).astype(int) - img.astype(int) // 2).max() <= 1
    with pytest.raises(ModelError, match="not found"):
        load_module(str(tmp_path / "missing.pt2"))


@pytest.mark.parametrize(("spec", "message"), [
    ("builtin", None),
    ("/nonexistent/model.pt", "model /nonexistent/model.pt: TorchScript file not found"),
    ("/nonexistent/model.pt2", "model /nonexistent/model.pt2: torch.export file not found"),
    ("no_such_pkg_xyz.models:make", "cannot import no_such_pkg_xyz.models"),
    ("framecast.inference.model:builtin_model", None),
    ("plainword", "expected builtin"),
])
def test_preflight_without_torch(spec: str, message: str | None) -> None:
    problem = preflight(spec)
    assert problem == message if message is None else (problem is not None and message in problem)
