"""The PostgreSQL schema and its versioned migrations: the partitioned usage table, its
indexes, the rollup table and the statement-level triggers that keep it current."""

from __future__ import annotations

_ADVISORY_KEY = 0x0AF5C0DE  # migrations and partition creation

_PARTITIONS_AHEAD_DAYS = 7

_ROLLUP_COLUMNS = (
    "n",
    "n_scored",
    "quality_sum",
    "quality_sq_sum",
    "latency_sum",
    "n_log_latency",
    "log_latency_sum",
    "log_latency_sq_sum",
    "token_sum",
    "n_feedback",
    "n_positive",
    "n_negative",
    "n_errors",
)

_RAW_AGGREGATES = (
    "count(*), count(quality_score), coalesce(sum(quality_score), 0), "
    "coalesce(sum(quality_score * quality_score), 0), coalesce(sum(latency_ms), 0), "
    "count(*) FILTER (WHERE latency_ms > 0), "
    "coalesce(sum(ln(latency_ms)) FILTER (WHERE latency_ms > 0), 0), "
    "coalesce(sum(ln(latency_ms) ^ 2) FILTER (WHERE latency_ms > 0), 0), "
    "coalesce(sum(token_count), 0), count(user_feedback), "
    "count(*) FILTER (WHERE user_feedback = 1), count(*) FILTER (WHERE user_feedback = -1), "
    "count(*) FILTER (WHERE is_error)"
)

_ROLLUP_SUMS = ", ".join(f"coalesce(sum({c}), 0)" for c in _ROLLUP_COLUMNS)


def _rollup_function(name: str, source: str, sign: str) -> str:
    """A trigger function adding (sign '+') or subtracting ('-') a transition table."""
    values = ", ".join(f"{sign}{expr.strip()}" for expr in _split_aggregates(_RAW_AGGREGATES))
    updates = ", ".join(f"{c} = r.{c} + excluded.{c}" for c in _ROLLUP_COLUMNS)
    return f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_rollup AS r (bucket, model, expert, {", ".join(_ROLLUP_COLUMNS)})
    SELECT date_trunc('hour', timestamp AT TIME ZONE 'UTC'), model, coalesce(expert, ''),
           {values}
    FROM {source} GROUP BY 1, 2, 3
    ON CONFLICT (bucket, model, expert) DO UPDATE SET {updates};
    RETURN NULL;
END $$"""


def _split_aggregates(text: str) -> list[str]:
    """Split the aggregate list at top-level commas."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


