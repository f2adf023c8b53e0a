"""Connecting to PocketBase in the background: which failures need a fix, when to try again
and how loudly to say so (pure), and what ``Connector`` checks (against real servers)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from skopos import (
    ConfigurationError,
    PocketBaseAuthError,
    PocketBaseBatchDisabled,
    PocketBaseNotFound,
    PocketBaseServerError,
    PocketBaseUnreachable,
    PocketBaseVersionError,
)
from skopos._delivery.connecting import (
    NEEDS_FIX_RETRY,
    REMIND_EVERY,
    TRANSIENT_CEILING,
    Connector,
    RetryPlan,
    classify,
    plan_retry,
)
from skopos._tracking.identity import VisitorHasher
from skopos._tracking.pipeline import Pipeline
from skopos._tracking.salt import SaltBook
from skopos._tracking.sites import SiteRegistry
from tests._support.pocketbase_server import PocketBaseServer


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (PocketBaseUnreachable("refused"), "transient"),
        (PocketBaseServerError("503", status=503), "transient"),
        (OSError("reset"), "transient"),
        (PocketBaseAuthError("wrong password"), "needs_fix"),
        (PocketBaseBatchDisabled("off"), "needs_fix"),
        (PocketBaseNotFound("no collection"), "needs_fix"),
        (PocketBaseVersionError("0.22"), "needs_fix"),
        (ConfigurationError("no website"), "needs_fix"),
    ],
)
def test_classify(error: Exception, kind: str) -> None:
    assert classify(error) == kind


def test_transient_failures_back_off_to_a_ceiling_and_warn_once() -> None:
    delays = [
        plan_retry("transient", n, same_as_last_logged=n > 1, since_logged=1.0).delay
        for n in range(1, 12)
    ]
    assert delays == sorted(delays)
    assert delays[0] < 1.0
    assert delays[-1] == TRANSIENT_CEILING
    levels = [
        plan_retry("transient", n, same_as_last_logged=n > 1, since_logged=1.0).level
        for n in range(1, 4)
    ]
    assert levels == ["warning", "debug", "debug"]


def test_a_failure_that_needs_a_fix_is_an_error_retried_slowly_and_repeated_now_and_then() -> None:
    first = plan_retry("needs_fix", 1, same_as_last_logged=False, since_logged=0.0)
    assert first == RetryPlan(NEEDS_FIX_RETRY, "error")
    quiet = plan_retry("needs_fix", 5, same_as_last_logged=True, since_logged=60.0)
    assert quiet.level == "debug"
    reminded = plan_retry("needs_fix", 12, same_as_last_logged=True, since_logged=REMIND_EVERY)
    assert reminded.level == "error"
    changed = plan_retry("needs_fix", 6, same_as_last_logged=False, since_logged=5.0)
    assert changed.level == "error"  # another reason: said at once
    assert plan_retry(
        "needs_fix", 2, same_as_last_logged=True, since_logged=1.0, jitter=0.5
    ).delay == (NEEDS_FIX_RETRY / 2)


@pytest.mark.pocketbase
def test_the_connector_says_what_to_fix(
    pocketbase_factory: Callable[..., PocketBaseServer],
) -> None:
    bare = pocketbase_factory(setup=False)  # no Skopos schema, batch API off
    with bare.client() as client:
        sites = SiteRegistry(client, refresh_interval=900.0, realtime=False)
        salts = SaltBook(client, daily=False, session_timeout=1800.0)
        pipeline = Pipeline(sites, VisitorHasher(salts))
        connector = Connector(
            client, sites, salts, pipeline, pocketbase_url=bare.url, site_id="nope"
        )
        with pytest.raises(PocketBaseBatchDisabled):
            connector.connect()
