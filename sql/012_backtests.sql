-- 012: backtests. In the main store, `backtests` catalogues every `optdesk backtest`
-- (one row per name, updated as it runs) and `backtest_metrics` holds its headline
-- metrics per book once it ends. A backtest's own store (data/backtests/<name>.duckdb)
-- holds its own `backtests` row (the configuration it was made with, checked on resume)
-- and `backtest_sessions`, one row per session whose pipeline completed.

CREATE TABLE backtests (
    name             VARCHAR NOT NULL PRIMARY KEY,
    from_date        DATE NOT NULL,
    to_date          DATE NOT NULL,
    sessions_total   INTEGER NOT NULL,     -- NYSE sessions in the range
    sessions_done    INTEGER NOT NULL,     -- sessions whose whole pipeline completed
    config_hash      VARCHAR NOT NULL,     -- of every configuration file, the overrides, source and seed
    config_snapshot  VARCHAR NOT NULL,     -- the text of the job files (overrides applied) and the overrides
    overrides        VARCHAR NOT NULL,     -- the --set arguments, one per line
    source           VARCHAR NOT NULL,
    seed             UBIGINT NOT NULL,
    keep_quotes      VARCHAR NOT NULL,     -- traded, all or none
    version          VARCHAR NOT NULL,     -- optdesk version of the last run
    status           VARCHAR NOT NULL,     -- running, stopped, done, failed
    message          VARCHAR,              -- why it stopped or failed
    started_at       TIMESTAMP NOT NULL,   -- UTC, the last start (or resume)
    finished_at      TIMESTAMP,            -- UTC, when it last stopped, failed or finished
    seconds          DOUBLE,               -- wall time of the last start, seconds
    total_return     DOUBLE,               -- headline metrics of the whole book (analytics/performance.rs)
    cagr             DOUBLE,               -- annualized return
    sharpe           DOUBLE,
    max_drawdown     DOUBLE,               -- negative fraction, -0.05 = -5%
    win_rate         DOUBLE,               -- of closed trades
    trades           INTEGER,              -- closed trades
    final_equity     DOUBLE,
    store_path       VARCHAR NOT NULL,
    store_bytes      BIGINT
);

-- Headline metrics per book of a finished (or stopped) backtest: the portfolio, each
-- strategy, each benchmark. Replaced each time the backtest ends.
CREATE TABLE backtest_metrics (
    name          VARCHAR NOT NULL,
    book          VARCHAR NOT NULL,        -- Portfolio, a strategy, or a benchmark symbol
    kind          VARCHAR NOT NULL,        -- book, strategy, benchmark
    total_return  DOUBLE,
    cagr          DOUBLE,
    sharpe        DOUBLE,
    sortino       DOUBLE,
    max_drawdown  DOUBLE,
    win_rate      DOUBLE,
    trades        INTEGER,
    total_pnl     DOUBLE
);

-- In a backtest's own store: each session whose pipeline completed, in order. A resumed
-- backtest starts at the first session of its range not here.
CREATE TABLE backtest_sessions (
    as_of        DATE NOT NULL PRIMARY KEY,
    finished_at  TIMESTAMP NOT NULL,       -- UTC
    seconds      DOUBLE NOT NULL,
    equity       DOUBLE                    -- the portfolio's equity after the session
);
