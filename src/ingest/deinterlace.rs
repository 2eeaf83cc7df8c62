//! Deinterlacing decoded pictures before they are scaled: interlaced broadcast sources (1080i,
//! 576i, 480i) would otherwise be scaled and encoded as progressive pictures with combing.
//!
//! A source counts as interlaced when its stream says so (a field order of `tt`, `bb`, `tb` or
//! `bt`), or from the first picture flagged interlaced. The filter follows where the picture is:
//! `bwdif` in system memory, `yadif_cuda` for CUDA frames (NVDEC), `deinterlace_vaapi` for
//! VA-API surfaces. One output picture per input picture by default; [`Mode::Field`] gives one
//! per field (double rate, for sport), which needs the stream to declare its field order so
//! that the output rate is known before the encoders open.

use ffmpeg_next as ff;

use crate::hw::filter;

/// What to do with interlaced pictures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deinterlace interlaced sources, one picture per frame.
    #[default]
    Auto,
    /// Deinterlace interlaced sources, one picture per field (twice the frame rate).
    Field,
    /// Never deinterlace.
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "frame" | "on" => Ok(Mode::Auto),
            "field" => Ok(Mode::Field),
            "off" | "none" => Ok(Mode::Off),
            other => Err(format!(
                "unknown deinterlace mode {other:?} (expected auto, frame, field or off)"
            )),
        }
    }
}

/// The field order a stream declares, when it declares one that is interlaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOrder {
    TopFirst,
    BottomFirst,
}

impl FieldOrder {
    pub fn of(stream: &ff::format::stream::Stream) -> Option<FieldOrder> {
        use ff::ffi::AVFieldOrder::*;
        // SAFETY: reading a field of a valid stream's codec parameters.
        let order = unsafe { (*stream.parameters().as_ptr()).field_order };
        match order {
            AV_FIELD_TT | AV_FIELD_TB => Some(FieldOrder::TopFirst),
            AV_FIELD_BB | AV_FIELD_BT => Some(FieldOrder::BottomFirst),
            _ => None,
        }
    }
}

/// Deinterlaces a stream's pictures (and passes progressive ones through untouched).
pub struct Deinterlacer {
    mode: Mode,
    declared: Option<FieldOrder>,
    /// Timestamps in and out (out is `input / 2` with one picture per field).
    input_time_base: ff::Rational,
    /// Pictures go through a filter from now on.
    active: bool,
    /// The graph and what it was built for: (format, width, height, hardware).
    graph: Option<(ff::filter::Graph, (ff::format::Pixel, u32, u32, bool))>,
    /// The filter that ran, for the summary.
    used: Option<&'static str>,
}

impl Deinterlacer {
    pub fn new(mode: Mode, declared: Option<FieldOrder>, time_base: ff::Rational) -> Self {
        Deinterlacer {
            mode,
            declared,
            input_time_base: time_base,
            active: mode != Mode::Off && declared.is_some(),
            graph: None,
            used: None,
        }
    }

    /// Output pictures per input picture: 2 with one per field of a declared interlaced stream.
    pub fn rate_factor(&self) -> u32 {
        if self.mode == Mode::Field && self.declared.is_some() {
            2
        } else {
            1
        }
    }

    /// The time base of the pictures given out.
    pub fn output_time_base(&self) -> ff::Rational {
        let tb = self.input_time_base;
        ff::Rational::new(tb.numerator(), tb.denominator() * self.rate_factor() as i32)
    }

    /// What ran, e.g. "bwdif, one picture per frame"; `None` when nothing was deinterlaced.
    pub fn describe(&self) -> Option<String> {
        self.used.map(|f| {
            format!(
                "{f}, one picture per {}",
                if self.rate_factor() == 2 {
                    "field"
                } else {
                    "frame"
                }
            )
        })
    }

