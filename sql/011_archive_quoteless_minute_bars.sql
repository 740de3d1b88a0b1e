-- 011: LEAN option universe rows carry a close, the vendor's IV and greeks and the
-- underlying's price but no bid or ask: they are archived with bid/ask NULL, and the
-- `replay` source never trades on such a row (it serves only rows with both sides).
ALTER TABLE option_archive ALTER COLUMN bid DROP NOT NULL;
ALTER TABLE option_archive ALTER COLUMN ask DROP NOT NULL;

-- One-minute bars imported from files (CSV or Parquet), for later intraday work. Times
-- are New York wall-clock times at the bar's start. Key (time, symbol).
CREATE TABLE archive_minute_bars (
    time       TIMESTAMP NOT NULL,
    symbol     VARCHAR NOT NULL,
    open       DECIMAL(18,4) NOT NULL,
    high       DECIMAL(18,4) NOT NULL,
    low        DECIMAL(18,4) NOT NULL,
    close      DECIMAL(18,4) NOT NULL,
    volume     BIGINT NOT NULL,
    layout     VARCHAR NOT NULL,
    file       VARCHAR NOT NULL,
    line       BIGINT NOT NULL,
    import_id  BIGINT NOT NULL
);
