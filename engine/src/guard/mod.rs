//! Guarding what passes through: finding secrets and personal data in text, and redacting them.
//!
//! `detectors`: the built-in detectors (cloud and chat tokens, private keys, JWTs, e-mail
//! addresses, payment cards, IBANs) and a policy's own regexes; what they found as byte ranges,
//! and the text with each match replaced by a marker naming its detector. The corpus in
//! `corpus/` holds what they must find and what they must leave alone.

pub mod detectors;
pub mod scan;
