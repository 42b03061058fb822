"""Erasure and lineage over the stores' data sets: which exports took given records, and
the ModelVersions trained on them labelled in the cluster."""

from __future__ import annotations

import json
from collections.abc import Sequence

from afs.continuous.privacy.membership import DatasetEntry, member_key, members_in
from afs.continuous.store import UsageStore
from afs.continuous.timeutil import format_timestamp, utc_now

#: on a ModelVersion trained on a data set that held records since erased
LABEL_ERASED = "continuous.afs.dev/trained-on-erased-records"
ANNOTATION_ERASED = "continuous.afs.dev/erased-records"


def datasets_with(store: UsageStore, record_ids: Sequence[str]) -> list[DatasetEntry]:
    """The recorded exports that took any of ``record_ids``."""
    keys = sorted({member_key(record_id) for record_id in record_ids})
    if not keys:
        return []
    return [entry for entry in store.iter_datasets() if members_in(entry.members, keys)]


def mark_model_versions(names: list[str], *, erased: int) -> tuple[list[str], list[str]]:
    """Label each ``namespace/name`` ModelVersion as trained on erased records; the
    labelled, and those that could not be (with why)."""
    from afs.continuous.kube.client import (
        KubeApiError,
        KubeClient,
        quiet_transport_retries,
        unreachable,
    )

    quiet_transport_retries()
    try:
        kube = KubeClient.connect()
    except KubeApiError as exc:
        return [], [f"{name}: {exc}" for name in names]
    body = {
        "metadata": {
            "labels": {LABEL_ERASED: "true"},
            "annotations": {
                ANNOTATION_ERASED: json.dumps(
                    {"at": format_timestamp(utc_now()), "records": erased}, separators=(",", ":")
                )
            },
        }
    }
    marked, unmarked = [], []
    for name in names:
        namespace, _, version = name.partition("/")
        try:
            kube.patch_custom_object("modelversions", namespace, version, body)
        except (KubeApiError, LookupError) as exc:
            unmarked.append(f"{name}: {exc}")
        except Exception as exc:
            why = unreachable(exc)
            if why is None:
                raise
            unmarked.append(f"{name}: {why}")
        else:
            marked.append(name)
    return marked, unmarked
