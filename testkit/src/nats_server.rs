//! TODO(skeleton): nats_server
