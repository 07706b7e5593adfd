//! TODO(skeleton): retry
