//! Redis pub/sub transport for the cluster adapter (work in progress).
