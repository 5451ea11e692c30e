"""The notifications API: inbox (cursor pages, unread count, read one/all), preferences,
devices, bulk (staff only), with permissions on every object and 4xx for bad input."""

from __future__ import annotations

import uuid

import pytest

from notifications.models import BulkNotification, Device, Notification

from .helpers import client_for, device, make_user

pytestmark = pytest.mark.django_db

API = "/api/notifications/"


def _notify(user, n: int = 1, **fields) -> list[Notification]:
    return [Notification.objects.create(request_id=uuid.uuid4(), recipient=user,
                                        kind=fields.get("kind", "post_liked"),
                                        title=f"title {i}", body="", **{
                                            k: v for k, v in fields.items() if k != "kind"})
            for i in range(n)]


# --- inbox ----------------------------------------------------------------------------------


def test_the_inbox_lists_only_your_in_app_notifications_newest_first_by_cursor_pages():
    # given
    me, other = make_user(), make_user(display_name="Bob")
    mine = _notify(me, 5, actor=other)
    _notify(me, 1, in_app=False)
    _notify(other, 2)
    client = client_for(me)
    # when
    first = client.get(API, {"page_size": 3}).json()
    second = client.get(first["next"]).json()
    # then
    assert [n["id"] for n in first["results"]] == [n.pk for n in reversed(mine)][:3]
    assert [n["id"] for n in second["results"]] == [mine[1].pk, mine[0].pk]
    assert second["next"] is None
    item = first["results"][0]
    assert item["actor"] == {"id": other.pk, "username": other.username, "display_name": "Bob"}
    assert (item["kind"], item["title"], item["read"], item["read_at"]) == (
        "post_liked", "title 4", False, None)


def test_unread_count_and_marking_one_read():
    # given
    me = make_user()
    a, b, c = _notify(me, 3)
    client = client_for(me)
    # when
    before = client.get(f"{API}unread-count/").json()
    marked = client.post(f"{API}{b.pk}/read/")
    again = client.post(f"{API}{b.pk}/read/")
    after = client.get(f"{API}unread-count/").json()
    unread = client.get(API, {"unread": "true"}).json()["results"]
    # then
    assert before == {"unread": 3}
    assert marked.status_code == 200 and marked.json()["read"] is True
    assert again.json()["read_at"] == marked.json()["read_at"]  # first read time kept
    assert after == {"unread": 2}
    assert [n["id"] for n in unread] == [c.pk, a.pk]


def test_marking_all_read_up_to_the_newest_shown_leaves_later_ones_unread():
    # given
    me = make_user()
    shown = _notify(me, 3)
    later = _notify(me, 1)
    client = client_for(me)
    # when
    resp = client.post(f"{API}read-all/", {"up_to": shown[-1].pk})
    # then
    assert resp.json() == {"marked": 3}
    assert client.get(f"{API}unread-count/").json() == {"unread": 1}
    assert client.post(f"{API}read-all/").json() == {"marked": 1}
    assert Notification.objects.get(pk=later[0].pk).read_at is not None


def test_someone_elses_notification_is_not_found():
    # given
    me, other = make_user(), make_user()
    [theirs] = _notify(other)
    # when
    resp = client_for(me).post(f"{API}{theirs.pk}/read/")
    # then
    assert resp.status_code == 404
    assert resp.json()["type"] == "not_found"
    assert Notification.objects.get(pk=theirs.pk).read_at is None


def test_the_inbox_needs_a_sign_in_and_refuses_bad_input():
    me = make_user()
    assert client_for(None).get(API).status_code == 401
    bad = client_for(me).get(API, {"unread": "perhaps"})
    assert bad.status_code == 400 and "unread" in bad.json()["errors"]
    assert client_for(me).get(API, {"cursor": "garbage"}).status_code == 400
    assert client_for(me).post(f"{API}read-all/", {"up_to": -1}).status_code == 400
    assert client_for(me).post(f"{API}{2**63}/read/").status_code == 404


