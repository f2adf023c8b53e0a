"""The PocketBase client against a real server."""

from __future__ import annotations

import secrets
import string
import time
from collections.abc import Callable

import httpx
import pytest

from skopos import (
    PocketBaseAuthError,
    PocketBaseBatchDisabled,
    PocketBaseNotFound,
    PocketBaseUnreachable,
    PocketBaseValidationError,
    PocketBaseVersionError,
)
from skopos._admin.embedded import free_port
from skopos._admin.setup import Website
from skopos._pocketbase.client import BatchRequest, PocketBaseClient
from skopos._pocketbase.filter import pb_filter
from tests._support.pocketbase_server import PocketBaseServer

pytestmark = pytest.mark.pocketbase


def record_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(15))


def session_count(pb: PocketBaseClient, site: Website) -> int:
    page = pb.list_records(
        "sessions", filter=pb_filter("website = {:w}", w=site.id), per_page=1, with_total=True
    )
    return page.total_items


def test_create_get_update_list_delete(pb: PocketBaseClient, website: Website) -> None:
    created = pb.create_record("visitors", {"website": website.id, "visitorId": "v1"})
    assert pb.get_record("visitors", created["id"])["visitorId"] == "v1"
    pb.update_record("visitors", created["id"], {"userId": "user_1"})
    found = pb.first_record("visitors", pb_filter("website = {:w}", w=website.id))
    assert found is not None
    assert found["userId"] == "user_1"
    pb.delete_record("visitors", created["id"])
    with pytest.raises(PocketBaseNotFound):
        pb.get_record("visitors", created["id"])


def test_upsert_creates_then_updates(pb: PocketBaseClient, website: Website) -> None:
    rid = record_id()
    pb.upsert_record("visitors", {"id": rid, "website": website.id, "visitorId": "u1"})
    pb.upsert_record(
        "visitors", {"id": rid, "website": website.id, "visitorId": "u1", "name": "Ada"}
    )
    records = list(pb.iter_records("visitors", filter=pb_filter("website = {:w}", w=website.id)))
    assert [(r["id"], r["name"]) for r in records] == [(rid, "Ada")]


def test_iter_records_walks_every_page(pb: PocketBaseClient, website: Website) -> None:
    pb.batch(
        [
            BatchRequest.create("visitors", {"website": website.id, "visitorId": f"p{i}"})
            for i in range(25)
        ]
    )
    records = pb.iter_records(
        "visitors", filter=pb_filter("website = {:w}", w=website.id), per_page=10
    )
    assert sorted(r["visitorId"] for r in records) == sorted(f"p{i}" for i in range(25))


def test_unique_visitor_index_is_enforced(pb: PocketBaseClient, website: Website) -> None:
    pb.create_record("visitors", {"website": website.id, "visitorId": "same"})
    with pytest.raises(PocketBaseValidationError):
        pb.create_record("visitors", {"website": website.id, "visitorId": "same"})


def test_a_batch_of_1000_creates_is_one_transaction(pb: PocketBaseClient, website: Website) -> None:
    visitor = pb.create_record("visitors", {"website": website.id, "visitorId": "batcher"})
    session_ids = [record_id() for _ in range(1000)]
    requests = [
        BatchRequest.create(
            "sessions", {"id": sid, "website": website.id, "visitor": visitor["id"]}
        )
        for sid in session_ids
    ]
    results = pb.batch(requests)
    assert [r["id"] for r in results] == session_ids
    assert session_count(pb, website) == 1000


def test_one_invalid_record_leaves_nothing_and_is_named(
    pb: PocketBaseClient, website: Website
) -> None:
    requests = [
        BatchRequest.create("sessions", {"id": record_id(), "website": website.id})
        for _ in range(1000)
    ]
    requests[737] = BatchRequest.create(
        "sessions", {"id": record_id(), "website": website.id, "visitor": "doesnotexist123"}
    )
    with pytest.raises(PocketBaseValidationError) as caught:
        pb.batch(requests)
    assert caught.value.request_index == 737
    assert caught.value.request_label == "create sessions"
    assert "visitor" in caught.value.field_errors
    assert "batch request 737 (create sessions)" in str(caught.value)
    assert session_count(pb, website) == 0


