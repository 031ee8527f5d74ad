//! Placeholder; the test kit lands in its own commit.
