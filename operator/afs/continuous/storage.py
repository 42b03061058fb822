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

from afs.continuous.errors import ContinuousError, redact_secrets, strip_credentials

_CHUNK = 8 * 1024 * 1024
_EXTRA = "pip install 'afs-continuous[storage]'"


#: schemes whose file systems keep nothing once the process ends: an upload there would
#: report success while no trainer could ever read the data set
NOT_PERSISTENT = frozenset({"memory"})


def upload(path: Path, url: str) -> None:
    """Copy ``path`` to ``url``; a :class:`ContinuousError` saying why when it cannot.
    Every message shows the URL without its credentials (see :func:`shown_url`)."""
    scheme = check_upload_url(url)
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
        raise ContinuousError(f"--upload {strip_credentials(url)}: {_scrubbed(exc, url)}") from None
    except Exception as exc:  # the storage's own errors: credentials, permissions, network
        shown = strip_credentials(url)
        raise ContinuousError(
            f"cannot upload to {shown}: {type(exc).__name__}: {_scrubbed(exc, url)}"
        ) from None


def check_upload_url(url: str) -> str:
    """The scheme of ``url`` if data uploaded there will still be there for the trainer;
    else a :class:`ContinuousError` saying why (checked before anything is exported)."""
    shown = strip_credentials(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not scheme:
        raise ContinuousError(f"--upload {shown}: not a URL (use e.g. s3://bucket/prefix/file)")
    if scheme.lower() in NOT_PERSISTENT:
        raise ContinuousError(
            f"--upload {shown}: {scheme}:// keeps nothing after this process ends; name "
            "storage the trainer can read (e.g. s3://, gs://, az://, file://)"
        )
    return scheme


def _scrubbed(exc: Exception, url: str) -> str:
    """The storage's message with the URL shown without credentials wherever it quotes
    it, and any other password it quotes masked."""
    return redact_secrets(str(exc).replace(url, strip_credentials(url)))
