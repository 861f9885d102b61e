// SPDX-License-Identifier: MPL-2.0
//! The muxer (inside rtmpsink) and the demuxer (inside rtmpsrc) through
//! `gst_check::Harness`, with no server and no outside program: H.264 and
//! AAC buffers in, FLV tags checked byte for byte and time for time, then
//! those tags through the demuxer and the same buffers, caps and times out
//! again.

use gst::prelude::*;
use gst::subclass::prelude::ObjectSubclassIsExt;
use gst_check::Harness;

use crate::rtmp::flv::{
    AacPacketType, AudioTag, AvcPacketType, FlvReader, FlvTag, VideoTag, tag_type,
};
use crate::rtmpsink::mux::RtmpSinkMux;
use crate::rtmpsrc::demux::RtmpSrcDemux;

fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| gst::init().expect("GStreamer"));
}

const MS: u64 = 1_000_000;
/// An avcC record (baseline, 320x240 SPS/PPS as x264 writes them).
const AVCC: &[u8] = &[
    1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, 0x0f, 0x67, 0x42, 0xc0, 0x1e, 0xda, 0x05, 0x07, 0xec, 0x04,
    0x40, 0, 0, 0x03, 0, 0x40, 1, 0, 4, 0x68, 0xce, 0x3c, 0x80,
];
/// An AudioSpecificConfig: AAC-LC, 44.1 kHz, stereo.
const ASC: &[u8] = &[0x12, 0x10];

fn h264_caps() -> gst::Caps {
    gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field("width", 320i32)
        .field("height", 240i32)
        .field("framerate", gst::Fraction::new(25, 1))
        .field("codec_data", gst::Buffer::from_slice(AVCC))
        .build()
}

fn aac_caps() -> gst::Caps {
    gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .field("rate", 44_100i32)
        .field("channels", 2i32)
        .field("codec_data", gst::Buffer::from_slice(ASC))
        .build()
}

/// One access unit or audio frame: its bytes and times (ms).
#[derive(Clone, Debug, PartialEq)]
struct Frame {
    data: Vec<u8>,
    dts: u64,
    pts: u64,
    key: bool,
}

/// Ten video frames, 40 ms apart, keyframes every five, B-frames
/// reordered (PTS two frames after DTS on some): a length-prefixed NAL
/// each, with a body that tells them apart.
fn video_frames() -> Vec<Frame> {
    (0..10u64)
        .map(|i| {
            let key = i % 5 == 0;
            let mut nal = vec![if key { 0x65 } else { 0x41 }];
            nal.extend((0..(200 + i * 37)).map(|b| (b * 7 + i) as u8));
            let mut data = (nal.len() as u32).to_be_bytes().to_vec();
            data.extend(nal);
            let dts = i * 40;
            let pts = if i % 2 == 1 { dts + 80 } else { dts + 40 };
            Frame {
                data,
                dts,
                pts,
                key,
            }
        })
        .collect()
}

/// Fifteen AAC frames, 23 ms apart (1024 samples at 44.1 kHz, rounded).
fn audio_frames() -> Vec<Frame> {
    (0..15u64)
        .map(|i| Frame {
            data: (0..(100 + i * 3)).map(|b| (b * 11 + i) as u8).collect(),
            dts: i * 23,
            pts: i * 23,
            key: true,
        })
        .collect()
}

fn buffer(f: &Frame) -> gst::Buffer {
    let mut b = gst::Buffer::from_slice(f.data.clone());
    let bm = b.get_mut().expect("writable");
    bm.set_dts(gst::ClockTime::from_nseconds(f.dts * MS));
    bm.set_pts(gst::ClockTime::from_nseconds(f.pts * MS));
    if !f.key {
        bm.set_flags(gst::BufferFlags::DELTA_UNIT);
    }
    b
}

/// Runs `frames` through the muxer (video on `video`, audio on `audio`)
/// and gives the FLV tags it wrote, in order.
fn mux(video: &[Frame], audio: &[Frame]) -> Vec<FlvTag> {
    init();
    mux_pads(vec![
        ("video", h264_caps(), video.to_vec()),
        ("audio", aac_caps(), audio.to_vec()),
    ])
}

/// Runs frames through the muxer on the pads named (with their caps) and
/// gives the FLV tags it wrote, in order.
fn mux_pads(pads: Vec<(&str, gst::Caps, Vec<Frame>)>) -> Vec<FlvTag> {
    init();
    let mux = gst::glib::Object::new::<RtmpSinkMux>();
    let el = mux.upcast_ref::<gst::Element>();
    let mut harnesses: Vec<Harness> = pads
        .iter()
        .enumerate()
        .map(|(i, (name, caps, _))| {
            let mut h = Harness::with_element(el, Some(name), (i == 0).then_some("src"));
            h.set_src_caps(caps.clone());
            h
        })
        .collect();
    // Each pad from a thread of its own, as upstream streaming threads do
    // (a pad whose queue is full waits until the others have brought data).
    let threads: Vec<_> = harnesses
        .iter()
        .zip(pads)
        .map(|(h, (_, _, frames))| {
            let pad = h.srcpad().expect("harness src pad");
            std::thread::spawn(move || {
                for f in &frames {
                    assert_eq!(pad.push(buffer(f)), Ok(gst::FlowSuccess::Ok));
                }
                assert!(pad.push_event(gst::event::Eos::new()));
            })
        })
        .collect();
    for t in threads {
        t.join().expect("feeding thread");
    }
    muxed_tags(&mut harnesses[0])
}

