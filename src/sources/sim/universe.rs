//! The simulated market's default universe: the broad ETFs and SPX of the seeds, the
//! sector ETFs, the top 50 QQQ components (weights from `data/qqq_top50_weights.csv`,
//! compiled in, through [`crate::refdata`]) and a few other large single names, plus
//! VIX (bars only).
//!
//! Each name has factor loadings (market beta, sector loading, idiosyncratic vol) chosen
//! so that the simulated cross-section looks like the real one: large QQQ components
//! correlate 0.28–0.37 in calm years and ~0.6 in stressed ones, high-beta names move more.
//! Prices are anchored to their approximate closes of 2025-01-02.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A cash-settled index with European options (SPX).
    Index,
    /// An exchange-traded fund (American options, physical delivery).
    Etf,
    Stock,
    /// A volatility index: bars only, no option chain (VIX options settle on futures).
    VolIndex,
}

/// Which expirations are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Daily expirations (Mon–Fri) plus weeklies and monthlies: SPX, SPY, QQQ.
    Daily,
    /// Friday weeklies plus monthlies.
    Weekly,
    /// Monthlies (third Friday) and quarterlies only.
    Monthly,
}

/// Scale on the single names' idiosyncratic vols (calibrates pairwise correlation).
pub const IDIO_SCALE: f64 = 0.85;

/// The 11 SPDR sector ETFs, which double as the sector factors.
pub const SECTORS: [&str; 11] = [
    "XLK", "XLF", "XLE", "XLV", "XLI", "XLY", "XLP", "XLU", "XLB", "XLRE", "XLC",
];

/// Annual volatility of each sector factor (in the order of [`SECTORS`]).
pub const SECTOR_VOL: [f64; 11] = [
    0.10, 0.09, 0.16, 0.07, 0.06, 0.09, 0.06, 0.11, 0.07, 0.10, 0.09,
];

#[derive(Debug, Clone)]
pub struct Underlying {
    pub symbol: String,
    pub kind: Kind,
    /// Index into [`SECTORS`], for stocks and sector ETFs.
    pub sector: Option<usize>,
    pub beta: f64,
    pub sector_loading: f64,
    /// Annualized idiosyncratic vol in a normal market (it rises with market stress).
    pub idio_vol: f64,
    /// Approximate close on 2025-01-02, the price the path is anchored to.
    pub anchor_price: f64,
    /// Annual dividend yield, paid quarterly.
    pub div_yield: f64,
    pub listing: Listing,
    /// 1 = most liquid (tightest spreads), 3 = least.
    pub liquidity_tier: u8,
    /// Weight in QQQ (fraction of the whole index), 0 for non-members.
    pub qqq_weight: f64,
    /// Quarterly earnings move (stdev of the log jump), 0 for funds.
    pub earnings_move: f64,
}

