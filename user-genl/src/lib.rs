//! user-genl: work in progress.
