"""A host process for the spool tests: tracks a known trace with a spool, then waits
to be killed (``python -m tests._support.spool_child CONFIG_JSON``). Never returns on its own."""

from __future__ import annotations

import json
import sys
import time

from skopos import SkoposSDK
from tests._support.spool_trace import send_trace


def main() -> None:
    config = json.loads(sys.argv[1])
    sdk = SkoposSDK.init(
        pocketbase_url=config["url"],
        site_id=config["site_id"],
        admin_email=config["email"],
        admin_password=config["password"],
        spool_dir=config["spool_dir"],
        realtime=False,
        request_timeout=120.0,
        js_error_batch_interval=config.get("js_error_batch_interval", 300.0),
    )
    send_trace(sdk, config["domain"], config["calls"])
    print("sent", flush=True)
    while True:  # until SIGKILL
        time.sleep(1)


if __name__ == "__main__":
    main()
