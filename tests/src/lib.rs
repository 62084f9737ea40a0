//! End-to-end tests of airlock (see tests/).
