//! Software decoders for the chosen streams. Corrupt packets are counted, never fatal.

use ff::codec::threading;
use ffmpeg_next as ff;

/// Decodes one stream; `errors` counts packets the decoder rejected and frames it failed on.
pub struct Decoder<D> {
    inner: D,
    pub errors: u64,
    /// Opened on a GPU and no picture seen yet: the first says whether the GPU took the stream.
    hardware_pending: Option<String>,
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
            hardware_pending: None,
        })
    }
}

impl VideoDecoder {
    /// A decoder that outputs frames on `device` (NVDEC for CUDA, VA-API decode), when the
    /// device's hwaccel supports the stream's codec; `Err` with the reason otherwise, so the
    /// caller can decode in software instead. A stream the hardware cannot decode after all
    /// (profile, size) still decodes: FFmpeg falls back to software frames on its own.
    pub fn open_hw(
        stream: &ff::format::stream::Stream,
        device: &crate::hw::accel::HwDevice,
    ) -> Result<Self, String> {
        use crate::hw::accel::DeviceKind;
        let mut ctx = context_for(stream).map_err(|e| e.to_string())?;
        let codec_id = stream.parameters().id();
        if let Some(why) = hw_unsuitable(stream) {
            return Err(format!("{}: {why}", device.description()));
        }
        let codec =
            ff::decoder::find(codec_id).ok_or_else(|| format!("no decoder for {codec_id:?}"))?;
        let wanted = device.kind().pixel_format();
        if !hw_configs(&codec).any(|(pix, methods)| {
            pix == wanted && methods & ff::ffi::AV_CODEC_HW_CONFIG_METHOD_HW_DEVICE_CTX as i32 != 0
        }) {
            return Err(format!(
                "{} cannot decode {codec_id:?}",
                device.description()
            ));
        }
        // SAFETY: the context is not opened yet; it takes ownership of the new device reference.
        unsafe {
            let raw = ctx.as_mut_ptr();
            (*raw).hw_device_ctx = device.new_ref();
            (*raw).get_format = Some(match device.kind() {
                DeviceKind::Cuda => get_format_cuda,
                DeviceKind::Vaapi => get_format_vaapi,
            });
            // NVDEC's output surfaces are a fixed pool (DPB + 5 + this) and a decoded picture
            // holds its surface until released: the front end releases each one within the
            // call that scales it, the frame-rate converter keeps one more, and yadif_cuda
            // holds three (previous, current, next) on interlaced sources.
            (*raw).extra_hw_frames = 7;
        }
        // Hardware decoders run their own threads; frame threads would only add surfaces.
        ctx.set_threading(threading::Config::default());
        Ok(Decoder {
            inner: ctx.decoder().video().map_err(|e| e.to_string())?,
            errors: 0,
            hardware_pending: Some(device.description().to_string()),
        })
    }
}

/// Why GPU decoders cannot take this stream, for the common cases FFmpeg would only discover
/// after opening (and then decode in software on one thread): NVDEC and VA-API decode H.264
/// in 8-bit 4:2:0 only, HEVC in 4:2:0 up to 10 bits.
fn hw_unsuitable(stream: &ff::format::stream::Stream) -> Option<String> {
    use ff::ffi::AVPixelFormat::*;
    // SAFETY: reading fields of a valid stream's codec parameters.
    let format = unsafe { (*stream.parameters().as_ptr()).format };
    let is = |f: ff::ffi::AVPixelFormat| format == f as i32;
    let id = stream.parameters().id();
    let ok = match id {
        ff::codec::Id::H264 => is(AV_PIX_FMT_YUV420P) || is(AV_PIX_FMT_YUVJ420P),
        ff::codec::Id::HEVC => {
            is(AV_PIX_FMT_YUV420P) || is(AV_PIX_FMT_YUVJ420P) || is(AV_PIX_FMT_YUV420P10LE)
        }
        _ => true,
    };
    (!ok).then(|| {
        let name = if format < 0 {
            "an unknown pixel format".to_string()
        } else {
            crate::media::pixel::format_name(format)
        };
        format!("no hardware decoding of {id:?} in {name}")
    })
}

/// The (pixel format, setup methods) pairs a decoder offers for hardware decoding.
pub(crate) fn hw_configs(codec: &ff::Codec) -> impl Iterator<Item = (ff::format::Pixel, i32)> + '_ {
    (0..).map_while(move |i| {
        // SAFETY: avcodec_get_hw_config returns null past the last entry.
        let config = unsafe { ff::ffi::avcodec_get_hw_config(codec.as_ptr(), i) };
        if config.is_null() {
            None
        } else {
            // SAFETY: non-null entries are static and valid.
            let c = unsafe { &*config };
            Some((ff::format::Pixel::from(c.pix_fmt), c.methods))
        }
    })
}

