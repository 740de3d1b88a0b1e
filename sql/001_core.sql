-- 001: the audit trail of every job run.
-- Append-only: a run is recorded once, when it finishes (or fails), in the same
-- transaction as its output; a crashed run leaves nothing behind.
CREATE TABLE job_runs (
    run_id        BIGINT PRIMARY KEY,          -- 1, 2, 3, ... in order of recording
    job           VARCHAR NOT NULL,            -- e.g. fetch_chains
    as_of         DATE NOT NULL,               -- the session the run was for
    slot          VARCHAR,                     -- intraday slot (HH:MM New York); NULL for the daily run
    started_at    TIMESTAMP NOT NULL,          -- UTC
    finished_at   TIMESTAMP NOT NULL,          -- UTC
    status        VARCHAR NOT NULL CHECK (status IN ('ok', 'failed', 'skipped')),
    rows_written  BIGINT NOT NULL,
    message       VARCHAR,                     -- summary, or the reason for a skip or failure
    config_hash   VARCHAR NOT NULL,            -- hash of jobs/desk.toml + jobs/<job>.toml
    version       VARCHAR NOT NULL,            -- optdesk version that ran it
    dry_run       BOOLEAN NOT NULL,            -- true: output was computed, then rolled back
    trigger       VARCHAR NOT NULL             -- cli, daily or schedule
);
