//! TODO(skeleton): validate
