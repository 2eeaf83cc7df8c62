//! The parts of SRT's handshake packets (SRT RFC draft, section 3.2.1) an SRT gate reads: the
//! handshake type (a conclusion from the caller, a rejection from the listener), the stream
//! id a caller names, and a rejection to send back.

/// `URQ_CONCLUSION`: the caller's second handshake, which carries its stream id.
const CONCLUSION: u32 = 0xFFFF_FFFF;
/// Handshake types from 1000 up are rejections: 1000 + the reason.
const FAILURE_TYPES: u32 = 1000;
/// libsrt's reasons a gate names (`SRT_REJ_*`, `SRT_REJX_*`).
const REJ_BADSECRET: u32 = 10;
const REJ_UNSECURE: u32 = 11;
/// "Not found": the access-control reason for a stream id this listener does not serve.
pub(super) const REJX_NOT_FOUND: u32 = 1404;
/// The stream id extension (`SRT_CMD_SID`).
const EXT_STREAM_ID: u16 = 5;
/// A header (16 bytes) and the handshake's fixed part (48 bytes).
const FIXED: usize = 64;

fn u32_at(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

/// The handshake type of a handshake control packet, `None` for any other packet.
pub(super) fn handshake_type(p: &[u8]) -> Option<u32> {
    let control_handshake = p.len() >= FIXED && p[0] == 0x80 && p[1] == 0;
    control_handshake.then(|| u32_at(p, 36))
}

/// A caller's conclusion handshake: `Some(stream id)`, `Some("")` when it names none.
pub(super) fn conclusion_stream_id(p: &[u8]) -> Option<String> {
    if handshake_type(p) != Some(CONCLUSION) {
        return None;
    }
    let mut at = FIXED;
    while at + 4 <= p.len() {
        let kind = u16::from_be_bytes([p[at], p[at + 1]]);
        let words = u16::from_be_bytes([p[at + 2], p[at + 3]]) as usize;
        let end = (at + 4 + words * 4).min(p.len());
        if kind == EXT_STREAM_ID {
            // Sent as 32-bit words in the sender's byte order: each group of four reversed.
            let mut bytes = Vec::with_capacity(end - at - 4);
            for word in p[at + 4..end].chunks(4) {
                bytes.extend(word.iter().rev());
            }
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        at = end;
    }
    Some(String::new())
}

/// The reason of a listener's rejection, in words; `None` when `p` is not one.
pub(super) fn rejection_reason(p: &[u8]) -> Option<String> {
    let kind = handshake_type(p)?;
    if !(FAILURE_TYPES..CONCLUSION).contains(&kind) {
        return None;
    }
    Some(match kind - FAILURE_TYPES {
        REJ_BADSECRET => "the SRT handshake failed: wrong passphrase".into(),
        REJ_UNSECURE => {
            "the SRT handshake failed: no passphrase (or one this input does not take)".into()
        }
        other => format!("the SRT handshake failed (rejection code {other})"),
    })
}

/// The listener's answer refusing `conclusion` for `reason`: the caller's connect fails at
/// once, saying why, instead of timing out.
pub(super) fn rejection(conclusion: &[u8], reason: u32) -> Vec<u8> {
    let mut p = conclusion[..FIXED].to_vec();
    p[4..8].fill(0); // no message number
    let caller_socket = u32_at(conclusion, 40);
    p[12..16].copy_from_slice(&caller_socket.to_be_bytes()); // to the caller's socket
    p[20..24].fill(0); // no encryption, no extensions
    p[36..40].copy_from_slice(&(FAILURE_TYPES + reason).to_be_bytes());
    p[40..44].fill(0); // no socket of ours
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// What ffmpeg 5.1 with libsrt 1.5.1 sent as a caller with `streamid=hello-world-1` and a
    /// passphrase, and what the listener answered (a wrong passphrase), captured on loopback.
    const CONCLUSION_HEX: &str = "800000000000000000000b390000000000000005000000072659ff56000005dc00002000ffffffff16eabdd6f44c0b150100007f0000000000000000000000000001000300010501000000bf00780000000500046c6c65686f772d6f2d646c72000000310003000e122029010000000002000200000004043b7f9fc0225aa0483617ed686e457a9505636afe47cc87b9d72f594a7edd6c26aca8aeae90950abe";
    const BAD_SECRET_HEX: &str = "8000000000000000000fc71c16eabdd600000005000000072659ff56000005dc00002000000003f212b69448f44c0b150100007f000000000000000000000000";
    const INDUCTION_HEX: &str = "80000000000000000000034a0000000000000004000000022659ff56000005dc000020000000000116eabdd6000000000100007f000000000000000000000000";

    #[test]
    fn a_callers_stream_id_is_read_from_its_conclusion() {
        let conclusion = hex(CONCLUSION_HEX);
        assert_eq!(
            conclusion_stream_id(&conclusion).as_deref(),
            Some("hello-world-1")
        );
        assert_eq!(conclusion_stream_id(&hex(INDUCTION_HEX)), None);
        // A conclusion without the extension names no stream id.
        assert_eq!(
            conclusion_stream_id(&conclusion[..FIXED]).as_deref(),
            Some("")
        );
        // Data packets are not handshakes; short or odd packets never panic.
        assert_eq!(handshake_type(&[0u8; 100]), None);
        for n in 0..conclusion.len() {
            let _ = conclusion_stream_id(&conclusion[..n]);
            let _ = rejection_reason(&conclusion[..n]);
        }
    }

    #[test]
    fn a_listeners_rejection_is_read_and_one_can_be_made() {
        let reason = rejection_reason(&hex(BAD_SECRET_HEX)).unwrap();
        assert!(reason.contains("wrong passphrase"), "{reason}");
        assert_eq!(rejection_reason(&hex(CONCLUSION_HEX)), None);
        let made = rejection(&hex(CONCLUSION_HEX), REJX_NOT_FOUND);
        assert_eq!(made.len(), FIXED);
        assert_eq!(handshake_type(&made), Some(2404));
        assert_eq!(
            &made[12..16],
            &hex("16eabdd6")[..],
            "sent to the caller's socket"
        );
    }
}
