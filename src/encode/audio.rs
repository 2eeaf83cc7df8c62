//! AAC-LC audio: resample any decoded audio to 48 kHz stereo, cut 1024-sample frames, encode.
//!
//! Timestamps are sample counts from the start of the presentation, so audio stays on the same
//! clock as video whatever the source's packet timing.

use ff::{codec, encoder, format::Sample, ChannelLayout};
use ffmpeg_next as ff;

use super::Error;

const BACKEND: &str = "aac";
pub const SAMPLE_RATE: u32 = 48_000;
pub const CHANNELS: u32 = 2;

/// One AAC access unit; `pts` in samples at 48 kHz from presentation start.
#[derive(Debug, Clone)]
pub struct Packet {
    pub data: Vec<u8>,
    pub pts: i64,
    pub duration: u32,
}

pub struct AacEncoder {
    encoder: encoder::Audio,
    resampler: Resampler,
    /// Planar samples waiting to fill a frame (left, right).
    fifo: [Vec<f32>; 2],
    frame_size: usize,
    /// Samples handed to the encoder so far (the next frame's pts).
    sent: i64,
    /// Samples still to drop from the input (audio that starts before the video).
    skip: u64,
    /// Silence still to insert before the next input samples (audio that starts late, gaps);
    /// encoded a frame at a time so a long gap never sits in memory as samples.
    silence_due: u64,
    /// Encoder priming samples: its first packets' pts are negative by this much.
    priming: i64,
    /// Samples of the presentation's start still to drop, as many as the priming: the first
    /// packet (pts 0) decodes to the priming and then the input, so without this every sound
    /// would play `priming` samples (21 ms) late in players that apply no edit list.
    priming_left: u64,
}

fn failed(message: String) -> Error {
    Error::Encode {
        backend: BACKEND,
        message,
    }
}

impl AacEncoder {
    pub fn open(bitrate: u64) -> Result<Self, Error> {
        let codec = encoder::find_by_name("aac").ok_or_else(|| Error::Unavailable {
            backend: BACKEND,
            reason: "this FFmpeg has no aac encoder".into(),
        })?;
        let mut ctx = codec::context::Context::new_with_codec(codec)
            .encoder()
            .audio()
            .map_err(|e| failed(e.to_string()))?;
        ctx.set_rate(SAMPLE_RATE as i32);
        ctx.set_format(Sample::F32(ff::format::sample::Type::Planar));
        ctx.set_channel_layout(ChannelLayout::STEREO);
        ctx.set_bit_rate(bitrate as usize);
        ctx.set_time_base(ff::Rational::new(1, SAMPLE_RATE as i32));
        ctx.set_flags(codec::Flags::GLOBAL_HEADER);
        let encoder = ctx
            .open_as(codec)
            .map_err(|e| failed(format!("open: {e}")))?;
        let frame_size = (encoder.frame_size() as usize).max(1);
        // SAFETY: the context is open.
        let priming = unsafe { (*encoder.as_ptr()).initial_padding as i64 };
        Ok(AacEncoder {
            encoder,
            resampler: Resampler::default(),
            fifo: [Vec::new(), Vec::new()],
            frame_size,
            sent: 0,
            skip: 0,
            silence_due: 0,
            priming,
            priming_left: priming.max(0) as u64,
        })
    }

    /// AudioSpecificConfig for the `esds` box.
    pub fn audio_specific_config(&self) -> Vec<u8> {
        // SAFETY: extradata belongs to the open context and is extradata_size bytes long.
        unsafe {
            let ctx = self.encoder.as_ptr();
            if (*ctx).extradata.is_null() {
                return Vec::new();
            }
            std::slice::from_raw_parts((*ctx).extradata, (*ctx).extradata_size as usize).to_vec()
        }
    }

    /// Aligns the start: positive `seconds` inserts silence (audio starts after video),
    /// negative drops that much input.
    pub fn align_start(&mut self, seconds: f64) {
        let n = (seconds.abs() * SAMPLE_RATE as f64).round() as u64;
        if seconds > 0.0 {
            self.silence_due = n;
        } else {
            self.skip = n;
        }
    }

