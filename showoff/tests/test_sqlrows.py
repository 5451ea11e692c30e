"""Rows as one JSON parameter (showoff/sqlrows.py): every type the set-based writes use comes
back from PostgreSQL as it went in, in order, NULLs and objects included."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime

import pytest
from django.db import connection

from showoff.sqlrows import rows_param, rows_table

pytestmark = pytest.mark.django_db

TYPES = ["uuid", "text", "bigint", "integer", "boolean", "timestamptz", "date", "jsonb"]


def test_rows_come_back_typed_and_in_order():
    # given: rows with every type, NULLs, text PostgreSQL must not mangle, a nested object
    rows = [
        (uuid.UUID(int=1), "émoji 😀 \"quoted\" \\ back", 2**63 - 1, -5, True,
         datetime(2025, 1, 31, 12, 30, 15, 123456, tzinfo=UTC), date(2025, 2, 28),
         {"post_id": 7, "nested": {"a": [1, "x"]}}),
        (uuid.UUID(int=2), None, None, None, None, None, None, None),
        (uuid.UUID(int=3), "", 0, 0, False, datetime(1970, 1, 1, tzinfo=UTC), date(1, 1, 1),
         {}),
    ]
    # when
    with connection.cursor() as cur:
        cur.execute(f"SELECT c0, c1, c2, c3, c4, c5, c6, c7, n FROM {rows_table(TYPES)} "  # noqa: S608
                    "ORDER BY n DESC", [rows_param(rows)])
        back = cur.fetchall()
    # then
    assert [row[-1] for row in back] == [3, 2, 1]
    # (Django's connection hands jsonb back as text: decoded here)
    decoded = [(*row[:-2], json.loads(row[-2]) if row[-2] is not None else None)
               for row in reversed(back)]
    assert decoded == rows


def test_only_type_names_are_accepted():
    with pytest.raises(ValueError, match=re.escape("not a SQL type name: 'text); DROP")):
        rows_table(["text); DROP TABLE x; --"])
    with pytest.raises(TypeError, match="Decimal is not a SQL row value"):
        from decimal import Decimal

        rows_param([(Decimal("1.5"),)])
