#![allow(clippy::unwrap_used)]
//! RFC 4475 (SIP torture test messages), category by category.
//!
//! The messages are our own, written for each RFC 4475 category; they live
//! in `tests/corpus/valid/NAME.sip` and `tests/corpus/invalid/NAME.sip`,
//! stored with LF line endings. `common::load` converts every "\n" to
//! "\r\n" when loading them. Cases needing bytes a text file cannot hold
//! are built in Rust below or in `common`.

mod common;

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use sip_message::typed::{ContactParams, Contacts, NameAddr};
use sip_message::{HeaderName, Host, Known, LimitKind, Limits, Message, Method, ParseError, SipUri, Uri, UriError};

use common::load;

fn valid(name: &str) -> Message {
    Message::parse(load("valid", name)).unwrap_or_else(|e| panic!("valid/{name}.sip: {e:?}"))
}

fn invalid(name: &str) -> ParseError {
    match Message::parse(load("invalid", name)) {
        Ok(m) => panic!("invalid/{name}.sip parsed: {m}"),
        Err(e) => e,
    }
}

fn ruri(msg: &Message) -> Uri<'_> {
    Uri::parse(msg.request_uri().unwrap()).unwrap()
}

fn sip<'a>(uri: &'a Uri<'a>, file: &str) -> &'a SipUri<'a> {
    uri.as_sip().unwrap_or_else(|| panic!("{file}: not a sip URI: {uri:?}"))
}

fn contacts<'a>(msg: &'a Message, file: &str) -> Vec<NameAddr<'a>> {
    match msg.contacts() {
        Ok(Contacts::List(l)) => l,
        other => panic!("{file}: contacts: {other:?}"),
    }
}

fn v4(s: &str) -> Host<'static> {
    Host::V4(s.parse::<Ipv4Addr>().unwrap())
}

fn v6(s: &str) -> Host<'static> {
    Host::V6(s.parse::<Ipv6Addr>().unwrap())
}

// ---------------------------------------------------------------- valid --

#[test]
fn every_valid_corpus_file_parses() {
    for (label, bytes) in common::valid_cases() {
        if let Err(e) = Message::parse(bytes) {
            panic!("{label}: {e:?}");
        }
    }
}

