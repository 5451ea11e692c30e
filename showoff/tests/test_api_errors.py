"""What a client developer trips on, answered in the API's one error shape (showoff/drf.py):
a tampered cursor on every cursor-paged list, unknown routes with DEBUG on, a body too large,
and error messages that would repeat a huge input back."""

from __future__ import annotations

import base64
import json

import pytest
from drf_spectacular.generators import SchemaGenerator

from accounts.tests.fixtures import client_for, make_user
from coins.tests.helpers import fund
from notifications.models import Notification
from posts import services as post_services


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Cursors a client may send that this API never gave out: not base64, base64 of junk, a
# position of the wrong type for the ordering field, out of range, a negative offset.
BAD_CURSORS = [
    "garbage",
    "%%%",
    "é",
    _b64("p=abc"),
    _b64("p=2024-13-45"),
    _b64("p=99999999999999999999999999"),
    _b64("o=-1"),
    _b64("r=x"),
    _b64("p=\x00"),
]


def _cursor_paged_operations() -> dict[str, dict[str, str]]:
    """path -> the required query parameters (a search's `q`), for every cursor-paged list."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    found = {}
    for path, item in schema["paths"].items():
        params = item.get("get", {}).get("parameters", [])
        if any(p["name"] == "cursor" and p["in"] == "query" for p in params):
            found[path] = {p["name"]: "hello" for p in params
                           if p["in"] == "query" and p.get("required")}
    return found


@pytest.mark.django_db
def test_a_bad_cursor_is_a_400_invalid_cursor_on_every_cursor_paged_list(settings):
    # given: a user with something in every list, and ids for the paths' parameters
    settings.COINS_WITHDRAWAL_REQUIRE_KYC = False
    settings.COINS_WITHDRAWAL_MIN_AMOUNT = 1
    user = make_user()
    post = post_services.post_create(author=user, text="hello")
    post_services.comment_create(post_id=post.pk, author=user, text="first")
    fund(user, 100)
    from coins.services import withdrawal_request

    withdrawal_request(user=user, amount=10, destination="x")
    Notification.objects.create(request_id="00000000-0000-0000-0000-000000000001",
                                recipient=user, kind="post_liked", title="t", actor=user)
    path_values = {"user_id": user.pk, "post_id": post.pk}
    client = client_for(user)
    paths = _cursor_paged_operations()
    assert {"/api/posts/", "/api/notifications/", "/api/coins/history/",
            "/api/coins/withdrawals/"} <= set(paths)
    for template, required in sorted(paths.items()):
        try:
            path = template.format(**path_values)
        except KeyError as missing:
            pytest.fail(f"{template}: give this test a value for {missing}")
        # a cursor the list gave out still works (page_size=1 so there is a next page or none)
        first = client.get(path, {**required, "page_size": 1})
        assert first.status_code == 200, (path, first.content)
        for cursor in BAD_CURSORS:
            # when
            resp = client.get(path, {**required, "cursor": cursor})
            # then
            assert resp.status_code == 400, (path, cursor, resp.status_code, resp.content)
            assert resp.json() == {
                "type": "invalid_cursor",
                "detail": "This cursor was not given out by this list, or it was altered; "
                          "start again from the first page (no cursor).",
            }, (path, cursor)


@pytest.mark.django_db
def test_a_cursor_handed_out_by_a_list_still_pages(as_alice, alice):
    for i in range(3):
        post_services.post_create(author=alice, text=f"p{i}")
    first = as_alice.get("/api/posts/", {"page_size": 2}).json()
    second = as_alice.get(first["next"]).json()
    assert [p["text"] for p in first["results"]] == ["p2", "p1"]
    assert [p["text"] for p in second["results"]] == ["p0"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/api/nope/", "/api/posts/not-a-number/", "/api/posts",
                                  "/api/coins/withdrawals/abc/", "/api/",
                                  "/api/media/files/forged-token"])
def test_unknown_api_routes_answer_json_even_with_debug_on(settings, anon, path):
    # given: DEBUG on, as `make run` has it (Django then answers its HTML debug 404 page)
    settings.DEBUG = True
    # when
    resp = anon.get(path)
    # then
    assert resp.status_code == 404
    assert resp["Content-Type"] == "application/json"
    assert resp.json()["type"] == "not_found"


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_an_unknown_route_answers_json_to_every_method_with_a_session_cookie(settings, method):
    # (Django's CSRF check would answer an HTML 403 to a browser's session cookie.)
    from django.test import Client

    settings.DEBUG = True
    client = Client(enforce_csrf_checks=True)
    client.cookies["sessionid"] = "anything"
    resp = getattr(client, method)("/api/posts/-5/")
    assert (resp.status_code, resp["Content-Type"]) == (404, "application/json")


@pytest.mark.django_db
def test_an_unknown_route_missing_its_slash_says_which_one_exists(anon):
    resp = anon.post("/api/posts", {"text": "x"})
    assert resp.status_code == 404
    assert resp.json() == {"type": "not_found",
                           "detail": "No such endpoint: /api/posts. Did you mean /api/posts/ "
                                     "(with the trailing slash)?"}


@pytest.mark.django_db
@pytest.mark.parametrize("debug", [True, False])
def test_a_5_mb_json_body_is_a_413_in_the_error_shape(settings, as_alice, debug):
    # given
    settings.DEBUG = debug
    body = json.dumps({"text": "x" * (5 * 1024 * 1024)})
    # when
    resp = as_alice.generic("POST", "/api/posts/", body, content_type="application/json")
    # then
    assert resp.status_code == 413
    assert resp.json() == {
        "type": "request_too_large",
        "detail": "The request body is larger than the 2.5 MB this endpoint accepts.",
    }


@pytest.mark.django_db
def test_an_error_never_echoes_a_huge_input_back(as_alice):
    # given: a 100 KB value where a short choice is expected (DRF repeats the input)
    huge = "y" * 100_000
    # when
    resp = as_alice.post("/api/notifications/devices/", {"platform": huge, "token": "t" * 20},
                         format="json")
    # then: the message says what is wrong, with at most a short excerpt of the input
    assert resp.status_code == 400
    full = f'"{huge}" is not a valid choice.'
    assert resp.json()["errors"]["platform"] == [
        full[:150] + f"…[{len(full) - 300:,} characters cut]…" + full[-150:]]
    assert len(resp.content) < 1_000


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "query"), [("/api/posts/", {}),
                                             ("/api/search/posts/", {"q": "x"}),
                                             ("/api/feed/", {})])
@pytest.mark.parametrize("page_size", ["abc", "1.5", "0", "-3", "١", "true"])
def test_a_page_size_that_is_not_a_whole_number_is_a_400(as_alice, path, query, page_size):
    resp = as_alice.get(path, {**query, "page_size": page_size})
    assert resp.status_code == 400, resp.content
    assert resp.json()["errors"] == {"page_size": ["A whole number from 1 to 100."]}


@pytest.mark.django_db
def test_a_page_size_above_the_maximum_reads_the_maximum(anon, alice):
    for i in range(3):
        post_services.post_create(author=alice, text=f"p{i}")
    resp = anon.get("/api/posts/", {"page_size": "100000"})
    assert resp.status_code == 200
    assert len(resp.json()["results"]) == 3