    /// Takes a decoded picture; `emit` gets the pictures to scale, with timestamps (pts and
    /// best-effort) in [`Self::output_time_base`].
    pub fn push(
        &mut self,
        frame: ff::frame::Video,
        emit: &mut dyn FnMut(ff::frame::Video),
    ) -> Result<(), String> {
        if !self.active {
            // SAFETY: reading a flag of a valid frame.
            let flagged = unsafe { (*frame.as_ptr()).interlaced_frame != 0 };
            if self.mode == Mode::Off || !flagged {
                emit(frame);
                return Ok(());
            }
            tracing::info!("interlaced pictures in a stream that declared none: deinterlacing");
            self.active = true;
        }
        // SAFETY: reading a field of a valid frame.
        let hardware = unsafe { !(*frame.as_ptr()).hw_frames_ctx.is_null() };
        let key = (frame.format(), frame.width(), frame.height(), hardware);
        if self.graph.as_ref().map(|(_, k)| *k) != Some(key) {
            // A new shape mid-stream: what the old graph holds back comes out first.
            self.flush(emit)?;
            let (name, spec) = self.spec(&frame);
            let graph = filter::build(&frame, self.input_time_base, &spec, 1)
                .map_err(|e| format!("deinterlace: {e}"))?;
            self.graph = Some((graph, key));
            self.used = Some(name);
        }
        // The filter reads pts: give it the best-effort timestamp the rest of the pipeline uses.
        let mut frame = frame;
        let ts = frame.timestamp();
        frame.set_pts(ts);
        let (graph, _) = self.graph.as_mut().expect("built above");
        filter::push(graph, Some(&frame)).map_err(|e| format!("deinterlace: {e}"))?;
        self.drain(emit)
    }

    /// Ends the stream: the picture the filter holds back (it looks one ahead) comes out.
    pub fn flush(&mut self, emit: &mut dyn FnMut(ff::frame::Video)) -> Result<(), String> {
        if let Some((graph, _)) = self.graph.as_mut() {
            filter::push(graph, None).map_err(|e| format!("deinterlace: {e}"))?;
            self.drain(emit)?;
            self.graph = None;
        }
        Ok(())
    }

    fn drain(&mut self, emit: &mut dyn FnMut(ff::frame::Video)) -> Result<(), String> {
        let out_tb = self.output_time_base();
        let Some((graph, _)) = self.graph.as_mut() else {
            return Ok(());
        };
        let sink_tb = filter::output_time_base(graph, 0).unwrap_or(out_tb);
        while let Some(mut picture) =
            filter::pull(graph, 0).map_err(|e| format!("deinterlace: {e}"))?
        {
            let pts = picture.pts().map(|p| {
                // SAFETY: pure arithmetic.
                unsafe { ff::ffi::av_rescale_q(p, sink_tb.into(), out_tb.into()) }
            });
            picture.set_pts(pts);
            // SAFETY: a scalar field of a frame we own.
            unsafe {
                (*picture.as_mut_ptr()).best_effort_timestamp =
                    pts.unwrap_or(ff::ffi::AV_NOPTS_VALUE);
            }
            emit(picture);
        }
        Ok(())
    }