/// (symbol, beta, sector loading, idio vol, anchor price, dividend yield, earnings move)
/// for the single names. Sector comes from the weights file or [`OTHER_STOCKS`].
const STOCK_PARAMS: &[(&str, f64, f64, f64, f64, f64, f64)] = &[
    ("AAPL", 1.10, 0.9, 0.17, 243.85, 0.004, 0.040),
    ("NVDA", 1.70, 1.1, 0.38, 138.31, 0.000, 0.080),
    ("MSFT", 1.05, 0.8, 0.15, 418.58, 0.008, 0.040),
    ("AMZN", 1.25, 0.7, 0.22, 220.22, 0.000, 0.060),
    ("AVGO", 1.45, 1.0, 0.32, 232.52, 0.010, 0.070),
    ("META", 1.35, 0.8, 0.28, 599.24, 0.003, 0.080),
    ("TSLA", 1.90, 0.6, 0.48, 379.28, 0.000, 0.090),
    ("COST", 0.75, 0.6, 0.15, 908.64, 0.005, 0.035),
    ("GOOGL", 1.15, 0.8, 0.22, 189.43, 0.004, 0.060),
    ("GOOG", 1.15, 0.8, 0.22, 190.63, 0.004, 0.060),
    ("NFLX", 1.20, 0.6, 0.30, 886.73, 0.000, 0.090),
    ("TMUS", 0.60, 0.5, 0.18, 221.44, 0.013, 0.040),
    ("CSCO", 0.90, 0.7, 0.17, 59.01, 0.027, 0.050),
    ("PLTR", 2.00, 0.9, 0.55, 75.60, 0.000, 0.120),
    ("AMD", 1.70, 1.1, 0.38, 120.26, 0.000, 0.080),
    ("PEP", 0.55, 0.7, 0.13, 152.06, 0.035, 0.030),
    ("LIN", 0.85, 0.7, 0.14, 419.08, 0.013, 0.030),
    ("ADBE", 1.20, 0.8, 0.25, 440.83, 0.000, 0.070),
    ("ISRG", 1.10, 0.6, 0.24, 521.95, 0.000, 0.060),
    ("INTU", 1.25, 0.8, 0.24, 628.87, 0.006, 0.060),
    ("QCOM", 1.30, 1.0, 0.26, 154.48, 0.022, 0.060),
    ("TXN", 1.05, 1.0, 0.20, 187.78, 0.029, 0.050),
    ("AMGN", 0.60, 0.7, 0.18, 261.58, 0.034, 0.040),
    ("BKNG", 1.20, 0.6, 0.24, 4968.42, 0.007, 0.060),
    ("CMCSA", 0.85, 0.6, 0.19, 38.12, 0.033, 0.040),
    ("HON", 0.95, 0.8, 0.15, 225.88, 0.020, 0.030),
    ("AMAT", 1.55, 1.1, 0.30, 163.12, 0.010, 0.060),
    ("PDD", 1.30, 0.5, 0.45, 97.20, 0.000, 0.100),
    ("ADP", 0.80, 0.7, 0.14, 293.06, 0.020, 0.030),
    ("PANW", 1.25, 0.8, 0.28, 181.40, 0.000, 0.070),
    ("VRTX", 0.70, 0.6, 0.22, 403.80, 0.000, 0.040),
    ("GILD", 0.55, 0.7, 0.20, 92.08, 0.033, 0.040),
    ("SBUX", 0.95, 0.6, 0.24, 91.78, 0.026, 0.060),
    ("MU", 1.65, 1.1, 0.36, 84.16, 0.005, 0.070),
    ("ADI", 1.20, 1.0, 0.22, 212.46, 0.017, 0.040),
    ("MELI", 1.45, 0.5, 0.38, 1700.31, 0.000, 0.080),
    ("LRCX", 1.60, 1.1, 0.32, 72.23, 0.011, 0.060),
    ("INTC", 1.15, 0.9, 0.32, 20.22, 0.000, 0.080),
    ("KLAC", 1.50, 1.1, 0.28, 630.00, 0.010, 0.060),
    ("MDLZ", 0.55, 0.7, 0.14, 60.15, 0.030, 0.030),
    ("CTAS", 1.00, 0.6, 0.18, 183.56, 0.008, 0.040),
    ("APP", 2.10, 0.8, 0.65, 324.45, 0.000, 0.140),
    ("CRWD", 1.40, 0.8, 0.36, 342.30, 0.000, 0.080),
    ("MAR", 1.10, 0.6, 0.20, 279.43, 0.009, 0.040),
    ("CEG", 1.10, 0.6, 0.40, 224.53, 0.006, 0.060),
    ("REGN", 0.60, 0.6, 0.24, 712.25, 0.000, 0.050),
    ("ORLY", 0.75, 0.6, 0.17, 1186.28, 0.000, 0.040),
    ("CDNS", 1.25, 0.9, 0.26, 300.45, 0.000, 0.060),
    ("SNPS", 1.25, 0.9, 0.26, 485.82, 0.000, 0.060),
    ("FTNT", 1.20, 0.8, 0.30, 94.48, 0.000, 0.080),
    ("JPM", 1.10, 1.0, 0.17, 240.58, 0.021, 0.030),
    ("XOM", 0.80, 1.0, 0.18, 107.23, 0.036, 0.030),
    ("UNH", 0.65, 0.7, 0.20, 506.59, 0.017, 0.050),
    ("V", 0.90, 0.8, 0.15, 316.90, 0.007, 0.030),
    ("JNJ", 0.50, 0.7, 0.13, 144.53, 0.034, 0.025),
];

/// Large single names outside the top 50 of QQQ, with their sector ETF.
const OTHER_STOCKS: &[(&str, &str)] = &[
    ("JPM", "XLF"),
    ("XOM", "XLE"),
    ("UNH", "XLV"),
    ("V", "XLF"),
    ("JNJ", "XLV"),
];

/// Approximate 2025-01-02 closes of the sector ETFs, and their dividend yields.
const SECTOR_ETF_PARAMS: [(f64, f64); 11] = [
    (233.22, 0.007),
    (48.14, 0.015),
    (86.71, 0.032),
    (136.87, 0.016),
    (131.53, 0.014),
    (223.34, 0.007),
    (78.42, 0.025),
    (67.68, 0.029),
    (84.85, 0.019),
    (41.52, 0.033),
    (97.65, 0.009),
];

/// The embedded weights file: (symbol, sector ETF, weight as a fraction), in its order.
pub fn qqq_weights() -> Vec<(String, String, f64)> {
    crate::refdata::builtin_qqq_weights()
        .into_iter()
        .map(|c| (c.symbol, c.sector.unwrap_or_default(), c.weight))
        .collect()
}

