//! TODO(skeleton): run