/// The FLV tags a muxer's harness (the one on its src pad) gives, up to EOS.
fn muxed_tags(h: &mut Harness) -> Vec<FlvTag> {
    // An FLV stream: the file header, then one tag a buffer.
    let mut reader = FlvReader::new(16 << 20);
    // Whichever feeding thread sends writes: everything up to EOS.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut eos = false;
    loop {
        while let Some(b) = h.try_pull() {
            reader.feed(&b.map_readable().expect("readable"));
        }
        if eos {
            break;
        }
        while let Some(e) = h.try_pull_event() {
            eos |= e.type_() == gst::EventType::Eos;
        }
        assert!(std::time::Instant::now() < end, "no EOS from the muxer");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut tags = Vec::new();
    while let Some(t) = reader.poll_tag().expect("valid FLV") {
        tags.push(t);
    }
    tags
}

#[test]
fn the_muxer_writes_each_frame_once_by_dts_with_headers_first() {
    let (video, audio) = (video_frames(), audio_frames());
    let tags = mux(&video, &audio);
    // Metadata, then both sequence headers, before any frame.
    assert_eq!(tags[0].tag_type, tag_type::SCRIPT);
    assert!(tags[0].data.windows(10).any(|w| w == b"onMetaData"));
    let mut got_v = Vec::new();
    let mut got_a = Vec::new();
    let mut headers = (false, false);
    let mut last_ts = 0;
    for t in &tags[1..] {
        assert!(
            t.timestamp >= last_ts,
            "DTS order: {} after {last_ts}",
            t.timestamp
        );
        last_ts = t.timestamp;
        match t.tag_type {
            tag_type::VIDEO => match VideoTag::parse(&t.data).expect("video tag") {
                VideoTag::Legacy(v) => match v.avc {
                    Some((AvcPacketType::SequenceHeader, _)) => {
                        assert!(got_v.is_empty(), "sequence header after frames");
                        assert_eq!(&v.data[..], AVCC);
                        headers.0 = true;
                    }
                    Some((AvcPacketType::Nalu, ct)) => got_v.push(Frame {
                        data: v.data.to_vec(),
                        dts: u64::from(t.timestamp),
                        pts: (i64::from(t.timestamp) + i64::from(ct)) as u64,
                        key: v.frame_type.is_key(),
                    }),
                    other => panic!("unexpected {other:?}"),
                },
                other => panic!("H.264 goes out as a legacy tag: {other:?}"),
            },
            tag_type::AUDIO => match AudioTag::parse(&t.data).expect("audio tag") {
                AudioTag::Legacy(a) => match a.aac_packet_type {
                    Some(AacPacketType::SequenceHeader) => {
                        assert!(got_a.is_empty());
                        assert_eq!(&a.data[..], ASC);
                        headers.1 = true;
                    }
                    Some(AacPacketType::Raw) => got_a.push(Frame {
                        data: a.data.to_vec(),
                        dts: u64::from(t.timestamp),
                        pts: u64::from(t.timestamp),
                        key: true,
                    }),
                    None => panic!("AAC without a packet type"),
                },
                other => panic!("AAC goes out as a legacy tag: {other:?}"),
            },
            other => panic!("unexpected tag type {other}"),
        }
    }
    assert_eq!(headers, (true, true));
    assert_eq!(
        got_v, video,
        "video frames: bytes, DTS, PTS (composition time), key flags"
    );
    assert_eq!(got_a, audio);
}

/// What the connection element does with each tag before the demuxer:
/// one tag a buffer, the FLV header in front of the first, stamped with
/// the tag's DTS as running time.
fn as_connection_gives(tags: &[FlvTag]) -> Vec<gst::Buffer> {
    tags.iter()
        .enumerate()
        .map(|(i, t)| {
            let mut bytes = Vec::new();
            if i == 0 {
                bytes.extend_from_slice(b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
            }
            let size = t.data.len() as u32;
            bytes.push(t.tag_type);
            bytes.extend_from_slice(&size.to_be_bytes()[1..]);
            bytes.extend_from_slice(&t.timestamp.to_be_bytes()[1..]);
            bytes.extend_from_slice(&[(t.timestamp >> 24) as u8, 0, 0, 0]);
            bytes.extend_from_slice(&t.data);
            bytes.extend_from_slice(&(size + 11).to_be_bytes());
            let mut b = gst::Buffer::from_slice(bytes);
            let ts = gst::ClockTime::from_nseconds(u64::from(t.timestamp) * MS);
            let bm = b.get_mut().expect("writable");
            bm.set_dts(ts);
            bm.set_pts(ts);
            b
        })
        .collect()
}

/// What came out of one of the demuxer's sometimes pads.
#[derive(Default)]
struct Out {
    frames: Vec<Frame>,
    /// Each frame's DTS in ns (`frames` has ms).
    dts_ns: Vec<u64>,
    /// The last caps, and every caps event in order.
    caps: Option<gst::Caps>,
    all_caps: Vec<gst::Caps>,
    /// Each stream-start: its stream id and group id.
    starts: Vec<(String, Option<gst::GroupId>)>,
    /// The stream id of the stream object each stream-start carried.
    start_streams: Vec<Option<String>>,
    /// Each stream collection: the ids of its streams.
    collections: Vec<Vec<String>>,
}

type Outs = std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Out>>>;

/// A sink pad template of ANY caps, for collecting pads: a pad without a
/// template takes no caps but its first (its caps query answers its
/// current caps).
fn any_sink_template() -> gst::PadTemplate {
    gst::PadTemplate::new(
        "sink",
        gst::PadDirection::Sink,
        gst::PadPresence::Always,
        &gst::Caps::new_any(),
    )
    .expect("template")
}

/// Links a collecting pad to each pad the demuxer adds (GstHarness of
/// GStreamer 1.22 takes no sometimes pads).
fn collect_pads(el: &gst::Element) -> Outs {
    let outs = Outs::default();
    let o = outs.clone();
    el.connect_pad_added(move |_, src| {
        let name = src.name().to_string();
        let (o1, o2, n1, n2) = (o.clone(), o.clone(), name.clone(), name.clone());
        let sink = gst::Pad::builder_from_template(&any_sink_template())
            .chain_function(move |_, _, b| {
                let frame = Frame {
                    data: b.map_readable().expect("readable").to_vec(),
                    dts: b.dts().expect("DTS").nseconds() / MS,
                    pts: b.pts().expect("PTS").nseconds() / MS,
                    key: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
                };
                let mut o = o1.lock().unwrap();
                let out = o.entry(n1.clone()).or_default();
                out.frames.push(frame);
                out.dts_ns.push(b.dts().expect("DTS").nseconds());
                Ok(gst::FlowSuccess::Ok)
            })
            .event_function(move |_, _, e| {
                let mut o = o2.lock().unwrap();
                let out = o.entry(n2.clone()).or_default();
                match e.view() {
                    gst::EventView::Caps(c) => {
                        out.caps = Some(c.caps_owned());
                        out.all_caps.push(c.caps_owned());
                    }
                    gst::EventView::StreamStart(s) => {
                        out.starts.push((s.stream_id().to_owned(), s.group_id()));
                        let id = s
                            .stream()
                            .and_then(|s| s.stream_id())
                            .map(|i| i.to_string());
                        out.start_streams.push(id);
                    }
                    gst::EventView::StreamCollection(c) => out.collections.push(
                        c.stream_collection()
                            .iter()
                            .filter_map(|s| s.stream_id().map(|i| i.to_string()))
                            .collect(),
                    ),
                    _ => {}
                }
                true
            })
            .build();
        sink.set_active(true).expect("active");
        src.link(&sink).expect("link");
        // Kept alive by the link; leaked on purpose for the test's length.
        std::mem::forget(sink);
    });
    outs
}

/// Runs `tags` through a demuxer as the connection gives them, then EOS:
/// what came out of each pad.
fn demux(tags: &[FlvTag]) -> Outs {
    let demux = gst::glib::Object::new::<RtmpSrcDemux>();
    let el = demux.upcast_ref::<gst::Element>();
    let outs = collect_pads(el);
    let mut h = Harness::with_element(el, Some("sink"), None);
    h.set_src_caps(crate::caps::flv_caps());
    for b in as_connection_gives(tags) {
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    outs
}

/// A player that joins a live stream through nginx-rtmp: the metadata
/// stamped 0, the media 27 s in, the audio's header and first frames
/// before the video's. The video pad comes first all the same (a launch
/// line `rtmpsrc ! decodebin ! videoconvert ! ...` takes the first pad
/// added), the audio's right after with every frame held for it, and
/// no-more-pads once both are there. Before, the wait for the tracks
/// counted from the metadata's 0: no-more-pads came after the audio pad
/// alone, and playbin played no video.
#[test]
fn joining_a_stream_the_video_pad_comes_first_and_both_before_no_more_pads() {
    const IN: u64 = 27_000;
    let (video, audio) = (video_frames(), audio_frames());
    let mut tags = mux(&video, &audio);
    for t in &mut tags {
        t.timestamp = match t.tag_type {
            tag_type::SCRIPT => 0,
            _ => t.timestamp + IN as u32,
        };
    }
    // The metadata, then the audio's header and first five frames, then
    // the rest as it was.
    let early = |t: &FlvTag| t.tag_type == tag_type::AUDIO && u64::from(t.timestamp) < IN + 100;
    let mut order: Vec<FlvTag> = tags
        .iter()
        .filter(|t| t.tag_type == tag_type::SCRIPT)
        .cloned()
        .collect();
    order.extend(tags.iter().filter(|t| early(t)).cloned());
    order.extend(
        tags.iter()
            .filter(|t| t.tag_type != tag_type::SCRIPT && !early(t))
            .cloned(),
    );
    assert_eq!(order[1].tag_type, tag_type::AUDIO);
    assert!(order.iter().filter(|t| early(t)).count() >= 5);

    let demux = gst::glib::Object::new::<RtmpSrcDemux>();
    let el = demux.upcast_ref::<gst::Element>();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let s1 = seen.clone();
    el.connect_pad_added(move |_, p| s1.lock().unwrap().push(p.name().to_string()));
    let s2 = seen.clone();
    el.connect_no_more_pads(move |_| s2.lock().unwrap().push("no-more-pads".into()));
    let outs = collect_pads(el);
    let mut h = Harness::with_element(el, Some("sink"), None);
    h.set_src_caps(crate::caps::flv_caps());
    for b in as_connection_gives(&order) {
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    }
    assert_eq!(
        *seen.lock().unwrap(),
        ["video", "audio", "no-more-pads"],
        "before the end of the stream"
    );
    assert!(h.push_event(gst::event::Eos::new()));
    let shifted = |f: &[Frame]| -> Vec<Frame> {
        f.iter()
            .map(|f| Frame {
                dts: f.dts + IN,
                pts: f.pts + IN,
                ..f.clone()
            })
            .collect()
    };
    let outs = outs.lock().unwrap();
    assert_eq!(outs["video"].frames, shifted(&video), "video");
    assert_eq!(
        outs["audio"].frames,
        shifted(&audio),
        "audio, the held first"
    );
}

#[test]
fn the_demuxer_gives_back_what_the_muxer_took() {
    let (video, audio) = (video_frames(), audio_frames());
    let tags = mux(&video, &audio);
    let outs = demux(&tags);
    let outs = outs.lock().unwrap();
    let v = outs.get("video").expect("a video pad");
    let a = outs.get("audio").expect("an audio pad");
    assert_eq!(v.frames, video, "video: bytes, DTS, PTS, key flags");
    assert_eq!(a.frames, audio, "audio");
    // Caps a parser and decoder take as they are.
    let s = v
        .caps
        .as_ref()
        .expect("video caps")
        .structure(0)
        .expect("structure")
        .to_owned();
    assert_eq!(s.name(), "video/x-h264");
    assert_eq!(s.get::<&str>("stream-format").ok(), Some("avc"));
    let cd = s.get::<gst::Buffer>("codec_data").expect("codec_data");
    assert_eq!(&cd.map_readable().expect("readable")[..], AVCC);
    assert_eq!(
        (s.get::<i32>("width").ok(), s.get::<i32>("height").ok()),
        (Some(320), Some(240))
    );
    let s = a
        .caps
        .as_ref()
        .expect("audio caps")
        .structure(0)
        .expect("structure")
        .to_owned();
    assert_eq!(s.name(), "audio/mpeg");
    assert_eq!(
        (s.get::<i32>("rate").ok(), s.get::<i32>("channels").ok()),
        (Some(44_100), Some(2))
    );
    let cd = s.get::<gst::Buffer>("codec_data").expect("codec_data");
    assert_eq!(&cd.map_readable().expect("readable")[..], ASC);
}

/// Every pad starts its stream in one group, upstream's (as flvdemux's
/// do): decodebin3 takes pads of different groups for inputs that change
/// presentation, and playbin3 then hung now and then with a live source
/// (3 of 25 runs through nginx; none of 80 with the group).
#[test]
fn the_demuxers_pads_start_their_streams_in_upstreams_group() {
    init();
    let demux = gst::glib::Object::new::<RtmpSrcDemux>();
    let el = demux.upcast_ref::<gst::Element>();
    let outs = collect_pads(el);
    let mut h = Harness::with_element(el, Some("sink"), None);
    let group = gst::GroupId::next();
    assert!(
        h.push_event(
            gst::event::StreamStart::builder("upstream")
                .group_id(group)
                .build()
        )
    );
    h.push_event(gst::event::Caps::new(&crate::caps::flv_caps()));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    for b in as_connection_gives(&mux(&video_frames(), &audio_frames())) {
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    }
    let outs = outs.lock().unwrap();
    let starts: Vec<_> = ["video", "audio"]
        .iter()
        .map(|p| outs.get(*p).expect("both pads").starts.clone())
        .collect();
    assert_eq!(
        starts,
        [
            vec![("upstream/video".to_owned(), Some(group))],
            vec![("upstream/audio".to_owned(), Some(group))],
        ]
    );
}

/// VP6 (plain and with alpha), which no encoder here makes: each tag's
/// first byte after the codec's is the picture's crop. The demuxer gives
/// the frame after it and the crop as codec_data (where FFmpeg's decoder
/// reads it, as FFmpeg's FLV reader puts it); the muxer writes codec_data's
/// crop back before each frame, so a relay keeps it. Key and delta frames
/// keep their flags; a command frame gives nothing.
#[test]
fn vp6_keeps_its_crop_byte_through_demuxer_and_muxer() {
    init();
    for (codec, name) in [(4u8, "video/x-vp6-flash"), (5, "video/x-vp6-alpha")] {
        let tag = |ms: u32, frame_type: u8, body: &[u8]| FlvTag {
            tag_type: tag_type::VIDEO,
            timestamp: ms,
            data: bytes::Bytes::from([&[frame_type << 4 | codec][..], body].concat()),
        };
        let tags = [
            tag(0, 1, &[0x21, 10, 11, 12]),
            tag(33, 5, &[0]),
            tag(33, 2, &[0x21, 20, 21]),
            tag(66, 2, &[0x21]),
        ];
        let outs = demux(&tags);
        let o = outs.lock().unwrap();
        let v = o.get("video").expect("a video pad");
        let caps = v.caps.clone().expect("caps");
        let s = caps.structure(0).unwrap();
        assert_eq!(s.name(), name);
        let crop = s.get::<gst::Buffer>("codec_data").expect("codec_data");
        assert_eq!(&*crop.map_readable().unwrap(), &[0x21]);
        assert_eq!(
            v.frames,
            vec![
                Frame {
                    data: vec![10, 11, 12],
                    dts: 0,
                    pts: 0,
                    key: true
                },
                Frame {
                    data: vec![20, 21],
                    dts: 33,
                    pts: 33,
                    key: false
                },
            ],
            "{name}"
        );
        // Back through the muxer: the tags as they were, less the command
        // frame and the empty one.
        let muxed = mux_pads(vec![("video", caps, v.frames.clone())]);
        let media: Vec<(u32, Vec<u8>)> = muxed
            .iter()
            .filter(|t| t.tag_type == tag_type::VIDEO)
            .map(|t| (t.timestamp, t.data.to_vec()))
            .collect();
        assert_eq!(
            media,
            vec![(0, tags[0].data.to_vec()), (33, tags[2].data.to_vec())],
            "{name}"
        );
    }
}

/// Speex as speexenc gives it (GStreamer 1.22): two header packets, then
/// a first frame with no timestamp. FLV has no place for the headers; an
/// untimed frame goes at the segment's start, or where the last frame
/// ended if its duration said; an untimed frame after one without a
/// duration is an error rather than a guess.
#[test]
fn speex_headers_stay_out_and_untimed_frames_follow_the_last() {
    init();
    let caps = gst::Caps::builder("audio/x-speex")
        .field("rate", 16_000i32)
        .field("channels", 1i32)
        .build();
    let untimed = |data: &[u8], dur: Option<u64>, header: bool| {
        let mut b = gst::Buffer::from_mut_slice(data.to_vec());
        let bm = b.get_mut().unwrap();
        bm.set_duration(dur.map(gst::ClockTime::from_mseconds));
        if header {
            bm.set_flags(gst::BufferFlags::HEADER);
        }
        b
    };
    let mux = gst::glib::Object::new::<RtmpSinkMux>();
    let mut h = Harness::with_element(mux.upcast_ref::<gst::Element>(), Some("audio"), Some("src"));
    h.set_src_caps(caps);
    for b in [
        untimed(b"Speex   header", None, true),
        untimed(b"comment", None, true),
        untimed(&[1, 1], Some(11), false),
        timed(&[2, 2], 11, 20),
        untimed(&[3, 3], Some(20), false),
        untimed(&[4, 4], None, false),
        timed(&[5, 5], 71, 20),
    ] {
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let audio: Vec<(u32, Vec<u8>)> = muxed_tags(&mut h)
        .iter()
        .filter(|t| t.tag_type == tag_type::AUDIO)
        .map(|t| (t.timestamp, t.data.to_vec()))
        .collect();
    // Speex's tag header: format 11, rate bits 0, 16 bits, mono.
    assert_eq!(
        audio,
        vec![
            (0, vec![0xB2, 1, 1]),
            (11, vec![0xB2, 2, 2]),
            (31, vec![0xB2, 3, 3]),
            (51, vec![0xB2, 4, 4]),
            (71, vec![0xB2, 5, 5]),
        ]
    );

    // A frame with no time after one of no known end: refused.
    let mux = gst::glib::Object::new::<RtmpSinkMux>();
    let mut h = Harness::with_element(mux.upcast_ref::<gst::Element>(), Some("audio"), Some("src"));
    h.set_src_caps(aac_caps());
    let mut no_end = timed(&[0x21, 0], 0, 0);
    no_end.make_mut().set_duration(gst::ClockTime::NONE);
    let pushed = [no_end, untimed(&[0x21, 1], Some(20), false)].map(|b| h.push(b));
    assert_eq!(
        pushed,
        [Ok(gst::FlowSuccess::Ok), Err(gst::FlowError::Error)]
    );
}

#[test]
fn the_demuxer_refuses_garbage_with_an_error_not_a_panic() {
    init();
    let demux = gst::glib::Object::new::<RtmpSrcDemux>();
    let mut h = Harness::with_element(demux.upcast_ref::<gst::Element>(), Some("sink"), None);
    h.set_src_caps(crate::caps::flv_caps());
    let mut junk = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    // A video tag that claims 16 MiB and an unknown codec after it.
    junk.extend_from_slice(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0]);
    junk.extend((0..4096).map(|i| (i * 13) as u8));
    let r = h.push(gst::Buffer::from_slice(junk));
    assert!(matches!(r, Ok(_) | Err(gst::FlowError::Error)), "{r:?}");
}

/// `video_1` and `audio_2` beside `video`: their tags are one-track
/// Multitrack packets (H.264 and AAC as avc1 and mp4a there, byte for
/// byte as the Enhanced RTMP spec lays them out), onMetaData describes them
/// in its track maps, and the demuxer gives each on a pad of its own.
#[test]
fn multitrack_pads_round_trip_through_muxer_and_demuxer() {
    init();
    let (video, audio) = (video_frames(), audio_frames());
    let second: Vec<Frame> = video_frames()
        .into_iter()
        .map(|mut f| {
            f.data.push(0xEE);
            f
        })
        .collect();
    let tags = mux_pads(vec![
        ("video", h264_caps(), video.clone()),
        ("video_1", h264_caps(), second.clone()),
        ("audio_2", aac_caps(), audio.clone()),
    ]);
    let meta = crate::rtmp::amf0::decode_all(&tags[0].data, &Default::default()).unwrap();
    let m = &meta[1];
    let v1 = m
        .get("videoTrackIdInfoMap")
        .and_then(|t| t.get("1"))
        .expect("track 1");
    let avc1 = f64::from(u32::from_be_bytes(*b"avc1"));
    assert_eq!(v1.get_f64("videocodecid"), Some(avc1));
    assert_eq!(v1.get_f64("width"), Some(320.0));
    let a2 = m
        .get("audioTrackIdInfoMap")
        .and_then(|t| t.get("2"))
        .expect("track 2");
    assert_eq!(
        a2.get_f64("audiocodecid"),
        Some(f64::from(u32::from_be_bytes(*b"mp4a")))
    );
    assert_eq!(a2.get_f64("channels"), Some(2.0));
    // Track 0 stays at the top (legacy H.264), and there is no top-level audio.
    assert_eq!(m.get_f64("videocodecid"), Some(7.0));
    assert_eq!(m.get_f64("audiocodecid"), None);

    // The first tags of each new track: the sequence start.
    let first = |lead: &[u8]| {
        tags.iter()
            .find(|t| t.data.starts_with(lead))
            .unwrap_or_else(|| panic!("no tag starting {lead:x?}"))
    };
    let seq = first(b"\x96\x00avc1\x01");
    assert_eq!(&seq.data[7..], AVCC);
    let seq = first(b"\x95\x00mp4a\x02");
    assert_eq!(&seq.data[7..], ASC);
    // A keyframe of track 1: CodedFrames with its composition time (40 ms).
    let key = first(b"\x96\x01avc1\x01");
    assert_eq!(&key.data[7..10], &[0, 0, 40]);
    assert_eq!(&key.data[10..], &second[0].data[..]);
    let frame = first(b"\x95\x01mp4a\x02");
    assert_eq!(&frame.data[7..], &audio[0].data[..]);

    let outs = demux(&tags);
    let outs = outs.lock().unwrap();
    let mut names: Vec<&String> = outs.keys().collect();
    names.sort();
    assert_eq!(names, ["audio_2", "video", "video_1"]);
    assert_eq!(outs["video"].frames, video);
    assert_eq!(outs["video_1"].frames, second);
    assert_eq!(outs["audio_2"].frames, audio);
    let caps = outs["video_1"].caps.as_ref().expect("video_1 caps");
    let s = caps.structure(0).expect("structure");
    assert_eq!(s.name(), "video/x-h264");
    assert_eq!(s.get::<i32>("width").ok(), Some(320), "from the track map");
    let caps = outs["audio_2"].caps.as_ref().expect("audio_2 caps");
    let cd = caps
        .structure(0)
        .unwrap()
        .get::<gst::Buffer>("codec_data")
        .unwrap();
    assert_eq!(&cd.map_readable().unwrap()[..], ASC);
    // One collection of every track the metadata announced, in track
    // order, on every pad from its start (decodebin3 selects from it);
    // each stream-start carries its track's stream.
    for (name, out) in outs.iter() {
        let id = &out.starts[0].0;
        assert_eq!(out.start_streams, [Some(id.clone())], "{name}");
        let tails: Vec<Vec<&str>> = out
            .collections
            .iter()
            .map(|c| c.iter().map(|i| i.rsplit('/').next().unwrap()).collect())
            .collect();
        assert_eq!(tails, [["video", "video_1", "audio_2"]], "{name}");
    }
}

/// Tracks that come unannounced (no metadata): each new track's pad
/// brings a new collection, in track order, which every pad there is gets
/// too.
#[test]
fn the_collection_grows_with_unannounced_tracks() {
    init();
    let tags = mux_pads(vec![
        ("video", h264_caps(), video_frames()),
        ("video_1", h264_caps(), video_frames()),
        ("audio_2", aac_caps(), audio_frames()),
    ]);
    let meta = crate::rtmp::amf0::decode_all(&tags[0].data, &Default::default()).unwrap();
    assert_eq!(meta[0].as_str(), Some("onMetaData"));
    let outs = demux(&tags[1..]);
    let outs = outs.lock().unwrap();
    let last = |name: &str| -> Vec<String> {
        let c = outs[name].collections.last().expect("a collection");
        c.iter()
            .map(|i| i.rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    for name in ["video", "video_1", "audio_2"] {
        assert_eq!(last(name), ["video", "video_1", "audio_2"], "{name}");
    }
    // The first pad came with a collection of its track, then got one
    // with each track that came; the last pad came with it whole.
    assert_eq!(outs["video"].collections.len(), 3);
    assert_eq!(outs["video_1"].collections.len(), 2);
    assert_eq!(outs["audio_2"].collections.len(), 1);
}

/// An Enhanced RTMP frame with a ModEx nanosecond offset: the demuxer's
/// DTS has the part below the millisecond.
#[test]
fn the_demuxer_applies_modex_nanosecond_offsets() {
    init();
    let hvcc = [
        1u8, 1, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5d, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0,
        0x0f, 0,
    ];
    let mut start = b"\x90hvc1".to_vec();
    start.extend_from_slice(&hvcc);
    // Key frame, ModEx (size 3: offset 500 000 ns), then CodedFramesX.
    let mut frame = vec![0x97, 2, 0x07, 0xa1, 0x20, 0x03];
    frame.extend_from_slice(b"hvc1\x00\x00\x00\x02\x26\x01");
    let tags = vec![
        FlvTag {
            tag_type: tag_type::VIDEO,
            timestamp: 0,
            data: start.into(),
        },
        FlvTag {
            tag_type: tag_type::VIDEO,
            timestamp: 40,
            data: frame.into(),
        },
    ];
    let outs = demux(&tags);
    assert_eq!(outs.lock().unwrap()["video"].dts_ns, [40_500_000]);
}

/// A codec configuration that changes mid-stream (a new resolution, then
/// another codec): a new sequence header goes out before the first frame
/// it applies to, and the demuxer gives new caps with it, every frame kept.
#[test]
fn codec_changes_mid_stream_give_new_sequence_headers_and_caps() {
    init();
    let mux = gst::glib::Object::new::<RtmpSinkMux>();
    let el = mux.upcast_ref::<gst::Element>();
    let mut h = Harness::with_element(el, Some("video"), Some("src"));
    let mut avcc2 = AVCC.to_vec();
    avcc2[9] = 0x1f; // another level in the SPS: another configuration
    let hvcc = [
        1u8, 1, 0x60, 0, 0, 0, 0x90, 0, 0, 0, 0, 0, 0x5d, 0xf0, 0, 0xfc, 0xfd, 0xf8, 0xf8, 0, 0,
        0x0f, 0,
    ];
    let h264 = |cd: &[u8], w: i32| {
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("width", w)
            .field("height", 240i32)
            .field("codec_data", gst::Buffer::from_slice(cd.to_vec()))
            .build()
    };
    let h265 = gst::Caps::builder("video/x-h265")
        .field("stream-format", "hvc1")
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(hvcc))
        .build();
    let frames = video_frames();
    let mut sent = Vec::new();
    for (i, caps) in [h264(AVCC, 320), h264(&avcc2, 640), h265]
        .into_iter()
        .enumerate()
    {
        h.set_src_caps(caps);
        for f in &frames[i * 3..i * 3 + 3] {
            // Each segment starts at a keyframe.
            let mut f = f.clone();
            f.key = f.dts % 120 == 0;
            assert_eq!(h.push(buffer(&f)), Ok(gst::FlowSuccess::Ok));
            sent.push(f);
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let tags = muxed_tags(&mut h);
    // Three sequence headers, each right before the first frame it is for.
    let headers: Vec<usize> = tags
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.tag_type == tag_type::VIDEO
                && crate::rtmp::flv::video_relay_role(&t.data)
                    == crate::rtmp::flv::RelayRole::Config
        })
        .map(|(i, _)| i)
        .collect();
    assert_eq!(headers.len(), 3, "{headers:?}");
    assert_eq!(&tags[headers[1]].data[5..], &avcc2[..]);
    assert_eq!(&tags[headers[2]].data[..5], b"\x90hvc1");
    let frames_before = |i: usize| {
        tags[..headers[i]]
            .iter()
            .filter(|t| t.tag_type == tag_type::VIDEO)
            .count()
            - i
    };
    assert_eq!((frames_before(1), frames_before(2)), (3, 6));

    let outs = demux(&tags);
    let outs = outs.lock().unwrap();
    let all_caps = &outs["video"].all_caps;
    let names: Vec<String> = all_caps
        .iter()
        .map(|c| {
            let s = c.structure(0).unwrap();
            format!("{} {:?}", s.name(), s.get::<i32>("width").ok())
        })
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].starts_with("video/x-h264") && names[2].starts_with("video/x-h265"));
    let cd = all_caps[1]
        .structure(0)
        .unwrap()
        .get::<gst::Buffer>("codec_data")
        .unwrap();
    assert_eq!(&cd.map_readable().unwrap()[..], &avcc2[..]);
    assert_eq!(outs["video"].frames, sent);
}

/// Interleaving waits no longer than it must: once the audio taken so far
/// reaches a video frame's time (an audio frame's DTS plus its duration),
/// the video frame goes out without waiting for the next audio frame (which
/// a live AAC encoder gives some 20 ms later). Order by DTS is kept.
#[test]
fn video_goes_out_once_audio_has_reached_its_time() {
    let (_mux, mut hv, mut ha) = two_pad_mux();
    let video = timed(&[0, 0, 0, 2, 0x65, 1], 10, 33);
    // Audio 0-23 ms, then video at 10 ms: the video may go, as no audio
    // before 23 ms can come any more.
    assert_eq!(ha.push(timed(&[0x21, 1], 0, 23)), Ok(gst::FlowSuccess::Ok));
    let pad = hv.srcpad().unwrap();
    let t = std::thread::spawn(move || pad.push(video));
    let mut reader = FlvReader::new(1 << 20);
    let mut kinds = Vec::new();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !kinds.contains(&(tag_type::VIDEO, 10)) {
        assert!(
            std::time::Instant::now() < end,
            "the video frame waited for more audio: {kinds:?}"
        );
        if let Some(b) = hv.try_pull() {
            reader.feed(&b.map_readable().unwrap());
            while let Some(t) = reader.poll_tag().unwrap() {
                if t.tag_type != tag_type::SCRIPT && !t.data[1..].starts_with(&[0]) {
                    kinds.push((t.tag_type, t.timestamp));
                }
            }
        } else {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    assert_eq!(kinds, [(tag_type::AUDIO, 0), (tag_type::VIDEO, 10)]);
    assert_eq!(t.join().unwrap(), Ok(gst::FlowSuccess::Ok));
}

/// The tags (type, RTMP time) of the frames a muxer harness gave so far,
/// sequence headers and metadata left out.
fn frames_out(h: &mut Harness, reader: &mut FlvReader) -> Vec<(u8, u32)> {
    let mut out = Vec::new();
    while let Some(b) = h.try_pull() {
        reader.feed(&b.map_readable().unwrap());
        while let Some(t) = reader.poll_tag().unwrap() {
            if t.tag_type != tag_type::SCRIPT && !t.data[1..].starts_with(&[0]) {
                out.push((t.tag_type, t.timestamp));
            }
        }
    }
    out
}

/// A muxer with an H.264 `video` harness (on its src pad too) and an AAC
/// `audio` harness.
fn two_pad_mux() -> (RtmpSinkMux, Harness, Harness) {
    init();
    let mux = gst::glib::Object::new::<RtmpSinkMux>();
    let el = mux.upcast_ref::<gst::Element>();
    let mut hv = Harness::with_element(el, Some("video"), Some("src"));
    let mut ha = Harness::with_element(el, Some("audio"), None);
    hv.set_src_caps(h264_caps());
    ha.set_src_caps(aac_caps());
    (mux, hv, ha)
}

/// `two_pad_mux` with live upstream declaring `upstream` of latency, on
/// the harness's test clock.
fn live_mux(upstream: gst::ClockTime) -> (RtmpSinkMux, Harness, Harness) {
    let (mux, mut hv, mut ha) = two_pad_mux();
    hv.set_upstream_latency(upstream);
    ha.set_upstream_latency(upstream);
    (mux, hv, ha)
}

/// A timed frame of `dur` ms at `ms`.
fn timed(data: &[u8], ms: u64, dur: u64) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(data.to_vec());
    let bm = b.get_mut().unwrap();
    bm.set_dts(gst::ClockTime::from_mseconds(ms));
    bm.set_pts(gst::ClockTime::from_mseconds(ms));
    bm.set_duration(gst::ClockTime::from_mseconds(dur));
    b
}

/// Live, a pad that has brought nothing yet, or stops bringing data, holds
/// the others however late the clock is (the stream's time 0 is the
/// earliest first frame; order by DTS is kept through stalls), until it
/// comes back.
#[test]
fn live_a_stalled_pad_holds_the_others_however_late_the_clock() {
    let (_mux, mut hv, mut ha) = live_mux(gst::ClockTime::from_mseconds(100));
    let key = [0u8, 0, 0, 2, 0x65, 1];
    let mut reader = FlvReader::new(1 << 20);
    // Video at 10 ms with the clock at 300 ms: audio has not started.
    hv.set_time(gst::ClockTime::from_mseconds(300)).unwrap();
    assert_eq!(hv.push(timed(&key, 10, 33)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(frames_out(&mut hv, &mut reader), []);
    // Audio at 0 starts the stream: audio 0, then video 10 (audio's frame
    // reaches 23 ms).
    assert_eq!(ha.push(timed(&[0x21, 1], 0, 23)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(
        frames_out(&mut hv, &mut reader),
        [(tag_type::AUDIO, 0), (tag_type::VIDEO, 10)]
    );
    // Audio stalls; video at 43 and 76 ms waits, even with the clock 5 s on.
    hv.set_time(gst::ClockTime::from_seconds(5)).unwrap();
    assert_eq!(hv.push(timed(&key, 43, 33)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(hv.push(timed(&key, 76, 33)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(frames_out(&mut hv, &mut reader), []);
    // Audio coming back releases what it has reached, in DTS order.
    assert_eq!(ha.push(timed(&[0x21, 2], 23, 23)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(ha.push(timed(&[0x21, 3], 46, 23)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(
        frames_out(&mut hv, &mut reader),
        [
            (tag_type::AUDIO, 23),
            (tag_type::VIDEO, 43),
            (tag_type::AUDIO, 46)
        ]
    );
}

/// `interleave=false`: once every pad has brought its first frame (time 0
/// is the earliest of them), every frame goes as soon as it comes, in
/// order within its track, whatever the other pads do.
#[test]
fn without_interleaving_nothing_waits_for_another_pad() {
    let (mux, mut hv, mut ha) = live_mux(gst::ClockTime::from_mseconds(100));
    mux.set_interleave(false);
    let key = [0u8, 0, 0, 2, 0x65, 1];
    let mut reader = FlvReader::new(1 << 20);
    // Audio waits for video's first frame, then both go (at the same
    // time, the pad requested first goes first).
    assert_eq!(ha.push(timed(&[0x21, 1], 0, 23)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(frames_out(&mut hv, &mut reader), []);
    assert_eq!(hv.push(timed(&key, 0, 33)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(
        frames_out(&mut hv, &mut reader),
        [(tag_type::VIDEO, 0), (tag_type::AUDIO, 0)]
    );
    // Video past the audio taken so far goes at once (interleaved, it
    // would wait for audio to reach 33 ms), and audio after it.
    assert_eq!(hv.push(timed(&key, 33, 33)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(frames_out(&mut hv, &mut reader), [(tag_type::VIDEO, 33)]);
    assert_eq!(hv.push(timed(&key, 66, 33)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(frames_out(&mut hv, &mut reader), [(tag_type::VIDEO, 66)]);
    assert_eq!(ha.push(timed(&[0x21, 2], 23, 23)), Ok(gst::FlowSuccess::Ok));
    assert_eq!(frames_out(&mut hv, &mut reader), [(tag_type::AUDIO, 23)]);
}

/// One thread feeding both pads (a demuxer linked without queues) that
/// interleaves more coarsely than a pad's queue is long: the pad it fills
/// does not wait for the other (only this thread could feed it: that would
/// never end) but queues on, and everything goes out in DTS order once the
/// other pad's frames come.
#[test]
fn one_thread_feeding_both_pads_coarsely_does_not_wait_on_itself() {
    let (_mux, mut hv, ha) = two_pad_mux();
    let (vpad, apad) = (hv.srcpad().unwrap(), ha.srcpad().unwrap());
    let key = [0u8, 0, 0, 2, 0x65, 1];
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut flows = vec![apad.push(timed(&[0x21, 0], 0, 20))];
        // 2 s of video, then the 2 s of audio that goes with it.
        flows.extend((0..50).map(|n| vpad.push(timed(&key, n * 40, 40))));
        flows.extend((1..100).map(|n| apad.push(timed(&[0x21, 1], n * 20, 20))));
        done.send(flows).unwrap();
    });
    let flows = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the thread feeding both pads is stuck waiting on itself");
    assert!(
        flows.iter().all(|f| *f == Ok(gst::FlowSuccess::Ok)),
        "{flows:?}"
    );
    let mut reader = FlvReader::new(1 << 20);
    let out = frames_out(&mut hv, &mut reader);
    let times: Vec<u32> = out.iter().map(|(_, t)| *t).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
    let video = out.iter().filter(|(k, _)| *k == tag_type::VIDEO).count();
    // All but what the last audio frame has not reached yet.
    assert!(video >= 49, "{video} video frames out: {out:?}");
}

/// The same with the other pad silent for good: an error after 10 s of
/// stream queued, not memory without end.
#[test]
fn one_thread_feeding_one_pad_only_fails_after_ten_seconds() {
    let (_mux, hv, ha) = two_pad_mux();
    let (vpad, apad) = (hv.srcpad().unwrap(), ha.srcpad().unwrap());
    let key = [0u8, 0, 0, 2, 0x65, 1];
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        assert_eq!(
            apad.push(timed(&[0x21, 0], 0, 20)),
            Ok(gst::FlowSuccess::Ok)
        );
        let failed = (0..400).find(|n| vpad.push(timed(&key, n * 40, 40)).is_err());
        done.send(failed).unwrap();
    });
    let failed = finished
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the thread feeding both pads is stuck waiting on itself");
    // The frame past 10 s of queue (the first at 20 ms may go).
    assert!(
        matches!(failed, Some(n) if (250..=253).contains(&n)),
        "{failed:?}"
    );
}

/// What came out of one pad of a demuxer with pad queues, and on which
/// threads.
#[derive(Default)]
struct QueuedOut {
    frames: Vec<Frame>,
    threads: std::collections::HashSet<std::thread::ThreadId>,
    eos: bool,
}

type QueuedOuts = std::sync::Arc<(
    std::sync::Mutex<std::collections::HashMap<String, QueuedOut>>,
    std::sync::Condvar,
)>;

/// A gate the video pad's downstream waits at while it is shut, and what
/// it answers each buffer with.
#[derive(Default)]
struct Gate {
    shut: std::sync::Mutex<bool>,
    opened: std::sync::Condvar,
    answer: std::sync::Mutex<Option<gst::FlowError>>,
}

/// A demuxer with pad queues (rtmpsrc's default), a collecting pad linked
/// to each pad it adds; the video one waits at `gate`.
fn queued_demux(gate: std::sync::Arc<Gate>) -> (Harness, QueuedOuts) {
    init();
    let demux = gst::glib::Object::new::<RtmpSrcDemux>();
    demux.imp().set_pad_queues(true);
    let el = demux.upcast_ref::<gst::Element>();
    let outs = QueuedOuts::default();
    let o = outs.clone();
    el.connect_pad_added(move |_, src| {
        let name = src.name().to_string();
        let (o1, o2, n1, n2, g) = (
            o.clone(),
            o.clone(),
            name.clone(),
            name.clone(),
            gate.clone(),
        );
        let sink = gst::Pad::builder_from_template(&any_sink_template())
            .chain_function(move |_, _, b| {
                if n1 == "video" {
                    let mut shut = g.shut.lock().unwrap();
                    while *shut {
                        shut = g.opened.wait(shut).unwrap();
                    }
                }
                let (lock, changed) = &*o1;
                let mut o = lock.lock().unwrap();
                let out = o.entry(n1.clone()).or_default();
                out.frames.push(Frame {
                    data: b.map_readable().expect("readable").to_vec(),
                    dts: b.dts().expect("DTS").nseconds() / MS,
                    pts: b.pts().expect("PTS").nseconds() / MS,
                    key: !b.flags().contains(gst::BufferFlags::DELTA_UNIT),
                });
                out.threads.insert(std::thread::current().id());
                changed.notify_all();
                match (n1 == "video").then(|| *g.answer.lock().unwrap()).flatten() {
                    Some(e) => Err(e),
                    None => Ok(gst::FlowSuccess::Ok),
                }
            })
            .event_function(move |_, _, e| {
                if let gst::EventView::Eos(_) = e.view() {
                    let (lock, changed) = &*o2;
                    lock.lock().unwrap().entry(n2.clone()).or_default().eos = true;
                    changed.notify_all();
                }
                true
            })
            .build();
        sink.set_active(true).expect("active");
        src.link(&sink).expect("link");
        std::mem::forget(sink);
    });
    let mut h = Harness::with_element(el, Some("sink"), None);
    h.set_src_caps(crate::caps::flv_caps());
    (h, outs)
}

/// Waits (10 s at most) until `done` says so of what came out.
fn wait_for(
    outs: &QueuedOuts,
    what: &str,
    done: impl Fn(&std::collections::HashMap<String, QueuedOut>) -> bool,
) {
    let (lock, changed) = &**outs;
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut o = lock.lock().unwrap();
    while !done(&o) {
        let now = std::time::Instant::now();
        assert!(now < end, "never came: {what}");
        o = changed.wait_timeout(o, end - now).unwrap().0;
    }
}

/// `n` video frames 40 ms apart, each telling itself apart.
fn many_video_frames(n: u64) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let mut data = 64u32.to_be_bytes().to_vec();
            data.push(if i % 25 == 0 { 0x65 } else { 0x41 });
            data.extend((0..63).map(|b| (b + i * 3) as u8));
            Frame {
                data,
                dts: i * 40,
                pts: i * 40,
                key: i % 25 == 0,
            }
        })
        .collect()
}

#[test]
fn pad_queues_give_back_what_the_muxer_took_on_threads_of_their_own() {
    let (video, audio) = (video_frames(), audio_frames());
    let (mut h, outs) = queued_demux(Default::default());
    for b in as_connection_gives(&mux(&video, &audio)) {
        assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    wait_for(&outs, "EOS on both pads", |o| {
        o.len() == 2 && o.values().all(|p| p.eos)
    });
    let o = outs.0.lock().unwrap();
    assert_eq!(
        o["video"].frames, video,
        "video: bytes, DTS, PTS, key flags"
    );
    assert_eq!(o["audio"].frames, audio, "audio");
    let me = std::thread::current().id();
    for (name, p) in o.iter() {
        assert_eq!(p.threads.len(), 1, "{name}: one thread pushes each pad");
        assert!(
            !p.threads.contains(&me),
            "{name}: not the thread that fed the demuxer"
        );
    }
    assert_ne!(o["video"].threads, o["audio"].threads, "a thread per pad");
}

/// A pad whose downstream holds its buffers (a sink prerolling, a muxer
/// waiting) holds neither the other pad nor the reader, until its queue
/// holds two seconds: then the reader waits (TCP slows the peer down),
/// and nothing is lost when the pad moves again.
#[test]
fn a_held_pad_holds_neither_the_other_nor_the_reader_until_its_queue_is_full() {
    let (video, audio) = (many_video_frames(150), audio_frames());
    let gate = std::sync::Arc::new(Gate::default());
    *gate.shut.lock().unwrap() = true;
    let (h, outs) = queued_demux(gate.clone());
    let buffers = as_connection_gives(&mux(&video, &audio));
    let total = buffers.len();
    let pushed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let p = pushed.clone();
    let h = std::sync::Arc::new(std::sync::Mutex::new(h));
    let feeder = {
        let h = h.clone();
        std::thread::spawn(move || {
            let mut h = h.lock().unwrap();
            for b in buffers {
                assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok));
                p.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            assert!(h.push_event(gst::event::Eos::new()));
        })
    };
    wait_for(&outs, "all audio while video is held", |o| {
        o.get("audio")
            .is_some_and(|a| a.frames.len() == audio.len())
    });
    // The reader stops: the count stays put while video is held.
    let mut last = usize::MAX;
    loop {
        let now = pushed.load(std::sync::atomic::Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(
        last < total - 40,
        "the reader went on ({last} of {total} buffers) with a held pad's queue full"
    );
    let held = outs.0.lock().unwrap().get("video").map(|v| v.frames.len());
    assert_eq!(held, None, "video went through a shut gate");
    *gate.shut.lock().unwrap() = false;
    gate.opened.notify_all();
    feeder.join().expect("feeder");
    wait_for(&outs, "EOS on both pads", |o| {
        o.len() == 2 && o.values().all(|p| p.eos)
    });
    let o = outs.0.lock().unwrap();
    assert_eq!(o["video"].frames, video, "every video frame, in order");
    assert_eq!(o["audio"].frames, audio);
}

/// What downstream answers a pad's buffer reaches the reader with its
/// next buffer for that pad, as a direct push would have.
#[test]
fn a_downstream_error_behind_a_pad_queue_reaches_the_reader() {
    let gate = std::sync::Arc::new(Gate::default());
    *gate.answer.lock().unwrap() = Some(gst::FlowError::Error);
    let (mut h, outs) = queued_demux(gate);
    let video = many_video_frames(4);
    let buffers = as_connection_gives(&mux(&video, &[]));
    // The last four are the frames: up to the first, then its answer.
    let (first, rest) = buffers.split_at(buffers.len() - 3);
    for b in first {
        assert_eq!(h.push(b.clone()), Ok(gst::FlowSuccess::Ok));
    }
    let seen = |n: usize| {
        wait_for(&outs, "a video frame", |o| {
            o.get("video").is_some_and(|v| v.frames.len() >= n)
        })
    };
    seen(1);
    // The pad's thread records the answer right after downstream gave it:
    // the next push may still beat it, the one after it cannot (its frame
    // went through downstream, after the answer was recorded).
    let mut results = Vec::new();
    for (i, b) in rest.iter().take(2).enumerate() {
        let r = h.push(b.clone());
        results.push(r);
        if r.is_err() {
            break;
        }
        seen(i + 2);
    }
    assert_eq!(
        results.last(),
        Some(&Err(gst::FlowError::Error)),
        "{results:?}"
    );
}