# --- preferences ----------------------------------------------------------------------------


def test_preferences_show_every_kind_with_marketing_off_by_default():
    # when
    body = client_for(make_user()).get(f"{API}preferences/").json()
    # then
    by_kind = {k["kind"]: k for k in body["kinds"]}
    assert by_kind["marketing"]["channels"] == {"in_app": False, "push": False,
                                                "email": False, "sms": False}
    assert by_kind["post_liked"]["channels"] == {"in_app": True, "push": True, "email": False}
    assert body["quiet_hours"] is None
    assert body["language"] == "en-us"


def test_changing_preferences_quiet_hours_and_language():
    # given
    me = make_user()
    client = client_for(me)
    # when
    resp = client.patch(f"{API}preferences/", {
        "channels": [{"kind": "post_liked", "channel": "push", "enabled": False},
                     {"kind": "marketing", "channel": "email", "enabled": True}],
        "quiet_hours": {"start": "22:00", "end": "07:30", "timezone": "Europe/Berlin"},
        "language": "es",
    }, format="json")
    # then
    assert resp.status_code == 200
    body = resp.json()
    by_kind = {k["kind"]: k["channels"] for k in body["kinds"]}
    assert by_kind["post_liked"]["push"] is False
    assert by_kind["marketing"]["email"] is True
    assert body["quiet_hours"] == {"start": "22:00", "end": "07:30",
                                   "timezone": "Europe/Berlin"}
    assert body["language"] == "es"
    # and quiet hours can be turned off
    off = client.patch(f"{API}preferences/", {"quiet_hours": None}, format="json").json()
    assert off["quiet_hours"] is None


@pytest.mark.parametrize(("payload", "field", "message"), [
    ({"channels": [{"kind": "nope", "channel": "push", "enabled": True}]}, "channels",
     '"nope" is not a valid choice.'),
    ({"channels": [{"kind": "welcome", "channel": "sms", "enabled": True}]}, "channels",
     "item 0: welcome is not sent by sms; its channels are: in_app, email."),
    ({"quiet_hours": {"start": "22:00", "end": "22:00"}}, "quiet_hours",
     "Give both start and end, and make them differ (or send null to turn quiet hours off)."),
    ({"quiet_hours": {"start": "22:00", "end": "07:00", "timezone": "Mars/Base"}},
     "quiet_hours.timezone",
     "Unknown time zone 'Mars/Base'; use an IANA name such as Europe/Berlin."),
    ({"quiet_hours": {"start": "25:00", "end": "07:00"}}, "quiet_hours", None),
    ({"language": "xx"}, "language", "Unknown language 'xx'; use a code such as en or es."),
])
def test_bad_preferences_are_refused_with_field_errors(payload, field, message):
    # when
    resp = client_for(make_user()).patch(f"{API}preferences/", payload, format="json")
    # then
    assert resp.status_code == 400
    errors = resp.json()["errors"]
    assert field in errors
    if message:
        flat = str(errors[field])
        assert message in flat


# --- devices --------------------------------------------------------------------------------


def test_registering_a_device_and_re_registering_its_token():
    # given
    me = make_user()
    client = client_for(me)
    # when
    created = client.post(f"{API}devices/", {"platform": "android", "token": "fcm-token-123"})
    again = client.post(f"{API}devices/", {"platform": "android", "token": "fcm-token-123"})
    # then
    assert created.status_code == 201 and again.status_code == 200
    assert created.json()["id"] == again.json()["id"]
    assert [d["token"] for d in client.get(f"{API}devices/").json()] == ["fcm-token-123"]


def test_one_token_is_one_device_a_token_moves_to_the_user_who_registers_it():
    # given: the phone changed hands
    first, second = make_user(), make_user()
    client_for(first).post(f"{API}devices/", {"platform": "ios", "token": "shared-token-1"})
    # when
    resp = client_for(second).post(f"{API}devices/", {"platform": "ios",
                                                       "token": "shared-token-1"})
    # then
    assert resp.status_code == 200
    assert list(Device.objects.values_list("user_id", "token")) == [(second.pk,
                                                                     "shared-token-1")]
    assert client_for(first).get(f"{API}devices/").json() == []


