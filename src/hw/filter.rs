//! libavfilter graphs fed one picture at a time: a `buffer` source named `in` and one
//! `buffersink` per output (`out0`, `out1`, …), for pictures in system memory or on a device.
//!
//! The front ends (the scale ladders) and the deinterlacer build their graphs here.

use ff::ffi;
use ffmpeg_next as ff;

/// Builds and configures the graph `spec` (which reads `[in]` and writes `[out0]`…) for
/// pictures like `frame`, whose timestamps are in `time_base`.
pub fn build(
    frame: &ff::frame::Video,
    time_base: ff::Rational,
    spec: &str,
    outputs: usize,
) -> Result<ff::filter::Graph, String> {
    let mut graph = ff::filter::Graph::new();
    let format: ffi::AVPixelFormat = frame.format().into();
    // SAFETY: reading a scalar field of a valid frame.
    let sar = unsafe { (*frame.as_ptr()).sample_aspect_ratio };
    let sar = if sar.num > 0 && sar.den > 0 {
        sar
    } else {
        ffi::AVRational { num: 1, den: 1 }
    };
    let args = format!(
        "video_size={}x{}:pix_fmt={}:time_base={}/{}:pixel_aspect={}/{}",
        frame.width(),
        frame.height(),
        format as i32,
        time_base.numerator(),
        time_base.denominator(),
        sar.num,
        sar.den,
    );
    let buffer = ff::filter::find("buffer").ok_or("no buffer filter")?;
    let sink = ff::filter::find("buffersink").ok_or("no buffersink filter")?;
    let mut source = graph
        .add(&buffer, "in", &args)
        .map_err(|e| format!("buffer source: {e}"))?;
    // SAFETY: hardware frames hand their frames context to the source before the graph is
    // configured, as buffersrc.h prescribes; the parameters are freed right after.
    unsafe {
        let hw = (*frame.as_ptr()).hw_frames_ctx;
        if !hw.is_null() {
            let params = ffi::av_buffersrc_parameters_alloc();
            if params.is_null() {
                return Err("out of memory".into());
            }
            (*params).format = format as i32;
            (*params).width = frame.width() as i32;
            (*params).height = frame.height() as i32;
            (*params).time_base = time_base.into();
            (*params).hw_frames_ctx = hw;
            let rc = ffi::av_buffersrc_parameters_set(source.as_mut_ptr(), params);
            ffi::av_free(params as *mut _);
            if rc < 0 {
                return Err(format!("buffer source: {}", ff::Error::from(rc)));
            }
        }
    }
    for i in 0..outputs {
        graph
            .add(&sink, &format!("out{i}"), "")
            .map_err(|e| format!("buffer sink: {e}"))?;
    }
    let mut parser = graph.output("in", 0).map_err(|e| e.to_string())?;
    for i in 0..outputs {
        parser = parser
            .input(&format!("out{i}"), 0)
            .map_err(|e| e.to_string())?;
    }
    parser.parse(spec).map_err(|e| format!("{spec}: {e}"))?;
    graph.validate().map_err(|e| format!("{spec}: {e}"))?;
    Ok(graph)
}

/// Hands `frame` to the graph's source (`None`: end of stream, so filters that hold a
/// picture back give it out).
pub fn push(graph: &mut ff::filter::Graph, frame: Option<&ff::frame::Video>) -> Result<(), String> {
    let mut source = graph.get("in").ok_or("the graph lost its source")?;
    let frame = frame.map_or(std::ptr::null(), |f| unsafe { f.as_ptr() });
    // SAFETY: av_buffersrc_write_frame adds references to the frame, which stays the caller's;
    // a null frame marks the end of the stream.
    let rc = unsafe { ffi::av_buffersrc_write_frame(source.as_mut_ptr(), frame) };
    if rc < 0 {
        return Err(ff::Error::from(rc).to_string());
    }
    Ok(())
}

/// The next picture at output `index`, `None` when the graph needs more input (or has ended).
pub fn pull(
    graph: &mut ff::filter::Graph,
    index: usize,
) -> Result<Option<ff::frame::Video>, String> {
    let mut sink = graph
        .get(&format!("out{index}"))
        .ok_or_else(|| format!("the graph lost sink {index}"))?;
    let mut picture = ff::frame::Video::empty();
    match sink.sink().frame(&mut picture) {
        Ok(()) => Ok(Some(picture)),
        Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => Ok(None),
        Err(ff::Error::Eof) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The time base of output `index`, once the graph is configured.
pub fn output_time_base(graph: &mut ff::filter::Graph, index: usize) -> Option<ff::Rational> {
    let mut sink = graph.get(&format!("out{index}"))?;
    // SAFETY: the graph is configured, so the sink has its input link.
    let tb = unsafe { ffi::av_buffersink_get_time_base(sink.as_mut_ptr()) };
    Some(tb.into())
}
