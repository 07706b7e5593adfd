//! TODO(skeleton): render
