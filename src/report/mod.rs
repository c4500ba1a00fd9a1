//! One-shot outputs built from a snapshot.
