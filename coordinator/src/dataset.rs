//! TODO(skeleton): dataset
