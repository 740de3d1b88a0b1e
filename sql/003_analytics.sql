-- 003: analytics written by compute_vol and correlation.

-- Per contract, per session: the mid, its implied vol and greeks (Black–Scholes–Merton
-- with the source's rate and dividend yield; American contracts on the mid as if
-- European — see the README). Key: (as_of, quote_time, contract).
CREATE TABLE option_analytics (
    as_of          DATE NOT NULL,
    quote_time     TIMESTAMP NOT NULL,        -- the snapshot (New York) the quotes are from
    contract       VARCHAR NOT NULL,
    underlying     VARCHAR NOT NULL,
    expiry         DATE NOT NULL,
    strike         DECIMAL(18,4) NOT NULL,
    put_call       VARCHAR NOT NULL,
    t_years        DOUBLE NOT NULL,          -- ACT/365 from the snapshot to settlement
    forward        DOUBLE NOT NULL,
    mid            DOUBLE,                   -- (bid + ask) / 2; NULL without a two-sided quote
    iv             DOUBLE,                   -- implied vol of the mid; NULL with iv_note saying why
    delta          DOUBLE,                   -- per $1 of the underlying
    gamma          DOUBLE,                   -- per $1 per $1
    vega           DOUBLE,                   -- per 1.00 of vol (÷100 for one vol point)
    theta_per_day  DOUBLE,                   -- per calendar day
    rho            DOUBLE,                   -- per 1.00 of rate
    model_price    DOUBLE,                   -- BSM price at iv (reproduces mid)
    iv_note        VARCHAR,                  -- why there is no iv (crossed, one-sided, below intrinsic, ...)
    run_id         BIGINT NOT NULL
);

-- Per underlying, per snapshot. Key: (as_of, quote_time, symbol).
CREATE TABLE vol_metrics (
    as_of                 DATE NOT NULL,
    quote_time            TIMESTAMP NOT NULL,
    symbol                VARCHAR NOT NULL,
    spot                  DOUBLE NOT NULL,
    atm_iv_30d            DOUBLE,            -- constant 30-day maturity, total-variance interpolation
    atm_iv_90d            DOUBLE,
    hv_10                 DOUBLE,            -- close-to-close, annualized on 252 sessions
    hv_20                 DOUBLE,
    hv_30                 DOUBLE,
    hv_60                 DOUBLE,
    hv_parkinson_20       DOUBLE,
    hv_garman_klass_20    DOUBLE,
    hv_yang_zhang_20      DOUBLE,
    iv_rank_252           DOUBLE,            -- 0..1: where atm_iv_30d sits in its 252-session range
    iv_percentile_252     DOUBLE,            -- 0..1: share of the 252 sessions below today
    iv_history_sessions   INTEGER NOT NULL,  -- sessions of ATM-IV history behind the rank
    iv_hv30_spread        DOUBLE,            -- atm_iv_30d − hv_30
    skew_25d              DOUBLE,            -- IV(25Δ put) − IV(25Δ call), expiry nearest 30 days
    term_slope            DOUBLE,            -- atm_iv_90d − atm_iv_30d
    contracts             INTEGER NOT NULL,
    contracts_with_iv     INTEGER NOT NULL,
    note                  VARCHAR,           -- what could not be computed, and why
    run_id                BIGINT NOT NULL
);

-- Expected move to each listed expiry, from the ATM straddle and from ATM IV.
-- Key: (as_of, quote_time, symbol, expiry, am_settled).
CREATE TABLE expected_moves (
    as_of            DATE NOT NULL,
    quote_time       TIMESTAMP NOT NULL,
    symbol           VARCHAR NOT NULL,
    expiry           DATE NOT NULL,
    am_settled       BOOLEAN NOT NULL,        -- true for AM-settled index monthlies (SPX), false for SPXW and the rest
    days             INTEGER NOT NULL,        -- calendar days to expiry
    t_years          DOUBLE NOT NULL,
    spot             DOUBLE NOT NULL,
    atm_iv           DOUBLE NOT NULL,
    straddle_move    DOUBLE,                  -- ATM straddle mid, dollars
    iv_move          DOUBLE NOT NULL,         -- spot × atm_iv × √t, dollars
    run_id           BIGINT NOT NULL
);

-- Implied and realized correlation of an index vs. its components, and the Z-score.
-- Key: (as_of, quote_time, index_symbol).
CREATE TABLE correlation (
    as_of             DATE NOT NULL,
    quote_time        TIMESTAMP NOT NULL,
    index_symbol      VARCHAR NOT NULL,
    basis             VARCHAR NOT NULL,       -- 'chains' (from vol_metrics) or 'iv_history' (backfilled)
    implied_corr      DOUBLE,
    realized_corr     DOUBLE,                 -- same formula with 21-session realized vols
    components        INTEGER NOT NULL,       -- components with a valid IV
    zscore_window     INTEGER NOT NULL,       -- sessions in the Z-score window (60)
    history_sessions  INTEGER NOT NULL,       -- sessions of implied correlation behind the Z-score
    corr_mean         DOUBLE,
    corr_sd           DOUBLE,
    zscore            DOUBLE,
    note              VARCHAR,                -- why a value is missing
    run_id            BIGINT NOT NULL
);
