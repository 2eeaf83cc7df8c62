//! Software-decoded pictures onto the GPU, once each, for the GPU scalers.

use std::sync::Arc;

use ffmpeg_next as ff;

use super::{failed, Error};
use crate::hw::accel::{self, HwDevice, HwFrames};
use crate::scale::swscale::RungScaler;

/// Frames on a device, made from any decoded picture: hardware frames pass through (whatever
/// their layout: the scalers after this convert, or hand over to one that does), software frames
/// are converted to `layout` and uploaded once.
pub(super) struct ToDevice {
    pub(super) device: HwDevice,
    pub(super) layout: ff::format::Pixel,
    pub(super) pool: Option<(HwFrames, RungScaler)>,
}

impl ToDevice {
    pub(super) fn frame(
        &mut self,
        frame: &Arc<ff::frame::Video>,
    ) -> Result<Arc<ff::frame::Video>, Error> {
        if accel::is_hardware_frame(frame) {
            return Ok(frame.clone());
        }
        let (w, h) = (frame.width(), frame.height());
        if self.pool.as_ref().map(|(p, _)| p.size()) != Some((w, h)) {
            let pool = HwFrames::new(&self.device, self.layout, w, h, 0)
                .map_err(|e| failed("upload")(e.0))?;
            self.pool = Some((pool, RungScaler::new(w, h, self.layout)));
        }
        let (pool, converter) = self.pool.as_mut().expect("set above");
        let host = converter
            .scale(frame)
            .map_err(|e| failed("upload")(e.to_string()))?;
        let mut uploaded = pool.upload(&host).map_err(|e| failed("upload")(e.0))?;
        uploaded.set_pts(frame.pts());
        Ok(Arc::new(uploaded))
    }
}
