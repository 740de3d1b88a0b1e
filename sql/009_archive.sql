-- 009: the archive of files a user imported (`optdesk import`), replayed by the
-- `replay` source. One row per contract per vendor snapshot, normalized: OCC symbol,
-- per-share prices, New York times at the vendor's snapshot (DataShop 15:45, the
-- others the close), the vendor's IV and greeks when given, the file and line.
CREATE TABLE option_archive (
    as_of             DATE NOT NULL,
    quote_time        TIMESTAMP NOT NULL,
    underlying        VARCHAR NOT NULL,
    contract          VARCHAR NOT NULL,
    root              VARCHAR NOT NULL,
    expiry            DATE NOT NULL,
    strike            DECIMAL(18,4) NOT NULL,
    put_call          VARCHAR NOT NULL,
    style             VARCHAR NOT NULL,
    settlement        VARCHAR NOT NULL,
    multiplier        INTEGER NOT NULL,
    bid               DECIMAL(18,4) NOT NULL,
    ask               DECIMAL(18,4) NOT NULL,
    bid_size          INTEGER,
    ask_size          INTEGER,
    last              DECIMAL(18,4),
    volume            BIGINT,
    open_interest     BIGINT,
    underlying_price  DECIMAL(18,4),
    vendor_iv         DOUBLE,
    vendor_delta      DOUBLE,
    vendor_gamma      DOUBLE,
    vendor_theta      DOUBLE,
    vendor_vega       DOUBLE,
    layout            VARCHAR NOT NULL,
    file              VARCHAR NOT NULL,
    line              BIGINT NOT NULL,
    import_id         BIGINT NOT NULL
);

-- Daily bars imported from files (Yahoo CSV, a generic OHLCV layout), replayed as the
-- `replay` source's daily bars. Key (date, symbol).
CREATE TABLE archive_bars (
    date         DATE NOT NULL,
    symbol       VARCHAR NOT NULL,
    open         DECIMAL(18,4) NOT NULL,
    high         DECIMAL(18,4) NOT NULL,
    low          DECIMAL(18,4) NOT NULL,
    close        DECIMAL(18,4) NOT NULL,
    volume       BIGINT NOT NULL,
    dividend     DECIMAL(18,4) NOT NULL,
    split_ratio  DOUBLE NOT NULL,
    layout       VARCHAR NOT NULL,
    file         VARCHAR NOT NULL,
    line         BIGINT NOT NULL,
    import_id    BIGINT NOT NULL
);

-- Every import that changed the archive: the file, its checksum, what was kept and
-- rejected. Importing the same bytes again changes nothing and adds no row.
CREATE TABLE imports (
    import_id     BIGINT NOT NULL,
    imported_at   TIMESTAMP NOT NULL,    -- UTC
    file          VARCHAR NOT NULL,      -- absolute path
    sha256        VARCHAR NOT NULL,
    layout        VARCHAR NOT NULL,
    rows_kept     BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    first_date    DATE,
    last_date     DATE,
    symbols       VARCHAR NOT NULL,      -- comma-separated underlyings
    version       VARCHAR NOT NULL
);

-- Rows of an imported file that broke a hygiene rule, with the rule and the line.
CREATE TABLE import_rejects (
    import_id  BIGINT NOT NULL,
    file       VARCHAR NOT NULL,
    line       BIGINT NOT NULL,
    rule       VARCHAR NOT NULL,         -- crossed, no_ask, negative_price, expired, nonstandard, duplicate, bad_strike
    detail     VARCHAR NOT NULL,
    raw        VARCHAR NOT NULL          -- the row's fields as read, comma-joined
);
