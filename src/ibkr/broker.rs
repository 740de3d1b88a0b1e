//! The `ibkr` broker (being written).
