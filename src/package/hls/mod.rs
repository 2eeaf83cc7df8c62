//! HLS playlists rendered from a [`Presentation`](super::Presentation) snapshot.
