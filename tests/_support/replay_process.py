"""Replay one process's share of a trace through a SkoposSDK (run as a subprocess by tests).

Usage: python -m tests._support.replay_process CONFIG_JSON PROCESS_INDEX
CONFIG_JSON: {"sdk": {...init options...}, "domain": str, "visitors": int,
              "views": int, "step": float}
Prints "ready" once initialised, then reads the shared start time (epoch seconds)
from stdin, so every process replays on one clock whatever its start-up cost.
"""

from __future__ import annotations

import json
import sys
import time

from skopos import SkoposSDK
from tests._support.tracking_helpers import environ, page_view


def main() -> None:
    config = json.loads(sys.argv[1])
    process_index = int(sys.argv[2])
    sdk = SkoposSDK.init(**config["sdk"])
    # Every process sends an event for every visitor at the same instants, so the
    # first page view of each visitor races between processes.
    schedule = [
        (view * config["step"], visitor, view)
        for view in range(config["views"])
        for visitor in range(config["visitors"])
    ]
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    for offset, visitor, view in schedule:
        delay = start + offset - time.time()
        if delay > 0:
            time.sleep(delay)
        request = environ(f"203.0.113.{visitor + 1}")
        path = f"/v{visitor}/p{view}/{process_index}"
        sdk.track_api_event(request, page_view(config["domain"], path))
    ok = sdk.flush(timeout=30)
    stats = sdk.stats()
    sdk.shutdown()
    print(json.dumps({"flushed": ok, "written": stats.written, "dropped": stats.dropped}))


if __name__ == "__main__":
    main()
