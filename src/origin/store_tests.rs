//! Unit tests of the parent module (kept apart so the module reads as code).

use super::*;

#[test]
fn segment_names_parse_strictly() {
    assert_eq!(parse_segment_name("0.m4s"), Some(0));
    assert_eq!(parse_segment_name("123.m4s"), Some(123));
    assert_eq!(
        parse_segment_name(&crate::package::segment_name(42)),
        Some(42)
    );
    for bad in [
        "",
        ".m4s",
        "01.m4s",
        "-1.m4s",
        "+1.m4s",
        "1.mp4",
        "a.m4s",
        "1a.m4s",
        "99999999999999999999999.m4s",
    ] {
        assert_eq!(parse_segment_name(bad), None, "{bad}");
    }
}

#[test]
fn names_refuse_traversal() {
    for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a\0b", "ä"] {
        assert!(!valid_name(bad), "{bad:?}");
    }
    for good in ["720p", "audio_en", "index.m3u8", "init.mp4", "a..b"] {
        assert!(valid_name(good), "{good}");
    }
}

#[test]
fn timing_maps_numbers_to_due_times() {
    let epoch = UNIX_EPOCH + Duration::from_secs(1_000);
    let t = ChannelTiming {
        segment_duration: Duration::from_secs(2),
        epoch,
        dvr_window: Duration::from_secs(60),
    };
    assert_eq!(t.due(0), Some(epoch + Duration::from_secs(2)));
    assert_eq!(t.due(9), Some(epoch + Duration::from_secs(20)));
    assert_eq!(t.due(u64::MAX), None);
    assert_eq!(t.edge_at(epoch), None);
    assert_eq!(t.edge_at(epoch + Duration::from_millis(1_999)), None);
    assert_eq!(t.edge_at(epoch + Duration::from_secs(2)), Some(0));
    assert_eq!(t.edge_at(epoch + Duration::from_millis(20_500)), Some(9));
    assert_eq!(t.window_segments(), 30);
}
