"""The lazily started SDK shared by the Flask and Django integrations."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import cast

import pytest

from skopos import SkoposSDK
from skopos.integrations._lazy import LazySdk


def test_requests_waiting_for_the_sdk_are_tracked_in_arrival_order() -> None:
    started = threading.Event()
    sdk = cast(SkoposSDK, object())

    def start() -> SkoposSDK:
        started.wait(10)
        return sdk

    lazy = LazySdk(start)
    order: list[int] = []
    threads = [
        threading.Thread(target=lazy.run, args=(lambda got, i=i: order.append(i) if got else 0,))
        for i in range(8)
    ]
    for number, thread in enumerate(threads):
        thread.start()
        while lazy._turns._issued <= number:  # wait until it queues, so arrivals are ordered
            time.sleep(0.001)
    assert lazy.peek() is None  # still starting
    started.set()
    for thread in threads:
        thread.join(10)
    assert order == list(range(8))
    assert lazy.peek() is sdk


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_does_not_wait_behind_the_parents_requests() -> None:
    release = threading.Event()
    sdk = cast(SkoposSDK, object())

    def start() -> SkoposSDK:
        release.wait(10)
        return sdk

    lazy = LazySdk(start)
    starting = threading.Thread(target=lazy.run, args=(lambda got: got,))
    starting.start()
    while lazy._turns._issued < 1:  # the parent's first request is starting the SDK
        time.sleep(0.001)
    pid = os.fork()
    if pid == 0:  # the child: no thread here will ever finish the parent's turn
        release.set()
        os._exit(0 if lazy.run(lambda got: got) is sdk else 1)
    release.set()
    starting.join(10)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child waited forever for the SDK")
    assert os.waitstatus_to_exitcode(done[1]) == 0
