//! Arbitrary bytes, cut into arbitrary chunks, through the stream framer:
//! no panic, no frame larger than the limit, and every byte accounted for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sip_message::Limits;
use sip_message::framing::{Frame, StreamFramer};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, rest)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let limits = Limits { max_message_bytes: 4096, max_body_bytes: 2048, ..Limits::default() };
    let mut framer = StreamFramer::new(limits);
    let mut consumed = 0;
    for piece in rest.chunks(chunk) {
        framer.extend(piece);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => {
                    assert!(m.len() <= 4096);
                    consumed += m.len();
                }
                Ok(Some(Frame::Ping)) => consumed += 4,
                Ok(Some(Frame::Pong)) => consumed += 2,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    assert_eq!(consumed + framer.pending(), rest.len());
});
