"""The CLI in-process against the fake edge: --json summary, --save, one-line errors and exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import framecast
from framecast import constants as C
from framecast.cli import main
from framecast.edge.auth import verify_token
from tests.unit.client.conftest import edge_in_thread
from tests.unit.client.framecast_fake_edge import FakeEdge, Plan


def test_watch_json_summary(threaded_fake_edge: FakeEdge, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["watch", threaded_fake_edge.url, "--stream", "demo", "--client-id", "cli-1", "--duration", "1",
               "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(out)  # exactly one JSON document on stdout
    assert summary["stream"] == "demo" and summary["client_id"] == "cli-1"
    assert summary["frames"] > 10 and summary["fps"] > 10  # the fake sends 100/s; loose for loaded machines
    assert 0 <= summary["latency_ms"]["p50"] <= summary["latency_ms"]["p95"] <= summary["latency_ms"]["p99"]
    assert summary["kbit_s"] > 0 and summary["dropped"] == 0 and summary["tier"] == "high"
    assert summary["tiers"] == ["high", "low"] and (summary["width"], summary["height"]) == (64, 48)
    assert summary["first_frame_ms"] is not None
    assert threaded_fake_edge.hellos[0]["client_id"] == "cli-1"


def test_watch_save_frames_and_tier(threaded_fake_edge: FakeEdge, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["watch", threaded_fake_edge.url.replace("http://", "ws://"), "--tier", "low", "--frames", "5",
               "--save", str(tmp_path / "jpegs")])
    out, _ = capsys.readouterr()
    assert rc == 0
    files = sorted((tmp_path / "jpegs").glob("demo-*.jpg"))
    assert len(files) == 5 and files[0].read_bytes()[:2] == b"\xff\xd8"
    assert "5 frames" in out.splitlines()[-1]
    assert threaded_fake_edge.hellos[0]["tier"] == "low"


def test_probe_json(threaded_fake_edge: FakeEdge, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["probe", threaded_fake_edge.url, "--seconds-per-tier", "0.3", "--burst-seconds", "0.3", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out)
    assert result["recommended_tier"] in ("high", "low") and result["recommended_fps"] > 10
    assert result["throughput_mbit_s"] > 1


def test_probe_human_output(threaded_fake_edge: FakeEdge, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", threaded_fake_edge.url, "--seconds-per-tier", "0.2", "--burst-seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "RTT" in out and "this link carries tier" in out  # which one depends on this machine's load


@pytest.mark.parametrize(
    ("argv", "rc", "message"),
    [
        (["watch", "ftp://127.0.0.1:1"], 1, "unsupported URL scheme 'ftp'"),
        (["watch", "http://127.0.0.1:1", "--duration", "1"], 1, "cannot reach 127.0.0.1:1"),
        (["probe", "http://127.0.0.1:1"], 1, "cannot reach 127.0.0.1:1"),
        (["watch", "--duration", "0"], 2, "must be positive"),
        (["watch", "http://127.0.0.1:1", "--tier", "Best!"], 1, "invalid tier"),
        (["launch"], 2, "invalid choice"),
    ],
)
def test_bad_input_is_one_line(argv: list[str], rc: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == rc
    err = capsys.readouterr().err
    assert message in one_error_line(err) and "Traceback" not in err


LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d framecast: ")  # the CLI's log lines (reconnects, waiting)


def one_error_line(err: str) -> str:
    """The one error line of a failed command; anything else on stderr must be a log line."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if not LOG_LINE.match(line)]
    assert len(errors) == 1, lines
    return errors[0]


def test_unknown_stream(threaded_fake_edge: FakeEdge, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", threaded_fake_edge.url, "--stream", "nope", "--duration", "1"]) == 1
    err = capsys.readouterr().err
    assert "unknown stream 'nope'" in one_error_line(err)


def test_watch_without_reconnect_reports_the_close(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan(close_after=3, close_code=C.CLOSE_SERVICE_RESTART, close_reason="restarting")
    with edge_in_thread(FakeEdge(plans=[plan])) as edge:
        rc = main(["watch", edge.url, "--no-reconnect", "--duration", "5", "--json"])
    out, err = capsys.readouterr()
    assert rc == 1 and out == ""
    assert "close code 1012: restarting" in one_error_line(err)


def test_watch_reconnects_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan(close_after=3, close_code=C.CLOSE_SERVICE_RESTART)
    with edge_in_thread(FakeEdge(plans=[plan])) as edge:
        rc = main(["watch", edge.url, "--frames", "10", "--json"])
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert rc == 0 and summary["reconnects"] == 1 and summary["frames"] == 10
    # logging is configured: the reconnect is visible on stderr (stdout stays one JSON document)
    assert re.search(r"framecast: connection to \S+ closed \(1012.*reconnecting", err), err
    assert "framecast: reconnected to" in err, err


def test_log_level_hides_reconnect_messages(capsys: pytest.CaptureFixture[str]) -> None:
    plan = Plan(close_after=3, close_code=C.CLOSE_SERVICE_RESTART)
    with edge_in_thread(FakeEdge(plans=[plan])) as edge:
        assert main(["--log-level", "warning", "watch", edge.url, "--frames", "10", "--json"]) == 0
    assert "reconnect" not in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"framecast {framecast.__version__}"


def test_token_is_minted_from_the_edge_secret(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRAMECAST_AUTH_SECRET", "s3cret-for-tests-0123456789abcdef")
    assert main(["token", "--stream", "demo", "--stream", "cam1", "--ttl", "60", "--subject", "ops"]) == 0
    token = capsys.readouterr().out.strip()
    grant = verify_token("s3cret-for-tests-0123456789abcdef", token, "cam1")
    assert grant.subject == "ops" and grant.streams == frozenset({"demo", "cam1"})
    assert not grant.allows("other")
    assert main(["token"]) == 0  # no --stream: every stream
    assert verify_token("s3cret-for-tests-0123456789abcdef", capsys.readouterr().out.strip(), "any").streams is None


def test_token_without_a_secret_says_which_setting(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FRAMECAST_AUTH_SECRET", raising=False)
    assert main(["token", "--stream", "demo"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "FRAMECAST_AUTH_SECRET" in one_error_line(err)


def test_probe_progress_and_codecs(threaded_fake_edge: FakeEdge, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["probe", threaded_fake_edge.url, "--seconds-per-tier", "0.2", "--burst-seconds", "0.2", "--json",
               "--progress", "always", "--codecs", "jpeg", "--token", "tok-1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert json.loads(out)["recommended_tier"] in ("high", "low")
    progress = err.strip().splitlines()
    assert progress[0].startswith("probe: RTT") and any("tier high (jpeg, 1/2)" in line for line in progress)
    assert any(line.startswith("probe: throughput") for line in progress), progress
    hello = threaded_fake_edge.hellos[0]
    assert hello["token"] == "tok-1" and hello["codecs"] == ["jpeg"]


def test_streams(threaded_fake_edge: FakeEdge, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["streams", threaded_fake_edge.url, "--json"]) == 0
    streams = json.loads(capsys.readouterr().out)
    assert [s["stream"] for s in streams] == ["demo"] and streams[0]["live"]
    assert main(["streams", threaded_fake_edge.url]) == 0
    out = capsys.readouterr().out
    assert "demo" in out and "high 64x48" in out
