//! Pipeline stages.
