"""Object-storage options for the two clients vindex uses: fsspec (videos) and deltalake (index).

Settings come from the ``storage`` config section; credentials never do. Both clients read
credentials from the usual places themselves (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
``AWS_PROFILE``, instance roles, ``GOOGLE_APPLICATION_CREDENTIALS``, ...), so no secret
passes through vindex's config, logs or tables.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlparse

from pipeline.config import StorageConfig


def _protocol(url: str) -> str:
    scheme = urlparse(url).scheme
    return "file" if len(scheme) <= 1 else scheme  # "C:\\..." has a one-letter scheme


def _endpoint(storage: StorageConfig) -> str:
    return storage.endpoint_url or os.environ.get("AWS_ENDPOINT_URL", "")


def fsspec_options(url: str, storage: StorageConfig) -> dict[str, Any]:
    """Keyword arguments for ``fsspec`` filesystems of ``url``'s protocol."""
    if _protocol(url) not in ("s3", "s3a"):
        return {}
    options: dict[str, Any] = {}
    endpoint = _endpoint(storage)
    if endpoint:
        options["endpoint_url"] = endpoint
    if storage.region:
        options["client_kwargs"] = {"region_name": storage.region}
    if storage.anonymous:
        options["anon"] = True
    if storage.profile:
        options["profile"] = storage.profile
    return options


def delta_options(url: str, storage: StorageConfig) -> dict[str, str] | None:
    """``storage_options`` for deltalake (object_store keys) for an index at ``url``."""
    if _protocol(url) not in ("s3", "s3a"):
        return None
    options: dict[str, str] = {}
    endpoint = _endpoint(storage)
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    region = storage.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["AWS_REGION"] = region
    if storage.anonymous:
        options["AWS_SKIP_SIGNATURE"] = "true"
    if storage.profile:
        options["AWS_PROFILE"] = storage.profile
    return options
