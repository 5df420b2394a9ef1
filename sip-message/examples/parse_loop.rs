//! A plain loop over parse + cached typed access, for instruction counts
//! under `valgrind --tool=callgrind` (criterion's own work would blur them):
//!
//!     N=20000 valgrind --tool=callgrind target/release/examples/parse_loop

use bytes::Bytes;
use sip_message::Message;

const INVITE_HEAD: &str = "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.101:5060;rport;branch=z9hG4bKnashds8a7f6b9c\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@192.0.2.101:5060;transport=udp>;+sip.instance=\"<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>\"\r\n\
To: Bob <sip:bob@biloxi.example.com>\r\n\
From: \"Alice\" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@atlanta.example.com\r\n\
CSeq: 31862 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
Supported: replaces, timer, path\r\n\
User-Agent: Linphone/5.2.0 (belle-sip/5.2.0)\r\n\
Content-Type: application/sdp\r\n\
Content-Length: ";

const SDP: &str = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=Talk\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n";

fn main() {
    let data = Bytes::from(format!("{INVITE_HEAD}{}\r\n\r\n{SDP}", SDP.len()));
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    #[allow(clippy::disallowed_types)]
    let t = std::time::Instant::now();
    let mut acc = 0usize;
    for _ in 0..n {
        let m = Message::parse(std::hint::black_box(data.clone())).expect("parses");
        acc += m.branch().map_or(0, str::len)
            + m.from_tag().map_or(0, str::len)
            + m.to_tag().map_or(0, str::len)
            + m.call_id().map_or(0, str::len)
            + m.cseq().map_or(0, |c| c.seq as usize);
    }
    println!("{:?} per INVITE parse + access ({acc})", t.elapsed() / n);
}