    /// Inserts `seconds` of silence (a gap in the source's audio).
    pub fn push_silence(&mut self, seconds: f64) -> Result<Vec<Packet>, Error> {
        self.silence_due += (seconds.max(0.0) * SAMPLE_RATE as f64).round() as u64;
        self.fill_silence()
    }

    /// Samples accepted so far, in seconds (the audio clock).
    pub fn buffered_end_seconds(&self) -> f64 {
        let dropped = self.priming.max(0) as u64 - self.priming_left;
        (self.sent as f64 + self.fifo[0].len() as f64 + self.silence_due as f64 + dropped as f64)
            / SAMPLE_RATE as f64
    }

    /// Takes what the priming still needs from the start of `n` samples; returns how many.
    fn drop_for_priming(&mut self, n: usize) -> usize {
        let taken = (self.priming_left as usize).min(n);
        self.priming_left -= taken as u64;
        taken
    }

    /// Encodes the silence due, one frame at a time.
    fn fill_silence(&mut self) -> Result<Vec<Packet>, Error> {
        let mut packets = Vec::new();
        while self.silence_due > 0 {
            let n = self.silence_due.min(self.frame_size as u64) as usize;
            self.silence_due -= n as u64;
            let n = n - self.drop_for_priming(n);
            for ch in &mut self.fifo {
                ch.extend(std::iter::repeat_n(0.0, n));
            }
            packets.extend(self.encode_full_frames()?);
        }
        Ok(packets)
    }

    pub fn push(&mut self, frame: &ff::frame::Audio) -> Result<Vec<Packet>, Error> {
        let [left, right] = self.resampler.run(frame)?;
        self.push_planar(&left, &right)
    }

    /// Adds 48 kHz stereo samples (equal lengths).
    pub fn push_planar(&mut self, left: &[f32], right: &[f32]) -> Result<Vec<Packet>, Error> {
        let mut packets = self.fill_silence()?;
        let n = left.len().min(right.len());
        let skipped = (self.skip as usize).min(n);
        self.skip -= skipped as u64;
        let start = skipped + self.drop_for_priming(n - skipped);
        self.fifo[0].extend_from_slice(&left[start..n]);
        self.fifo[1].extend_from_slice(&right[start..n]);
        packets.extend(self.encode_full_frames()?);
        Ok(packets)
    }

    /// Encodes what is left (the last frame padded with silence) and drains the encoder.
    pub fn flush(&mut self) -> Result<Vec<Packet>, Error> {
        let mut packets = self.fill_silence()?;
        let rest = self.fifo[0].len();
        if rest > 0 {
            packets.extend(self.encode_frame(rest)?);
        }
        self.encoder
            .send_eof()
            .map_err(|e| failed(format!("flush: {e}")))?;
        packets.extend(self.drain()?);
        Ok(packets)
    }

    fn encode_full_frames(&mut self) -> Result<Vec<Packet>, Error> {
        let mut packets = Vec::new();
        while self.fifo[0].len() >= self.frame_size {
            packets.extend(self.encode_frame(self.frame_size)?);
        }
        Ok(packets)
    }

    fn encode_frame(&mut self, samples: usize) -> Result<Vec<Packet>, Error> {
        let mut frame = ff::frame::Audio::new(
            Sample::F32(ff::format::sample::Type::Planar),
            self.frame_size,
            ChannelLayout::STEREO,
        );
        frame.set_rate(SAMPLE_RATE);
        for ch in 0..2 {
            let plane = frame.plane_mut::<f32>(ch);
            plane[..samples].copy_from_slice(&self.fifo[ch][..samples]);
            plane[samples..].fill(0.0);
            self.fifo[ch].drain(..samples);
        }
        frame.set_pts(Some(self.sent));
        self.sent += samples as i64;
        self.encoder
            .send_frame(&frame)
            .map_err(|e| failed(format!("send frame: {e}")))?;
        self.drain()
    }

