//! Node binding (work in progress).
