"""How a LearningLoop scores the records that arrive without a quality score, before its
exporter selects training data (``spec.scoring``)."""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import urlencode

from pydantic import Field, model_validator

from afs.continuous.kube.api.base import KubeModel, SecretKeyRef


class JudgeSpec(KubeModel):
    """An LLM judge behind an OpenAI-compatible endpoint."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s?#]+$", max_length=2048)]
    """The API's base URL (``.../v1``)."""
    model: Annotated[str, Field(min_length=1, max_length=256)]
    api_key_secret_ref: SecretKeyRef | None = None
    concurrency: Annotated[int, Field(ge=1, le=64)] = 4


class ScoringSpec(KubeModel):
    """Each run's exporter first scores the unscored records: with the ``heuristic``, a
    ``discriminator`` trained at that run on the users' thumbs and corrections (the
    heuristic while there are too few), or a ``judge``."""

    scorer: Literal["heuristic", "discriminator", "judge"] = "discriminator"
    judge: JudgeSpec | None = None

    @model_validator(mode="after")
    def _judge_for_judge(self) -> Self:
        if (self.scorer == "judge") != (self.judge is not None):
            raise ValueError("scorer judge needs judge (url, model), and judge needs scorer judge")
        return self

    def spec(self) -> str:
        """The exporter's ``--score``."""
        if self.judge is not None:
            query = urlencode({"model": self.judge.model, "concurrency": self.judge.concurrency})
            return f"judge:{self.judge.url}?{query}"
        return self.scorer
