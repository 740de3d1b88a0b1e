//! Implied and realized correlation of an index against its components, and Z-scores.
//!
//! Implied correlation (Cboe's implied correlation index methodology):
//! ρ = (σ_I² − Σ w_i² σ_i²) / (Σ_{i≠j} w_i w_j σ_i σ_j), with the cross sum computed as
//! (Σ w_i σ_i)² − Σ w_i² σ_i². Weights are normalized over the components used.

/// ρ from the index vol and (weight, vol) of each component; `None` when undefined
/// (no components, zero cross term).
pub fn implied_correlation(index_vol: f64, components: &[(f64, f64)]) -> Option<f64> {
    let total_w: f64 = components.iter().map(|c| c.0).sum();
    if components.len() < 2 || total_w.is_nan() || total_w <= 0.0 || !index_vol.is_finite() {
        return None;
    }
    let (mut sum_ws, mut sum_w2s2) = (0.0, 0.0);
    for &(w, s) in components {
        let w = w / total_w;
        sum_ws += w * s;
        sum_w2s2 += (w * s).powi(2);
    }
    let cross = sum_ws * sum_ws - sum_w2s2;
    if cross.is_nan() || cross <= 0.0 {
        return None;
    }
    Some((index_vol * index_vol - sum_w2s2) / cross)
}

/// Mean, sample standard deviation and Z-score of `current` against `history`.
pub fn zscore(history: &[f64], current: f64) -> Option<(f64, f64, f64)> {
    if history.len() < 2 {
        return None;
    }
    let n = history.len() as f64;
    let mean = history.iter().sum::<f64>() / n;
    let sd = (history.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    if sd.is_nan() || sd <= 0.0 {
        return None;
    }
    Some((mean, sd, (current - mean) / sd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_move_as_one_gives_one() {
        // Index vol equal to the weighted average of component vols: ρ = 1.
        let comps = [(0.5, 0.20), (0.3, 0.30), (0.2, 0.40)];
        let avg: f64 = comps.iter().map(|c| c.0 * c.1).sum();
        assert!((implied_correlation(avg, &comps).unwrap() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn independent_components_give_zero() {
        let comps = [(0.25, 0.3); 4];
        let index_vol = (4.0f64 * (0.25f64 * 0.3).powi(2)).sqrt();
        assert!(implied_correlation(index_vol, &comps).unwrap().abs() < 1e-12);
    }

    #[test]
    fn weights_are_normalized() {
        let a = implied_correlation(0.2, &[(1.0, 0.25), (1.0, 0.3)]).unwrap();
        let b = implied_correlation(0.2, &[(0.3, 0.25), (0.3, 0.3)]).unwrap();
        assert!((a - b).abs() < 1e-15);
        assert!(implied_correlation(0.2, &[(1.0, 0.25)]).is_none());
    }

    #[test]
    fn zscore_by_hand() {
        let (m, sd, z) = zscore(&[1.0, 2.0, 3.0], 4.0).unwrap();
        assert_eq!((m, sd), (2.0, 1.0));
        assert_eq!(z, 2.0);
        assert!(zscore(&[1.0, 1.0], 2.0).is_none());
    }
}
