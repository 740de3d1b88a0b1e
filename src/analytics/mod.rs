//! Cross-sectional and portfolio analytics.

pub mod correlation;
