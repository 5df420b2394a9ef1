//! A plain loop over parse + cached typed access, for instruction counts
//! under `valgrind --tool=callgrind` (criterion's own work would blur them):
//!
//!     N=20000 valgrind --tool=callgrind target/release/examples/parse_loop

use bytes::Bytes;
use sip_message::Message;

#[path = "../benches/common/invite.rs"]
mod invite;

fn main() {
    let data = Bytes::from(invite::invite());
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
