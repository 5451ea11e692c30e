"""The social, search and feed endpoints in the OpenAPI schema, and a property-based run over them
(schemathesis) that finds no 5xx and no response outside the schema."""

from __future__ import annotations

import os

import pytest

from accounts.tests.fixtures import client_for, make_user
from posts import services as post_services
from showoff.tests.fuzz import fuzz_api
from social import services

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "12"))
OUR_PATHS = ("/api/users/{user_id}/follow", "/api/users/{user_id}/followers",
             "/api/users/{user_id}/following", "/api/users/{user_id}/block",
             "/api/me/blocks/", "/api/reports/", "/api/search/",
             "/api/feed/")


@pytest.mark.django_db
def test_property_based_run_finds_no_server_error_and_no_schema_violation(
        wsgi_keeps_connection):
    # given: a signed-in user who follows, blocks and is followed, and content to report
    user = make_user(username="fuzzer")
    others = [make_user(username=f"other{i}") for i in range(3)]
    services.follow_create(follower=user, followee_id=others[0].pk)
    services.follow_create(follower=others[1], followee_id=user.pk)
    services.block_create(blocker=user, blocked_id=others[2].pk)
    post = post_services.post_create(author=others[0], text="seed")
    post_services.comment_create(post_id=post.pk, author=others[0], text="seed")
    token = client_for(user)._credentials["HTTP_AUTHORIZATION"]
    # when
    operations, failures = fuzz_api(OUR_PATHS, token, EXAMPLES)
    # then
    assert operations == 13
    assert failures == [], "\n\n".join(failures)