#[test]
fn wsinv_tortuous_whitespace() {
    let f = "valid/wsinv.sip";
    let m = valid("wsinv");
    assert_eq!(m.method(), Some(&Method::Invite), "{f}");
    let u = ruri(&m);
    let u = sip(&u, f);
    assert_eq!(u.user, Some("harold"), "{f}");
    assert_eq!(u.host, Host::Name("tortuous.example.com"), "{f}");
    assert!(u.params.contains("oddparam"), "{f}");

    let vias: Vec<_> = m.vias().collect::<Result<_, _>>().unwrap();
    assert_eq!(vias.len(), 3, "{f}");
    assert_eq!(vias[0].transport, "UDP", "{f}");
    assert_eq!(vias[0].host, v4("192.0.2.7"), "{f}");
    assert_eq!(vias[0].port, None, "{f}");
    assert_eq!(vias[0].branch(), Some("z9hG4bKws1nv"), "{f}");
    assert_eq!(vias[1].transport, "TCP", "{f}");
    assert_eq!(vias[1].host, Host::Name("loom.example.org"), "{f}");
    assert_eq!(vias[1].branch(), Some("z9hG4bKloom77"), "{f}");
    assert_eq!(vias[2].transport, "UDP", "{f}");
    assert_eq!(vias[2].host, v4("198.51.100.23"), "{f}");
    assert_eq!(vias[2].branch(), Some("z9hG4bKsecond44"), "{f}");

    let to = m.to_header().unwrap();
    assert_eq!(to.display, None, "{f}");
    assert_eq!(to.tag(), Some("8812yy77"), "{f}");
    assert_eq!(sip(&to.uri, f).user, Some("harold"), "{f}");
    let from = m.from_header().unwrap();
    assert_eq!(
        from.display_name(),
        Some(Cow::Borrowed(r#"Maude "The Arbiter" \Q\"#)),
        "{f}"
    );
    assert_eq!(from.tag(), Some("ws0kkd3"), "{f}");
    assert_eq!(m.max_forwards(), Ok(Some(42)), "{f}");
    assert_eq!(m.call_id(), Ok("wsinv.q83hsd@192.0.2.7"), "{f}");
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (17, Method::Invite), "{f}");
    assert_eq!(m.known_header(Known::Subject), Some(""), "{f}");
    assert_eq!(
        m.header("oddlynamedheader"),
        Some("first part of a value continued on a second line"),
        "{f}"
    );
    assert_eq!(m.header("WeirdSeparators"), Some(";;,,;;,;"), "{f}");

    let c = contacts(&m, f);
    assert_eq!(c.len(), 1, "{f}");
    assert_eq!(c[0].display_name(), Some(Cow::Borrowed(r#"Quote "me" twice"#)), "{f}");
    assert_eq!(c[0].q(), Some(250), "{f}");
    assert_eq!(c[0].params.value("extparam"), Some("extvalue"), "{f}");
    assert!(c[0].params.contains("flagparam"), "{f}");

    let routes = m.routes().unwrap();
    assert_eq!(routes.len(), 1, "{f}");
    let r = sip(&routes[0].uri, f);
    assert_eq!(r.host, Host::Name("edge.example.org"), "{f}");
    assert!(r.params.contains("lr") && r.params.contains("bare-flag"), "{f}");
    assert_eq!(r.params.value("someparam"), Some("val"), "{f}");

    // Names stay as received, case and compact form included.
    let names: Vec<_> = m.headers().map(|h| (h.name, h.known)).collect();
    assert_eq!(names[0], ("TO", Some(Known::To)), "{f}");
    assert_eq!(names[1], ("from", Some(Known::From)), "{f}");
    assert_eq!(names[2], ("MaX-fOrWaRdS", Some(Known::MaxForwards)), "{f}");
    assert!(names.contains(&("s", Some(Known::Subject))), "{f}");
    assert!(names.contains(&("v", Some(Known::Via))), "{f}");
    assert!(names.contains(&("m", Some(Known::Contact))), "{f}");

    assert!(m.content_type().unwrap().unwrap().is("application", "sdp"), "{f}");
    assert!(m.body().starts_with(b"v=0\r\no=maude"), "{f}");
    assert_eq!(Some(m.body().len()), m.content_length(), "{f}");
}

#[test]
fn intmeth_extension_method() {
    let f = "valid/intmeth.sip";
    let m = valid("intmeth");
    let name = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(&Method::Extension(name.into())), "{f}");
    let cseq = m.cseq().unwrap();
    assert_eq!(cseq.seq, 424_242, "{f}");
    assert_eq!(cseq.method.as_str(), name, "{f}");
    let u = ruri(&m);
    let u = sip(&u, f);
    assert_eq!(u.user, Some("odd.user~(really!)&isn't+it$/strange?,/;;*"), "{f}");
    assert_eq!(u.password, Some("&has=1,pa$$~w_d.(ok)"), "{f}");
    assert_eq!(u.host, Host::Name("example.net"), "{f}");
    let via = m.top_via().unwrap();
    assert_eq!(via.transport, "TCP", "{f}");
    assert_eq!(via.branch(), Some("z9hG4bK-~'`+_*%.!x"), "{f}");
    let to = m.to_header().unwrap();
    assert_eq!(to.display_name(), Some(Cow::Borrowed("Tab:\tQuote:\" Slash:\\")), "{f}");
    assert_eq!(to.tag(), None, "{f}");
    let from = m.from_header().unwrap();
    assert_eq!(from.display, Some("tok1~` tok2'+_ tok3*%!.-"), "{f}");
    assert_eq!(from.tag(), Some("_t~1'+`*%!-."), "{f}");
    assert_eq!(from.params.value("weird''~+*_!.-%"), Some("\"still fine\""), "{f}");
    assert_eq!(m.call_id(), Ok("intmeth.w%QZ-!.*_+'@w`~)(><:\\/\"][?}{"), "{f}");
    assert_eq!(m.max_forwards(), Ok(Some(255)), "{f}");
    assert_eq!(m.header("x-ext-!.%*+_`'~"), Some("Grüße 日本"), "{f}");
    assert!(m.body().is_empty(), "{f}");
}

#[test]
fn esc01_escaped_request_uri_user() {
    let f = "valid/esc01.sip";
    let m = valid("esc01");
    let u = ruri(&m);
    let u = sip(&u, f);
    assert_eq!(u.user, Some("sips%3Aalice%40example.org"), "{f}");
    assert_eq!(u.user_decoded().as_deref(), Some("sips:alice@example.org"), "{f}");
    assert_eq!(u.host, Host::Name("gateway.example.net"), "{f}");
    let to = m.to_header().unwrap();
    assert_eq!(sip(&to.uri, f).user_decoded().as_deref(), Some("alice"), "{f}");
    let from = m.from_header().unwrap();
    assert_eq!(sip(&from.uri, f).user_decoded().as_deref(), Some("bob"), "{f}");
    assert_eq!(from.tag(), Some("esc01a"), "{f}");
    let c = contacts(&m, f);
    assert_eq!(c.len(), 1, "{f}");
    let cu = sip(&c[0].uri, f);
    assert_eq!(cu.user_decoded().as_deref(), Some("caller"), "{f}");
    assert_eq!(cu.params.value("maddr"), Some("198.51.100.4"), "{f}");
    assert!(m.body().starts_with(b"v=0\r\n"), "{f}");
    assert!(m.body().ends_with(b"RTP/AVP 0\r\n"), "{f}");
}

#[test]
fn escnull_percent_00_in_user() {
    let f = "valid/escnull.sip";
    let m = valid("escnull");
    assert_eq!(m.method(), Some(&Method::Register), "{f}");
    let u = ruri(&m);
    let u = sip(&u, f);
    assert_eq!(u.user, Some("null-%00-user"), "{f}");
    assert_eq!(u.user_decoded().as_deref(), Some("null-\0-user"), "{f}");
    let to = m.to_header().unwrap();
    assert_eq!(sip(&to.uri, f).user, Some("null-%00-user"), "{f}");
    let from = m.from_header().unwrap();
    assert_eq!(from.tag(), Some("nul8812"), "{f}");
    let c = contacts(&m, f);
    assert_eq!(c.len(), 2, "{f}");
    assert_eq!(sip(&c[0].uri, f).user_decoded().as_deref(), Some("\0"), "{f}");
    assert_eq!(sip(&c[1].uri, f).user_decoded().as_deref(), Some("\0\0"), "{f}");
    assert_eq!(m.content_length(), Some(0), "{f}");
    assert!(m.body().is_empty(), "{f}");
}

#[test]
fn esc02_percent_not_followed_by_hex() {
    let f = "valid/esc02.sip";
    let m = valid("esc02");
    // `%` is a token character: RE%47IST%45R is an extension method, not
    // REGISTER.
    let method = Method::Extension("RE%47IST%45R".into());
    assert_eq!(m.method(), Some(&method), "{f}");
    assert_eq!(m.cseq().unwrap().method, method, "{f}");
    assert_eq!(m.cseq().unwrap().seq, 29, "{f}");
    let to = m.to_header().unwrap();
    assert_eq!(to.display, Some("\"%Z%45\""), "{f}");
    assert_eq!(to.display_name().as_deref(), Some("%Z%45"), "{f}");
    let tu = sip(&to.uri, f);
    assert_eq!(tu.user, Some("bad%ZZescape"), "{f}");
    assert_eq!(tu.user_decoded().as_deref(), Some("bad%ZZescape"), "{f}");
    let c = contacts(&m, f);
    assert_eq!(c.len(), 2, "{f}");
    assert_eq!(sip(&c[0].uri, f).user, Some("100%"), "{f}");
    assert_eq!(sip(&c[0].uri, f).user_decoded().as_deref(), Some("100%"), "{f}");
    assert_eq!(sip(&c[1].uri, f).user_decoded().as_deref(), Some("user%4"), "{f}");
}

#[test]
fn lwsdisp_display_name_without_space() {
    let f = "valid/lwsdisp.sip";
    let m = valid("lwsdisp");
    let from = m.from_header().unwrap();
    assert_eq!(from.display, Some("caller"), "{f}");
    assert_eq!(from.tag(), Some("lws77"), "{f}");
    assert_eq!(sip(&from.uri, f).user, Some("caller"), "{f}");
    let to = m.to_header().unwrap();
    assert_eq!(to.display, Some("agent"), "{f}");
    assert_eq!(to.display_name().as_deref(), Some("agent"), "{f}");
    assert_eq!(m.cseq().unwrap().method, Method::Options, "{f}");
}

#[test]
fn longreq_long_values_and_many_vias() {
    let f = "valid/longreq.sip";
    let m = valid("longreq");
    let u = ruri(&m);
    let u = sip(&u, f);
    let user = format!("long{}user", "x".repeat(900));
    assert_eq!(u.user, Some(user.as_str()), "{f}");
    let vias: Vec<_> = m.vias().collect::<Result<_, _>>().unwrap();
    assert_eq!(vias.len(), 30, "{f}");
    for (i, v) in vias.iter().enumerate() {
        assert_eq!(v.host.to_string(), format!("hop{i}.example.com"), "{f}");
        assert_eq!(v.port, Some(5060 + i as u16), "{f}");
        let branch = format!("z9hG4bKlong{i:02}{}", "b".repeat(100));
        assert_eq!(v.branch(), Some(branch.as_str()), "{f}");
    }
    let to = m.to_header().unwrap();
    assert_eq!(to.tag().map(str::len), Some(1501), "{f}");
    assert_eq!(
        to.display_name().as_deref(),
        Some("Long Name ".repeat(60).as_str()),
        "{f}"
    );
    assert_eq!(m.from_header().unwrap().tag(), Some("f".repeat(1200).as_str()), "{f}");
    assert_eq!(m.call_id().unwrap().len(), 8 + 1800 + 12, "{f}");
    assert_eq!(m.header("X-Long-Header").map(str::len), Some(7000), "{f}");
    let c = contacts(&m, f);
    assert_eq!(sip(&c[0].uri, f).user.map(str::len), Some(1000), "{f}");
    assert_eq!(m.body().len(), 2066, "{f}");
    assert_eq!(m.content_length(), Some(2066), "{f}");
}

#[test]
fn dblreq_extra_bytes_after_content_length_are_dropped() {
    let f = "valid/dblreq.sip";
    let input = load("valid", "dblreq");
    let m = Message::parse(input.clone()).unwrap();
    assert_eq!(m.method(), Some(&Method::Register), "{f}");
    assert_eq!(m.content_length(), Some(0), "{f}");
    assert!(m.body().is_empty(), "{f}");
    assert_eq!(m.cseq().unwrap().method, Method::Register, "{f}");
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKdblreq1"), "{f}");
    assert_eq!(m.from_header().unwrap().tag(), Some("dbl43"), "{f}");
    let out = m.to_bytes();
    assert!(out.len() < input.len(), "{f}");
    assert_eq!(&out[..], &input[..out.len()], "{f}");
    assert!(input[out.len()..].starts_with(b"INVITE sip:joe@"), "{f}");
}

#[test]
fn semiuri_semicolon_in_user_part() {
    let f = "valid/semiuri.sip";
    let m = valid("semiuri");
    let u = ruri(&m);
    let u = sip(&u, f);
    assert_eq!(u.user, Some("user;par=u%40example.net"), "{f}");
    assert_eq!(u.user_decoded().as_deref(), Some("user;par=u@example.net"), "{f}");
    assert_eq!(u.host, Host::Name("example.com"), "{f}");
    assert!(u.params.is_empty(), "{f}");
    assert!(!u.params.contains("par"), "{f}");
    let accept: Vec<_> = m
        .accept()
        .unwrap()
        .iter()
        .map(|t| format!("{}/{}", t.kind, t.subtype))
        .collect();
    assert_eq!(
        accept,
        [
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ],
        "{f}"
    );
}

#[test]
fn transports_in_via() {
    let f = "valid/transports.sip";
    let m = valid("transports");
    let vias: Vec<_> = m.vias().collect::<Result<_, _>>().unwrap();
    let transports: Vec<_> = vias.iter().map(|v| v.transport).collect();
    assert_eq!(transports, ["UDP", "TCP", "TLS", "SCTP", "WS", "FUTURE-XP"], "{f}");
    let ports: Vec<_> = vias.iter().map(|v| v.port).collect();
    assert_eq!(
        ports,
        [Some(5060), Some(5060), Some(5061), None, None, Some(7000)],
        "{f}"
    );
    assert_eq!(vias[0].rport(), Some(None), "{f}");
    assert_eq!(vias[0].host, Host::Name("udp.example.com"), "{f}");
    assert_eq!(vias[4].host, Host::Name("df7jal23ls0d.invalid"), "{f}");
    assert_eq!(vias[4].received(), Some("203.0.113.9"), "{f}");
    assert_eq!(vias[4].rport(), Some(Some(50123)), "{f}");
    assert_eq!(vias[5].branch(), Some("z9hG4bKt-unknown"), "{f}");
    assert!(vias.iter().all(|v| v.has_rfc3261_branch()), "{f}");
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKt-udp"), "{f}");
}

#[test]
fn mpart01_binary_multipart_body() {
    let f = "mpart01 (built in Rust)";
    let m = Message::parse(common::mpart01()).unwrap();
    let ct = m.content_type().unwrap().unwrap();
    assert!(ct.is("multipart", "mixed"), "{f}");
    assert_eq!(ct.params.value("boundary"), Some("boundary42"), "{f}");
    assert_eq!(&m.body()[..], &common::mpart01_body()[..], "{f}");
    assert_eq!(m.content_length(), Some(m.body().len()), "{f}");
    assert_eq!(m.header("MIME-Version"), Some("1.0"), "{f}");
    assert_eq!(m.to_bytes(), common::mpart01(), "{f}");
}

#[test]
fn unreason_utf8_reason_phrase() {
    let f = "valid/unreason.sip";
    let m = valid("unreason");
    assert_eq!(m.status(), Some(200), "{f}");
    assert_eq!(
        m.reason(),
        Some("¡Listo! Ça marche — 成功 (ok?) [yes] & <done> \"quoted\" 100%"),
        "{f}"
    );
    assert_eq!(m.version(), "SIP/2.0", "{f}");
    assert_eq!(m.cseq().unwrap().method, Method::Invite, "{f}");
    assert_eq!(m.to_header().unwrap().tag(), Some("2229"), "{f}");
    assert_eq!(m.body().len(), 91, "{f}");
}

#[test]
fn noreason_empty_reason_phrase() {
    let f = "valid/noreason.sip";
    let m = valid("noreason");
    assert_eq!(m.status(), Some(100), "{f}");
    assert_eq!(m.reason(), Some(""), "{f}");
    assert_eq!(m.from_header().unwrap().tag(), Some("39ansfi3"), "{f}");
    assert_eq!(m.to_header().unwrap().tag(), Some("902jndnke3"), "{f}");
}

#[test]
fn ipv6_uri_via_and_received() {
    let f = "valid/ipv6.sip";
    let m = valid("ipv6");
    let u = ruri(&m);
    let u = sip(&u, f);
    assert_eq!(u.user, Some("alice"), "{f}");
    assert_eq!(u.host, v6("2001:db8::10"), "{f}");
    assert_eq!(u.port, Some(5070), "{f}");
    assert_eq!(u.transport(), Some("tcp"), "{f}");
    let vias: Vec<_> = m.vias().collect::<Result<_, _>>().unwrap();
    assert_eq!(vias.len(), 2, "{f}");
    assert_eq!(vias[0].host, v6("2001:db8::9"), "{f}");
    assert_eq!(vias[0].port, Some(5062), "{f}");
    assert_eq!(vias[0].sent_by, "[2001:db8::9]:5062", "{f}");
    assert_eq!(vias[0].transport, "TCP", "{f}");
    let received: Ipv6Addr = vias[0].received().unwrap().parse().unwrap();
    assert_eq!(received, "2001:db8::9".parse::<Ipv6Addr>().unwrap(), "{f}");
    assert_eq!(vias[0].rport(), Some(Some(5062)), "{f}");
    assert_eq!(vias[0].branch(), Some("z9hG4bKv6one"), "{f}");
    assert_eq!(vias[1].host, v6("2001:db8::20"), "{f}");
    assert_eq!(vias[1].port, None, "{f}");
    let from = m.from_header().unwrap();
    assert_eq!(sip(&from.uri, f).host, v6("2001:db8::9"), "{f}");
    assert_eq!(from.display_name().as_deref(), Some("V6 Caller"), "{f}");
    let c = contacts(&m, f);
    assert_eq!(sip(&c[0].uri, f).port, Some(5062), "{f}");
    assert_eq!(m.call_id(), Ok("ipv6.93kfj3@2001:db8::9"), "{f}");
}

#[test]
fn tel_request_uri() {
    let f = "valid/tel.sip";
    let m = valid("tel");
    match ruri(&m) {
        Uri::Tel(t) => {
            assert_eq!(t.number, "+1-201-555-0123", "{f}");
            assert_eq!(t.params.value("phone-context"), Some("example.com"), "{f}");
        }
        other => panic!("{f}: {other:?}"),
    }
    assert_eq!(m.to_header().unwrap().uri.scheme(), "tel", "{f}");
}

#[test]
fn unknown_scheme_request_uri() {
    let f = "valid/unksm.sip";
    let m = valid("unksm");
    assert_eq!(
        ruri(&m),
        Uri::Absolute {
            scheme: "nobodyknows",
            rest: "this-is-a-uri-in-an-unknown-scheme"
        },
        "{f}"
    );
    assert_eq!(m.to_header().unwrap().uri.scheme(), "nobodyknows", "{f}");
    assert_eq!(m.content_length(), Some(0), "{f}");
}

#[test]
fn unknown_headers_kept_in_order() {
    let f = "valid/unkhdr.sip";
    let m = valid("unkhdr");
    let got: Vec<_> = m.headers().map(|h| (h.name, h.value, h.known)).collect();
    let want = [
        (
            "Via",
            "SIP/2.0/UDP client.example.com;branch=z9hG4bKunk01",
            Some(Known::Via),
        ),
        ("X-First", "one", None),
        ("To", "<sip:bob@example.com>", Some(Known::To)),
        ("X-Second", "two, with, commas", None),
        ("From", "<sip:alice@example.com>;tag=unkh", Some(Known::From)),
        ("x-first", "again", None),
        ("Call-ID", "unkhdr.23hd@client.example.com", Some(Known::CallId)),
        ("P-Odd-Header", "\"quoted ; stuff\" <sip:x@y>", None),
        ("CSeq", "12 MESSAGE", Some(Known::CSeq)),
        ("Max-Forwards", "70", Some(Known::MaxForwards)),
        ("Y-Last", "last", None),
        ("Content-Type", "text/plain", Some(Known::ContentType)),
        ("Content-Length", "11", Some(Known::ContentLength)),
    ];
    assert_eq!(got, want, "{f}");
    let xf = HeaderName::new("X-FIRST");
    assert_eq!(m.header_fields(&xf).collect::<Vec<_>>(), ["one", "again"], "{f}");
    assert_eq!(m.header("x-first"), Some("one"), "{f}");
    assert_eq!(&m.body()[..], b"hello bob\r\n", "{f}");
}

#[test]
fn empty_header_values() {
    let f = "valid/emptyhdr.sip";
    let m = valid("emptyhdr");
    assert_eq!(m.known_header(Known::Subject), Some(""), "{f}");
    assert_eq!(m.known_header(Known::Organization), Some(""), "{f}");
    assert_eq!(m.header("X-Empty"), Some(""), "{f}");
    assert_eq!(m.known_header(Known::Supported), Some(""), "{f}");
    assert_eq!(m.tokens(Known::Supported).count(), 0, "{f}");
    assert_eq!(m.headers().len(), 11, "{f}");
}

#[test]
fn unknown_status_codes_499_and_699() {
    for code in [499u16, 699] {
        let f = format!("valid/resp{code}.sip");
        let m = valid(&format!("resp{code}"));
        assert_eq!(m.status(), Some(code), "{f}");
        assert_eq!(m.reason(), Some("Something New"), "{f}");
        let via = m.top_via().unwrap();
        assert_eq!(via.received(), Some("192.0.2.61"), "{f}");
        let branch = format!("z9hG4bKresp{code}");
        assert_eq!(via.branch(), Some(branch.as_str()), "{f}");
        let tag = format!("r{code}");
        assert_eq!(m.to_header().unwrap().tag(), Some(tag.as_str()), "{f}");
    }
}

#[test]
fn contact_star_with_expires_zero() {
    let f = "valid/star.sip";
    let m = valid("star");
    assert_eq!(m.contacts(), Ok(Contacts::Star), "{f}");
    assert_eq!(m.expires(), Ok(Some(0)), "{f}");
    assert_eq!(m.top_via().unwrap().port, Some(5060), "{f}");
    assert_eq!(m.method(), Some(&Method::Register), "{f}");
}

#[test]
fn comma_combined_via_route_contact_allow() {
    let f = "valid/combined.sip";
    let m = valid("combined");
    let vias: Vec<_> = m.vias().collect::<Result<_, _>>().unwrap();
    let branches: Vec<_> = vias.iter().map(|v| v.branch().unwrap()).collect();
    assert_eq!(branches, ["z9hG4bKcomb1", "z9hG4bKcomb2", "z9hG4bKcomb3"], "{f}");
    assert_eq!(vias[1].transport, "TCP", "{f}");
    assert_eq!(vias[1].port, Some(5070), "{f}");
    assert_eq!(vias[1].received(), Some("192.0.2.80"), "{f}");

    let routes = m.routes().unwrap();
    let hosts: Vec<_> = routes.iter().map(|r| sip(&r.uri, f).host.to_string()).collect();
    assert_eq!(hosts, ["p3.example.com", "p4.example.com", "p5.example.com"], "{f}");
    assert_eq!(routes[1].display_name().as_deref(), Some("Proxy, Four"), "{f}");

    let c = contacts(&m, f);
    assert_eq!(c.len(), 3, "{f}");
    assert_eq!(
        c.iter().map(|c| c.q()).collect::<Vec<_>>(),
        [Some(700), Some(300), None],
        "{f}"
    );
    assert_eq!(c[0].expires(), Some(3600), "{f}");
    assert_eq!(c[1].display_name().as_deref(), Some("Alice Mobile"), "{f}");
    assert_eq!(sip(&c[1].uri, f).transport(), Some("tcp"), "{f}");
    assert_eq!(c[2].display, None, "{f}");
    assert_eq!(sip(&c[2].uri, f).host, Host::Name("desk.example.com"), "{f}");

    let allow: Vec<_> = m.tokens(Known::Allow).collect();
    assert_eq!(allow, ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"], "{f}");
    assert_eq!(m.max_forwards(), Ok(Some(68)), "{f}");
}

#[test]
fn every_compact_form() {
    let f = "valid/compact.sip";
    let m = valid("compact");
    let expected = [
        ("v", Known::Via),
        ("f", Known::From),
        ("t", Known::To),
        ("i", Known::CallId),
        ("m", Known::Contact),
        ("a", Known::AcceptContact),
        ("j", Known::RejectContact),
        ("d", Known::RequestDisposition),
        ("b", Known::ReferredBy),
        ("r", Known::ReferTo),
        ("e", Known::ContentEncoding),
        ("s", Known::Subject),
        ("k", Known::Supported),
        ("o", Known::Event),
        ("u", Known::AllowEvents),
        ("x", Known::SessionExpires),
        ("y", Known::Identity),
        ("n", Known::IdentityInfo),
        ("c", Known::ContentType),
        ("l", Known::ContentLength),
    ];
    let compact: Vec<_> = m
        .headers()
        .filter(|h| h.name.len() == 1)
        .map(|h| (h.name, h.known.unwrap_or_else(|| panic!("{f}: {} unknown", h.name))))
        .collect();
    assert_eq!(compact, expected, "{f}");
    for h in m.headers().filter(|h| h.name.len() == 1) {
        let k = h.known.unwrap();
        assert_eq!(h.canonical_name(), k.as_str(), "{f}");
        assert_eq!(k.compact().map(String::from).as_deref(), Some(h.name), "{f}");
    }
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKcompact"), "{f}");
    assert_eq!(m.from_header().unwrap().tag(), Some("cmp1"), "{f}");
    assert_eq!(m.to_header().unwrap().display, Some("Bob"), "{f}");
    assert_eq!(m.call_id(), Ok("compact.8sd7@pc.example.com"), "{f}");
    assert_eq!(contacts(&m, f).len(), 1, "{f}");
    assert_eq!(m.event().unwrap().unwrap().package, "presence", "{f}");
    assert_eq!(
        m.tokens(Known::Supported).collect::<Vec<_>>(),
        ["timer", "100rel"],
        "{f}"
    );
    assert_eq!(
        m.tokens(Known::AllowEvents).collect::<Vec<_>>(),
        ["presence", "dialog"],
        "{f}"
    );
    assert_eq!(m.known_header(Known::Subject), Some("All compact forms"), "{f}");
    assert!(m.content_type().unwrap().unwrap().is("text", "plain"), "{f}");
    assert_eq!(m.addresses(Known::ReferTo).unwrap().len(), 1, "{f}");
    assert_eq!(m.addresses(Known::ReferredBy).unwrap().len(), 1, "{f}");
    assert_eq!(&m.body()[..], b"compact body\r\n", "{f}");
    assert_eq!(m.content_length(), Some(14), "{f}");
}

#[test]
fn regaut01_unknown_authorization_scheme() {
    let f = "valid/regaut01.sip";
    let m = valid("regaut01");
    let creds = m.credentials(Known::Authorization).unwrap();
    assert_eq!(creds.len(), 2, "{f}");
    assert_eq!(creds[0].scheme, "NoOneKnowsThisScheme", "{f}");
    assert!(!creds[0].is_digest(), "{f}");
    assert_eq!(creds[0].get("opaque-data").as_deref(), Some("here"), "{f}");
    assert_eq!(creds[0].get("more").as_deref(), Some("stuff, with comma"), "{f}");
    assert!(creds[1].is_digest(), "{f}");
    assert_eq!(creds[1].get("username").as_deref(), Some("dana"), "{f}");
    assert_eq!(creds[1].get("uri").as_deref(), Some("sip:example.com"), "{f}");
    let reasons = m.reasons().unwrap();
    assert_eq!(reasons.len(), 2, "{f}");
    assert_eq!(reasons[0].protocol, "SIP", "{f}");
    assert_eq!(reasons[0].cause(), Some(200), "{f}");
    assert_eq!(reasons[0].text().as_deref(), Some("Call completed elsewhere"), "{f}");
    assert_eq!(reasons[1].protocol, "Q.850", "{f}");
    assert_eq!(reasons[1].cause(), Some(16), "{f}");
    let ev = m.event().unwrap().unwrap();
    assert_eq!((ev.package, ev.id()), ("reg", Some("7")), "{f}");
    let c = contacts(&m, f);
    assert_eq!(c.len(), 1, "{f}");
    assert_eq!(c[0].expires(), Some(600), "{f}");
    assert_eq!(c[0].reg_id(), Some(1), "{f}");
    assert_eq!(
        c[0].sip_instance(),
        Some("\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\""),
        "{f}"
    );
    assert_eq!(sip(&c[0].uri, f).transport(), Some("tcp"), "{f}");
    assert_eq!(m.top_via().unwrap().transport, "TCP", "{f}");
}

#[test]
fn novelsc_known_but_atypical_scheme() {
    let f = "valid/novelsc.sip";
    let m = valid("novelsc");
    assert_eq!(
        ruri(&m),
        Uri::Absolute {
            scheme: "soap.beep",
            rest: "//192.0.2.103:3002"
        },
        "{f}"
    );
}

#[test]
fn unksm2_unknown_schemes_in_header_fields() {
    let f = "valid/unksm2.sip";
    let m = valid("unksm2");
    let to = m.to_header().unwrap();
    assert_eq!(
        to.uri,
        Uri::Absolute {
            scheme: "isbn",
            rest: "9780000000002"
        },
        "{f}"
    );
    let from = m.from_header().unwrap();
    assert_eq!(from.uri.scheme(), "http", "{f}");
    assert_eq!(from.tag(), Some("unk2x"), "{f}");
    let c = contacts(&m, f);
    assert_eq!(
        c[0].uri,
        Uri::Absolute {
            scheme: "name",
            rest: "Some_Body"
        },
        "{f}"
    );
}

#[test]
fn cparam_contact_parameters_header_vs_uri() {
    let f = "valid/cparam.sip";
    let m = valid("cparam");
    let c = contacts(&m, f);
    assert_eq!(c.len(), 2, "{f}");
    // addr-spec form: the parameter belongs to the header field.
    assert!(c[0].params.contains("unknownparam"), "{f}");
    assert!(!sip(&c[0].uri, f).params.contains("unknownparam"), "{f}");
    assert_eq!(sip(&c[0].uri, f).user, Some("+19725550101"), "{f}");
    // name-addr form: inside the brackets it belongs to the URI.
    assert!(!c[1].params.contains("unknownparam"), "{f}");
    assert!(sip(&c[1].uri, f).params.contains("unknownparam"), "{f}");
    assert_eq!(c[1].params.value("otherparam"), Some("v"), "{f}");
}

#[test]
fn regescrt_escaped_headers_in_bracketed_contact() {
    let f = "valid/regescrt.sip";
    let m = valid("regescrt");
    let c = contacts(&m, f);
    assert_eq!(
        sip(&c[0].uri, f).headers,
        Some("Route=%3Csip:sip.example.com%3E"),
        "{f}"
    );
}

#[test]
fn regbadct_unbracketed_contact_with_headers_is_refused_when_read() {
    // RFC 4475 3.1.2.13: a Contact addr-spec with `?headers` must be in
    // angle brackets. Contact is not one of the fields every element must
    // understand, so the message parses; reading the Contact refuses it.
    let f = "regbadct (built in Rust)";
    let m = Message::parse(base_with(
        b"Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E\r\n",
        b"",
    ))
    .unwrap();
    let e = m.contacts().unwrap_err();
    assert!(matches!(e, ParseError::Uri(UriError::HeadersNotAllowed)), "{f}: {e:?}");
    assert_eq!(e.status(), 400, "{f}");
}

#[test]
fn zeromf_max_forwards_zero() {
    let f = "valid/zeromf.sip";
    assert_eq!(valid("zeromf").max_forwards(), Ok(Some(0)), "{f}");
}

#[test]
fn bcast_broadcast_via() {
    let f = "valid/bcast.sip";
    let m = valid("bcast");
    let vias: Vec<_> = m.vias().collect::<Result<_, _>>().unwrap();
    assert_eq!(vias[0].received(), Some("255.255.255.255"), "{f}");
    assert_eq!(vias[1].host, v4("255.255.255.255"), "{f}");
}

#[test]
fn baddate_is_not_validated() {
    // RFC 4475 3.1.2.12: Date with a non-GMT zone. The parser does not read
    // Date, so the message is accepted and the value kept as received.
    let f = "valid/baddate.sip";
    let m = valid("baddate");
    assert_eq!(
        m.known_header(Known::Date),
        Some("Fri, 01 Jan 2010 16:00:00 EST"),
        "{f}"
    );
}

#[test]
fn bext01_unknown_option_tags() {
    let f = "valid/bext01.sip";
    let m = valid("bext01");
    assert_eq!(
        m.tokens(Known::Require).collect::<Vec<_>>(),
        ["nothingSupportsThis", "nothingSupportsThisEither"],
        "{f}"
    );
    assert_eq!(
        m.tokens(Known::ProxyRequire).collect::<Vec<_>>(),
        ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"],
        "{f}"
    );
    assert_eq!(m.top_via().unwrap().transport, "TLS", "{f}");
}

#[test]
fn invut_unknown_content_type() {
    let f = "valid/invut.sip";
    let m = valid("invut");
    assert!(
        m.content_type().unwrap().unwrap().is("application", "unknownformat"),
        "{f}"
    );
    assert_eq!(
        &m.body()[..],
        b"<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n",
        "{f}"
    );
}

// -------------------------------------------------------------- invalid --

/// Every invalid corpus file is refused, and each is covered by a case
/// below.
#[test]
fn every_invalid_corpus_file_is_refused() {
    for name in common::names("invalid") {
        let e = invalid(&name);
        assert!(matches!(e.status(), 400 | 505 | 513), "invalid/{name}.sip: {e:?}");
    }
}

fn check(name: &str, ok: impl Fn(&ParseError) -> bool, status: u16) {
    let e = invalid(name);
    assert!(ok(&e), "invalid/{name}.sip: unexpected error {e:?}");
    assert_eq!(e.status(), status, "invalid/{name}.sip: {e:?}");
}

/// An invalid corpus file, a test for the error it must give, and the
/// response status that error calls for.
type InvalidCase = (&'static str, fn(&ParseError) -> bool, u16);

#[test]
fn invalid_corpus() {
    use ParseError as E;
    let cases: Vec<InvalidCase> = vec![
        ("badinv01", |e| matches!(e, E::BadHeader { header: "Via", .. }), 400),
        (
            "clerr",
            |e| matches!(e, E::BodyTooShort { declared: 9999, actual } if *actual < 9999),
            400,
        ),
        (
            "scalar02",
            |e| {
                matches!(
                    e,
                    E::BadHeader {
                        header: "Content-Length",
                        ..
                    }
                )
            },
            400,
        ),
        (
            "clnonnum",
            |e| {
                matches!(
                    e,
                    E::BadHeader {
                        header: "Content-Length",
                        ..
                    }
                )
            },
            400,
        ),
        ("cldouble", |e| matches!(e, E::Conflicting("Content-Length")), 400),
        (
            "scalarlg-cseq",
            |e| matches!(e, E::BadHeader { header: "CSeq", .. }),
            400,
        ),
        (
            "scalarlg-maxfwd",
            |e| {
                matches!(
                    e,
                    E::BadHeader {
                        header: "Max-Forwards",
                        ..
                    }
                )
            },
            400,
        ),
        (
            "scalarlg-port",
            |e| matches!(e, E::BadHeader { header: "Via", .. }),
            400,
        ),
        (
            "scalarlg-cl",
            |e| {
                matches!(
                    e,
                    E::BadHeader {
                        header: "Content-Length",
                        ..
                    }
                )
            },
            400,
        ),
        (
            "quotbal",
            |e| matches!(e, E::BadHeader { header: "To", reason } if reason.contains("quot")),
            400,
        ),
        ("ltgtruri", |e| matches!(e, E::Uri(UriError::Bracketed)), 400),
        ("lwsruri", |e| matches!(e, E::Uri(UriError::Whitespace)), 400),
        ("lwsstart", |e| matches!(e, E::StartLine(_)), 400),
        ("trws", |e| matches!(e, E::StartLine(_)), 400),
        ("escruri", |e| matches!(e, E::Uri(UriError::HeadersNotAllowed)), 400),
        ("badaspec", |e| matches!(e, E::Uri(UriError::HeadersNotAllowed)), 400),
        ("badaspec2", |e| matches!(e, E::Uri(UriError::Whitespace)), 400),
        ("baddn", |e| matches!(e, E::BadHeader { header: "From", .. }), 400),
        ("badvers", |e| matches!(e, E::Version), 505),
        (
            "mismatch01",
            |e| matches!(e, E::CSeqMismatch { cseq, method } if &**cseq == "INVITE" && &**method == "OPTIONS"),
            400,
        ),
        (
            "mismatch02",
            |e| matches!(e, E::CSeqMismatch { cseq, method } if &**cseq == "INVITE" && &**method == "NEWMETHOD"),
            400,
        ),
        ("bigcode", |e| matches!(e, E::StatusCode), 400),
        ("missing-via", |e| matches!(e, E::MissingHeader("Via")), 400),
        ("missing-from", |e| matches!(e, E::MissingHeader("From")), 400),
        ("missing-to", |e| matches!(e, E::MissingHeader("To")), 400),
        ("missing-call-id", |e| matches!(e, E::MissingHeader("Call-ID")), 400),
        ("missing-cseq", |e| matches!(e, E::MissingHeader("CSeq")), 400),
        ("twoto", |e| matches!(e, E::Conflicting("To")), 400),
        ("twocallid", |e| matches!(e, E::Conflicting("Call-ID")), 400),
        ("nocolon", |e| matches!(e, E::MissingColon { line: 8 }), 400),
        // 3.1.2.5: a response with an overlarge CSeq.
        ("scalarlg", |e| matches!(e, E::BadHeader { header: "CSeq", .. }), 400),
        // 3.3.8: several single-valued fields twice.
        (
            "multi01",
            |e| matches!(e, E::Conflicting("CSeq" | "Call-ID" | "From" | "To" | "Max-Forwards")),
            400,
        ),
    ];
    let mut covered: Vec<&str> = cases.iter().map(|c| c.0).collect();
    for (name, ok, status) in cases {
        check(name, ok, status);
    }
    covered.sort_unstable();
    let files = common::names("invalid");
    assert_eq!(covered, files, "every invalid corpus file has an expected error");
}

#[test]
fn badvers_in_a_response_is_505_too() {
    let raw = "SIP/7.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\n\
From: <sip:c@d>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    let e = Message::parse(Bytes::from(raw)).unwrap_err();
    assert!(
        matches!(e, ParseError::Version),
        "badvers (response, built in Rust): {e:?}"
    );
    assert_eq!(e.status(), 505, "badvers (response, built in Rust)");
}

/// A valid message with `extra` headers inserted before Content-Length.
fn base_with(extra: &[u8], body: &[u8]) -> Bytes {
    let mut v = Vec::new();
    v.extend_from_slice(
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.3;branch=z9hG4bKbuilt\r\n\
To: <sip:bob@example.com>\r\n\
From: <sip:alice@example.com>;tag=b1\r\n\
Call-ID: built.1@192.0.2.3\r\n\
CSeq: 1 OPTIONS\r\n\
Max-Forwards: 70\r\n",
    );
    v.extend_from_slice(extra);
    v.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    v.extend_from_slice(body);
    Bytes::from(v)
}

#[test]
fn base_message_is_valid() {
    Message::parse(base_with(b"", b"")).unwrap();
    Message::parse(base_with(b"Subject: caf\xc3\xa9\r\n", b"x")).unwrap();
}

#[test]
fn non_utf8_byte_in_header_value() {
    let f = "notutf8 (built in Rust)";
    let bytes = base_with(b"Subject: caf\xff\r\n", b"");
    let offset = bytes.iter().position(|b| *b == 0xff).unwrap();
    let e = Message::parse(bytes).unwrap_err();
    assert!(
        matches!(e, ParseError::NotUtf8 { offset: o } if o == offset),
        "{f}: {e:?}"
    );
    assert_eq!(e.status(), 400, "{f}");
}

#[test]
fn body_over_limit() {
    let f = "bodylimit (built in Rust)";
    let limits = Limits {
        max_body_bytes: 100,
        ..Limits::default()
    };
    Message::parse_with(base_with(b"", &[b'x'; 100]), &limits).unwrap();
    let e = Message::parse_with(base_with(b"", &[b'x'; 101]), &limits).unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Limit {
                what: LimitKind::BodySize,
                limit: 100
            }
        ),
        "{f}: {e:?}"
    );
    assert_eq!(e.status(), 513, "{f}");
}

#[test]
fn too_many_headers() {
    let f = "headercount (built in Rust)";
    let limits = Limits {
        max_headers: 20,
        ..Limits::default()
    };
    // The base has 7 fields, Content-Length included.
    let thirteen: Vec<u8> = (0..13).flat_map(|i| format!("X-H{i}: v\r\n").into_bytes()).collect();
    let m = Message::parse_with(base_with(&thirteen, b""), &limits).unwrap();
    assert_eq!(m.headers().len(), 20, "{f}");
    let fourteen: Vec<u8> = (0..14).flat_map(|i| format!("X-H{i}: v\r\n").into_bytes()).collect();
    let e = Message::parse_with(base_with(&fourteen, b""), &limits).unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Limit {
                what: LimitKind::HeaderCount,
                limit: 20
            }
        ),
        "{f}: {e:?}"
    );
    assert_eq!(e.status(), 513, "{f}");
    // Over the default limit as well.
    let many: Vec<u8> = (0..200).flat_map(|i| format!("X-H{i}: v\r\n").into_bytes()).collect();
    let e = Message::parse(base_with(&many, b"")).unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Limit {
                what: LimitKind::HeaderCount,
                limit: 128
            }
        ),
        "{f}: {e:?}"
    );
}