    fn drain(&mut self) -> Result<Vec<Packet>, Error> {
        let mut out = Vec::new();
        let mut packet = ff::Packet::empty();
        loop {
            match self.encoder.receive_packet(&mut packet) {
                Ok(()) => out.push(Packet {
                    data: packet.data().unwrap_or(&[]).to_vec(),
                    // Shift the priming away: the first packet starts at 0, on the video's clock
                    // (the input's first `priming` samples were dropped to match).
                    pts: packet.pts().unwrap_or(0) + self.priming,
                    duration: if packet.duration() > 0 {
                        packet.duration() as u32
                    } else {
                        self.frame_size as u32
                    },
                }),
                Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                Err(ff::Error::Eof) => break,
                Err(e) => return Err(failed(format!("receive packet: {e}"))),
            }
        }
        Ok(out)
    }
}

/// Converts any decoded audio to 48 kHz stereo planar f32, rebuilding itself when the
/// source's format, channels or rate change mid-stream.
///
/// Works on the frame's raw planes rather than through ffmpeg-next's frame helpers: decoders
/// leave the channel layout unset for many sources (PCM in Matroska or AVI, some MPEG-TS), and
/// copying such a frame through a layout-driven allocation yields a frame with no buffers,
/// which libswresample then reads as null pointers. Here the layout is only ever what this
/// code decided (the stream's own when it is complete, the default for the channel count
/// otherwise), and swr_convert gets the frame's plane pointers directly.
#[derive(Default)]
pub struct Resampler {
    context: Option<(SwrContext, InputShape)>,
}

/// What a resampler was configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InputShape {
    format: i32,
    channels: i32,
    /// Native channel mask (the default for `channels` when the source named none).
    mask: u64,
    rate: i32,
}

/// Sane bounds on decoder output: anything outside is refused, never handed to libswresample.
const MAX_CHANNELS: i32 = 64;
const MAX_RATE: i32 = 768_000;

impl InputShape {
    /// The shape of a decoded frame, with a complete channel layout.
    fn of(frame: &ff::ffi::AVFrame) -> Result<Self, Error> {
        use ff::ffi::AVChannelOrder;
        let channels = frame.ch_layout.nb_channels;
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(failed(format!("audio frame with {channels} channels")));
        }
        if !(1..=MAX_RATE).contains(&frame.sample_rate) {
            return Err(failed(format!("audio frame at {} Hz", frame.sample_rate)));
        }
        if frame.format < 0 || frame.format >= ff::ffi::AVSampleFormat::AV_SAMPLE_FMT_NB as i32 {
            return Err(failed(format!(
                "audio frame in sample format {}",
                frame.format
            )));
        }
        // SAFETY: reading the mask of a native-order layout is what the union holds then.
        let native = unsafe {
            (frame.ch_layout.order == AVChannelOrder::AV_CHANNEL_ORDER_NATIVE)
                .then_some(frame.ch_layout.u.mask)
        };
        let mask = match native {
            Some(mask) if mask.count_ones() as i32 == channels => mask,
            // No layout, or an unusual order: the usual layout for that many channels.
            _ => default_mask(channels),
        };
        Ok(InputShape {
            format: frame.format,
            channels,
            mask,
            rate: frame.sample_rate,
        })
    }
}

/// FFmpeg's default layout for `channels` (mono, stereo, 2.1, 4.0, 5.0, 5.1, ...), or the
/// first `channels` speaker positions when it has none.
fn default_mask(channels: i32) -> u64 {
    let mut layout = std::mem::MaybeUninit::<ff::ffi::AVChannelLayout>::zeroed();
    // SAFETY: av_channel_layout_default fills the layout it is given.
    let layout = unsafe {
        ff::ffi::av_channel_layout_default(layout.as_mut_ptr(), channels);
        layout.assume_init()
    };
    // SAFETY: av_channel_layout_default always produces a native or unspecified order.
    let mask = unsafe { layout.u.mask };
    if layout.order == ff::ffi::AVChannelOrder::AV_CHANNEL_ORDER_NATIVE
        && mask.count_ones() as i32 == channels
    {
        mask
    } else if channels >= 64 {
        u64::MAX
    } else {
        (1u64 << channels) - 1
    }
}

