//! Shared pieces of gridnode's benchmarks: a seeded generator of realistic registry records.
//!
//! The criterion micro-benchmarks live in `benches/`; the whole-system harness is the
//! `gridnode-bench` binary.

#![forbid(unsafe_code)]

pub mod corpus;
pub mod load;
pub mod report;
pub mod scenario;
