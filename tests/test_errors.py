"""Messages never carry a database password."""

from __future__ import annotations

import pytest

from afs.continuous.errors import redact_secrets, strip_credentials


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


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://bucket/run-1/d.jsonl", "s3://bucket/run-1/d.jsonl"),
        ("memory://user:pw@host/x", "memory://host/x"),
        ("sftp://token@host:22/x", "sftp://host:22/x"),
        ("ftp://u:p/a@b@host/d?x=1&password=2", "ftp://host/d?x=1"),
        ("https://h/o?X-Amz-Signature=abc&X-Amz-Credential=k&part=1", "https://h/o?part=1"),
        ("az://c/d?sv=2024&sig=abc", "az://c/d"),
        ("gs://bucket/a@b.jsonl", "gs://bucket/a@b.jsonl"),
        ("http://host:80/a@b", "http://host:80/a@b"),
        ("bucket/d.jsonl", "bucket/d.jsonl"),
        ("user:pw@bucket/a@b.jsonl", "bucket/a@b.jsonl"),
    ],
    ids=["plain", "user-password", "token-as-user", "slash-in-password", "presigned-s3",
         "azure-sas", "at-in-path", "port-and-at-in-path", "not-a-url",
         "not-a-url-with-credentials"],
)  # fmt: skip
def test_urls_are_shown_without_anything_that_grants_access(url: str, shown: str) -> None:
    assert strip_credentials(url) == shown
