//! TODO(skeleton): backend
