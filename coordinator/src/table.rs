//! TODO(skeleton): table