def test_batch_update_with_modifier_and_delete(pb: PocketBaseClient, website: Website) -> None:
    rid = record_id()
    pb.batch([BatchRequest.create("js_errors", {"id": rid, "website": website.id, "count": 1})])
    pb.batch([BatchRequest.update("js_errors", rid, {"count+": 4})])
    assert pb.get_record("js_errors", rid)["count"] == 5
    pb.batch([BatchRequest.delete("js_errors", rid)])
    with pytest.raises(PocketBaseNotFound):
        pb.get_record("js_errors", rid)


def test_wrong_password_is_a_clear_auth_error(pocketbase: PocketBaseServer) -> None:
    with (
        PocketBaseClient(pocketbase.url, pocketbase.email, "wrong-password") as client,
        pytest.raises(PocketBaseAuthError, match="refused the superuser credentials"),
    ):
        client.authenticate()


def test_unreachable_server_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        PocketBaseClient(url, "a@b.c", "password", timeout=2) as client,
        pytest.raises(PocketBaseUnreachable, match="cannot reach PocketBase"),
    ):
        client.authenticate()


def test_token_refresh_and_reauth_keep_a_long_run_working(
    pocketbase_factory: Callable[..., PocketBaseServer],
) -> None:
    server = pocketbase_factory()
    with server.client() as admin:
        admin.request(
            "PATCH", "/api/collections/_superusers", json_body={"authToken": {"duration": 10}}
        )
        site = admin.create_record("websites", {"name": "long run", "domain": "long.example.test"})
    logins: list[str] = []

    def count_logins(request: httpx.Request) -> None:
        if request.url.path.startswith("/api/collections/_superusers/auth-"):
            logins.append(request.url.path.rsplit("/", 1)[-1])

    client = PocketBaseClient(server.url, server.email, server.password)
    client._http.event_hooks["request"].append(count_logins)
    written = 0
    deadline = time.monotonic() + 23  # more than two 10-second token lifetimes
    while time.monotonic() < deadline:
        client.create_record("visitors", {"website": site["id"], "visitorId": f"v{written}"})
        written += 1
        time.sleep(0.25)
    assert logins.count("auth-with-password") == 1
    assert logins.count("auth-refresh") >= 2

    # Changing the password revokes every token: the next call re-authenticates once.
    with server.client() as admin:
        [superuser] = admin.list_records("_superusers").items
        password = server.password
        admin.update_record(
            "_superusers", superuser["id"], {"password": password, "passwordConfirm": password}
        )
    client.create_record("visitors", {"website": site["id"], "visitorId": "after-revoke"})
    client.batch([BatchRequest.create("visitors", {"website": site["id"], "visitorId": "b"})])
    assert logins.count("auth-with-password") == 2
    with server.client() as admin:
        total = admin.list_records("visitors", per_page=1, with_total=True).total_items
    assert total == written + 2
    client.close()


def test_batch_disabled_is_explained(pocketbase_factory: Callable[..., PocketBaseServer]) -> None:
    server = pocketbase_factory(setup=False)
    with server.client() as client, pytest.raises(PocketBaseBatchDisabled, match="skopos setup"):
        client.batch([BatchRequest.create("users", {"email": "x@y.z"})])


def test_servers_older_than_0_23_are_named() -> None:
    """PocketBase < 0.23 has /api/admins and no _superusers (faked: no such server here)."""

    def old_server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/admins/auth-with-password":
            return httpx.Response(400, json={"message": "Failed to authenticate.", "data": {}})
        return httpx.Response(404, json={"message": "Missing collection context.", "data": {}})

    transport = httpx.MockTransport(old_server)
    with (
        PocketBaseClient("http://old.test", "a@b.c", "pw", transport=transport) as client,
        pytest.raises(PocketBaseVersionError, match=r"older than 0\.23"),
    ):
        client.authenticate()
