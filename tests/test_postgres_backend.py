"""Choosing PostgreSQL, and getting the same results from every class above the store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from afs.continuous import LoopConfig, UsageLogger
from afs.continuous.cli import EXIT_OK, main
from afs.continuous.demo import run_demo
from afs.continuous.store import RecordQuery
from afs.continuous.store.postgres import PostgresUsageStore
from tests.postgres_server import fresh_schema

SAMPLE = Path(__file__).resolve().parent.parent / "examples" / "usage_sample.jsonl"


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def test_url_selects_postgres(pg_url: str) -> None:
    with UsageLogger(url=pg_url) as logger:
        assert isinstance(logger.store, PostgresUsageStore)
        record_id = logger.log("q", "r", "m", quality_score=0.5)
        assert logger.record_feedback(record_id, 1)
        assert logger.get_statistics()["positive_feedback"] == 1


def test_environment_variable_selects_postgres(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, private_home: Path
) -> None:
    monkeypatch.setenv("AFS_DATABASE_URL", pg_url)
    with UsageLogger() as logger:
        assert isinstance(logger.store, PostgresUsageStore)
    assert not (private_home / ".context").exists()


def test_loop_config_database_url(pg_url: str, tmp_path: Path) -> None:
    config = LoopConfig(database_url=pg_url, output_dir=tmp_path)
    assert config.database == pg_url
    as_path = LoopConfig(db_path=pg_url, output_dir=tmp_path)
    assert as_path.database_url == pg_url
    with pytest.raises(ValueError, match="database_url"):
        LoopConfig(database_url="mysql://x/y")


def test_cli_on_postgres(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", pg_url, "--json", "db", "migrate"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["schema_version"] >= 1
    assert main(["import", str(SAMPLE), "--db", pg_url]) == EXIT_OK
    capsys.readouterr()
    assert main(["stats", "--db", pg_url, "--json"]) == EXIT_OK
    pg_stats = json.loads(capsys.readouterr().out)
    sqlite = str(tmp_path / "u.db")
    main(["import", str(SAMPLE), "--db", sqlite])
    capsys.readouterr()
    main(["stats", "--db", sqlite, "--json"])
    assert json.loads(capsys.readouterr().out) == pytest.approx(pg_stats)
    out_pg, out_sqlite = tmp_path / "pg.jsonl", tmp_path / "sqlite.jsonl"
    main(["export", str(out_pg), "--db", pg_url])
    main(["export", str(out_sqlite), "--db", sqlite])
    assert out_pg.read_text() == out_sqlite.read_text()
    assert main(["--db", pg_url, "--json", "db", "retention", "--keep-days", "36500"]) == 0


def test_the_whole_loop_gives_the_same_results_on_both_backends(
    pg_url: str, tmp_path: Path
) -> None:
    on_sqlite = run_demo(tmp_path / "sqlite", say=lambda line: None)
    on_postgres = run_demo(tmp_path / "pg", say=lambda line: None, database=pg_url)
    assert on_postgres == on_sqlite
    assert on_postgres["champion"] != "nayru-v1"


def test_log_many_streams_but_stays_all_or_nothing(pg_url: str) -> None:
    from afs.continuous import InvalidBatchError

    rows: list[dict[str, object]] = [
        {"query": f"q{i}", "response": "r", "model": "m"} for i in range(5000)
    ]
    rows[3000]["quality_score"] = 7
    with UsageLogger(url=pg_url) as logger:
        with pytest.raises(InvalidBatchError) as caught:
            logger.log_many(rows)
        assert caught.value.index == 3000
        assert logger.get_statistics()["total"] == 0


def test_records_from_any_day_get_a_partition(pg_url: str) -> None:
    with UsageLogger(url=pg_url) as logger:
        ids = logger.log_many(
            [
                {
                    "query": "old",
                    "response": "r",
                    "model": "m",
                    "timestamp": "2019-03-04T05:06:07Z",
                },
                {
                    "query": "new",
                    "response": "r",
                    "model": "m",
                    "timestamp": "2025-06-01T00:00:00Z",
                },
            ]
        )
        assert len(ids) == 2
        assert [r.query for r in logger.get_records()] == ["new", "old"]
        assert logger.get_statistics(since="2019-03-04T00:00:00Z", until="2019-03-05")["total"] == 1


def test_an_import_spanning_eleven_years_fits_in_the_lock_table(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """4,000 days of backfill with a partition per day needed ~24,000 locks in one
    transaction ("out of shared memory" after two minutes of retries); old days now share
    a partition per month, and feedback by id (which locks every partition) still works."""
    first = datetime(2015, 1, 1, 12, tzinfo=UTC)
    source = tmp_path / "history.jsonl"
    with source.open("w") as out:
        for day in range(4000):
            at = (first + timedelta(days=day)).isoformat()
            out.write(json.dumps({"id": f"day-{day:04d}", "query": "q", "response": "r",
                                  "model": "m", "timestamp": at}) + "\n")  # fmt: skip
    assert main(["import", str(source), "--db", pg_url]) == EXIT_OK
    store = PostgresUsageStore(pg_url)
    try:
        partitions = store.partitions()
        assert len(partitions) < 200
        assert all(p.start < q.start and p.end <= q.start for p, q in pairwise(partitions))
        assert store.count_records(RecordQuery()) == 4000
        assert store.update_feedback("day-0042", 1, None, at=datetime.now(UTC))
        # retention still removes exactly the days that ended by the cutoff, also from
        # the middle of a month partition, and archives each record it removes
        cutoff = first + timedelta(days=100, hours=3)
        result = store.drop_before(cutoff, archive=tmp_path / "old.jsonl.gz")
        assert result["removed_records"] == result["archived_records"] == 100
        assert result["trimmed_partitions"] == ["usage_p20150401_20150501"]
        assert store.count_records(RecordQuery()) == 3900
        assert store.statistics().count == 3900
    finally:
        store.close()


def test_an_import_with_a_bad_line_imports_nothing_on_postgres(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The import streams into one COPY; a bad line aborts it."""
    source = tmp_path / "in.jsonl"
    good = '{"query": "fine", "response": "r", "model": "m"}\n'
    source.write_text(good * 3000 + "{oops\n")
    assert main(["import", str(source), "--db", pg_url]) != EXIT_OK
    assert "line 3001: not valid JSON" in capsys.readouterr().err
    assert main(["stats", "--db", pg_url, "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["total"] == 0
