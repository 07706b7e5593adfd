//! TODO(skeleton): stub
