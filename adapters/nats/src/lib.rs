//! NATS transport for the cluster adapter (work in progress).
