"""The backoff behind serve's retries of deployments that failed for a passing reason."""

from __future__ import annotations

import asyncio

from ferry_common.errors import Unavailable
from ferry_serve.retries import INITIAL_RETRY_SECONDS, Retries


def test_delays_start_at_half_a_second_and_double_up_to_the_maximum() -> None:
    async def scenario() -> list[float]:
        async def never(_: str) -> None:
            raise AssertionError("no retry is due yet")

        retries = Retries(never, maximum=10.0)
        try:
            return [retries.schedule("iris") for _ in range(7)]
        finally:
            await retries.stop()

    assert INITIAL_RETRY_SECONDS == 0.5
    assert asyncio.run(scenario()) == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_retry_runs_after_its_delay_until_a_run_stops_scheduling() -> None:
    async def scenario() -> tuple[list[str], bool]:
        calls: list[str] = []

        async def run(deployment_id: str) -> None:
            calls.append(deployment_id)
            if len(calls) < 3:
                retries.schedule(deployment_id)  # failed again: the running retry is not cancelled
            else:
                retries.clear(deployment_id)

        retries = Retries(run, initial=0.01, maximum=0.02)
        retries.schedule("iris")
        for _ in range(200):
            if len(calls) == 3 and not retries.wanted("iris"):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        wanted = retries.wanted("iris")
        await retries.stop()
        return calls, wanted

    calls, wanted = asyncio.run(scenario())
    assert calls == ["iris"] * 3
    assert not wanted


def test_clear_cancels_a_waiting_retry_and_starts_the_delay_over() -> None:
    async def scenario() -> tuple[list[str], float]:
        calls: list[str] = []

        async def run(deployment_id: str) -> None:
            calls.append(deployment_id)

        retries = Retries(run, initial=0.05, maximum=1.0)
        retries.schedule("iris")
        retries.schedule("iris")  # replaces the first: one retry pending, after 0.1 s
        retries.clear("iris")
        await asyncio.sleep(0.3)
        again = retries.schedule("iris")
        await retries.stop()
        return calls, again

    calls, again = asyncio.run(scenario())
    assert calls == []
    assert again == 0.05


def test_an_error_in_a_retry_schedules_the_next_one() -> None:
    async def scenario() -> list[str]:
        calls: list[str] = []

        async def run(deployment_id: str) -> None:
            calls.append(deployment_id)
            if len(calls) == 1:
                raise Unavailable("serve database unavailable")
            retries.clear(deployment_id)

        retries = Retries(run, initial=0.01, maximum=0.02)
        retries.schedule("iris")
        for _ in range(200):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.01)
        await retries.stop()
        return calls

    assert asyncio.run(scenario()) == ["iris", "iris"]
