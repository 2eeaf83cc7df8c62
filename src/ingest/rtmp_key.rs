//! RTMP stream keys. FFmpeg's RTMP listener takes a publisher whatever stream key it names and
//! only logs `Unexpected stream KEY, expecting OURS`: a publisher to `/live/WRONG` would go on
//! air on a channel listening at `/live/key`. Encore watches for that line on the thread that
//! opens the input (FFmpeg logs it there, inside `avformat_open_input`) and refuses the
//! publisher.

use std::cell::Cell;

thread_local! {
    static WRONG_KEY: Cell<bool> = const { Cell::new(false) };
}

/// Installs the log watcher (once; FFmpeg's own printing is unchanged).
pub(super) fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the callback is a plain function that only reads `fmt` and hands every
        // message on to FFmpeg's default callback.
        unsafe {
            ffmpeg_next::ffi::av_log_set_callback(Some(watch));
        }
        #[cfg(not(target_arch = "x86_64"))]
        tracing::warn!("RTMP stream keys are not checked on this architecture");
    });
}

/// Forgets what an earlier open saw on this thread.
pub(super) fn reset() {
    WRONG_KEY.with(|seen| seen.set(false));
}

/// A publisher named another stream key during the last open on this thread.
pub(super) fn wrong_key_seen() -> bool {
    WRONG_KEY.with(Cell::get)
}

#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn watch(
    avcl: *mut libc::c_void,
    level: libc::c_int,
    fmt: *const libc::c_char,
    args: *mut ffmpeg_next::ffi::__va_list_tag,
) {
    // SAFETY: FFmpeg passes a NUL-terminated format string (or null).
    if !fmt.is_null()
        && unsafe { std::ffi::CStr::from_ptr(fmt) }
            .to_bytes()
            .starts_with(b"Unexpected stream ")
    {
        WRONG_KEY.with(|seen| seen.set(true));
    }
    // SAFETY: the arguments are FFmpeg's own, passed on unchanged.
    unsafe { ffmpeg_next::ffi::av_log_default_callback(avcl, level, fmt, args) }
}
