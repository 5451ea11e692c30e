"""What the admin shows: model names in proper English plurals ("entries", not "entrys")."""

from __future__ import annotations

import re

import pytest
from django.apps import apps


def test_no_model_has_a_naive_plural():
    naive = []
    for model in apps.get_models():
        name, plural = str(model._meta.verbose_name), str(model._meta.verbose_name_plural)
        if re.search(r"[^aeiou]y$", name) and plural == f"{name}s":
            naive.append(f"{model._meta.label}: {plural}")
    assert naive == []


@pytest.mark.django_db
def test_the_admin_index_lists_ledger_entries(admin_client):
    html = admin_client.get("/admin/").content.decode()
    assert "Ledger entries" in html
    assert "ntrys" not in html