    /// The filter for pictures like `frame`, and its graph.
    fn spec(&self, frame: &ff::frame::Video) -> (&'static str, String) {
        let per_field = self.rate_factor() == 2;
        let parity = match self.declared {
            Some(FieldOrder::TopFirst) => "tff",
            Some(FieldOrder::BottomFirst) => "bff",
            None => "auto",
        };
        // A declared field order covers every picture; otherwise only the flagged ones.
        let deint = if self.declared.is_some() {
            "all"
        } else {
            "interlaced"
        };
        let mode = if per_field {
            "send_field"
        } else {
            "send_frame"
        };
        match crate::hw::accel::frame_device_kind(frame) {
            Some(crate::hw::accel::DeviceKind::Cuda) => (
                "yadif_cuda",
                format!("[in]yadif_cuda=mode={mode}:parity={parity}:deint={deint}[out0]"),
            ),
            Some(crate::hw::accel::DeviceKind::Vaapi) => (
                "deinterlace_vaapi",
                format!(
                    "[in]deinterlace_vaapi=rate={}:auto={}[out0]",
                    if per_field { "field" } else { "frame" },
                    if self.declared.is_some() { 0 } else { 1 }
                ),
            ),
            None => (
                "bwdif",
                format!("[in]bwdif=mode={mode}:parity={parity}:deint={deint}[out0]"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bar moving right by 8 pixels per field: the top field (even lines) shows it at
    /// 16·i, the bottom field (odd lines) 8 pixels further on, so the woven frame is combed
    /// along the bar's edges.
    fn combed(width: u32, height: u32, i: i64) -> ff::frame::Video {
        let mut f = ff::frame::Video::new(ff::format::Pixel::YUV420P, width, height);
        let stride = f.stride(0);
        for (n, b) in f.data_mut(0).iter_mut().enumerate() {
            let (row, col) = ((n / stride) as i64, (n % stride) as i64);
            let start = (16 * i + if row % 2 == 0 { 0 } else { 8 }) % width as i64;
            *b = if (col - start).rem_euclid(width as i64) < 8 {
                235
            } else {
                16
            };
        }
        for plane in 1..3 {
            f.data_mut(plane).fill(128);
        }
        f.set_pts(Some(i));
        // SAFETY: scalar fields of a frame we own.
        unsafe {
            (*f.as_mut_ptr()).best_effort_timestamp = i;
            (*f.as_mut_ptr()).interlaced_frame = 1;
            (*f.as_mut_ptr()).top_field_first = 1;
        }
        f
    }

    fn run(
        mode: Mode,
        declared: Option<FieldOrder>,
        frames: i64,
    ) -> (Vec<ff::frame::Video>, Deinterlacer) {
        crate::ingest::init();
        let mut d = Deinterlacer::new(mode, declared, ff::Rational::new(1, 25));
        let mut out = Vec::new();
        for i in 0..frames {
            d.push(combed(64, 32, i), &mut |f| out.push(f)).unwrap();
        }
        d.flush(&mut |f| out.push(f)).unwrap();
        (out, d)
    }

    /// Mean absolute difference between neighbouring lines of the luma plane.
    fn combing(f: &ff::frame::Video) -> f64 {
        let stride = f.stride(0);
        let y = f.data(0);
        let (w, h) = (f.width() as usize, f.height() as usize);
        let mut sum = 0.0;
        for row in 1..h {
            for col in 0..w {
                sum += (y[row * stride + col] as f64 - y[(row - 1) * stride + col] as f64).abs();
            }
        }
        sum / ((h - 1) * w) as f64
    }

    #[test]
    fn one_picture_per_frame_without_combing() {
        let (out, d) = run(Mode::Auto, Some(FieldOrder::TopFirst), 5);
        assert_eq!(out.len(), 5);
        let pts: Vec<_> = out.iter().map(|f| f.timestamp().unwrap()).collect();
        assert_eq!(pts, vec![0, 1, 2, 3, 4]);
        assert!(
            out.iter().all(|f| combing(f) < 15.0),
            "{:?}",
            out.iter().map(combing).collect::<Vec<_>>()
        );
        assert_eq!(
            d.describe().as_deref(),
            Some("bwdif, one picture per frame")
        );
    }

    #[test]
    fn one_picture_per_field_doubles_the_rate() {
        let (out, d) = run(Mode::Field, Some(FieldOrder::TopFirst), 4);
        assert_eq!(d.rate_factor(), 2);
        assert_eq!(d.output_time_base(), ff::Rational::new(1, 50));
        let pts: Vec<_> = out.iter().map(|f| f.timestamp().unwrap()).collect();
        assert_eq!(pts, vec![0, 1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn progressive_pictures_pass_untouched_and_off_means_off() {
        crate::ingest::init();
        let mut d = Deinterlacer::new(Mode::Auto, None, ff::Rational::new(1, 25));
        let mut progressive = combed(64, 32, 0);
        unsafe { (*progressive.as_mut_ptr()).interlaced_frame = 0 };
        let mut out = Vec::new();
        d.push(progressive, &mut |f| out.push(f)).unwrap();
        assert_eq!(out.len(), 1);
        assert!(combing(&out[0]) > 50.0);
        assert!(d.describe().is_none());
        let (out, d) = run(Mode::Off, Some(FieldOrder::TopFirst), 3);
        assert!(out.iter().all(|f| combing(f) > 50.0));
        assert!(d.describe().is_none());
        // A flagged picture in an undeclared stream switches deinterlacing on.
        let (out, d) = run(Mode::Auto, None, 3);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|f| combing(f) < 15.0));
        assert_eq!(d.rate_factor(), 1);
    }

    #[test]
    fn modes_parse() {
        assert_eq!("field".parse::<Mode>().unwrap(), Mode::Field);
        assert_eq!("frame".parse::<Mode>().unwrap(), Mode::Auto);
        assert!("sometimes".parse::<Mode>().is_err());
    }
}
