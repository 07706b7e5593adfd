//! TODO(skeleton): scorers
