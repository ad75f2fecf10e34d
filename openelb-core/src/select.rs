//! Pool selection (DESIGN §3).
