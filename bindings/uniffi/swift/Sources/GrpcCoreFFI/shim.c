// Empty: the C target only carries the header; the code is libgrpc_core_uniffi.
