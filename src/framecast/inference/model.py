"""Models: the built-in neural field, the plug-in loader, and the engine that runs a model per frame.

Tensor contract of every model (built-in, `package.module:factory`, TorchScript):
input one float32 (float16 with `--fp16`) batch `N x 3 x H x W`, RGB, values in
[0, 1], on the service's device (N is 1); output a floating tensor of the same
shape, RGB in [0, 1] (values outside are clamped). A model is called once per
frame, in order, under `torch.inference_mode()`, so it may keep state (the
built-in one animates that way). Files: `.pt`/`.pth`/`.ts` are TorchScript
(`torch.jit.save`), `.pt2` a `torch.export` program (`torch.export.save`).
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from framecast.inference.modelspec import model_kind

log = logging.getLogger("framecast.inference.model")



class ModelError(Exception):
    """The model cannot be loaded or does not follow the tensor contract."""


class NeuralField(nn.Module):
    """A compositional pattern-producing network (CPPN) animated over time, blended over the source.

    At 1/`downscale` of the frame size a small seeded MLP with sine activations
    maps (warped x, y, radius, four slow time waves, the source's colour there)
    to an RGB field; the field is upsampled and blended over the full-resolution
    frame. A few ms per 720p frame on two CPU cores; no weights are downloaded.
    """

    def __init__(self, seed: int = 7, hidden: int = 24, downscale: int = 8, alpha: float = 0.45) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        n_in = 10  # x, y, r, 4 time waves, r, g, b of the source

        def weight(n_out: int, n_inp: int, gain: float) -> nn.Parameter:
            return nn.Parameter(torch.randn(n_out, n_inp, 1, 1, generator=gen) * gain / math.sqrt(n_inp),
                                requires_grad=False)

        self.w1, self.w2, self.w3 = weight(hidden, n_in, 6.0), weight(hidden, hidden, 3.0), weight(3, hidden, 2.5)
        self.b1 = nn.Parameter(torch.randn(hidden, generator=gen), requires_grad=False)
        self.downscale, self.alpha = downscale, alpha
        self.channels_last = True  # tells the engine to skip the NCHW transposition (it works either way)
        # an integer frame counter: `.half()` leaves it alone, and as a tensor it does not make torch.compile
        # recompile per frame the way a Python number would
        self.step: torch.Tensor
        self.rates: torch.Tensor
        self.offsets: torch.Tensor
        self.register_buffer("step", torch.zeros((), dtype=torch.int64), persistent=False)
        self.register_buffer("rates", torch.tensor([1.3, 0.9, 0.7, 0.5, 0.31, 0.23]) * 0.03, persistent=False)
        self.register_buffer("offsets", torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 2.0]), persistent=False)
        self._grid: torch.Tensor | None = None

    def _coords(self, h: int, w: int, ref: torch.Tensor) -> torch.Tensor:
        if self._grid is None or self._grid.shape[-2:] != (h, w) or self._grid.device != ref.device \
                or self._grid.dtype != ref.dtype:
            ys = torch.linspace(-1.0, 1.0, h, device=ref.device, dtype=ref.dtype)
            xs = torch.linspace(-w / h, w / h, w, device=ref.device, dtype=ref.dtype)
            gy, gx = torch.meshgrid(ys, xs, indexing="ij")
            self._grid = torch.stack([gx, gy, torch.sqrt(gx * gx + gy * gy)])[None]
        return self._grid

    @staticmethod
    def _format(x: torch.Tensor) -> torch.memory_format:
        return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        lh, lw = max(1, h // self.downscale), max(1, w // self.downscale)
        # the source's colour at the field's resolution (a strided sample: cheap, and blurred by the field anyway)
        sy, sx = max(1, h // lh), max(1, w // lw)
        small = x[:, :, sy // 2::sy, sx // 2::sx][:, :, :lh, :lw]
        # phases in float32 and modulo 2*pi, so float16 runs animate as smoothly and for as long
        phase = torch.remainder(self.step.float() * self.rates.float() + self.offsets.float(), 2 * math.pi)
        self.step.add_(1)
        phase = phase.to(x.dtype)
        grid = self._coords(lh, lw, x).expand(n, -1, -1, -1)
        gx, gy = grid[:, 0:1], grid[:, 1:2]
        # the field flows: coordinates warped by slow waves
        wx = gx + 0.4 * torch.sin(gy * 2.5 + phase[0])
        wy = gy + 0.4 * torch.sin(gx * 2.0 - phase[1])
        waves = torch.stack([torch.sin(phase[2]), torch.cos(phase[3]), torch.sin(phase[4]),
                             torch.cos(phase[5])]).view(1, 4, 1, 1).expand(n, -1, lh, lw)
        inp = torch.cat([wx, wy, grid[:, 2:3], waves, small], dim=1)
        hid = torch.sin(F.conv2d(inp, self.w1, self.b1))
        hid = torch.sin(F.conv2d(hid, self.w2))
        field = torch.sigmoid(F.conv2d(hid, self.w3))
        if x.device.type == "cpu":
            # PyTorch's uint8 channels-last bilinear kernel is ~10x faster than the float one on CPU, and
            # 8 bits are plenty for a smooth field blended at 45 %
            u8 = field.mul(255.0).round_().to(torch.uint8).contiguous(memory_format=torch.channels_last)
            up = F.interpolate(u8, size=(h, w), mode="bilinear", align_corners=False)
            field = up.to(x.dtype, memory_format=self._format(x)).mul_(1.0 / 255.0)
        else:
            field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)
        return torch.lerp(x, field, self.alpha)


def builtin_model() -> nn.Module:
    return NeuralField()


def load_module(spec: str) -> tuple[nn.Module, str]:
    """The nn.Module named by `--model`, and a short name for metrics; ModelError says what is wrong."""
    if spec == "builtin":
        return builtin_model(), "builtin"
    path = Path(spec)
    kind = model_kind(spec)
    if kind == "export":
        if not path.is_file():
            raise ModelError(f"model {spec}: torch.export file not found")
        try:
            module = torch.export.load(str(path)).module()
        except Exception as exc:
            raise ModelError(f"model {spec}: not a torch.export program ({_first_line(exc)})") from None
        return module, path.name
    if kind == "torchscript":
        if not path.is_file():
            raise ModelError(f"model {spec}: TorchScript file not found")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.10+ deprecates TorchScript; it works
                module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise ModelError(f"model {spec}: not a TorchScript file ({_first_line(exc)})") from None
        return module, path.name
    if kind != "factory":
        raise ModelError(f"model {spec!r}: expected builtin, package.module:factory or a TorchScript .pt file")
    module_name, _, attr = spec.partition(":")
    try:
        mod = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(f"model {spec}: cannot import {module_name} ({_first_line(exc)})") from None
    factory = getattr(mod, attr, None)
    if factory is None:
        raise ModelError(f"model {spec}: module {module_name} has no attribute {attr!r}")
    if not callable(factory):
        raise ModelError(f"model {spec}: {attr} is not callable (expected a factory returning an nn.Module)")
    try:
        module = factory()
    except Exception as exc:
        raise ModelError(f"model {spec}: calling {attr}() failed ({_first_line(exc)}); the factory must take "
                         f"no arguments and return an nn.Module") from None
    if not isinstance(module, nn.Module):
        raise ModelError(f"model {spec}: {attr}() returned {type(module).__name__}, expected a torch.nn.Module")
    return module, spec


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ModelError("device cuda: CUDA is not available (torch built without CUDA or no GPU)")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda")


@dataclass(frozen=True, slots=True)
class EngineInfo:
    model: str
    device: str
    dtype: str


class InferenceEngine:
    """Runs a model on RGB uint8 frames (H x W x 3) and returns RGB uint8 frames of the same size."""

    def __init__(self, module: nn.Module, name: str, device: torch.device, width: int, height: int, *,
                 fp16: bool = False, compile: bool = False) -> None:
        self.device, self.width, self.height = device, width, height
        on_cuda = device.type == "cuda"
        if (fp16 or compile) and not on_cuda:
            log.warning("--fp16/--compile apply to CUDA only; running float32 eager on %s", device)
        self.dtype = torch.float16 if fp16 and on_cuda else torch.float32
        try:
            module.eval()
        except NotImplementedError:  # torch.export programs are always in inference mode
            pass
        try:
            module = module.to(device)
            if self.dtype == torch.float16:
                module = module.half()
            compiled = torch.compile(module) if compile and on_cuda else module
        except Exception as exc:  # e.g. a torch.export program that cannot be moved or cast
            raise ModelError(f"model {name}: cannot place it on {device} as {self.dtype} ({_first_line(exc)})") \
                from None
        # opt-in: a module with `channels_last = True` gets the frame without the NCHW transposition
        self.channels_last = bool(getattr(module, "channels_last", False))
        self.module: Any = compiled
        self.info = EngineInfo(model=name, device=str(device), dtype=str(self.dtype).removeprefix("torch."))
        if on_cuda:
            # pinned host buffers make the copies asynchronous DMA transfers
            self._host_in = torch.empty((height, width, 3), dtype=torch.uint8).pin_memory()
            self._host_out = torch.empty((height, width, 3), dtype=torch.uint8).pin_memory()
            self._stream = torch.cuda.Stream(device)  # type: ignore[no-untyped-call]

    def check(self) -> None:
        """Run the model once on a black frame; ModelError when it breaks the tensor contract."""
        probe = np.zeros((self.height, self.width, 3), dtype=np.uint8)
        shape = (1, 3, self.height, self.width)
        try:
            with torch.inference_mode():
                x = self._to_tensor(torch.from_numpy(probe).to(self.device))
                y = self.module(x)
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)  # asynchronous CUDA errors surface here, not later
        except Exception as exc:
            raise ModelError(f"model {self.info.model}: failed on a {'x'.join(map(str, shape))} "
                             f"{self.info.dtype} input ({_first_line(exc)})") from None
        if not isinstance(y, torch.Tensor):
            raise ModelError(f"model {self.info.model}: returned {type(y).__name__}, expected a tensor")
        if tuple(y.shape) != shape:
            raise ModelError(f"model {self.info.model}: output shape {tuple(y.shape)} != input shape {shape} "
                             f"(contract: N x 3 x H x W in, same shape out)")
        if not y.is_floating_point():
            raise ModelError(f"model {self.info.model}: output dtype {y.dtype}, expected floating point in [0, 1]")

    def _to_tensor(self, hwc_uint8: torch.Tensor) -> torch.Tensor:
        nchw = hwc_uint8.permute(2, 0, 1).unsqueeze(0)  # a view with channels-last strides
        if not self.channels_last:
            nchw = nchw.contiguous()  # transpose the bytes (a quarter of the traffic of transposing floats)
        return nchw.to(self.dtype).mul_(1.0 / 255.0)

    @staticmethod
    def _to_uint8(y: torch.Tensor) -> torch.Tensor:
        """N x 3 x H x W float in [0, 1] -> H x W x 3 uint8, on the tensor's device."""
        return y[0].mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).permute(1, 2, 0).contiguous()

    @staticmethod
    def _to_uint8_cpu(y: torch.Tensor) -> np.ndarray:
        # OpenCV interleaves and saturates in vectorized passes, several times faster than torch here
        hwc = y[0].to(torch.float32).permute(1, 2, 0)
        if hwc.is_contiguous():  # channels-last output: already interleaved
            out: np.ndarray = cv2.convertScaleAbs(hwc.clamp_(0.0, 1.0).numpy(), alpha=255.0)
            return out
        planes = y[0].to(torch.float32).contiguous().clamp_(0.0, 1.0).numpy()
        out = cv2.convertScaleAbs(cv2.merge([planes[0], planes[1], planes[2]]), alpha=255.0)
        return out

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            if self.device.type != "cuda":
                return self._to_uint8_cpu(self.module(self._to_tensor(torch.from_numpy(rgb))))
            with torch.cuda.stream(self._stream):
                self._host_in.copy_(torch.from_numpy(rgb))
                x = self._to_tensor(self._host_in.to(self.device, non_blocking=True))
                out = self._to_uint8(self.module(x))
                self._host_out.copy_(out, non_blocking=True)
            self._stream.synchronize()
            return self._host_out.numpy().copy()  # the pinned buffer is reused by the next frame

    def gpu_memory(self) -> tuple[int, int]:
        if self.device.type != "cuda":
            return 0, 0
        return int(torch.cuda.memory_allocated(self.device)), int(torch.cuda.memory_reserved(self.device))


def default_torch_threads() -> int:
    """One core fewer than the machine has: capture, encoding and publishing need a core too.

    torch's intra-op threads spin while they wait; on a small machine sharing all
    cores with the encoder threads makes inference several times slower.
    """
    return max(1, min(8, (os.cpu_count() or 1) - 1))


def load_engine(spec: str, device_choice: str, width: int, height: int, *, fp16: bool = False,
                compile: bool = False, torch_threads: int = 0) -> InferenceEngine:
    """Load, place and check the model named by `--model`; ModelError with a one-line reason."""
    torch.set_num_threads(torch_threads or default_torch_threads())
    device = resolve_device(device_choice)
    added = False
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # `--model mypkg.mod:factory` finds packages in the working directory
        added = True
    try:
        module, name = load_module(spec)
    finally:
        if added:
            sys.path.remove("")
    engine = InferenceEngine(module, name, device, width, height, fp16=fp16, compile=compile)
    engine.check()
    return engine
