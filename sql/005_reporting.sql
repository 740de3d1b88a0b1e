-- 005: what the daily report reads and records.

-- Each strategy at each snapshot: its open positions at their marks, the cash its fills
-- and dividends have brought in or paid out so far, and its P&L (cash_flow +
-- market_value), with the position greeks summed (delta in shares, theta in dollars
-- per calendar day, vega in dollars per vol point). Written by snapshot_benchmarks.
-- Key: (as_of, quote_time, strategy).
CREATE TABLE strategy_snapshots (
    as_of           DATE NOT NULL,
    quote_time      TIMESTAMP NOT NULL,
    strategy        VARCHAR NOT NULL,
    open_positions  INTEGER NOT NULL,
    market_value    DECIMAL(18,4) NOT NULL,
    cash_flow       DECIMAL(18,4) NOT NULL,   -- cumulative: premiums, settlements, assignments, dividends, commissions
    pnl             DECIMAL(18,4) NOT NULL,   -- cash_flow + market_value
    delta           DOUBLE,                   -- share-equivalent delta
    theta           DOUBLE,                   -- dollars per calendar day
    vega            DOUBLE,                   -- dollars per 1 vol point
    run_id          BIGINT NOT NULL
);

-- Every daily report: sent by SMTP, only written to a file (no SMTP settings, or a dry
-- run), or failed with the server's reply. Append-only. A day with a 'sent' row is
-- not sent again unless `--resend`.
CREATE TABLE reports (
    as_of        DATE NOT NULL,
    created_at   TIMESTAMP NOT NULL,          -- UTC
    subject      VARCHAR NOT NULL,
    recipients   VARCHAR,                     -- comma-separated; NULL when not sent
    message_id   VARCHAR,
    status       VARCHAR NOT NULL CHECK (status IN ('sent', 'written', 'failed')),
    eml_path     VARCHAR NOT NULL,            -- the message as an .eml file
    error        VARCHAR,                     -- the SMTP server's reply, or why it could not connect
    run_id       BIGINT NOT NULL
);

-- Every alert (Telegram, webhook) after a job run: fills, risk halts, job failures and
-- the daily summary. An alert that could not be delivered is recorded here with the
-- reason; it never fails a job. Append-only.
CREATE TABLE alerts (
    created_at   TIMESTAMP NOT NULL,          -- UTC
    as_of        DATE NOT NULL,
    event        VARCHAR NOT NULL,            -- fills, risk_halt, job_failure, daily_summary
    channel      VARCHAR NOT NULL,            -- telegram or webhook
    status       VARCHAR NOT NULL CHECK (status IN ('sent', 'failed')),
    attempts     INTEGER NOT NULL,
    error        VARCHAR,
    text         VARCHAR NOT NULL,
    run_id       BIGINT NOT NULL              -- the job run it is about
);
