//! Per-rung scaling through libswscale, from the one shared decoded frame.

use ff::format::Pixel;
use ff::software::scaling;
use ffmpeg_next as ff;

/// Scales shared source frames to one rung's size and pixel format.
pub struct RungScaler {
    width: u32,
    height: u32,
    format: Pixel,
    /// Rebuilt when the source's size or format changes mid-stream.
    context: Option<(scaling::Context, (Pixel, u32, u32))>,
}

impl RungScaler {
    pub fn new(width: u32, height: u32, format: Pixel) -> Self {
        RungScaler {
            width,
            height,
            format,
            context: None,
        }
    }

    /// A frame of the rung's size and format, with the source's timestamp.
    /// A source already in that shape is referenced, not copied.
    pub fn scale(&mut self, source: &ff::frame::Video) -> Result<ff::frame::Video, ff::Error> {
        let key = (source.format(), source.width(), source.height());
        if key == (self.format, self.width, self.height) {
            return Ok(reference(source));
        }
        if self.context.as_ref().map(|(_, k)| *k) != Some(key) {
            let ctx = scaling::Context::get(
                key.0,
                key.1,
                key.2,
                self.format,
                self.width,
                self.height,
                scaling::Flags::BICUBIC,
            )?;
            self.context = Some((ctx, key));
        }
        let (ctx, _) = self.context.as_mut().expect("set above");
        let mut out = ff::frame::Video::new(self.format, self.width, self.height);
        ctx.run(source, &mut out)?;
        out.set_pts(source.pts());
        Ok(out)
    }
}

/// A new frame sharing `source`'s buffers (reference-counted), so it can carry its own
/// picture type without copying pixels.
pub fn reference(source: &ff::frame::Video) -> ff::frame::Video {
    let mut out = ff::frame::Video::empty();
    // SAFETY: both frames are valid; av_frame_ref adds references to source's buffers.
    let rc = unsafe { ff::ffi::av_frame_ref(out.as_mut_ptr(), source.as_ptr()) };
    if rc < 0 {
        // Out of memory: fall back to a deep copy.
        return source.clone();
    }
    out
}
