"""Messages never carry a database password."""

from __future__ import annotations

import pytest

from afs.continuous.errors import redact_secrets


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("postgresql://u:s3cret@db:5432/usage", "postgresql://u:***@db:5432/usage"),
        ("postgres://u:a@b@db/usage", "postgres://u:***@db/usage"),
        ("mysql://u:s3cret@db/usage", "mysql://u:***@db/usage"),
        ("postgresql://db/usage?password=s3cret&sslmode=require",
         "postgresql://db/usage?password=***&sslmode=require"),
        ("host=db PASSWORD = 's3 cret' dbname=usage", "host=db PASSWORD = *** dbname=usage"),
        ('error in URI: "postgresql://u:s3cret@[db/usage"?', 'error in URI: "postgresql://u:***@[db/usage"?'),
        ("postgresql://u@db/usage", "postgresql://u@db/usage"),
        ("no secret here? none", "no secret here? none"),
    ],
)  # fmt: skip
def test_passwords_are_masked_wherever_they_appear(text: str, redacted: str) -> None:
    assert redact_secrets(text) == redacted
