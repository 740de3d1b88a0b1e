-- 002: market data written by fetch_chains.

-- Daily bars as the source gave them (unadjusted). A session's bar is written once the
-- session has closed: by the next session's fetch_chains, or by a backfill.
CREATE TABLE underlying_bars (
    date         DATE NOT NULL,
    symbol       VARCHAR NOT NULL,
    open         DECIMAL(18,4) NOT NULL,
    high         DECIMAL(18,4) NOT NULL,
    low          DECIMAL(18,4) NOT NULL,
    close        DECIMAL(18,4) NOT NULL,
    volume       BIGINT NOT NULL,
    dividend     DECIMAL(18,4) NOT NULL,      -- cash dividend that went ex on this date
    split_ratio  DOUBLE NOT NULL,             -- new shares per old share on this date (1 = none)
    source       VARCHAR NOT NULL,
    run_id       BIGINT NOT NULL              -- job_runs.run_id that wrote it
);

-- The underlying at the moment of the chain snapshot, with the rate and dividend
-- yield the source priced with (or reports). Key: (as_of, quote_time, symbol).
CREATE TABLE underlying_quotes (
    as_of        DATE NOT NULL,
    quote_time   TIMESTAMP NOT NULL,          -- New York local time of the snapshot
    symbol       VARCHAR NOT NULL,
    price        DECIMAL(18,4) NOT NULL,
    rate         DOUBLE NOT NULL,             -- risk-free rate, continuously compounded
    div_yield    DOUBLE NOT NULL,             -- dividend yield, continuously compounded
    source       VARCHAR NOT NULL,
    run_id       BIGINT NOT NULL
);

-- Option quotes as received (raw). Key: (as_of, quote_time, contract): the daily run's
-- snapshot (at schedule.daily, 09:35 by default) and each intraday slot's are kept apart.
CREATE TABLE option_quotes (
    as_of             DATE NOT NULL,
    quote_time        TIMESTAMP NOT NULL,     -- New York local time of the snapshot
    underlying        VARCHAR NOT NULL,
    contract          VARCHAR NOT NULL,       -- OCC symbol, e.g. 'SPY   250321C00580000'
    root              VARCHAR NOT NULL,       -- e.g. SPX (AM-settled monthlies) or SPXW
    expiry            DATE NOT NULL,
    strike            DECIMAL(18,4) NOT NULL,
    put_call          VARCHAR NOT NULL,       -- 'C' or 'P'
    style             VARCHAR NOT NULL,       -- 'american' or 'european'
    settlement        VARCHAR NOT NULL,       -- 'physical' or 'cash'
    multiplier        INTEGER NOT NULL,
    bid               DECIMAL(18,4) NOT NULL,
    ask               DECIMAL(18,4) NOT NULL,
    bid_size          INTEGER NOT NULL,
    ask_size          INTEGER NOT NULL,
    volume            BIGINT NOT NULL,
    open_interest     BIGINT NOT NULL,
    underlying_price  DECIMAL(18,4) NOT NULL,
    source_iv         DOUBLE,                 -- IV the source reports (sim: its true pricing vol)
    source            VARCHAR NOT NULL,
    run_id            BIGINT NOT NULL
);

-- Quotes a source sent that failed validation, with the reason; never used downstream.
CREATE TABLE quote_rejects (
    as_of        DATE NOT NULL,
    quote_time   TIMESTAMP NOT NULL,
    underlying   VARCHAR NOT NULL,
    contract     VARCHAR NOT NULL,
    reason       VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,
    run_id       BIGINT NOT NULL
);

-- ATM implied-vol history a source can give for lookbacks (the sim gives its own).
CREATE TABLE iv_history (
    date         DATE NOT NULL,
    symbol       VARCHAR NOT NULL,
    atm_iv_30d   DOUBLE NOT NULL,             -- annualized, 0.185 = 18.5 vol points
    source       VARCHAR NOT NULL,
    run_id       BIGINT NOT NULL
);

-- Every backfill fetch_chains performed, so history that was filled in is visible.
CREATE TABLE backfills (
    run_id       BIGINT NOT NULL,
    as_of        DATE NOT NULL,
    kind         VARCHAR NOT NULL,            -- 'daily_bars' or 'atm_iv'
    symbols      INTEGER NOT NULL,
    from_date    DATE NOT NULL,
    to_date      DATE NOT NULL,
    rows_written BIGINT NOT NULL,
    source       VARCHAR NOT NULL
);

-- The cleaned view: two-sided, uncrossed quotes only.
CREATE VIEW option_quotes_clean AS
SELECT *, (bid + ask) / 2 AS mid
FROM option_quotes
WHERE ask > 0 AND bid >= 0 AND bid <= ask;