#[test]
fn too_many_vias() {
    let f = "viacount (built in Rust)";
    let vias: Vec<u8> = (0..71)
        .flat_map(|i| format!("Via: SIP/2.0/UDP h{i}.example.com;branch=z9hG4bK{i}\r\n").into_bytes())
        .collect();
    let e = Message::parse(base_with(&vias, b"")).unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::Limit {
                what: LimitKind::ViaCount,
                limit: 70
            }
        ),
        "{f}: {e:?}"
    );
}

// ------------------------------------------------------ stream framing --

fn frame_one(bytes: &[u8]) -> Result<Option<sip_message::framing::Frame>, sip_message::framing::FrameError> {
    let mut f = sip_message::framing::StreamFramer::new(Limits::default());
    f.extend(bytes);
    f.next_frame()
}

/// wsinv allows LWS, line folding included, around the colon of any header,
/// Content-Length too: the stream framer must read the same Content-Length
/// the parser reads.
#[test]
fn wsinv_folded_content_length_frames_on_a_stream() {
    let f = "wsinv folded Content-Length (built in Rust)";
    let msg = base_with(b"", b"abcd");
    let text = String::from_utf8(msg.to_vec()).unwrap();
    let folded = text.replace("Content-Length: 4\r\n", "Content-Length:\r\n    4\r\n");
    let parsed = Message::parse(Bytes::from(folded.clone())).unwrap();
    assert_eq!(parsed.content_length(), Some(4), "{f}");
    let mut stream = folded.clone().into_bytes();
    stream.extend_from_slice(folded.as_bytes());
    let mut framer = sip_message::framing::StreamFramer::new(Limits::default());
    framer.extend(&stream);
    for _ in 0..2 {
        assert_eq!(
            framer.next_frame(),
            Ok(Some(sip_message::framing::Frame::Message(Bytes::from(folded.clone())))),
            "{f}"
        );
    }
    assert_eq!(framer.pending(), 0, "{f}");
}

/// A continuation line of another header that happens to read `l: 9` is
/// part of that header's value, not a Content-Length: framer and parser
/// must agree on where the message ends.
#[test]
fn folded_continuation_is_not_a_content_length_on_a_stream() {
    let f = "continuation looking like l: (built in Rust)";
    let msg = base_with(b"Subject: first line\r\n l: 9\r\n", b"abcd");
    let parsed = Message::parse(msg.clone()).unwrap();
    assert_eq!(parsed.known_header(Known::Subject), Some("first line l: 9"), "{f}");
    assert_eq!(parsed.content_length(), Some(4), "{f}");
    assert_eq!(
        frame_one(&msg),
        Ok(Some(sip_message::framing::Frame::Message(msg.clone()))),
        "{f}"
    );
}
