//! Benchmarks only: see benches/token_path.rs.
