"""The search queries are index-backed: EXPLAIN ANALYZE on enough rows (30,000 posts, 50,000
users, statistics gathered) that the planner would not choose the indexes for small tables."""

from __future__ import annotations

import pytest
from django.db import connection

from accounts.models import User
from search import selectors

pytestmark = pytest.mark.django_db

WORDS = ["music", "dance", "travel", "food", "sunset", "beach", "city", "night", "friends",
         "coffee", "morning", "workout", "guitar", "puppy", "kitten", "pizza"]


@pytest.fixture
def many_rows():
    author = User.objects.create(username="author0")
    with connection.cursor() as cur:
        # 50,000 accounts with names that share little (as real ones do): md5 prefixes.
        cur.execute("""
            INSERT INTO accounts_user (password, is_superuser, username, first_name, last_name,
                                       is_staff, is_active, date_joined, display_name, bio,
                                       avatar, avatar_version)
            SELECT '', false, substr(md5(i::text), 1, 10), '', '', false, true, now(),
                   'Member ' || substr(md5((i * 7)::text), 1, 8), '', '', 0
            FROM generate_series(1, 50000) AS i""")
    with connection.cursor() as cur:
        # Two words per post from a 16-word vocabulary, and one rare word in 5 posts.
        cur.execute("""
            INSERT INTO posts_post (author_id, text, like_count, comment_count, view_count,
                                    created_at, updated_at)
            SELECT %s, (%s::text[])[1 + i %% 16] || ' ' || (%s::text[])[1 + (i / 16) %% 16]
                       || CASE WHEN i %% 6000 = 0 THEN ' xylophone' ELSE '' END,
                   0, 0, 0, now(), now()
            FROM generate_series(1, 30000) AS i""", [author.pk, WORDS, WORDS])
        cur.execute("ANALYZE posts_post")
        cur.execute("ANALYZE accounts_user")


def test_a_rare_word_is_found_through_the_full_text_index(many_rows):
    plan = selectors.explain_posts(q="xylophone")
    assert "post_search" in plan, plan
    assert "Seq Scan on posts_post" not in plan, plan
    assert len(selectors.search_posts(q="xylophone")) == 5


def test_a_common_word_reads_no_more_than_the_candidate_cap(many_rows, settings):
    settings.SEARCH_POST_CANDIDATES = 200
    plan = selectors.explain_posts(q="music")
    assert "Seq Scan on posts_post" not in plan, plan
    hits = selectors.search_posts(q="music", limit=500)
    assert len(hits) == 200


def test_user_search_uses_the_trigram_and_prefix_indexes(many_rows):
    target = User.objects.exclude(username="author0").order_by("pk")[1234]
    typo = target.username[:4] + target.username[5:]  # one letter left out
    plan = selectors.explain_users(q=typo)
    assert "user_username_trgm" in plan, plan
    assert "Seq Scan on accounts_user" not in plan, plan
    short = selectors.explain_users(q=target.username[:2])
    assert "user_username_prefix" in short, short
    assert "Seq Scan on accounts_user" not in short, short
    assert selectors.search_users(q=typo)[0].id == target.pk
