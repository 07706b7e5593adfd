//! TODO(skeleton): dispatch
