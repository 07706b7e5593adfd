//! TODO(skeleton): stats
