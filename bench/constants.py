"""Names and limits shared by the benchmark harness (one place, no magic strings)."""

from __future__ import annotations

from typing import Final, Literal

SystemName = Literal["seed-original", "seed-optimized", "framecast"]
SEED_ORIGINAL: Final[SystemName] = "seed-original"
SEED_OPTIMIZED: Final[SystemName] = "seed-optimized"
FRAMECAST: Final[SystemName] = "framecast"
ALL_SYSTEMS: Final[tuple[SystemName, ...]] = (SEED_ORIGINAL, SEED_OPTIMIZED, FRAMECAST)

# HTTP paths of the baseline servers (the seed served frames at /ws/{client_id}).
SEED_WS_PATH: Final = "/ws/{client_id}"
STATS_PATH: Final = "/bench/stats"
CAPTURES_PATH: Final = "/bench/captures"
BENCH_CLIENT_ID: Final = "bench_client"

# Seed wire formats.
# The seed packs struct.pack('!Ifd', frame_id, timestamp, size): frame id u32,
# timestamp as a *float32* (about 128 s resolution at today's epoch, useless for
# latency) and size as a float64.  Kept byte for byte; the bench measures latency
# with the capture times the baseline server records per frame id instead.
SEED_HEADER_FORMAT: Final = "!Ifd"
SEED_HEADER_SIZE: Final = 16
SEED_MESSAGE_TYPE_FRAME: Final = "frame"

# Suites and result files.
SUITE_LINKS: Final = "links"
SUITE_FANOUT: Final = "fanout"
SUITE_VIDEO: Final = "video"
RESULTS_SCHEMA_VERSION: Final = 1

# Loopback-only scenario used by --quick and by CI.
SCENARIO_LOOPBACK: Final = "loopback"

# Bounds: no harness step may run longer than these.
SERVER_READY_TIMEOUT_S: Final = 20.0
CLIENT_GRACE_S: Final = 15.0
PROCESS_STOP_TIMEOUT_S: Final = 5.0
RELAY_READY_TIMEOUT_S: Final = 10.0
COMMAND_TIMEOUT_S: Final = 10.0

# Fan-out suite (bench/fanout.py): N viewers x 30 fps at two frame sizes (a 720p JPEG, a video-high frame), and
# the worker rows (viewers, payload bytes, edge workers) that one process cannot carry on this machine.
FANOUT_PAYLOAD_SIZES: Final[tuple[int, ...]] = (60_000, 10_000)
FANOUT_VIEWER_COUNTS: Final[tuple[int, ...]] = (50, 200, 500)
FANOUT_WORKER_ROWS: Final[tuple[tuple[int, int, int], ...]] = ((1000, 10_000, 2),)
FANOUT_WINDOW_S: Final = 5.0
# the whole plan runs this many times, one round after the other (a slow minute of the machine hits every target
# of a round alike); each row reports its median round and the spread
FANOUT_ROUNDS: Final = 3
