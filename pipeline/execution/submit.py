"""Runs on a Ray cluster through the Ray Jobs API: submit, follow, list, inspect, stop.

A submitted run executes ``python -m jobs.index_corpus`` on the cluster. The job's runtime
environment ships this installation's ``pipeline`` and ``jobs`` packages (``py_modules``),
so the cluster runs the submitter's code, and a working directory holding the run's
config, validated here and written out in full, so a bad setting fails before anything is
sent. The cluster's image must hold vindex's dependencies (``cluster/Dockerfile``).

The address is the head node's dashboard URL (``http://HEAD:8265``), from ``--address`` or
the ``RAY_ADDRESS`` environment variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import yaml

from pipeline.config import Config
from pipeline.errors import ClusterError, ClusterUnreachableError, ConfigError
from pipeline.redaction import has_userinfo, redact

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

ADDRESS_ENV = "RAY_ADDRESS"
#: The config file in the job's working directory.
JOB_CONFIG_FILE = "vindex-job.yaml"
#: Never shipped with the packages.
EXCLUDES = ["__pycache__", "*.pyc", "*.pyo", ".mypy_cache", ".pytest_cache"]
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
#: How often a job's status is polled while waiting for it to end (a job's end is seen
#: within this).
POLL_INTERVAL_S = 0.5

T = TypeVar("T")


def resolve_address(address: str | None) -> str:
    """The job server's URL: ``--address``, else ``RAY_ADDRESS``."""
    address = address or os.environ.get(ADDRESS_ENV, "")
    if not address:
        raise ConfigError(f"no cluster address: pass --address http://HEAD:8265 or set {ADDRESS_ENV}")
    if not address.startswith(("http://", "https://")):
        raise ConfigError(
            f"the cluster address (--address or {ADDRESS_ENV}) must be the dashboard URL, "
            f"e.g. http://HEAD:8265; got {address!r}"
        )
    return address.rstrip("/")


def _unreachable(address: str, exc: BaseException) -> ClusterUnreachableError:
    return ClusterUnreachableError(
        f"cannot reach the Ray job server at {address} (set by --address or {ADDRESS_ENV}): "
        f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
        "is the head node's dashboard running and reachable from here?"
    )


def connect(address: str | None) -> JobSubmissionClient:
    """A client for the cluster's job server; ClusterError if it does not answer."""
    from ray.job_submission import JobSubmissionClient

    url = resolve_address(address)
    try:
        return JobSubmissionClient(url)
    except OSError as exc:  # ConnectionError: nothing answered at that address
        raise _unreachable(url, exc) from exc
    except RuntimeError as exc:  # the server answered, but not as a Ray job server
        raise ClusterError(f"{url} (from --address or {ADDRESS_ENV}) is not a Ray job server: {exc}") from exc


def _request(client: JobSubmissionClient, call: Callable[[], T]) -> T:
    """One call to the job server, its failures as ClusterError."""
    try:
        return call()
    except OSError as exc:  # refused, reset, timed out (requests' and aiohttp's errors are OSErrors)
        raise _unreachable(client.get_address(), exc) from exc
    except RuntimeError as exc:  # an HTTP error answer, e.g. an unknown job id
        raise ClusterError(str(exc).splitlines()[0]) from exc


def job_config_yaml(config: Config) -> str:
    """Every setting of ``config`` as YAML that :func:`pipeline.config.load_config` reads back."""
    return yaml.safe_dump(json.loads(json.dumps(config.to_dict())), sort_keys=True)


def cluster_path(location: str) -> str:
    """A source or index as the cluster sees it: URLs unchanged, local paths made absolute.

    A local path only works where every node sees the same filesystem (a shared volume);
    object storage (``s3://...``) is the usual choice on a cluster.
    """
    if "://" in location:
        return location
    return os.path.abspath(os.path.expanduser(location))


def index_entrypoint(
    source: str | None, index: str, full: bool = False, allow_empty_source: bool = False, shard: str | None = None
) -> str:
    """The shell command a Ray job runs to index ``source`` (None: the built-in sample) into ``index``.

    A URL with credentials typed into it is refused (ConfigError): the cluster keeps a job's
    command line in its job table and shows it to whoever lists the jobs.
    """
    for what, location in (("SOURCE", source), ("--index", index)):
        if location is not None and has_userinfo(location):
            raise ConfigError(
                f"{what} {redact(location)} holds credentials: a job's command line is stored by the cluster and "
                "shown by `vindex jobs list`. Give the cluster's nodes the credentials in their environment "
                "(e.g. AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or an instance role) and submit the URL without them"
            )
    argv = ["python", "-m", "jobs.index_corpus"]
    if source is not None:
        argv.append(cluster_path(source))
    argv += ["--index", cluster_path(index), "--config", JOB_CONFIG_FILE]
    if full:
        argv.append("--full")
    if allow_empty_source:
        argv.append("--allow-empty-source")
    if shard:
        argv += ["--shard", shard]
    return shlex.join(argv)


def _package_dirs() -> list[str]:
    import jobs
    import pipeline

    return [str(Path(module.__file__ or "").parent) for module in (pipeline, jobs)]


