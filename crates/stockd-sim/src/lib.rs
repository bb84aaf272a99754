//! Channel simulators.
