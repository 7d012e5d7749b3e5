"""The one retry helper: attempts, backoff growth, jitter bounds, errors not worth retrying."""

from __future__ import annotations

import pytest

from pipeline.retry import backoff_delay, retry


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then returns ``"done"``."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


def test_retries_until_the_action_succeeds_and_pauses_doubling() -> None:
    pauses: list[float] = []
    action = Flaky(3, ConnectionResetError("reset"))
    result = retry(action, attempts=5, backoff_s=0.5, retryable=lambda e: True, sleep=pauses.append, jitter=lambda: 0.0)
    assert (result, action.calls) == ("done", 4)
    assert pauses == [0.5, 1.0, 2.0]


def test_gives_up_after_the_last_attempt_with_its_error() -> None:
    pauses: list[float] = []
    action = Flaky(10, TimeoutError("read timed out"))
    with pytest.raises(TimeoutError, match="read timed out"):
        retry(action, attempts=3, backoff_s=1.0, retryable=lambda e: True, sleep=pauses.append, jitter=lambda: 0.0)
    assert action.calls == 3
    assert pauses == [1.0, 2.0]  # no pause after the last attempt


def test_an_error_not_worth_retrying_is_raised_at_once() -> None:
    pauses: list[float] = []
    action = Flaky(10, FileNotFoundError("gone"))
    with pytest.raises(FileNotFoundError):
        retry(
            action, attempts=5, backoff_s=1.0, retryable=lambda e: not isinstance(e, FileNotFoundError),
            sleep=pauses.append,
        )
    assert (action.calls, pauses) == (1, [])


def test_jitter_keeps_each_pause_between_one_and_two_backoffs() -> None:
    assert [backoff_delay(k, 0.5, 0.0) for k in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(2, 0.5, 0.999) == pytest.approx(2.0 * 1.999)
    pauses: list[float] = []
    draws = iter([0.0, 0.5, 0.999])
    retry(
        Flaky(3, OSError("503")), attempts=4, backoff_s=0.5, retryable=lambda e: True,
        sleep=pauses.append, jitter=lambda: next(draws),
    )
    assert pauses == pytest.approx([0.5, 1.0 * 1.5, 2.0 * 1.999])
    # With the real jitter source, every pause stays within [base, 2 * base) of its attempt.
    pauses.clear()
    retry(Flaky(6, OSError("503")), attempts=7, backoff_s=0.25, retryable=lambda e: True, sleep=pauses.append)
    assert len(pauses) == 6
    assert all(0.25 * 2**k <= pause < 0.5 * 2**k for k, pause in enumerate(pauses))


def test_each_retry_is_reported_before_its_pause() -> None:
    seen: list[tuple[str, int, float]] = []
    retry(
        Flaky(2, OSError("503")), attempts=3, backoff_s=1.0, retryable=lambda e: True,
        on_retry=lambda exc, number, delay: seen.append((str(exc), number, delay)),
        sleep=lambda _: None, jitter=lambda: 0.0,
    )
    assert seen == [("503", 1, 1.0), ("503", 2, 2.0)]


def test_at_least_one_attempt() -> None:
    with pytest.raises(ValueError, match="attempts must be at least 1"):
        retry(lambda: None, attempts=0, backoff_s=1.0, retryable=lambda e: True)


def test_index_commits_retry_conflicts_through_the_helper_then_give_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from deltalake.exceptions import CommitFailedError

    from pipeline.index import writer

    monkeypatch.setattr(writer, "COMMIT_BACKOFF_S", 0.0)
    conflicting = Flaky(100, CommitFailedError("a concurrent transaction wrote first"))
    with pytest.raises(RuntimeError, match="gave up") as info:
        writer.retry_on_conflict(conflicting, lambda exc: RuntimeError(f"gave up: {exc}"), "commit to videos")
    assert conflicting.calls == writer.COMMIT_ATTEMPTS
    assert isinstance(info.value.__cause__, CommitFailedError)
    # A conflict that clears is retried to success; any other error is raised at once.
    assert writer.retry_on_conflict(Flaky(2, CommitFailedError("conflict")), RuntimeError, "commit") == "done"
    broken = Flaky(100, OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        writer.retry_on_conflict(broken, RuntimeError, "commit")
    assert broken.calls == 1