_MIGRATION_1 = [
    """
CREATE TABLE IF NOT EXISTS usage (
    id text NOT NULL,
    timestamp timestamptz NOT NULL,
    query text NOT NULL,
    response text NOT NULL,
    model text NOT NULL,
    expert text,
    latency_ms double precision CHECK (latency_ms IS NULL OR latency_ms >= 0),
    token_count integer CHECK (token_count IS NULL OR token_count >= 0),
    quality_score double precision DEFAULT 0.0
        CHECK (quality_score IS NULL OR (quality_score >= 0 AND quality_score <= 1)),
    user_feedback smallint CHECK (user_feedback IS NULL OR user_feedback IN (-1, 0, 1)),
    feedback_text text,
    context_hash text,
    dedupe_hash text,
    created_at timestamptz NOT NULL DEFAULT now(),
    feedback_at timestamptz,
    PRIMARY KEY (id, timestamp)
) PARTITION BY RANGE (timestamp)""",
    "CREATE INDEX IF NOT EXISTS usage_model_time ON usage (model, timestamp)",
    "CREATE INDEX IF NOT EXISTS usage_time_quality ON usage (timestamp, quality_score)",
    "CREATE INDEX IF NOT EXISTS usage_feedback_at ON usage (feedback_at) "
    "WHERE feedback_at IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS usage_dedupe ON usage (dedupe_hash)",
    """
CREATE TABLE IF NOT EXISTS usage_rollup (
    bucket timestamp NOT NULL,
    model text NOT NULL,
    expert text NOT NULL,
    n bigint NOT NULL,
    n_scored bigint NOT NULL,
    quality_sum double precision NOT NULL,
    quality_sq_sum double precision NOT NULL,
    latency_sum double precision NOT NULL,
    n_log_latency bigint NOT NULL,
    log_latency_sum double precision NOT NULL,
    log_latency_sq_sum double precision NOT NULL,
    token_sum bigint NOT NULL,
    n_feedback bigint NOT NULL,
    n_positive bigint NOT NULL,
    n_negative bigint NOT NULL,
    PRIMARY KEY (bucket, model, expert)
)""",
    _rollup_function("afs_rollup_add_new", "new_rows", ""),
    _rollup_function("afs_rollup_sub_old", "old_rows", "-"),
    "DROP TRIGGER IF EXISTS usage_rollup_insert ON usage",
    "CREATE TRIGGER usage_rollup_insert AFTER INSERT ON usage "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION afs_rollup_add_new()",
    "DROP TRIGGER IF EXISTS usage_rollup_update_old ON usage",
    "CREATE TRIGGER usage_rollup_update_old AFTER UPDATE ON usage "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION afs_rollup_sub_old()",
    "DROP TRIGGER IF EXISTS usage_rollup_update_new ON usage",
    "CREATE TRIGGER usage_rollup_update_new AFTER UPDATE ON usage "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION afs_rollup_add_new()",
    "DROP TRIGGER IF EXISTS usage_rollup_delete ON usage",
    "CREATE TRIGGER usage_rollup_delete AFTER DELETE ON usage "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION afs_rollup_sub_old()",
    """
CREATE TABLE IF NOT EXISTS loop_state (
    key text PRIMARY KEY,
    value jsonb NOT NULL,
    updated_at timestamptz NOT NULL
)""",
]

_MIGRATION_2 = [
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS is_error boolean NOT NULL DEFAULT false",
    "ALTER TABLE usage_rollup ADD COLUMN IF NOT EXISTS n_errors bigint NOT NULL DEFAULT 0",
    _rollup_function("afs_rollup_add_new", "new_rows", ""),
    _rollup_function("afs_rollup_sub_old", "old_rows", "-"),
]

_MIGRATION_3 = [
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS assignment_hash text",
]

# a nullable column without a default: added to the partitioned table and every partition
# in place, no row rewritten; the nodes each distinct conversation prefix is stored as once
_MIGRATION_4 = [
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS conversation_hash text",
    "CREATE TABLE IF NOT EXISTS conversation_nodes ("
    "hash text PRIMARY KEY, parent text, item text NOT NULL)",
    # a response that is more than text (tool calls, a refusal), as its message
    "ALTER TABLE usage ADD COLUMN IF NOT EXISTS response_json text",
]

# each export and the records it took (see afs.continuous.privacy.membership)
_MIGRATION_5 = [
    "CREATE TABLE IF NOT EXISTS datasets (id text PRIMARY KEY, created_at timestamptz NOT NULL, "
    "output text NOT NULL, format text NOT NULL, record_count bigint NOT NULL, sha256 text, "
    "model_version text, redaction jsonb, members bytea NOT NULL)",
]

# an answer a user or an expert gave instead of a record's response
_MIGRATION_6 = [
    "CREATE TABLE IF NOT EXISTS corrections (record_id text PRIMARY KEY, "
    "correction_json text NOT NULL, corrected_at timestamptz NOT NULL)",
]

MIGRATIONS: tuple[tuple[int, str, list[str]], ...] = (
    (1, "partitioned usage table, indexes, rollup triggers, loop state", _MIGRATION_1),
    (2, "error flag", _MIGRATION_2),
    (3, "assignment key (hashed)", _MIGRATION_3),
    (4, "conversations", _MIGRATION_4),
    (5, "data sets (membership)", _MIGRATION_5),
    (6, "corrections", _MIGRATION_6),
)

LATEST_VERSION = MIGRATIONS[-1][0]
