//! TODO(skeleton): aggregate
