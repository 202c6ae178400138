//! The C ABI of grpc-core (work in progress).
