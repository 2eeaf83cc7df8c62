//! A libavcodec video encoder shared by the backends that go through FFmpeg
//! (libx264, libx265, h264_nvenc, ...). Each backend only chooses the codec and its options.

use ff::{codec, encoder, format::Pixel, Dictionary};
use ffmpeg_next as ff;

use crate::encode::sessions::Session;
use crate::encode::{Backend, Config, Error, Packet};
use crate::hw::accel::HwFrames;

/// How frames reach the codec.
pub enum Input {
    /// System-memory frames in this format (software codecs; NVENC uploads them itself).
    System(Pixel),
    /// Device frames (CUDA, VA-API surfaces) of this pool's device, size and layout: zero-copy.
    Device(HwFrames),
    /// System-memory frames in the pool's layout, uploaded into the pool here (VA-API encoders,
    /// which take nothing else, fed by the software path).
    Upload(HwFrames),
}

pub struct LavcEncoder {
    backend: &'static str,
    encoder: encoder::Video,
    pixel_format: Pixel,
    device_frames: Option<HwFrames>,
    upload: Option<HwFrames>,
    /// The engine session this encoder occupies, given back when it is dropped.
    _session: Option<Session>,
}

/// Context flag: codec configuration goes to extradata (avcC/hvcC come from it), not in-band.
const GLOBAL_HEADER: codec::Flags = codec::Flags::GLOBAL_HEADER;

impl LavcEncoder {
    /// Opens `codec_name` for `config` with `options`; `Unavailable` when the codec is absent
    /// or refuses to open (e.g. NVENC without a driver).
    pub fn open(
        backend: &'static str,
        codec_name: &str,
        input: Input,
        config: &Config,
        options: Dictionary,
    ) -> Result<Self, Error> {
        let unavailable = |reason: String| Error::Unavailable { backend, reason };
        let codec = encoder::find_by_name(codec_name)
            .ok_or_else(|| unavailable(format!("this FFmpeg has no {codec_name} encoder")))?;
        let mut ctx = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(|e| unavailable(format!("{codec_name}: {e}")))?;
        let (pixel_format, device_frames, upload) = match input {
            Input::System(format) => (format, None, None),
            Input::Device(frames) => (frames.device().kind().pixel_format(), Some(frames), None),
            Input::Upload(frames) => (frames.sw_format(), None, Some(frames)),
        };
        ctx.set_width(config.width);
        ctx.set_height(config.height);
        match device_frames.as_ref().or(upload.as_ref()) {
            Some(frames) => {
                ctx.set_format(frames.device().kind().pixel_format());
                // SAFETY: the context is not opened yet and takes ownership of the new reference.
                unsafe { (*ctx.as_mut_ptr()).hw_frames_ctx = frames.new_ref() };
            }
            None => ctx.set_format(pixel_format),
        }
        ctx.set_time_base(ff::Rational::new(1, config.timescale as i32));
        ctx.set_frame_rate(Some(ff::Rational::new(
            config.frame_rate.num as i32,
            config.frame_rate.den as i32,
        )));
        ctx.set_gop(config.gop);
        ctx.set_flags(GLOBAL_HEADER);
        ctx.set_aspect_ratio(ff::Rational::new(1, 1));
        let encoder = ctx
            .open_with(options)
            .map_err(|e| unavailable(open_error(codec_name, e)))?;
        Ok(LavcEncoder {
            backend,
            encoder,
            pixel_format,
            device_frames,
            upload,
            _session: None,
        })
    }

    /// Holds `session` for as long as the encoder is open.
    pub fn with_session(mut self, session: Session) -> Self {
        self._session = Some(session);
        self
    }

    fn encode_frame(
        &mut self,
        frame: &mut ff::frame::Video,
        force_keyframe: bool,
    ) -> Result<Vec<Packet>, Error> {
        if let Some(pool) = self
            .upload
            .as_ref()
            .filter(|_| !crate::hw::accel::is_hardware_frame(frame))
        {
            let mut uploaded = pool.upload(frame).map_err(|e| self.failed(e.to_string()))?;
            return self.encode_frame(&mut uploaded, force_keyframe);
        }
        // The picture type is the request: with forced-idr=1 an I becomes an IDR.
        frame.set_kind(if force_keyframe {
            ff::picture::Type::I
        } else {
            ff::picture::Type::None
        });
        self.encoder
            .send_frame(frame)
            .map_err(|e| self.failed(format!("send frame: {e}")))?;
        self.drain()
    }

    fn flush_all(&mut self) -> Result<Vec<Packet>, Error> {
        self.encoder
            .send_eof()
            .map_err(|e| self.failed(format!("flush: {e}")))?;
        self.drain()
    }

    fn codec_extradata(&self) -> Vec<u8> {
        // SAFETY: the context is open; extradata is owned by it and extradata_size bytes long.
        unsafe {
            let ctx = self.encoder.as_ptr();
            if (*ctx).extradata.is_null() || (*ctx).extradata_size <= 0 {
                return Vec::new();
            }
            std::slice::from_raw_parts((*ctx).extradata, (*ctx).extradata_size as usize).to_vec()
        }
    }

    fn drain(&mut self) -> Result<Vec<Packet>, Error> {
        let mut out = Vec::new();
        let mut packet = ff::Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => {
                    let pts = packet.pts().unwrap_or(0);
                    out.push(Packet {
                        data: packet.data().unwrap_or(&[]).to_vec(),
                        pts,
                        dts: packet.dts().unwrap_or(pts),
                        keyframe: packet.is_key(),
                    });
                }
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(self.failed(format!("receive packet: {e}"))),
            }
        }
        Ok(out)
    }

    fn failed(&self, message: String) -> Error {
        Error::Encode {
            backend: self.backend,
            message,
        }
    }
}

/// FFmpeg's open errors are generic ("Generic error in an external library"); say what to check.
fn open_error(codec_name: &str, e: ff::Error) -> String {
    format!("{codec_name} failed to open ({e})")
}

/// Every libavcodec backend is this encoder with its own codec and options.
impl Backend for LavcEncoder {
    fn name(&self) -> &'static str {
        self.backend
    }
    fn encode(
        &mut self,
        frame: &mut ff::frame::Video,
        force_keyframe: bool,
    ) -> Result<Vec<Packet>, Error> {
        self.encode_frame(frame, force_keyframe)
    }
    fn flush(&mut self) -> Result<Vec<Packet>, Error> {
        self.flush_all()
    }
    fn extradata(&self) -> Vec<u8> {
        self.codec_extradata()
    }
    fn pixel_format(&self) -> Pixel {
        self.pixel_format
    }
    fn device_frames(&self) -> Option<&HwFrames> {
        self.device_frames.as_ref()
    }
}
