//! UniFFI binding (work in progress).
