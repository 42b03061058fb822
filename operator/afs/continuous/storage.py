"""Copying a finished data set to object storage (``s3://``, ``gs://``, ``az://``…) for
the training pods of a distributed run, which share no volume with the exporter.

fsspec does the writing, with the file system of the URL's scheme (s3fs, gcsfs, adlfs:
the ``storage`` extra), and its credentials from the environment as each of them reads
them (``AWS_ACCESS_KEY_ID``, ``GOOGLE_APPLICATION_CREDENTIALS``, …). An object appears
only once it is whole, so a failed upload leaves nothing a trainer could half-read.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from afs.continuous.errors import ContinuousError

_CHUNK = 8 * 1024 * 1024
_EXTRA = "pip install 'afs-continuous[storage]'"


def upload(path: Path, url: str) -> None:
    """Copy ``path`` to ``url``; a :class:`ContinuousError` saying why when it cannot."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not scheme:
        raise ContinuousError(f"--upload {url}: not a URL (use e.g. s3://bucket/prefix/file)")
    try:
        import fsspec
    except ImportError:
        raise ContinuousError(f"--upload needs fsspec: {_EXTRA}") from None
    try:
        with path.open("rb") as source, fsspec.open(url, "wb") as target:
            shutil.copyfileobj(source, target, _CHUNK)
    except ImportError as exc:  # fsspec knows the scheme, its package is not installed
        raise ContinuousError(
            f"--upload {scheme}://: the file system for {scheme}:// is not installed "
            f"({exc.name or exc}); {_EXTRA}"
        ) from None
    except ValueError as exc:  # fsspec: "Protocol not known"
        raise ContinuousError(f"--upload {url}: {exc}") from None
    except Exception as exc:  # the storage's own errors: credentials, permissions, network
        raise ContinuousError(f"cannot upload to {url}: {type(exc).__name__}: {exc}") from None