/// An owned libswresample context.
struct SwrContext {
    context: *mut ff::ffi::SwrContext,
    /// Compensation was set once (which turns resampling on, even at the same rate).
    compensating: bool,
}

// SAFETY: a SwrContext has no thread affinity; it is used by one thread at a time (&mut).
unsafe impl Send for SwrContext {}

impl Drop for SwrContext {
    fn drop(&mut self) {
        // SAFETY: the pointer came from swr_alloc_set_opts2 and is freed once.
        unsafe { ff::ffi::swr_free(&mut self.context) };
    }
}

impl SwrContext {
    fn open(shape: InputShape) -> Result<Self, Error> {
        use ff::ffi::*;
        let describe = || {
            format!(
                "resampler for {} channel(s), {} Hz, sample format {}",
                shape.channels, shape.rate, shape.format
            )
        };
        // SAFETY: layouts are built from masks by FFmpeg itself; swr_alloc_set_opts2 copies them.
        unsafe {
            let mut input = std::mem::MaybeUninit::<AVChannelLayout>::zeroed();
            if av_channel_layout_from_mask(input.as_mut_ptr(), shape.mask) < 0 {
                return Err(failed(format!(
                    "{}: bad channel mask {:#x}",
                    describe(),
                    shape.mask
                )));
            }
            let mut output = std::mem::MaybeUninit::<AVChannelLayout>::zeroed();
            av_channel_layout_default(output.as_mut_ptr(), CHANNELS as i32);
            let mut swr: *mut ff::ffi::SwrContext = std::ptr::null_mut();
            let rc = swr_alloc_set_opts2(
                &mut swr,
                output.as_mut_ptr(),
                AVSampleFormat::AV_SAMPLE_FMT_FLTP,
                SAMPLE_RATE as i32,
                input.as_mut_ptr(),
                std::mem::transmute::<i32, AVSampleFormat>(shape.format),
                shape.rate,
                0,
                std::ptr::null_mut(),
            );
            let context = Self {
                context: swr,
                compensating: false,
            };
            if rc < 0 || swr.is_null() {
                return Err(failed(format!("{}: {}", describe(), ff::Error::from(rc))));
            }
            let rc = swr_init(context.context);
            if rc < 0 {
                return Err(failed(format!("{}: {}", describe(), ff::Error::from(rc))));
            }
            Ok(context)
        }
    }
}

impl Resampler {
    /// Adds `samples` (or removes, when negative) over the next `span` output samples, by
    /// resampling: how live sound follows a sender's clock without gaps. Effective from the
    /// next `run`, until the next call; a resampler not yet opened ignores it.
    pub fn compensate(&mut self, samples: i32, span: i32) -> Result<(), Error> {
        let Some((swr, _)) = self.context.as_mut() else {
            return Ok(());
        };
        if samples == 0 && !swr.compensating {
            return Ok(()); // no need to turn on resampling at the same rate
        }
        // SAFETY: swr is an initialised context; the call only sets its compensation.
        let rc = unsafe { ff::ffi::swr_set_compensation(swr.context, samples, span.max(1)) };
        if rc < 0 {
            return Err(failed(format!(
                "resample compensation: {}",
                ff::Error::from(rc)
            )));
        }
        swr.compensating = true;
        Ok(())
    }

