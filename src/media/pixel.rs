//! Pixel formats by FFmpeg's names and bit depths, for every layer (decoders, front ends,
//! encoders). The one part of `media` that names FFmpeg's types.

use ff::ffi;
use ffmpeg_next as ff;

/// The FFmpeg name of a pixel format number (as codec parameters hold it).
pub fn format_name(format: i32) -> String {
    if format < 0 || format >= ffi::AVPixelFormat::AV_PIX_FMT_NB as i32 {
        return format!("pixel format {format}");
    }
    // SAFETY: in range, so a value of the enum.
    name(unsafe { std::mem::transmute::<i32, ffi::AVPixelFormat>(format) }.into())
}

/// The FFmpeg name of a pixel format, e.g. "nv12", "yuv420p10le".
pub fn name(format: ff::format::Pixel) -> String {
    // SAFETY: av_get_pix_fmt_name returns a static string or null.
    unsafe {
        let name = ffi::av_get_pix_fmt_name(format.into());
        if name.is_null() {
            return "none".into();
        }
        std::ffi::CStr::from_ptr(name)
            .to_string_lossy()
            .into_owned()
    }
}

/// Bits per luma sample of a stream's pixel format (8 when unknown).
pub fn bit_depth(stream: &ff::format::stream::Stream) -> u32 {
    // SAFETY: codecpar is valid for an open stream; the descriptor is static or null.
    unsafe {
        let format = (*stream.parameters().as_ptr()).format;
        if format < 0 || format >= ffi::AVPixelFormat::AV_PIX_FMT_NB as i32 {
            return 8;
        }
        // In range, so a value of the enum.
        let desc = ffi::av_pix_fmt_desc_get(std::mem::transmute::<i32, ffi::AVPixelFormat>(format));
        if desc.is_null() {
            return 8;
        }
        (*desc).comp[0].depth as u32
    }
}
