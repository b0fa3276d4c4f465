//! user-libnl-style: work in progress.