@contextlib.contextmanager
def runtime_env(config: Config) -> Iterator[dict[str, Any]]:
    """The job's runtime environment; its working directory exists until the block ends."""
    with tempfile.TemporaryDirectory(prefix="vindex-job-") as folder:
        Path(folder, JOB_CONFIG_FILE).write_text(job_config_yaml(config))
        yield {"working_dir": folder, "py_modules": _package_dirs(), "excludes": EXCLUDES}


def submit_index(
    client: JobSubmissionClient,
    source: str | None,
    index: str,
    config: Config,
    *,
    full: bool = False,
    allow_empty_source: bool = False,
    submission_id: str | None = None,
    shard: str | None = None,
) -> str:
    """Submit an indexing run (of part ``shard``, ``K/N``, of the listing); returns the job's submission id."""
    entrypoint = index_entrypoint(source, index, full, allow_empty_source, shard)
    metadata = {"vindex": "index", "source": source or "<sample>", "index": index}
    with runtime_env(config) as env:
        return _request(
            client,
            lambda: client.submit_job(
                entrypoint=entrypoint, runtime_env=env, metadata=metadata, submission_id=submission_id
            ),
        )


def job_status(client: JobSubmissionClient, job_id: str) -> str:
    return str(_request(client, lambda: client.get_job_status(job_id)).value)


@dataclass(frozen=True)
class JobRow:
    """One job as ``vindex jobs list|status`` shows it."""

    job_id: str
    status: str
    started: str
    entrypoint: str
    message: str
    driver_exit_code: int | None


def _row(info: Any) -> JobRow:
    started = (
        dt.datetime.fromtimestamp(info.start_time / 1000, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if info.start_time
        else ""
    )
    return JobRow(
        job_id=str(info.submission_id or info.job_id),
        status=str(info.status.value),
        started=started,
        entrypoint=str(info.entrypoint),
        message=str(info.message or ""),
        driver_exit_code=info.driver_exit_code,
    )


def job_info(client: JobSubmissionClient, job_id: str) -> JobRow:
    return _row(_request(client, lambda: client.get_job_info(job_id)))


def list_jobs(client: JobSubmissionClient) -> list[JobRow]:
    """Every job the cluster knows, oldest first."""
    jobs = [_row(info) for info in _request(client, client.list_jobs)]
    return sorted(jobs, key=lambda row: (row.started, row.job_id))


def job_logs(client: JobSubmissionClient, job_id: str) -> str:
    return str(_request(client, lambda: client.get_job_logs(job_id)))


def stop_job(client: JobSubmissionClient, job_id: str) -> bool:
    """Ask the cluster to stop a job; False if it had already ended."""
    return bool(_request(client, lambda: client.stop_job(job_id)))


def wait_for_job(client: JobSubmissionClient, job_id: str, timeout_s: float | None = None) -> str:
    """Poll until the job ends; returns its final status."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = job_status(client, job_id)
        if status in TERMINAL_STATUSES:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise ClusterError(f"job {job_id} still {status} after {timeout_s:g} s")
        time.sleep(POLL_INTERVAL_S)


def follow_job(client: JobSubmissionClient, job_id: str, out: TextIO) -> str:
    """Stream the job's log to ``out`` until the job ends; returns its final status.

    The stream is read while the job's status is polled. Once the status is final, the
    stream is dropped and what it had not delivered yet is taken from the whole log: Ray's
    stream closes only a second or two after the job ends (it sleeps a second between reads of
    the log file, and reads once more after it has seen the end), which every
    ``vindex submit --wait`` waited out. A stream that closes earlier (a dropped connection) is
    reopened, and what was already written is not written again.
    """
    written = 0

    def write(text: str) -> None:
        nonlocal written
        if text:
            out.write(text)
            out.flush()
            written += len(text)

    async def tail() -> None:
        seen = 0
        async for chunk in client.tail_job_logs(job_id):
            write(chunk[max(0, written - seen) :])
            seen += len(chunk)

    async def stream_until_final() -> str:
        stream: asyncio.Task[None] | None = None
        try:
            while True:
                if stream is None or stream.done():
                    if stream is not None:
                        _request(client, stream.result)  # a stream that failed raises here
                    stream = asyncio.create_task(tail())
                status = await asyncio.to_thread(job_status, client, job_id)
                if status in TERMINAL_STATUSES:
                    return status
                await asyncio.sleep(POLL_INTERVAL_S)
        finally:
            if stream is not None:
                stream.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError, RuntimeError):
                    await stream

    status = asyncio.run(stream_until_final())
    write(job_logs(client, job_id)[written:])  # the driver has exited: its log is whole
    return status


__all__ = [
    "ADDRESS_ENV",
    "JOB_CONFIG_FILE",
    "JobRow",
    "TERMINAL_STATUSES",
    "connect",
    "follow_job",
    "index_entrypoint",
    "job_config_yaml",
    "job_info",
    "job_logs",
    "job_status",
    "list_jobs",
    "resolve_address",
    "runtime_env",
    "stop_job",
    "submit_index",
    "wait_for_job",
]
