//! TODO(skeleton): allow
