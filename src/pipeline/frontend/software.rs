//! The software front end: decoded pictures in system memory, scaled by swscale on each rung's
//! own thread (`pipeline::track`), so the decoder thread only hands out references.

use std::sync::Arc;

use ffmpeg_next as ff;

use super::{Error, LadderFront};

/// The software front end: every rung gets the decoded picture and scales it on its own thread.
pub struct Shared {
    pub rungs: usize,
}

impl LadderFront for Shared {
    fn describe(&self) -> String {
        "software decode, swscale per rung".into()
    }
    fn on_gpu(&self) -> bool {
        false
    }
    fn rungs(
        &mut self,
        frame: &Arc<ff::frame::Video>,
    ) -> Result<Vec<Arc<ff::frame::Video>>, Error> {
        Ok(vec![frame.clone(); self.rungs])
    }
}