/// Chooses `wanted` from the decoder's offer, or its first software format when the hardware
/// cannot take this stream (FFmpeg then decodes in software).
unsafe fn choose_format(
    offered: *const ff::ffi::AVPixelFormat,
    wanted: ff::ffi::AVPixelFormat,
) -> ff::ffi::AVPixelFormat {
    let mut software = ff::ffi::AVPixelFormat::AV_PIX_FMT_NONE;
    let mut p = offered;
    while *p != ff::ffi::AVPixelFormat::AV_PIX_FMT_NONE {
        if *p == wanted {
            return wanted;
        }
        let desc = ff::ffi::av_pix_fmt_desc_get(*p);
        let hardware =
            !desc.is_null() && (*desc).flags & ff::ffi::AV_PIX_FMT_FLAG_HWACCEL as u64 != 0;
        if !hardware && software == ff::ffi::AVPixelFormat::AV_PIX_FMT_NONE {
            software = *p;
        }
        p = p.add(1);
    }
    software
}

unsafe extern "C" fn get_format_cuda(
    _: *mut ff::ffi::AVCodecContext,
    offered: *const ff::ffi::AVPixelFormat,
) -> ff::ffi::AVPixelFormat {
    choose_format(offered, ff::ffi::AVPixelFormat::AV_PIX_FMT_CUDA)
}

unsafe extern "C" fn get_format_vaapi(
    _: *mut ff::ffi::AVCodecContext,
    offered: *const ff::ffi::AVPixelFormat,
) -> ff::ffi::AVPixelFormat {
    choose_format(offered, ff::ffi::AVPixelFormat::AV_PIX_FMT_VAAPI)
}

impl AudioDecoder {
    pub fn open(stream: &ff::format::stream::Stream) -> Result<Self, ff::Error> {
        let ctx = context_for(stream)?;
        Ok(Decoder {
            inner: ctx.decoder().audio()?,
            errors: 0,
            hardware_pending: None,
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
                            || ((*f).flags & ff::ffi::AV_FRAME_FLAG_CORRUPT) != 0
                    };
                    if damaged {
                        self.errors += 1;
                    }
                    if let Some(device) = self.hardware_pending.take() {
                        // SAFETY: reading a field of the frame just filled.
                        if unsafe { (*frame.as_ptr()).hw_frames_ctx.is_null() } {
                            tracing::warn!(
                                "{device} refused this stream (profile, size or surfaces): \
                                 decoding in software, one thread, pictures uploaded once"
                            );
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The FFmpeg Encore links must offer the hwaccels the GPU front ends use.
    #[test]
    fn this_ffmpeg_decodes_h264_and_hevc_on_nvdec_and_vaapi() {
        crate::ingest::init();
        for id in [ff::codec::Id::H264, ff::codec::Id::HEVC] {
            let codec = ff::decoder::find(id).unwrap();
            let formats: Vec<_> = hw_configs(&codec).map(|(pix, _)| pix).collect();
            assert!(
                formats.contains(&ff::format::Pixel::CUDA),
                "{id:?}: {formats:?}"
            );
            assert!(
                formats.contains(&ff::format::Pixel::VAAPI),
                "{id:?}: {formats:?}"
            );
        }
    }

    #[test]
    fn get_format_takes_the_device_format_or_the_first_software_one() {
        use ff::ffi::AVPixelFormat::*;
        let offer = [
            AV_PIX_FMT_VAAPI,
            AV_PIX_FMT_CUDA,
            AV_PIX_FMT_YUV420P,
            AV_PIX_FMT_NONE,
        ];
        let cpu_only = [AV_PIX_FMT_YUV420P10LE, AV_PIX_FMT_NONE];
        // SAFETY: both lists end with AV_PIX_FMT_NONE.
        unsafe {
            assert_eq!(
                get_format_cuda(std::ptr::null_mut(), offer.as_ptr()),
                AV_PIX_FMT_CUDA
            );
            assert_eq!(
                get_format_vaapi(std::ptr::null_mut(), offer.as_ptr()),
                AV_PIX_FMT_VAAPI
            );
            assert_eq!(
                get_format_cuda(std::ptr::null_mut(), cpu_only.as_ptr()),
                AV_PIX_FMT_YUV420P10LE
            );
        }
    }
}

#[cfg(test)]
mod hardware_suitability {
    use super::*;

    fn stream_of(pix_fmt: &str, codec: &str) -> (tempfile::TempDir, ff::format::context::Input) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clip.mp4");
        // ffmpeg -f lavfi -i testsrc2=size=64x64:rate=5 -t 0.4 -c:v CODEC -pix_fmt PIX clip.mp4
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=64x64:rate=5",
            ])
            .args(["-t", "0.4", "-c:v", codec, "-pix_fmt", pix_fmt])
            .args(["-x265-params", "log-level=error"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        crate::ingest::init();
        let input = ff::format::input(&path).unwrap();
        (dir, input)
    }

    #[test]
    fn gpu_decoders_are_not_offered_what_they_cannot_decode() {
        for (codec, pix, ok) in [
            ("libx264", "yuv420p", true),
            ("libx264", "yuv420p10le", false),
            ("libx264", "yuv422p", false),
            ("libx265", "yuv420p10le", true),
            ("libx265", "yuv444p", false),
        ] {
            let (_dir, input) = stream_of(pix, codec);
            let stream = input.streams().best(ff::media::Type::Video).unwrap();
            let why = hw_unsuitable(&stream);
            assert_eq!(why.is_none(), ok, "{codec} {pix}: {why:?}");
            if let Some(why) = why {
                assert!(why.contains(pix), "{why}");
            }
        }
    }
}