    pub fn run(&mut self, frame: &ff::frame::Audio) -> Result<[Vec<f32>; 2], Error> {
        // SAFETY: the frame is a valid decoded frame for as long as `frame` lives.
        let raw = unsafe { &*frame.as_ptr() };
        let shape = InputShape::of(raw)?;
        if self.context.as_ref().map(|(_, s)| *s) != Some(shape) {
            self.context = Some((SwrContext::open(shape)?, shape));
        }
        let (swr, _) = self.context.as_mut().expect("set above");
        let samples = raw.nb_samples.max(0);
        if samples > 0 && raw.extended_data.is_null() {
            return Err(failed("audio frame without sample buffers".into()));
        }
        // SAFETY: swr was initialised for exactly this frame's format, channel count and rate,
        // so it reads `samples` samples from each of the frame's planes; the output planes
        // hold `capacity` f32 samples each, the most swr_convert may write.
        unsafe {
            let capacity = ff::ffi::swr_get_out_samples(swr.context, samples);
            if capacity < 0 {
                return Err(failed(format!("resample: {}", ff::Error::from(capacity))));
            }
            let mut left = vec![0f32; capacity as usize];
            let mut right = vec![0f32; capacity as usize];
            let mut planes = [left.as_mut_ptr() as *mut u8, right.as_mut_ptr() as *mut u8];
            let input = if samples > 0 {
                raw.extended_data as *mut *const u8
            } else {
                std::ptr::null_mut()
            };
            let n =
                ff::ffi::swr_convert(swr.context, planes.as_mut_ptr(), capacity, input, samples);
            if n < 0 {
                return Err(failed(format!("resample: {}", ff::Error::from(n))));
            }
            left.truncate(n as usize);
            right.truncate(n as usize);
            Ok([left, right])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decoded-like frame with no channel layout at all (as PCM in Matroska decodes).
    fn frame_without_layout(
        format: Sample,
        channels: i32,
        rate: u32,
        samples: usize,
    ) -> ff::frame::Audio {
        let mut frame = ff::frame::Audio::empty();
        // SAFETY: a fresh frame; av_frame_get_buffer allocates what the fields describe.
        unsafe {
            let f = frame.as_mut_ptr();
            (*f).format = ff::ffi::AVSampleFormat::from(format) as i32;
            (*f).nb_samples = samples as i32;
            (*f).sample_rate = rate as i32;
            (*f).ch_layout.order = ff::ffi::AVChannelOrder::AV_CHANNEL_ORDER_UNSPEC;
            (*f).ch_layout.nb_channels = channels;
            assert!(ff::ffi::av_frame_get_buffer(f, 0) >= 0);
            for p in 0..(if format.is_planar() {
                channels as usize
            } else {
                1
            }) {
                let plane = *(*f).extended_data.add(p);
                std::ptr::write_bytes(plane, 0, (*f).linesize[0] as usize);
            }
        }
        frame
    }

    #[test]
    fn frames_without_a_channel_layout_are_resampled() {
        ff::init().unwrap();
        let mut resampler = Resampler::default();
        for (format, channels, rate) in [
            (Sample::I16(ff::format::sample::Type::Packed), 1, 48_000),
            (Sample::I16(ff::format::sample::Type::Packed), 2, 44_100),
            (Sample::I32(ff::format::sample::Type::Packed), 6, 96_000),
            (Sample::F32(ff::format::sample::Type::Packed), 8, 22_050),
            (Sample::F32(ff::format::sample::Type::Planar), 3, 48_000),
        ] {
            let frame = frame_without_layout(format, channels, rate, 1024);
            let [l, r] = resampler.run(&frame).expect("resampled");
            assert_eq!(l.len(), r.len());
            assert!(
                l.len() <= 1024 * 48_000 / rate as usize + 64,
                "{format:?} {channels} {rate}"
            );
        }
    }

    #[test]
    fn impossible_frames_are_errors() {
        ff::init().unwrap();
        let mut resampler = Resampler::default();
        let mut frame =
            frame_without_layout(Sample::I16(ff::format::sample::Type::Packed), 2, 48_000, 16);
        // SAFETY: only scalar fields are changed; the buffers are freed through buf[].
        unsafe { (*frame.as_mut_ptr()).ch_layout.nb_channels = 0 };
        assert!(resampler.run(&frame).is_err());
        unsafe { (*frame.as_mut_ptr()).ch_layout.nb_channels = 2 };
        unsafe { (*frame.as_mut_ptr()).sample_rate = 0 };
        assert!(resampler.run(&frame).is_err());
    }
}