def test_pushes_waiting_for_the_previous_owner_of_a_token_are_cancelled():
    # given: a push for the first owner, held by quiet hours
    from notifications.models import Delivery

    from .helpers import request, route

    first, second = make_user(), make_user()
    device(first, "handed-over-token")
    route(request(first))
    Delivery.objects.update(next_attempt_at="2999-01-01T00:00:00Z")
    # when
    client_for(second).post(f"{API}devices/", {"platform": "android",
                                               "token": "handed-over-token"})
    # then
    [push] = Delivery.objects.all()
    assert (push.status, push.last_error) == ("cancelled",
                                              "the device was registered by another account")


def test_deleting_a_device_and_someone_elses_device_is_not_found():
    # given
    me, other = make_user(), make_user()
    mine, theirs = device(me), device(other)
    # when
    not_mine = client_for(me).delete(f"{API}devices/{theirs.pk}/")
    deleted = client_for(me).delete(f"{API}devices/{mine.pk}/")
    # then
    assert not_mine.status_code == 404
    assert deleted.status_code == 204
    assert list(Device.objects.values_list("pk", flat=True)) == [theirs.pk]


@pytest.mark.parametrize("payload", [
    {"platform": "blackberry", "token": "fcm-token-123"},
    {"platform": "android", "token": "short"},
    {"platform": "android", "token": "x" * 513},
    {"platform": "android"},
])
def test_bad_device_registrations_are_refused(payload):
    resp = client_for(make_user()).post(f"{API}devices/", payload)
    assert resp.status_code == 400
    assert set(resp.json()["errors"]) & {"platform", "token"}
    assert Device.objects.count() == 0


# --- bulk (staff) ---------------------------------------------------------------------------


def test_bulk_is_staff_only(django_capture_on_commit_callbacks):
    # given
    user, staff = make_user(), make_user(is_staff=True)
    payload = {"title": "Maintenance", "body": "Tonight 2-3 UTC.", "segment": {"all": True}}
    # when
    refused = client_for(user).post(f"{API}bulk/", payload, format="json")
    with django_capture_on_commit_callbacks() as queued:
        accepted = client_for(staff).post(f"{API}bulk/", payload, format="json")
    # then
    assert refused.status_code == 403
    assert accepted.status_code == 202
    body = accepted.json()
    assert (body["status"], body["kind"], body["recipients_expected"], body["segment"]) == (
        "queued", "announcement", 2, {"all": True})
    assert len(queued) == 1  # the fan-out task, after the commit
    progress = client_for(staff).get(f"{API}bulk/{body['id']}/").json()
    assert progress["id"] == body["id"]
    assert client_for(user).get(f"{API}bulk/{body['id']}/").status_code == 403


@pytest.mark.parametrize(("payload", "field"), [
    ({"title": "t", "body": "b", "segment": {}}, "segment"),
    ({"title": "t", "body": "b", "segment": {"all": False}}, "segment"),
    ({"title": "t", "body": "b", "segment": {"all": True}, "kind": "post_liked"}, "kind"),
    ({"title": "t", "body": "b", "segment": {"all": True}, "channels": ["fax"]}, "channels"),
    ({"body": "b", "segment": {"all": True}}, "title"),
    ({"title": "t", "body": "b", "segment": {"joined_after": "yesterday"}}, "segment"),
])
def test_bad_bulk_sends_are_refused_with_field_errors(payload, field):
    resp = client_for(make_user(is_staff=True)).post(f"{API}bulk/", payload, format="json")
    assert resp.status_code == 400
    assert field in resp.json()["errors"]
    assert BulkNotification.objects.count() == 0
