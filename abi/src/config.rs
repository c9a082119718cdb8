//! A domain's configuration area: what the toolstack writes into a domain's image at the
//! symbol `MICA_CONFIG` (`mica_rt::config`), for domains whose job the manifest describes
//! (the block service's clients: [`crate::blkio::encode_clients`]).

/// Bytes of the area.
pub const BYTES: usize = 4096;
/// The symbol the toolstack looks for.
pub const SYMBOL: &str = "MICA_CONFIG";
