"""Connecting to PocketBase, on the worker's thread: what the worker needs before it can
turn calls into records, and when to try again.

``init`` does no network I/O (unless it is asked to wait): the worker connects in the
background, and the calls made meanwhile wait in the queue. Connecting means:
authenticating, checking that the batch API is on, reading (or creating) the visitor-hash
salt of now and reading the default site's rules. Only then is the pipeline handed to the
worker.

Failures are of two kinds (``classify``):

- ``transient``: PocketBase unreachable, slow or failing (5xx, 429). Tried again with
  capped, jittered exponential backoff; logged once as a warning.
- ``needs_fix``: retrying the same request cannot help until someone changes something
  (wrong credentials, schema missing, unknown tracking id, batch API off, PocketBase too
  old). Logged as an error and in ``stats().last_error``, and tried again every
  ``NEEDS_FIX_RETRY`` seconds so that a fixed configuration recovers without a restart.

``plan_retry`` decides the delay and how loudly to log, from the failure and the history;
it is pure (``tests/delivery/test_connecting.py``). ``Connector`` does the I/O.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Literal

from skopos._exceptions import (
    ConfigurationError,
    PocketBaseAuthError,
    PocketBaseBatchDisabled,
    PocketBaseError,
    PocketBaseNotFound,
    PocketBaseValidationError,
    PocketBaseVersionError,
)
from skopos._pocketbase.client import PocketBaseClient
from skopos._tracking.pipeline import Pipeline
from skopos._tracking.salt import SaltBook
from skopos._tracking.sites import SiteRegistry

__all__ = [
    "NEEDS_FIX_RETRY",
    "REMIND_EVERY",
    "Connector",
    "FailureKind",
    "RetryPlan",
    "classify",
    "plan_retry",
]

FailureKind = Literal["transient", "needs_fix"]

# A configuration someone must fix is tried again this often (jittered): slowly, as it
# will not fix itself, but soon enough that a fix takes effect without a restart.
NEEDS_FIX_RETRY = 60.0
# Transient failures back off exponentially from TRANSIENT_BASE up to TRANSIENT_CEILING.
TRANSIENT_BASE = 0.5
TRANSIENT_CEILING = 30.0
# An error that persists is logged again this often, so the log still says it.
REMIND_EVERY = 600.0

_NEEDS_FIX: tuple[type[Exception], ...] = (
    ConfigurationError,
    PocketBaseAuthError,
    PocketBaseBatchDisabled,
    PocketBaseNotFound,
    PocketBaseValidationError,
    PocketBaseVersionError,
)


def classify(error: Exception) -> FailureKind:
    """Whether trying again later can succeed without anyone changing anything.

    >>> classify(PocketBaseAuthError("wrong password")), classify(OSError("reset"))
    ('needs_fix', 'transient')
    """
    return "needs_fix" if isinstance(error, _NEEDS_FIX) else "transient"


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """When to try again, and how to report this failure."""

    delay: float  # seconds until the next attempt
    level: Literal["error", "warning", "debug"]  # how loudly to log it


def plan_retry(
    kind: FailureKind,
    failures: int,
    *,
    same_as_last_logged: bool,
    since_logged: float,
    jitter: float = 1.0,
) -> RetryPlan:
    """The next attempt's delay and the log level of failure number ``failures`` (1 for the
    first) of this ``kind``; ``same_as_last_logged`` when its message was logged already,
    ``since_logged`` seconds ago; ``jitter`` in [0.5, 1] scales the delay.

    >>> plan_retry("transient", 1, same_as_last_logged=False, since_logged=0.0)
    RetryPlan(delay=0.5, level='warning')
    >>> plan_retry("transient", 9, same_as_last_logged=True, since_logged=5.0)
    RetryPlan(delay=30.0, level='debug')
    >>> plan_retry("needs_fix", 3, same_as_last_logged=True, since_logged=700.0)
    RetryPlan(delay=60.0, level='error')
    """
    if kind == "needs_fix":
        delay = NEEDS_FIX_RETRY * jitter
        loud: Literal["error", "warning"] = "error"
    else:
        delay = min(TRANSIENT_CEILING, TRANSIENT_BASE * 2 ** min(failures - 1, 20)) * jitter
        loud = "warning"
    if not same_as_last_logged or since_logged >= REMIND_EVERY:
        return RetryPlan(delay, loud)
    return RetryPlan(delay, "debug")


def jitter() -> float:
    """A random factor in [0.5, 1] for ``plan_retry`` (full jitter's upper half)."""
    return random.uniform(0.5, 1.0)


class Connector:
    """Connects once: authenticate, batch API, salt, the default site; hands out the pipeline.

    ``connect`` raises ``ConfigurationError`` (schema missing, unknown tracking id) or
    ``PocketBaseError`` (unreachable, wrong credentials, batch API off, ...), with a message
    that says what to do.
    """

    def __init__(
        self,
        client: PocketBaseClient,
        sites: SiteRegistry,
        salts: SaltBook,
        pipeline: Pipeline,
        *,
        pocketbase_url: str,
        site_id: str,
        collect_site_ids: tuple[str, ...] = (),
    ) -> None:
        self._client = client
        self._sites = sites
        self._salts = salts
        self._pipeline = pipeline
        self._url = pocketbase_url
        self._site_id = site_id
        self._collect_site_ids = collect_site_ids
        # The domains (with and without ``www.``) of the sites ``/collect`` serves: read
        # here, so the request path never asks PocketBase.
        self.origin_hosts: frozenset[str] | None = None

    def connect(self) -> Pipeline:
        """Check everything the worker needs of PocketBase; the pipeline, ready to use."""
        self._client.authenticate()
        self._client.batch_max_requests()  # PocketBaseBatchDisabled says "run skopos setup"
        try:
            self._salts.salt_for(time.time())
        except PocketBaseNotFound as exc:
            raise ConfigurationError(
                f"PocketBase at {self._url} lacks the Skopos schema; run `skopos setup` first"
            ) from exc
        except RuntimeError as exc:  # the salt could not be created: try again later
            raise PocketBaseError(str(exc)) from exc
        hosts: set[str] = set()
        for tracking_id in (self._site_id, *self._collect_site_ids):
            site = self._sites.get(tracking_id, fresh=True)
            if site is None:
                option = "site_id" if tracking_id == self._site_id else "collect_site_ids"
                raise ConfigurationError(
                    f"{option}: no website with tracking id {tracking_id!r} in PocketBase at"
                    f" {self._url} (create one in the dashboard or with"
                    " `skopos setup --domain ...`)"
                )
            if site.domain:
                hosts.update((site.domain, "www." + site.domain))
        self.origin_hosts = frozenset(hosts)
        self._pipeline.warm_up()  # ~0.3 s once, here rather than on the first call
        return self._pipeline
