//! Placeholder; the library lands in its own commit.
