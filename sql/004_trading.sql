-- 004: the trading record. signals are replaced per snapshot; risk_decisions, orders,
-- fills and cash_ledger are append-only: a re-run of a day finds its orders by their
-- deterministic reference (strategy:as_of:sequence) and adds nothing.

-- What each strategy proposed or passed on, with the numbers behind it.
CREATE TABLE signals (
    as_of        DATE NOT NULL,
    quote_time   TIMESTAMP NOT NULL,
    strategy     VARCHAR NOT NULL,
    underlying   VARCHAR NOT NULL,
    order_ref    VARCHAR,                  -- the proposal's order reference; NULL for a pass
    action       VARCHAR NOT NULL,         -- 'propose' or 'pass'
    reason       VARCHAR,                  -- why it passed
    numbers      VARCHAR,                  -- JSON: iv, hv30, edge, delta, credit, ...
    run_id       BIGINT NOT NULL
);

-- Every risk-gate decision, approved or refused, with its rule and reason.
CREATE TABLE risk_decisions (
    as_of        DATE NOT NULL,
    quote_time   TIMESTAMP NOT NULL,
    strategy     VARCHAR NOT NULL,
    underlying   VARCHAR NOT NULL,
    order_ref    VARCHAR NOT NULL,
    decision     VARCHAR NOT NULL,         -- 'approved' or 'refused'
    rule         VARCHAR NOT NULL,
    reason       VARCHAR,
    max_loss     DECIMAL(18,4),            -- NULL for undefined risk
    requirement  DECIMAL(18,4) NOT NULL,   -- margin or collateral
    run_id       BIGINT NOT NULL
);

-- Orders sent to the broker, one row per leg.
CREATE TABLE orders (
    as_of        DATE NOT NULL,
    order_ref    VARCHAR NOT NULL,
    strategy     VARCHAR NOT NULL,
    leg          INTEGER NOT NULL,
    instrument   VARCHAR NOT NULL,         -- OCC symbol, or the ticker for shares
    underlying   VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,         -- 'option' or 'shares'
    expiry       DATE,
    strike       DECIMAL(18,4),
    put_call     VARCHAR,
    multiplier   INTEGER NOT NULL,
    quantity     BIGINT NOT NULL,          -- positive buys, negative sells
    limit_net    DECIMAL(18,4),            -- net per unit: + debit, − credit; NULL = market
    status       VARCHAR NOT NULL,         -- 'filled' or 'rejected'
    reason       VARCHAR,                  -- why the broker rejected it
    run_id       BIGINT NOT NULL
);

-- Executions, one row per leg (trades, expiry settlements and assignments).
CREATE TABLE fills (
    as_of        DATE NOT NULL,
    order_ref    VARCHAR NOT NULL,
    leg          INTEGER NOT NULL,
    strategy     VARCHAR NOT NULL,
    instrument   VARCHAR NOT NULL,
    underlying   VARCHAR NOT NULL,
    kind         VARCHAR NOT NULL,
    expiry       DATE,
    strike       DECIMAL(18,4),
    put_call     VARCHAR,
    multiplier   INTEGER NOT NULL,
    quantity     BIGINT NOT NULL,
    price        DECIMAL(18,4) NOT NULL,   -- per share
    commission   DECIMAL(18,4) NOT NULL,
    cash_kind    VARCHAR NOT NULL,         -- premium, settlement, assignment
    run_id       BIGINT NOT NULL
);

-- Every cash movement. Cash = sum(amount).
CREATE TABLE cash_ledger (
    as_of        DATE NOT NULL,
    kind         VARCHAR NOT NULL,         -- deposit, premium, commission, settlement, assignment, dividend
    amount       DECIMAL(18,4) NOT NULL,   -- + in, − out
    reference    VARCHAR NOT NULL,         -- order_ref#leg, or the deposit's reference
    run_id       BIGINT NOT NULL
);

-- Open positions as of a date, derived from the fills up to it (nothing to keep in
-- step): SELECT * FROM positions_as_of(DATE '2025-03-14'). Jobs use this, so a
-- re-run of a past day sees that day's book, not today's.
CREATE MACRO positions_as_of(d) AS TABLE
SELECT strategy, instrument, underlying, kind, expiry, strike, put_call, multiplier,
       sum(quantity) AS quantity,
       sum(quantity * price) / nullif(sum(quantity), 0) AS avg_price,
       min(as_of) AS opened
FROM fills
WHERE as_of <= d
GROUP BY strategy, instrument, underlying, kind, expiry, strike, put_call, multiplier
HAVING sum(quantity) <> 0;

-- Open positions now.
CREATE VIEW positions AS SELECT * FROM positions_as_of(DATE '9999-12-31');

-- The portfolio marked to market at each snapshot. Key: (as_of, quote_time).
CREATE TABLE portfolio_snapshots (
    as_of           DATE NOT NULL,
    quote_time      TIMESTAMP NOT NULL,
    cash            DECIMAL(18,4) NOT NULL,   -- sum of cash_ledger
    market_value    DECIMAL(18,4) NOT NULL,   -- open positions at their marks
    equity          DECIMAL(18,4) NOT NULL,   -- cash + market_value
    open_positions  INTEGER NOT NULL,
    stale_marks     INTEGER NOT NULL,         -- positions marked at an earlier price (no quote today)
    start_date      DATE NOT NULL,            -- first deposit
    start_equity    DECIMAL(18,4) NOT NULL,   -- deposits
    total_return    DOUBLE NOT NULL,          -- equity / start_equity − 1
    spy_return      DOUBLE,                   -- the SPY benchmark's total return
    alpha_vs_spy    DOUBLE,                   -- total_return − spy_return
    note            VARCHAR,                  -- which positions are stale, and since when
    run_id          BIGINT NOT NULL
);

-- Buy-and-hold benchmarks from the portfolio's start date with its capital (dividends
-- kept as cash). Key: (as_of, quote_time, symbol).
CREATE TABLE benchmark_snapshots (
    as_of         DATE NOT NULL,
    quote_time    TIMESTAMP NOT NULL,
    symbol        VARCHAR NOT NULL,
    start_date    DATE NOT NULL,
    start_price   DECIMAL(18,4) NOT NULL,
    shares        DOUBLE NOT NULL,
    price         DECIMAL(18,4) NOT NULL,
    dividends     DECIMAL(18,4) NOT NULL,     -- cash dividends received since the start
    value         DECIMAL(18,4) NOT NULL,
    total_return  DOUBLE NOT NULL,
    run_id        BIGINT NOT NULL
);
