//! Software decoders for the chosen streams. Corrupt packets are counted, never fatal.

use ff::codec::threading;
use ffmpeg_next as ff;

/// Decodes one stream; `errors` counts packets the decoder rejected and frames it failed on.
pub struct Decoder<D> {
    inner: D,
    pub errors: u64,
}

pub type VideoDecoder = Decoder<ff::decoder::Video>;
pub type AudioDecoder = Decoder<ff::decoder::Audio>;

fn context_for(
    stream: &ff::format::stream::Stream,
) -> Result<ff::codec::context::Context, ff::Error> {
    let mut ctx = ff::codec::context::Context::from_parameters(stream.parameters())?;
    // Frame threads on every core, like the ffmpeg CLI's default ("-threads auto").
    ctx.set_threading(threading::Config {
        kind: threading::Type::Frame,
        count: 0,
        ..Default::default()
    });
    Ok(ctx)
}

impl VideoDecoder {
    pub fn open(stream: &ff::format::stream::Stream) -> Result<Self, ff::Error> {
        let ctx = context_for(stream)?;
        Ok(Decoder {
            inner: ctx.decoder().video()?,
            errors: 0,
        })
    }
}

impl AudioDecoder {
    pub fn open(stream: &ff::format::stream::Stream) -> Result<Self, ff::Error> {
        let ctx = context_for(stream)?;
        Ok(Decoder {
            inner: ctx.decoder().audio()?,
            errors: 0,
        })
    }
}

/// What a decoder yields.
pub trait Output: Sized {
    fn empty() -> Self;
}
impl Output for ff::frame::Video {
    fn empty() -> Self {
        ff::frame::Video::empty()
    }
}
impl Output for ff::frame::Audio {
    fn empty() -> Self {
        ff::frame::Audio::empty()
    }
}

impl<D> Decoder<D>
where
    D: std::ops::DerefMut<Target = ff::decoder::Opened>,
{
    /// Sends one packet; a rejected packet is counted and skipped.
    pub fn send(&mut self, packet: &ff::Packet) {
        // The demuxer flags packets it knows are damaged (e.g. MPEG-TS continuity errors).
        if packet.is_corrupt() {
            self.errors += 1;
        }
        if self.inner.send_packet(packet).is_err() {
            self.errors += 1;
        }
    }

    /// Signals end of stream; the remaining frames follow from `receive`.
    pub fn send_eof(&mut self) {
        let _ = self.inner.send_eof();
    }

    /// The next decoded frame, if one is ready.
    pub fn receive<F: Output + std::ops::DerefMut<Target = ff::Frame>>(&mut self) -> Option<F> {
        let mut frame = F::empty();
        loop {
            match self.inner.receive_frame(&mut frame) {
                Ok(()) => {
                    // Concealed damage still yields a frame; count it as an error all the same.
                    // SAFETY: the frame was just filled by the decoder.
                    let damaged = unsafe {
                        let f = frame.as_ptr();
                        (*f).decode_error_flags != 0
                            || ((*f).flags & ff::ffi::AV_FRAME_FLAG_CORRUPT as i32) != 0
                    };
                    if damaged {
                        self.errors += 1;
                    }
                    return Some(frame);
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => return None,
                Err(ff::Error::Eof) => return None,
                // A frame the decoder could not reconstruct: count it and try the next one.
                Err(_) => self.errors += 1,
            }
        }
    }

    pub fn decoder(&self) -> &D {
        &self.inner
    }
}
