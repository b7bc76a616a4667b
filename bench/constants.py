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

# Fan-out payload (the design's "shared 50 KB payload").
FANOUT_PAYLOAD_BYTES: Final = 50_000
FANOUT_READER_COUNTS: Final[tuple[int, ...]] = (1, 10, 50, 200)
