// `framer`: arbitrary bytes, cut into chunks of a size the first byte
// gives, through the stream framer: no panic, no frame larger than the
// limit, and every byte accounted for.

use sip_message::Limits;
use sip_message::framing::{Frame, StreamFramer};

pub fn check(data: &[u8]) {
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let limits = Limits {
        max_message_bytes: 4096,
        max_body_bytes: 2048,
        ..Limits::default()
    };
    let mut framer = StreamFramer::new(limits);
    let mut consumed = 0;
    for piece in rest.chunks(chunk) {
        framer.extend(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    assert!(m.len() <= 4096, "a frame of {} bytes passed a 4096-byte limit", m.len());
                    consumed += m.len();
                }
                Ok(Some(Frame::Ping)) => consumed += 4,
                Ok(Some(Frame::Pong)) => consumed += 2,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(
        consumed + framer.pending(),
        rest.len(),
        "every byte is framed or pending"
    );
}
