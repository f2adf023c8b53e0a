"""SDK options: arguments, then ``SKOPOS_*`` environment variables, then defaults; a bad value
raises naming the option and where it came from."""

from __future__ import annotations

import pytest

from skopos import ConfigurationError
from skopos._config import resolve_options

REQUIRED = {
    "pocketbase_url": "http://127.0.0.1:8090",
    "site_id": "abc",
    "admin_email": "a@b.c",
    "admin_password": "pw",
}


def test_argument_beats_environment_beats_default() -> None:
    env = {"SKOPOS_BATCH_INTERVAL": "2.5", "SKOPOS_SESSION_TIMEOUT": "60", "SKOPOS_BATCH": "yes"}
    options = resolve_options({**REQUIRED, "session_timeout": 30}, env)
    assert (options.session_timeout, options.batch_interval, options.batch) == (30.0, 2.5, True)
    assert options.js_error_batch_interval == 0.0  # error groups go with the next write
    assert (options.client_ip_header, options.handle_sigterm) == ("x-forwarded-for", True)


def test_required_options_come_from_the_environment() -> None:
    env = {
        "SKOPOS_POCKETBASE_URL": "https://pb.example.com",
        "SKOPOS_SITE_ID": "site",
        "SKOPOS_ADMIN_EMAIL": "a@b.c",
        "SKOPOS_ADMIN_PASSWORD": "secret",
    }
    options = resolve_options({}, env)
    assert options.pocketbase_url == "https://pb.example.com"
    assert "secret" not in repr(options)


@pytest.mark.parametrize(
    ("arguments", "environ", "message"),
    [
        ({}, {}, "missing required option(s): pocketbase_url (or SKOPOS_POCKETBASE_URL)"),
        ({**REQUIRED, "pocketbase_url": "ftp://x"}, {}, "must be an http(s) URL"),
        ({**REQUIRED, "batch_interval": 0}, {}, "batch_interval (argument) is invalid"),
        ({**REQUIRED}, {"SKOPOS_MAX_BATCH_SIZE": "lots"}, "max_batch_size (SKOPOS_MAX_BATCH_SIZE)"),
        ({**REQUIRED}, {"SKOPOS_BATCH": "maybe"}, "expected true or false"),
        ({**REQUIRED, "max_batch_size": True}, {}, "expected a number"),
        ({**REQUIRED, "colour": "red"}, {}, "unknown option(s): colour"),
    ],
)
def test_bad_options_are_named(
    arguments: dict[str, object], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve_options(arguments, environ)
    assert message in str(caught.value)


def test_collect_site_ids_are_a_list_or_a_comma_separated_string() -> None:
    env = {"SKOPOS_COLLECT_SITE_IDS": "blog, shop ,"}
    assert resolve_options(REQUIRED, env).collect_site_ids == ("blog", "shop")
    assert resolve_options({**REQUIRED, "collect_site_ids": ["a"]}, env).collect_site_ids == ("a",)
    assert resolve_options(REQUIRED, {}).collect_site_ids == ()
    with pytest.raises(ConfigurationError, match="collect_site_ids"):
        resolve_options({**REQUIRED, "collect_site_ids": 42}, {})
