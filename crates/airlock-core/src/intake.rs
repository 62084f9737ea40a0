//! Storage events -> object references (being written).
