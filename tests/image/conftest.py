"""The image built once per test run by the repository's own script, with the same tools
a user without Docker has (buildah, podman, mmdebstrap)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.docs_examples import ROOT
from tests.image.containers import IMAGE, TRAINER_IMAGE, environment, missing_tools, podman


@dataclass(frozen=True)
class Build:
    seconds: float
    #: the images the tags named before this build (None: there were none, or none built)
    replaced: list[str] | None = None


def image_ids() -> list[str]:
    """The ids the two test tags name now."""
    found = [podman("image", "inspect", "--format", "{{.Id}}", tag, check=False)
             for tag in (IMAGE, TRAINER_IMAGE)]  # fmt: skip
    return [r.stdout.strip() for r in found if r.returncode == 0]


@pytest.fixture(scope="session")
def built() -> Iterator[Build]:
    """Build both images (about two minutes). With ``AFS_TEST_IMAGE_PREBUILT=1`` the
    images the script tagged last are used as they are."""
    reason = missing_tools()
    if reason is not None:
        pytest.skip(f"the image tests need buildah and podman: {reason}")
    started = time.monotonic()
    if os.environ.get("AFS_TEST_IMAGE_PREBUILT"):  # iterating on the tests: built already
        yield Build(seconds=0.0)
        return
    replaced = image_ids()
    result = subprocess.run(
        [str(ROOT / "scripts" / "build_image.sh"), "--tag", IMAGE, "--trainer-tag", TRAINER_IMAGE],
        env=environment(), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    print(result.stderr, file=sys.stderr)
    assert result.returncode == 0, result.stderr[-4000:]
    yield Build(seconds=time.monotonic() - started, replaced=replaced or None)
