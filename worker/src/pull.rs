//! TODO(skeleton): pull
