-- 013: the intraday desk's data.

-- One-minute bars of the session, per symbol, as `fetch_chains` fetched them (the sim's
-- minute path, or the `replay` archive's imported minute bars): every completed bar from
-- the open to the snapshot. `ts` is the minute the bar opens, New York wall-clock time;
-- the bar stamped 10:29 closes at 10:30. Key (symbol, ts): a re-run replaces its bars.
CREATE TABLE intraday_bars (
    symbol     VARCHAR NOT NULL,
    ts         TIMESTAMP NOT NULL,
    open       DOUBLE NOT NULL,
    high       DOUBLE NOT NULL,
    low        DOUBLE NOT NULL,
    close      DOUBLE NOT NULL,
    volume     BIGINT NOT NULL,
    source     VARCHAR NOT NULL,
    run_id     BIGINT NOT NULL,
    PRIMARY KEY (symbol, ts)
);

-- Earnings dates of single names known at a session: the source's (the sim's calendar)
-- and the user's `data/earnings.csv` (`symbol,date`). Key (symbol, date, source). Read
-- into the day's session context; the risk gate's event blackout extends to them.
CREATE TABLE earnings_dates (
    symbol     VARCHAR NOT NULL,
    date       DATE NOT NULL,
    source     VARCHAR NOT NULL,        -- the market-data source's name, or 'earnings.csv'
    run_id     BIGINT NOT NULL,
    PRIMARY KEY (symbol, date, source)
);
