//! CMAF fragmented MP4: init and media segments, written through mp4-atom.
