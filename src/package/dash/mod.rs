//! DASH MPDs rendered from a [`Presentation`](super::Presentation) snapshot.
