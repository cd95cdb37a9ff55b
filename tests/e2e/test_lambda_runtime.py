"""The local Lambda runtime: awslambdaric driven by our Runtime API server, as Lambda drives it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gtseg.local.lambda_runtime import LocalLambda

FIXTURES = Path(__file__).parent / "fixtures"


def _function(handler: str, **kwargs) -> LocalLambda:
    return LocalLambda(f"tiny_handlers.{handler}", function_name="tiny", task_root=FIXTURES, **kwargs)


def test_invoke_returns_the_handler_response_and_reuses_the_warm_sandbox(tmp_path):
    with _function("echo", log_path=tmp_path / "tiny.log", environment={"GTSEG_MARK": "1"}) as fn:
        first = fn.invoke({"n": 1, "text": "héllo"})
        second = fn.invoke({"n": 2})
    assert first.ok and second.ok
    assert first.payload["event"] == {"n": 1, "text": "héllo"}
    assert first.payload["function"] == "tiny"
    assert first.payload["remaining_ms"] > 0  # the deadline header reached the context
    assert first.cold_start and not second.cold_start
    assert first.payload["pid"] == second.payload["pid"]
    assert fn.cold_starts == 1 and fn.invocations == 2


def test_handler_exception_comes_back_in_lambdas_error_shape():
    with _function("fail") as fn:
        result = fn.invoke({})
        after = fn.invoke({})  # the sandbox survives a handler exception, as in Lambda
    assert not result.ok
    assert result.error["errorType"] == "ValueError"
    assert result.error["errorMessage"] == "tiny handler failed on purpose"
    assert isinstance(result.error.get("stackTrace"), list)
    assert not after.ok and not after.cold_start


@pytest.mark.parametrize(
    ("handler", "error_type"),
    [
        ("tiny_handlers.does_not_exist", "Runtime.HandlerNotFound"),
        ("no_such_module.handler", "Runtime.ImportModuleError"),
    ],
)
def test_a_handler_that_cannot_load_is_reported_not_hung(handler, error_type):
    with LocalLambda(handler, function_name="t", task_root=FIXTURES) as fn:
        result = fn.invoke({})
    assert not result.ok
    assert result.error["errorType"] == error_type


def test_timeout_ends_the_sandbox_and_the_next_invoke_starts_cold():
    with _function("sleep", timeout_seconds=1.0) as fn:
        timed_out = fn.invoke({"seconds": 30})
        again = fn.invoke({"seconds": 0})
    assert timed_out.error["errorType"] == "Sandbox.Timedout"
    assert again.ok and again.payload == "woke up"
    assert again.cold_start and fn.cold_starts == 2


def test_a_sandbox_that_exits_is_an_error_and_is_replaced():
    with _function("exit_process") as fn:
        result = fn.invoke({})
    assert result.error["errorType"] == "Runtime.ExitError"
    assert "exit code 3" in result.error["errorMessage"]


def test_a_response_over_6_mb_is_refused_like_lambda_does():
    with _function("huge") as fn:
        result = fn.invoke({})
    assert result.error["errorType"] == "Function.ResponseSizeTooLarge"
