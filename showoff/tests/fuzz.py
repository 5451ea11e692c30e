"""Property-based runs of the API with schemathesis, straight on the WSGI app.

`fuzz_operations` generates valid and invalid requests for every operation of the served
OpenAPI schema (or those a filter keeps) and collects every failure instead of stopping at the
first: a 5xx, a response outside the schema (status code, content type, headers, body), or a
request the schema says is invalid and the API accepted. Hypothesis' health checks stay on.

`run_stateful` drives schemathesis' state machine, which chains operations through the
schema's OpenAPI links (register → post → like → comment → tip, see `showoff.drf.LINKS`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import schemathesis
from django.db import transaction
from hypothesis import Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.stateful import run_state_machine_as_test
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance, response_headers_conformance]
# Invalid input must be refused (strict types, bounds, enums, required fields): only for the
# negative mode, where every case breaks the schema on purpose.
NEGATIVE_CHECKS = [*CHECKS, negative_data_rejection]


def load_schema():
    from showoff.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/", application)


@dataclass
class FuzzResult:
    operations: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    examples: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def fuzz_operations(token: str, examples: int,
                    keep: Callable[[str], bool] = lambda path: True) -> FuzzResult:
    """Every operation whose path `keep` accepts, `examples` cases per generation mode."""
    result = FuzzResult()
    for loaded in load_schema().get_all_operations():
        operation = loaded.ok()
        if not keep(operation.path):
            continue
        label = f"{operation.method.upper()} {operation.path}"
        result.operations.append(label)
        started = time.monotonic()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _property_test(operation, mode, token, examples, result)()
            # (schemathesis raises its findings as an exception group)
            except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - all collected
                result.failures.append(f"{label} [{mode.value}]: {str(exc)[:2000]}")
        result.seconds[label] = time.monotonic() - started
    return result


def _property_test(operation, mode: GenerationMode, token: str, examples: int,
                   result: FuzzResult) -> Callable[[], None]:
    checks = NEGATIVE_CHECKS if mode == GenerationMode.NEGATIVE else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis_settings(max_examples=examples, deadline=None, database=None,
                         phases=[Phase.explicit, Phase.generate])
    def run(case):
        result.examples += 1
        case.headers = {**(case.headers or {}), "Authorization": token}
        case.call_and_validate(checks=checks)

    return run


def fuzz_api(prefixes: tuple[str, ...], token: str, examples: int) -> tuple[int, list[str]]:
    """The operations under `prefixes` (kept for callers of the per-app runs)."""
    result = fuzz_operations(token, examples, keep=lambda path: path.startswith(prefixes))
    return len(result.operations), result.failures


def linked_operations() -> set[str]:
    """The operation ids the schema's links join."""
    from showoff.drf import LINKS

    return {source for source, _ in LINKS} | {
        target for links in LINKS.values() for target, _, _ in links.values()}


def run_stateful(token: str, *, operation_ids: set[str], steps: int, examples: int
                 ) -> list[str]:
    """Chains of calls among `operation_ids`, following the schema's links (a small set, so
    the machine spends its steps on journeys rather than on unrelated calls); returns the names
    of the links it followed, once per time."""
    schema = load_schema().include(operation_id=sorted(operation_ids))
    # Only the links the schema declares (schemathesis would also guess some from names).
    schema.config.phases.stateful.inference.algorithms = []
    machine = schema.as_state_machine()
    taken: list[str] = []

    class Machine(machine):  # type: ignore[misc, valid-type]
        # Each scenario starts from the same data (a savepoint rolled back after it): Hypothesis
        # replays scenarios while it searches, and needs the API to answer them the same way.
        def setup(self):
            self._savepoint = transaction.savepoint()

        def teardown(self):
            transaction.savepoint_rollback(self._savepoint)

        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": token}}

        def step(self, input, *args, **kwargs):  # noqa: A002 - schemathesis' name
            if input.transition is not None and input.is_applied:
                # "POST /api/posts/ -> [201] LikePost -> POST /api/posts/{post_id}/like/"
                taken.append(input.transition.id.split(" -> ")[1].split("] ", 1)[-1])
            return super().step(input, *args, **kwargs)

        def validate_response(self, response, case, additional_checks=(), **kwargs):
            case.validate_response(response, checks=CHECKS)

    # Derandomized: the same scenarios on every run, so which journeys CI walks is stable.
    run_state_machine_as_test(Machine, settings=hypothesis_settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
        derandomize=True))
    return taken
