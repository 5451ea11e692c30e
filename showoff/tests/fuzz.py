"""A bounded schemathesis run over part of the API, shared by each app's OpenAPI test.

`fuzz_api` generates valid and invalid requests for every operation under the given path
prefixes and collects every 5xx and every response that breaks the schema (status code, content
type, body), instead of stopping at the first.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]


def fuzz_api(prefixes: tuple[str, ...], token: str, examples: int) -> tuple[int, list[str]]:
    """Returns (operations covered, failures)."""
    from showoff.wsgi import application

    schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith(prefixes):
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=examples, deadline=None, database=None,
                                 phases=[Phase.explicit, Phase.generate],
                                 suppress_health_check=list(HealthCheck))
            def run(case):
                case.headers = {**(case.headers or {}), "Authorization": token}
                case.call_and_validate(checks=CHECKS)

            try:
                run()
            except Exception as exc:  # noqa: BLE001 - every failure is collected and shown
                failures.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: "
                                f"{str(exc)[:1500]}")
    return operations, failures