fn sector_index(etf: &str) -> Option<usize> {
    SECTORS.iter().position(|s| *s == etf)
}

/// The default universe, in a fixed order (the order is part of the seed's meaning).
pub fn default_universe() -> Vec<Underlying> {
    let fund = |symbol: &str, kind, beta, price, div, listing, tier| Underlying {
        symbol: symbol.to_string(),
        kind,
        sector: None,
        beta,
        sector_loading: 0.0,
        idio_vol: 0.0,
        anchor_price: price,
        div_yield: div,
        listing,
        liquidity_tier: tier,
        qqq_weight: 0.0,
        earnings_move: 0.0,
    };
    let mut u = vec![
        fund("SPX", Kind::Index, 1.0, 5868.55, 0.013, Listing::Daily, 1),
        fund("SPY", Kind::Etf, 1.0, 584.64, 0.0125, Listing::Daily, 1),
        fund("VOO", Kind::Etf, 1.0, 537.45, 0.0125, Listing::Monthly, 2),
        fund("VTI", Kind::Etf, 1.02, 289.33, 0.013, Listing::Monthly, 2),
        fund("QQQ", Kind::Etf, 1.15, 511.23, 0.006, Listing::Daily, 1),
        fund("IWM", Kind::Etf, 1.15, 220.71, 0.012, Listing::Weekly, 1),
    ];
    // VTI and IWM carry a small-cap factor; their idiosyncratic vol stands for it.
    u[3].idio_vol = 0.02;
    u[5].idio_vol = 0.09;
    for (i, s) in SECTORS.iter().enumerate() {
        let (price, div) = SECTOR_ETF_PARAMS[i];
        let mut f = fund(s, Kind::Etf, 1.0, price, div, Listing::Weekly, 2);
        f.sector = Some(i);
        f.sector_loading = 1.0;
        f.idio_vol = 0.03;
        f.beta = match *s {
            "XLK" => 1.2,
            "XLY" => 1.15,
            "XLF" => 1.1,
            "XLE" => 0.9,
            "XLU" | "XLP" => 0.55,
            "XLV" => 0.7,
            "XLC" => 1.05,
            "XLRE" => 0.85,
            _ => 1.0,
        };
        u.push(f);
    }
    let weights = qqq_weights();
    let mut stocks: Vec<(String, String, f64)> = weights.clone();
    for (s, sec) in OTHER_STOCKS {
        stocks.push((s.to_string(), sec.to_string(), 0.0));
    }
    for (symbol, sector, weight) in stocks {
        let Some(&(_, beta, sl, idio, price, div, em)) =
            STOCK_PARAMS.iter().find(|p| p.0 == symbol)
        else {
            continue;
        };
        let listing = if weight >= 0.009 || matches!(symbol.as_str(), "JPM" | "XOM" | "V") {
            Listing::Weekly
        } else {
            Listing::Monthly
        };
        u.push(Underlying {
            symbol: symbol.clone(),
            kind: Kind::Stock,
            sector: sector_index(&sector),
            beta,
            sector_loading: sl,
            idio_vol: idio * IDIO_SCALE,
            anchor_price: price,
            div_yield: div,
            listing,
            liquidity_tier: if weight >= 0.02 {
                1
            } else {
                2 + u8::from(weight < 0.007)
            },
            qqq_weight: weight,
            earnings_move: em,
        });
    }
    u.push(fund(
        "VIX",
        Kind::VolIndex,
        0.0,
        17.93,
        0.0,
        Listing::Monthly,
        1,
    ));
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_weighted_component_has_sim_parameters() {
        let u = default_universe();
        for (s, sector, w) in qqq_weights() {
            let x = u
                .iter()
                .find(|x| x.symbol == s)
                .unwrap_or_else(|| panic!("{s} missing"));
            assert!(x.sector.is_some(), "{s}: sector {sector} unknown");
            assert!((x.qqq_weight - w).abs() < 1e-12);
        }
        assert_eq!(qqq_weights().len(), 50);
        let total: f64 = qqq_weights().iter().map(|x| x.2).sum();
        assert!(total > 0.6 && total < 1.0, "top 50 hold {total}");
    }

    #[test]
    fn universe_covers_the_seeds() {
        let u = default_universe();
        for s in [
            "SPY", "VOO", "VTI", "QQQ", "IWM", "SPX", "VIX", "XLK", "XLF", "JPM",
        ] {
            assert!(u.iter().any(|x| x.symbol == s), "{s}");
        }
        let mut names: Vec<&str> = u.iter().map(|x| x.symbol.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), u.len(), "no duplicates");
    }
}
