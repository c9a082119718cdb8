//! `mica smoke`: scenario files (`scenario`), running them (`runner`), their `mica ctl` steps
//! (`steps`), judging transcripts (`judge`, `transcript`) and the README transcripts they
//! keep true (`doc_transcript`).

pub mod doc_transcript;
pub mod judge;
pub mod runner;
pub mod scenario;
pub mod steps;
pub mod transcript;

pub use runner::*;
