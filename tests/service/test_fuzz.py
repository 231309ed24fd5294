"""Property-based fuzzing of the running service from its own OpenAPI document (schemathesis):
every operation gets generated requests, valid and invalid, and every answer must be no 5xx,
with a documented status code, content type and headers, and a body matching the schema.

"Schema-valid data must be accepted" is not checked: the service rightly refuses some requests
the schema cannot describe (an unknown label or model, more images than the server's max_n). Of
the 5xx, only the documented 504 for a deadline that cannot be met (X-Deadline-Ms: 1) is allowed.
The
run is bounded and reproducible (derandomized); GAN_FUZZ_EXAMPLES raises the number of cases per
operation, GAN_FUZZ_RANDOM=1 draws new ones."""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.live_server import Server

EXAMPLES = int(os.environ.get("GAN_FUZZ_EXAMPLES", "40"))


def test_every_operation_answers_within_its_schema(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {
        "POST /generate",
        "POST /walk",
        "POST /mix",
        "POST /upscale",
        "GET /v1/models",
        "GET /metrics",
    }
    failures: list[str] = []
    cases = 0
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=not os.environ.get("GAN_FUZZ_RANDOM"),
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            nonlocal cases
            cases += 1
            try:
                response = case.call_and_validate(
                    excluded_checks=[positive_data_acceptance, not_a_server_error]
                )
                if response.status_code >= 500 and not _deadline_refusal(response.status_code, response.text):
                    failures.append(f"{case.operation.label}: {response.status_code}: {response.text}"[:2000])
            except Exception as e:  # collect every operation's failures, then report them all
                failures.append(f"{case.operation.label}: {type(e).__name__}: {e}"[:2000])

        check()
    print(f"fuzzed {cases} requests over {len(operations)} operations")  # shown with pytest -s
    assert cases >= len(operations)
    assert not failures, "\n\n".join(failures[:5])
    assert server.metric("gan_requests_total", status="500") == 0
    assert "Traceback" not in server.log()


def _deadline_refusal(status: int, body: str) -> bool:
    return status == 504 and '"deadline_exceeded"' in body
