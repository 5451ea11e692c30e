"""Search through the API: ranking, typos, paging by the links handed out, permissions."""

from __future__ import annotations

import pytest

from accounts.tests.fixtures import make_user
from posts import services as post_services
from social import services as social_services

pytestmark = pytest.mark.django_db


def _ids(items) -> list[int]:
    return [item["id"] for item in items]


def test_users_match_by_username_prefix_typo_and_display_name(anon):
    # given
    exact = make_user(username="dancer", display_name="Ann")
    prefixed = make_user(username="dancer_bob", display_name="Bob")
    named = make_user(username="zz_top", display_name="The Best Dancer")
    typo = make_user(username="dancre", display_name="")
    make_user(username="painter", display_name="Paula")
    # when
    results = anon.get("/api/search/users/", {"q": "Dancer"}).json()["results"]
    # then: the exact name first, then the prefix; a display-name match and a close misspelling
    # are found too; nothing unrelated
    ids = _ids(results)
    assert ids[:2] == [exact.pk, prefixed.pk]
    assert set(ids) == {exact.pk, prefixed.pk, named.pk, typo.pk}


def test_posts_match_stemmed_words_ranked_and_hide_what_the_viewer_may_not_see(anon, alice,
                                                                                as_bob, bob):
    # given
    carol = make_user(username="carol")
    strong = post_services.post_create(author=alice, text="Dancing dancing dance all night")
    weak = post_services.post_create(author=alice, text="A long day, and then some dancing")
    by_carol = post_services.post_create(author=carol, text="We danced")
    post_services.post_create(author=alice, text="Nothing to see here")
    deleted = post_services.post_create(author=alice, text="dance gone")
    post_services.post_delete(post=deleted, actor=alice)
    social_services.block_create(blocker=carol, blocked_id=bob.pk)
    # when
    anon_ids = _ids(anon.get("/api/search/posts/", {"q": "dance"}).json()["results"])
    bob_ids = _ids(as_bob.get("/api/search/posts/", {"q": "dance"}).json()["results"])
    # then
    assert set(anon_ids) == {strong.pk, weak.pk, by_carol.pk}
    assert anon_ids.index(strong.pk) < anon_ids.index(weak.pk)
    assert set(bob_ids) == {strong.pk, weak.pk}


def test_a_hidden_post_or_an_inactive_author_leaves_search(anon, alice, admin_user):
    post = post_services.post_create(author=alice, text="skateboarding tricks")
    assert _ids(anon.get("/api/search/posts/", {"q": "skateboard"}).json()["results"]) == [
        post.pk]
    post_services.post_hide(post_id=post.pk, operator=admin_user)
    assert anon.get("/api/search/posts/", {"q": "skateboard"}).json()["results"] == []
    other = post_services.post_create(author=alice, text="skateboarding again")
    alice.is_active = False
    alice.save()
    assert anon.get("/api/search/posts/", {"q": "skateboard"}).json()["results"] == []
    assert anon.get("/api/search/users/", {"q": "alice"}).json()["results"] == []
    assert other.pk


def test_paging_by_next_links_returns_every_match_once_in_rank_order(anon, alice):
    # given: 7 matching posts of different relevance
    posts = [post_services.post_create(author=alice, text=" ".join(["guitar"] * (i % 3 + 1))
                                       + f" number {i}") for i in range(7)]
    full = _ids(anon.get("/api/search/posts/", {"q": "guitar", "page_size": 100})
                .json()["results"])
    # when
    seen, url = [], "/api/search/posts/?q=guitar&page_size=3"
    pages = 0
    while url:
        body = anon.get(url).json()
        seen += _ids(body["results"])
        url = body["next"]
        pages += 1
    # then
    assert pages == 3
    assert seen == full and sorted(seen) == sorted(p.pk for p in posts)


def test_overview_gives_best_users_and_first_posts_page_with_a_working_next_link(anon, alice):
    for i in range(3):
        post_services.post_create(author=alice, text=f"alice posts about surfing {i}")
    body = anon.get("/api/search/", {"q": "surfing", "page_size": 2}).json()
    assert body["users"] == []
    assert len(body["posts"]) == 2
    rest = anon.get(body["next"]).json()
    assert len(rest["results"]) == 1 and rest["next"] is None
    users = anon.get("/api/search/", {"q": "alice"}).json()["users"]
    assert _ids(users) == [alice.pk]


@pytest.mark.parametrize("params", [{}, {"q": ""}, {"q": "   "}, {"q": "x" * 101}])
def test_a_missing_or_bad_query_is_a_400(anon, params):
    for path in ("/api/search/", "/api/search/users/", "/api/search/posts/"):
        resp = anon.get(path, params)
        assert resp.status_code == 400
        assert list(resp.json()["errors"]) == ["q"]


@pytest.mark.parametrize("cursor", ["garbage", "W10", "WyJhIiwxXQ", "WzEuNSwwXQ",
                                    "WzEuNSwxLjVd", "WzEuNSw5MjIzMzcyMDM2ODU0Nzc1ODA4XQ"])
def test_a_bad_cursor_is_a_400_invalid_cursor(anon, cursor):
    resp = anon.get("/api/search/posts/", {"q": "x", "cursor": cursor})
    assert resp.status_code == 400
    assert resp.json()["type"] == "invalid_cursor"


def test_stop_words_and_punctuation_only_find_nothing_without_error(anon, alice):
    post_services.post_create(author=alice, text="the and of")
    for q in ("the", "!!!", "'\"", "%_\\"):
        assert anon.get("/api/search/posts/", {"q": q}).json()["results"] == []
        assert anon.get("/api/search/users/", {"q": q}).status_code == 200
