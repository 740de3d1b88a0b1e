-- Session compliance (review_session) and the drills behind the pre-live checklist
-- (optdesk selftest, and the ibkr source's reconnects).

-- Per session and strategy: the rules that fired, any violation, trades and P&L. A
-- session is compliant when no job failed, every 0DTE position of an intraday strategy
-- was closed before the close, no entry was made once the daily loss cap was reached,
-- and no entry was made while a halt or blackout applied.
CREATE TABLE session_compliance (
    as_of        DATE NOT NULL,
    strategy     VARCHAR NOT NULL,
    intraday     BOOLEAN NOT NULL,          -- the strategy trades in slots
    compliant    BOOLEAN NOT NULL,
    rules_fired  VARCHAR NOT NULL,          -- 'rule×count, ...' (refusals and exit rules), '' for none
    violations   VARCHAR NOT NULL,          -- one per line, '' for none
    entries      INTEGER NOT NULL,          -- entry orders filled
    exits        INTEGER NOT NULL,          -- exit orders filled
    pnl          DECIMAL(18,4) NOT NULL,    -- the session's own trades: cash moved plus what is still open at the last mark
    run_id       BIGINT NOT NULL,
    PRIMARY KEY (as_of, strategy)
);

-- Drills that really ran: `optdesk selftest` (kill9_recovery, circuit_breakers) and a
-- successful reconnect of the ibkr source (reconnect).
CREATE TABLE drills (
    drill        VARCHAR NOT NULL,
    ran_at       TIMESTAMP NOT NULL,        -- UTC
    passed       BOOLEAN NOT NULL,
    detail       VARCHAR NOT NULL,          -- what ran and what was seen, or why it failed
    version      VARCHAR NOT NULL
);
