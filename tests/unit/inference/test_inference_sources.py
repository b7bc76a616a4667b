"""Sources: the synthetic pattern, video files the test writes, cameras and URLs that do not exist."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from framecast.bus import now_us
from framecast.dev.embedded import free_port
from framecast.inference.sources import (
    SourceEnded,
    SourceError,
    SourceLost,
    SyntheticSource,
    crop_to_aspect,
    open_source,
)
from framecast.logs import redact_url
from tests.support.httpserve import serve_files

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]  # RGB


def write_video(path: Path, fourcc: str, fps: float = 12.0, size: tuple[int, int] = (64, 48)) -> None:
    code = cv2.VideoWriter_fourcc(*fourcc)  # type: ignore[attr-defined]
    writer = cv2.VideoWriter(str(path), code, fps, size)
    assert writer.isOpened()
    for rgb in COLOURS:
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[:] = rgb[::-1]  # the writer takes BGR
        writer.write(frame)
    writer.release()


def dominant(image: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (int(c > 127) * 255 for c in image.reshape(-1, 3).mean(axis=0))
    return r, g, b


def test_synthetic_frames_move_and_carry_capture_time() -> None:
    source = open_source("synthetic", 320, 180, fps=30)
    assert isinstance(source, SyntheticSource) and source.paced and source.fps == 30
    before = now_us()
    a, b = source.read(1), source.read(2)
    assert a.image.shape == (180, 320, 3) and a.image.dtype == np.uint8
    assert before <= a.capture_us <= b.capture_us <= now_us()
    assert not np.array_equal(a.image, b.image)


@pytest.mark.parametrize(("suffix", "fourcc"), [(".avi", "MJPG"), (".mp4", "mp4v")])
def test_file_source_reads_every_frame_then_ends(tmp_path: Path, suffix: str, fourcc: str) -> None:
    path = tmp_path / f"clip{suffix}"
    write_video(path, fourcc)
    source = open_source(f"file:{path}", 32, 24, fps=30)
    try:
        assert source.paced and source.fps == pytest.approx(12.0)
        frames = [source.read(i) for i in range(len(COLOURS))]
        assert [f.image.shape for f in frames] == [(24, 32, 3)] * len(COLOURS)  # resized to the working size
        assert [dominant(f.image) for f in frames] == COLOURS  # in order, converted to RGB
        with pytest.raises(SourceEnded):
            source.read(99)
    finally:
        source.close()


def test_file_source_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_video(path, "MJPG")
    source = open_source(f"file:{path}", 64, 48, fps=30, loop=True)
    try:
        colours = [dominant(source.read(i).image) for i in range(2 * len(COLOURS) + 1)]
    finally:
        source.close()
    assert colours == COLOURS + COLOURS + COLOURS[:1]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="file not found"):
        open_source(f"file:{tmp_path / 'nope.mp4'}", 64, 48, fps=30)


def test_file_that_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match=r"garbage\.mp4"):
        open_source(f"file:{path}", 64, 48, fps=30)


def test_camera_that_does_not_exist() -> None:
    with pytest.raises(SourceError, match="camera:97"):
        open_source("camera:97", 64, 48, fps=30)


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_url_that_cannot_be_opened(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{free_port()}/stream"  # nothing listens there: refused at once
    with pytest.raises(SourceError, match="cannot open the stream"):
        open_source(url, 64, 48, fps=30)


def test_unknown_source_kind() -> None:
    with pytest.raises(SourceError, match="unknown kind"):
        open_source("ftp://example/x", 64, 48, fps=30)


def test_http_stream_is_read_lost_and_reopened(tmp_path: Path) -> None:
    write_video(tmp_path / "live.avi", "MJPG")
    server = serve_files(tmp_path)
    port = server.server_port
    source = open_source(f"http://127.0.0.1:{port}/live.avi", 64, 48, fps=30)
    try:
        assert not source.paced  # a live source delivers at its own rate
        assert [dominant(source.read(i).image) for i in range(len(COLOURS))] == COLOURS
        with pytest.raises(SourceLost):  # the stream ends: for a URL that is a loss, not an end
            source.read(99)
        server.shutdown()
        server.server_close()
        with pytest.raises(SourceLost, match="cannot open the stream"):
            source.reopen()  # the server is away
        server = serve_files(tmp_path, port)  # back on the same address
        source.reopen()
        assert dominant(source.read(0).image) == COLOURS[0]
    finally:
        source.close()
        server.shutdown()
        server.server_close()


def test_passwords_never_reach_logs_or_metrics() -> None:
    assert redact_url("rtsp://admin:s3cret@10.0.0.7:554/live") == "rtsp://***@10.0.0.7:554/live"
    assert redact_url("http://user:pass@host/clip.mp4?api_key=k1&x=2") == "http://***@host/clip.mp4?api_key=***&x=***"
    assert redact_url("http://cam.local/mjpg") == "http://cam.local/mjpg"
    assert redact_url("synthetic") == "synthetic"
    assert redact_url("file:clip.mp4") == "file:clip.mp4" and redact_url("camera:0") == "camera:0"
    with pytest.raises(SourceError) as exc:
        open_source(f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/live", 64, 48, fps=30)
    assert "s3cret" not in str(exc.value) and "admin" not in str(exc.value) and "://***@" in str(exc.value)


def test_other_aspect_ratios_are_cropped_not_distorted(tmp_path: Path) -> None:
    path = tmp_path / "tall.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))  # type: ignore[attr-defined]
    frame = np.zeros((96, 128, 3), np.uint8)
    frame[:8] = 255  # a white band at the top, outside the 16:9 centre (rows 12..84) of a 4:3 frame
    for _ in range(2):
        writer.write(frame)
    writer.release()
    source = open_source(f"file:{path}", 64, 36, fps=30)
    try:
        image = source.read(0).image
    finally:
        source.close()
    assert image.shape == (36, 64, 3)
    assert image[:2].mean() < 40  # cropped away; a squeeze would have kept the band in the first rows


def test_crop_to_aspect_shapes() -> None:
    img = np.zeros((720, 1280, 3), np.uint8)
    assert crop_to_aspect(img, 1280, 720).shape == (720, 1280, 3)
    assert crop_to_aspect(img, 640, 480).shape == (720, 960, 3)
    assert crop_to_aspect(img, 1000, 200).shape == (256, 1280, 3)
