// SPDX-License-Identifier: MPL-2.0
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

mod media;
mod metadata;
mod whole;

use super::caps::{audio_template_caps, video_template_caps};
use super::lanes::{Item, Lanes};
use crate::common::PadTrack;
use crate::latency::Departures;
use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::flv::{
    FLV_HEADER_SIZE, FlvHeader, FlvReader, SpeexHeaders, TAG_HEADER_SIZE, previous_tag_size,
    tag_type, write_tag_header,
};
use crate::rtmpsrc::conn::RtmpSrcConn;
use crate::sync::lock;
use metadata::{MetadataSays, kinds_said, metadata_value, track_map_key};
use whole::{factory_name, outside_peer};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rtmpsrcdemux",
        gst::DebugColorFlags::empty(),
        Some("RTMP source demuxer"),
    )
});

/// Without metadata saying what the stream carries, pads seen within this
/// much stream time of the first tag are all there is (no-more-pads).
const NO_MORE_PADS_AFTER_MS: i64 = 2000;

/// Track 0 of each kind: the `video` and `audio` pads.
const VIDEO0: PadTrack = PadTrack {
    video: true,
    track: 0,
};
const AUDIO0: PadTrack = PadTrack {
    video: false,
    track: 0,
};

/// The most audio held for the video pad to come first (see `Held`),
/// in frames and bytes: past either the audio pad comes at once.
const MAX_HELD_FRAMES: usize = 512;
const MAX_HELD_BYTES: usize = 4 << 20;

/// The `audio` pad's caps and first frames, held until the `video` pad is
/// there when the metadata announced video: a launch line that links
/// rtmpsrc to an element of any caps without naming a pad (`rtmpsrc !
/// decodebin ! videoconvert ! ...`, as with librtmp's FLV) takes the first
/// pad added, and nginx-rtmp gives a player that joins a stream the
/// audio's header before the video's. Held until the video pad comes, the
/// video is left out, no-more-pads is due anyway, or a bound is reached.
struct Held {
    caps: gst::Caps,
    frames: Vec<HeldFrame>,
    bytes: usize,
}

struct HeldFrame {
    data: bytes::Bytes,
    dts: Option<gst::ClockTime>,
    arrival: u64,
}

/// What a frame's push needs from the state, taken in one lock.
struct Outgoing {
    pad: gst::Pad,
    /// The stream's tags, before a pad's first frame.
    global_tags: Option<gst::TagList>,
    /// The track's own tags, new since its last frame.
    own_tags: Option<gst::TagList>,
    discont: bool,
    /// The arrival count the frame carries as its offset (see `arrival`).
    arrival: u64,
    /// Pushed from this thread rather than through the pad's queue.
    direct: bool,
    /// The pad was found unlinked before and warned of.
    left_out: bool,
}

/// A frame as a buffer: a slice of the tag body, which holds the
/// connection's buffer (no copy), its PTS the DTS plus the composition
/// time (`cts`, in ms) and never before 0.
#[inline]
fn frame_buffer(
    data: &bytes::Bytes,
    dts: Option<gst::ClockTime>,
    cts: i32,
    key: bool,
    discont: bool,
    arrival: u64,
) -> gst::Buffer {
    let mut b = gst::Buffer::from_slice(data.clone());
    let bm = b.get_mut().expect("new buffer is writable");
    bm.set_dts(dts);
    bm.set_offset(arrival);
    bm.set_pts(dts.map(|d| {
        let p = d.nseconds() as i64 + i64::from(cts) * 1_000_000;
        gst::ClockTime::from_nseconds(p.max(0) as u64)
    }));
    let mut flags = gst::BufferFlags::empty();
    if !key {
        flags |= gst::BufferFlags::DELTA_UNIT;
    }
    if discont {
        flags |= gst::BufferFlags::DISCONT;
    }
    bm.set_flags(flags);
    b
}

/// The most tags kept before the first elementary pad comes (see
/// `State::prelude`), in tags and bytes: past either, the stream plays on
/// elementary pads whatever takes them.
const MAX_PRELUDE_TAGS: usize = 1024;
const MAX_PRELUDE_BYTES: usize = 8 << 20;

/// A tag as it came, kept in `State::prelude`.
struct PreludeTag {
    kind: u8,
    ts: u32,
    data: bytes::Bytes,
    dts: Option<gst::ClockTime>,
}

/// One FLV tag with what the connection knows of it, handed over without a
/// buffer (see `take_tag`).
pub struct Tag {
    /// A segment to give before it (the first tag after a seek).
    pub segment: Option<gst::Event>,
    pub kind: u8,
    pub ts: u32,
    pub body: bytes::Bytes,
    /// The running time of its DTS.
    pub running_time: u64,
    pub discont: bool,
    /// When it was read (crate::latency), or crate::latency::NONE.
    pub arrival: u64,
    /// More messages are queued right behind this one (what one read of
    /// the socket brought): the pads' threads are woken after the last
    /// (see `wake_lanes`).
    pub more: bool,
}

#[derive(Default)]
struct Track {
    pad: Option<gst::Pad>,
    caps: Option<gst::Caps>,
    /// Warned once that this codec is not mapped.
    warned: bool,
    /// Warned once that nothing takes this track's pad while another pad
    /// went to an autoplugger (see `warn_left_out`).
    left_out: bool,
    discont: bool,
    /// Video: the last Enhanced RTMP colorInfo, applied to the caps.
    color: Option<crate::rtmp::codec::ColorInfo>,
    /// The stream's tags (`State::stream_tags`) as they are now went out
    /// on this track's pad.
    tagged: bool,
}

/// What a new pad gives first (see `RtmpSrcDemux::new_pad`).
struct PadStart {
    group_id: gst::GroupId,
    /// The track's stream, its caps set.
    stream: gst::Stream,
    collection: gst::StreamCollection,
    caps: gst::Caps,
    /// The current segment; a default one if none came yet.
    segment: Option<gst::Event>,
}

#[derive(Default)]
struct State {
    /// Only for input that is not one tag per buffer.
    flv: Option<FlvReader>,
    header_seen: bool,
    /// Speex header packets a publisher sent as frames (flvmux writes
    /// speexenc's), left out: the caps carry the headers.
    speex: SpeexHeaders,
    /// Audio and video tracks by kind and Enhanced RTMP track id; track 0
    /// is the `video`/`audio` pad, track N `video_N`/`audio_N`.
    tracks: Vec<(PadTrack, Track)>,
    segment: Option<gst::Event>,
    stream_id: String,
    /// The group every pad's stream-start carries (upstream's, else one of
    /// our own), so that decodebin3 and playbin3 take the pads' streams as
    /// one presentation, as from flvdemux.
    group_id: Option<gst::GroupId>,
    /// From onMetaData: the tracks the stream says it has.
    expect: Option<Vec<PadTrack>>,
    /// A stream object per track known (announced or come), and the
    /// collection of them in track order (track 0 first, video before
    /// audio) that every pad gives after its stream-start. decodebin3
    /// (playbin3) selects from it, by default the first of each kind:
    /// track 0, not whichever track's pad happened to come first.
    streams: Vec<(PadTrack, gst::Stream)>,
    collection: Option<gst::StreamCollection>,
    first_ts: Option<u32>,
    no_more_pads: bool,
    meta: Option<Amf0Value>,
    /// The stream's tags from its metadata (encoder, title, the whole
    /// bitrate), global in scope: every pad gives them before its first
    /// frame after they change, as a container demuxer does.
    stream_tags: Option<gst::TagList>,
    /// Each track's own tags from the metadata (its bitrate; language
    /// and title from the track maps), for its pad's next frame.
    track_tags: Vec<(PadTrack, gst::TagList)>,
    /// The offset of the buffer being demuxed: when it was read from the
    /// socket (see crate::latency), passed on to what comes out of it.
    arrival: u64,
    /// The tag being demuxed may have its buffer pushed directly by the
    /// caller (see `take_tag`).
    direct: bool,
    /// The FLV pad (see `RtmpSrcDemux::flv_pad`) had its stream-start,
    /// caps and segment.
    flv_started: bool,
    /// Bytes of FLV given out this run; None until the file header went.
    flv_offset: Option<u64>,
    /// The next FLV buffer follows a resync or a new publisher.
    flv_discont: bool,
    /// Buffers given out this run, counted for `num_buffers`.
    given: u64,
    /// The error saying that nothing is linked went out.
    told_not_linked: bool,
    /// The audio pad waiting for the video pad (see `Held`).
    held: Option<Held>,
    /// Nothing is held any more this run: the wait is over.
    hold_over: bool,
    /// The `video` pad has given a frame.
    video_flowing: bool,
    /// The tags as they came until the first elementary pad was made and
    /// looked at (`decided`): what it needs, should the stream go out
    /// whole on the FLV pad instead (see `RtmpSrcDemux::first_pad_taken`).
    prelude: Vec<PreludeTag>,
    prelude_bytes: usize,
    /// The first elementary pad of this run was made, and whatever took
    /// it decided how the stream goes out; or more came before it than
    /// the prelude keeps, and the stream stays on the elementary pads.
    decided: bool,
}

impl State {
    /// After a jump (a new publisher, most often) the next sequence
    /// headers go downstream again even if unchanged.
    fn discont(&mut self) {
        for (_, t) in &mut self.tracks {
            t.discont = true;
            t.caps = None;
        }
        self.flv_discont = true;
        self.speex = SpeexHeaders::default();
    }

    fn track(&mut self, id: PadTrack) -> &mut Track {
        match self.tracks.iter().position(|(t, _)| *t == id) {
            Some(i) => &mut self.tracks[i].1,
            None => {
                self.tracks.push((id, Track::default()));
                &mut self.tracks.last_mut().expect("just pushed").1
            }
        }
    }

    fn pad(&self, id: PadTrack) -> Option<&gst::Pad> {
        self.tracks
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, tr)| tr.pad.as_ref())
    }

    /// The stream of a track, made on first use.
    fn stream(&mut self, id: PadTrack) -> gst::Stream {
        if let Some((_, s)) = self.streams.iter().find(|(t, _)| *t == id) {
            return s.clone();
        }
        let kind = if id.video {
            gst::StreamType::VIDEO
        } else {
            gst::StreamType::AUDIO
        };
        let stream_id = format!("{}/{}", self.stream_id, id.name());
        let s = gst::Stream::new(Some(&stream_id), None, kind, gst::StreamFlags::empty());
        self.streams.push((id, s.clone()));
        s
    }

    /// Whether a track was left out (a codec rtmpsrc does not map).
    fn left_out(&self, id: PadTrack) -> bool {
        self.tracks
            .iter()
            .any(|(t, tr)| *t == id && tr.warned && tr.pad.is_none())
    }

    /// The collection of every track known (those with a pad, and `with`;
    /// for a multitrack stream also those its metadata announced, until
    /// no-more-pads; never those left out), made anew when that set
    /// changed: then also whether it did.
    ///
    /// Every pad gives it after its stream-start, so that decodebin3
    /// (playbin3) selects from the stream's tracks, not from its own
    /// collection of its inputs as their data comes: with that, a pad
    /// whose first buffer came 20 ms after the other's had its track
    /// dropped (tests/rtmpsrc.rs, the playbin tests). The announced tracks
    /// only for a multitrack stream, where they make decodebin3 take track
    /// 0 of each kind whichever track's pad comes first: with one track of
    /// each kind, an announced track that never came held playbin3 up (the
    /// update at no-more-pads comes in order with the data, behind what
    /// downstream holds).
    fn collection(&mut self, with: Option<PadTrack>) -> (gst::StreamCollection, bool) {
        let mut known: Vec<PadTrack> = match (&self.expect, self.no_more_pads) {
            (Some(e), false) if e.iter().any(|t| t.track != 0) => {
                e.iter().copied().filter(|t| !self.left_out(*t)).collect()
            }
            _ => Vec::new(),
        };
        known.extend(
            self.tracks
                .iter()
                .filter(|(_, t)| t.pad.is_some())
                .map(|(id, _)| *id),
        );
        known.extend(with);
        known.sort_by_key(|t| (t.track, !t.video));
        known.dedup();
        if let Some(c) = &self.collection {
            let same = c.len() == known.len()
                && c.iter()
                    .zip(&known)
                    .all(|(s, id)| self.streams.iter().any(|(t, have)| t == id && have == &s));
            if same {
                return (c.clone(), false);
            }
        }
        let streams: Vec<gst::Stream> = known.iter().map(|id| self.stream(*id)).collect();
        let c = gst::StreamCollection::builder(Some(&self.stream_id))
            .streams(streams)
            .build();
        self.collection = Some(c.clone());
        (c, true)
    }

    fn pads(&self) -> Vec<gst::Pad> {
        self.tracks
            .iter()
            .filter_map(|(_, t)| t.pad.clone())
            .collect()
    }

    /// The metadata's fields for a track: the top level for track 0, its
    /// entry in `videoTrackIdInfoMap`/`audioTrackIdInfoMap` for the others.
    fn track_meta(&self, id: PadTrack) -> Option<&Amf0Value> {
        let m = self.meta.as_ref()?;
        match id.track {
            0 => Some(m),
            n => m.get(track_map_key(id.video))?.get(&n.to_string()),
        }
    }
}

pub struct RtmpSrcDemux {
    sinkpad: gst::Pad,
    state: Mutex<State>,
    flow: Mutex<gst_base::UniqueFlowCombiner>,
    /// rtmpsrc's pad-queues: what goes out on a pad goes through its queue
    /// in `lanes` and its own thread; otherwise the streaming thread
    /// pushes it.
    pad_queues: AtomicBool,
    lanes: Arc<Lanes>,
    /// rtmpsrc's measure-latency: socket to pad, timed where buffers leave
    /// (here or in `lanes`).
    departures: Arc<Departures>,
    /// rtmpsrc's `src` pad, when requested: the stream as FLV, one tag per
    /// buffer, as librtmp's rtmpsrc and rtmp2src give it, for the
    /// pipelines written for them (`rtmpsrc ! flvdemux`, `rtmpsrc !
    /// filesink location=x.flv`). No elementary pad is made meanwhile.
    flv_pad: Mutex<Option<gst::Pad>>,
    /// Whether `flv_pad` is set, read per tag without its lock.
    flv_mode: AtomicBool,
    /// `flv_pad` was made by the demuxer, not requested: for what took the
    /// first elementary pad (see `first_pad_taken`), gone at the stop.
    flv_auto: AtomicBool,
    /// Tags go into `State::prelude`: read per tag without the lock.
    prelude_open: AtomicBool,
    /// rtmpsrc's auto-flv: what takes the first elementary pad may have
    /// the stream as FLV instead (see `first_pad_taken`).
    auto_flv: AtomicBool,
    /// rtmpsrc's num-buffers: the stream ends (EOS) once this many
    /// buffers went out, on all pads together; -1: no limit.
    num_buffers: AtomicI32,
    /// The last seek taken upstream (its seqnum) and its result.
    last_seek: Mutex<Option<(gst::Seqnum, bool)>>,
}

#[glib::object_subclass]
impl ObjectSubclass for RtmpSrcDemux {
    const NAME: &'static str = "GstRtmpSrcDemux";
    type Type = super::RtmpSrcDemux;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("sink").unwrap();
        let sinkpad = gst::Pad::builder_from_template(&templ)
            .chain_function(|pad, parent, buffer| {
                RtmpSrcDemux::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |d| d.chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                RtmpSrcDemux::catch_panic_pad_function(
                    parent,
                    || false,
                    |d| d.sink_event(pad, event),
                )
            })
            .build();
        let departures = Arc::<Departures>::default();
        RtmpSrcDemux {
            sinkpad,
            state: Mutex::default(),
            flow: Mutex::default(),
            pad_queues: AtomicBool::new(false),
            lanes: Arc::new(Lanes::new(departures.clone())),
            departures,
            flv_pad: Mutex::default(),
            flv_mode: AtomicBool::new(false),
            flv_auto: AtomicBool::new(false),
            prelude_open: AtomicBool::new(true),
            auto_flv: AtomicBool::new(true),
            num_buffers: AtomicI32::new(-1),
            last_seek: Mutex::default(),
        }
    }
}

impl ObjectImpl for RtmpSrcDemux {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().add_pad(&self.sinkpad).unwrap();
    }
}

impl GstObjectImpl for RtmpSrcDemux {}

impl ElementImpl for RtmpSrcDemux {
    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let mut t = vec![
                crate::common::flv_pad_template("sink", gst::PadDirection::Sink),
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Request,
                    &crate::caps::flv_caps(),
                )
                .expect("a valid pad template"),
            ];
            // video/audio for track 0, video_%u/audio_%u for the others.
            t.extend(crate::common::track_pad_templates(
                gst::PadDirection::Src,
                gst::PadPresence::Sometimes,
                &video_template_caps(),
                &audio_template_caps(),
                None,
            ));
            t
        });
        T.as_ref()
    }

    fn change_state(
        &self,
        t: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let r = self.parent_change_state(t)?;
        if t == gst::StateChange::PausedToReady {
            let pads: Vec<gst::Pad> = {
                let mut st = self.lock();
                let p = st.pads();
                *st = State::default();
                p
            };
            let mut flow = self.flow.lock().unwrap();
            for p in pads {
                flow.remove_pad(&p);
                self.obj().remove_pad(&p).ok();
            }
            drop(flow);
            self.lanes.clear();
            // The FLV pad made for this run's first pad goes with it; a
            // requested one stays.
            if self.flv_auto.load(Ordering::Acquire) {
                self.release_flv();
            }
            self.prelude_open
                .store(self.auto_flv.load(Ordering::Relaxed), Ordering::Release);
        }
        Ok(r)
    }
}

/// What a pad carries, for messages: its caps' media type.
fn media_type(pad: &gst::Pad) -> String {
    pad.current_caps()
        .and_then(|c| c.structure(0).map(|s| s.name().to_string()))
        .unwrap_or_else(|| "no caps yet".into())
}

impl RtmpSrcDemux {
    /// The connection gives one whole tag per buffer (the first one after
    /// the FLV header): its body is taken as it is, without a copy.
    fn one_tag(&self, st: &mut State, buffer: &gst::Buffer) -> Option<(u8, u32, bytes::Bytes)> {
        if st.flv.as_ref().is_some_and(|f| f.buffered() > 0) {
            return None;
        }
        let mut off = 0;
        if !st.header_seen {
            let mut h = [0u8; FLV_HEADER_SIZE + 4];
            buffer.copy_to_slice(0, &mut h).ok()?;
            if &h[..3] != b"FLV" || h[8] as usize != FLV_HEADER_SIZE {
                return None;
            }
            off = FLV_HEADER_SIZE + 4;
        }
        let mut h = [0u8; TAG_HEADER_SIZE];
        buffer.copy_to_slice(off, &mut h).ok()?;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        if buffer.size() != off + TAG_HEADER_SIZE + size + 4 || h[0] & 0x20 != 0 {
            return None;
        }
        let body = buffer
            .copy_region(
                gst::BufferCopyFlags::MEMORY,
                (off + TAG_HEADER_SIZE)..(off + TAG_HEADER_SIZE + size),
            )
            .ok()?;
        let map = body.into_mapped_buffer_readable().ok()?;
        st.header_seen = true;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        Some((h[0] & 0x1F, ts, bytes::Bytes::from_owner(map)))
    }

    /// Anything else goes through the FLV reader (a copy).
    fn tags_through_reader(
        &self,
        st: &mut State,
        buffer: &gst::Buffer,
    ) -> Result<Vec<(u8, u32, bytes::Bytes)>, gst::FlowError> {
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        let seen = st.header_seen;
        let flv = st.flv.get_or_insert_with(|| {
            if seen {
                FlvReader::tags_only(
                    16 << 20,
                    FlvHeader {
                        has_audio: true,
                        has_video: true,
                    },
                )
            } else {
                FlvReader::new(16 << 20)
            }
        });
        flv.feed(&map);
        let mut tags = Vec::new();
        loop {
            match flv.poll_tag() {
                Ok(Some(t)) => tags.push((t.tag_type, t.timestamp, t.data)),
                Ok(None) => break,
                Err(e) => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Demux,
                        ("Invalid FLV from the connection: {}", e)
                    );
                    return Err(gst::FlowError::Error);
                }
            }
        }
        st.header_seen = st.header_seen || flv.header().is_some();
        Ok(tags)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// rtmpsrc's pad-queues (see `pad_queues`), for the pads made from now.
    pub fn set_pad_queues(&self, on: bool) {
        self.pad_queues.store(on, Ordering::Relaxed);
    }

    /// rtmpsrc's auto-flv, from the next start: false keeps the stream
    /// on the elementary pads whatever takes them, and keeps no tags for
    /// an FLV pad.
    pub fn set_auto_flv(&self, on: bool) {
        self.auto_flv.store(on, Ordering::Relaxed);
        self.prelude_open.store(on, Ordering::Release);
    }

    /// rtmpsrc's num-buffers, from the next start.
    pub fn set_num_buffers(&self, limit: i32) {
        self.num_buffers.store(limit, Ordering::Relaxed);
    }

    /// With num-buffers: whether as many buffers as it says went out
    /// (`and_one`: counting one more that just did). The stream then ends
    /// as an upstream EOS would end it.
    fn given_all(&self, and_one: bool) -> bool {
        let Ok(limit) = u64::try_from(self.num_buffers.load(Ordering::Relaxed)) else {
            return false;
        };
        let mut st = self.lock();
        st.given += u64::from(and_one);
        if st.given >= limit {
            gst::debug!(CAT, imp = self, "{} buffers given: EOS", st.given);
        }
        st.given >= limit
    }

    /// rtmpsrc's measure-latency, from the next start (the figures start
    /// anew).
    pub fn set_measure_latency(&self, on: bool) {
        self.departures.set(on);
    }

    /// The latency figures (see crate::latency) on a stats structure.
    pub fn write_latencies(&self, s: &mut gst::StructureRef) {
        self.departures.write_to(s)
    }

    /// A serialized event out on `pad`, in order with its buffers.
    fn send_event(&self, pad: &gst::Pad, event: gst::Event) {
        if self.lanes_for(pad) {
            self.lanes.push(pad, Item::Event(event), false, false).ok();
        } else {
            pad.push_event(event);
        }
    }

    fn send_buffer(
        &self,
        pad: &gst::Pad,
        video: bool,
        direct: bool,
        mut buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.lanes_for(pad) {
            self.lanes.push(pad, Item::Buffer(buffer), true, direct)
        } else {
            self.departures.depart(video, &mut buffer);
            pad.push(buffer)
        }
    }

    /// Whether the pads have queues (they are made anew at each start,
    /// with the setting of that start).
    fn lanes_for(&self, _pad: &gst::Pad) -> bool {
        self.pad_queues.load(Ordering::Relaxed)
    }

    /// An event of the stream (a segment, segment-done, a gap) out on
    /// every pad, after the buffers each has queued before it: pushed past
    /// them, it could wait in a sink for a preroll that those buffers,
    /// held behind it, were to give. The FLV pad has it once its first tag
    /// is out. A segment is also kept for the pads still to come.
    fn send_in_stream(&self, event: gst::Event) {
        let (pads, started) = {
            let mut st = self.lock();
            if let gst::EventView::Segment(_) = event.view() {
                st.segment = Some(event.clone());
            }
            (st.pads(), st.flv_started)
        };
        if let Some(flv) = self.flv_pad().filter(|_| started) {
            flv.push_event(event.clone());
        }
        for p in pads {
            self.send_event(&p, event.clone());
        }
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::StreamStart(s) => {
                let mut st = self.lock();
                if st.stream_id != s.stream_id() {
                    st.streams.clear();
                    st.collection = None;
                }
                st.stream_id = s.stream_id().to_string();
                st.group_id = Some(s.group_id().unwrap_or_else(gst::GroupId::next));
                let started = st.flv_started;
                drop(st);
                // Until its first tag, the FLV pad has had no stream-start:
                // it gets one with that tag (see `flv_tag`).
                if let Some(flv) = self.flv_pad().filter(|_| started) {
                    flv.push_event(event);
                }
                true
            }
            gst::EventView::Caps(_) => true,
            gst::EventView::Segment(_) => {
                self.send_in_stream(event);
                true
            }
            gst::EventView::Eos(_) if self.flv_mode.load(Ordering::Acquire) => {
                let Some(flv) = self.flv_pad() else {
                    return true;
                };
                if self.lock().flv_offset.is_none() {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Demux,
                        ("The stream ended without audio, video or metadata")
                    );
                    return false;
                }
                flv.push_event(event)
            }
            gst::EventView::Eos(_) => self.eos(event),
            gst::EventView::FlushStart(_) | gst::EventView::FlushStop(_) => {
                self.flush(event);
                true
            }
            // Any other event in the stream (segment-done at a segment
            // seek's stop, a gap): see `send_in_stream`.
            _ if event.is_serialized() => {
                self.send_in_stream(event);
                true
            }
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    /// The end of the stream on the elementary pads: what was held goes,
    /// the pads are all there (no-more-pads), and each gets the EOS; an
    /// error if the stream had none.
    fn eos(&self, event: gst::Event) -> bool {
        // A stream that ends before its tracks were all seen (or the wait
        // for them ran out) has all it will have.
        let held = {
            let mut st = self.lock();
            st.hold_over = true;
            st.held.take()
        };
        if let Some(h) = held {
            self.release(h);
        }
        let fire = {
            let mut st = self.lock();
            let fire = !st.no_more_pads && !st.pads().is_empty();
            st.no_more_pads |= fire;
            fire
        };
        if fire {
            self.signal_no_more_pads();
        }
        let pads = self.lock().pads();
        if pads.is_empty() {
            // After the connection's own error (a refused connect, a lost
            // one), the EOS its base class sends says nothing a user needs
            // a second error for.
            if !self.upstream_failed() {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Demux,
                    ("The stream ended without audio or video we can play")
                );
            }
            return false;
        }
        for p in pads {
            self.send_event(&p, event.clone());
        }
        true
    }

    /// A flush (a seek's) on every pad, through their queues with
    /// pad-queues; at its stop, what was read or held before it is
    /// dropped, and each track's next buffer is a DISCONT.
    fn flush(&self, event: gst::Event) {
        let stop = matches!(event.view(), gst::EventView::FlushStop(_));
        if stop {
            let mut st = self.lock();
            st.flv = None;
            // Audio held for the video pad is of before the flush.
            st.held = None;
            for (_, t) in &mut st.tracks {
                t.discont = true;
            }
        }
        if let Some(flv) = self.flv_pad() {
            flv.push_event(event.clone());
        }
        if self.pad_queues.load(Ordering::Relaxed) {
            match stop {
                true => self.lanes.flush_stop(&event),
                false => self.lanes.flush_start(&event),
            }
        } else {
            let pads = self.lock().pads();
            for p in pads {
                p.push_event(event.clone());
            }
        }
    }

    /// Whether the connection element before this one stopped on an error
    /// it posted (see `RtmpSrcConn::failed`).
    fn upstream_failed(&self) -> bool {
        self.sinkpad
            .peer()
            .and_then(|p| p.parent_element())
            .and_then(|e| e.downcast::<RtmpSrcConn>().ok())
            .is_some_and(|c| c.imp().failed())
    }

    /// Events from downstream. A seek comes once from every pad's sink
    /// (playbin sends it to each): upstream takes it once.
    fn src_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        if let gst::EventView::Seek(_) = event.view() {
            let seqnum = event.seqnum();
            let mut last = lock(&self.last_seek);
            if let Some((s, result)) = *last
                && s == seqnum
            {
                return result;
            }
            // Held while upstream seeks, so that the same seek from the
            // other pads waits for its result.
            let result = self.sinkpad.push_event(event);
            *last = Some((seqnum, result));
            return result;
        }
        gst::Pad::event_default(pad, Some(&*self.obj()), event)
    }

    fn chain(
        &self,
        _pad: &gst::Pad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        // The connection stamped the buffer with the running time of this
        // (one) tag's DTS.
        let dts = buffer.dts();
        let tags = {
            let mut st = self.lock();
            st.arrival = buffer.offset();
            st.direct = false;
            if buffer.flags().contains(gst::BufferFlags::DISCONT) {
                st.discont();
            }
            match self.one_tag(&mut st, &buffer) {
                Some(t) => vec![t],
                None => self.tags_through_reader(&mut st, &buffer)?,
            }
        };
        let mut ret = Ok(gst::FlowSuccess::Ok);
        for (kind, ts, data) in tags {
            ret = self.demux_tag(kind, ts, &data, dts);
            if ret.is_err() {
                break;
            }
        }
        self.wake_lanes();
        ret
    }

    /// Wakes the pads' threads for what was queued since they last ran:
    /// once per read of the socket rather than once per frame (the frames
    /// of one read are demuxed within microseconds of each other).
    pub fn wake_lanes(&self) {
        if self.pad_queues.load(Ordering::Relaxed) {
            self.lanes.wake();
        }
    }

    /// One tag handed over by the connection element without a buffer
    /// (what its context's thread does, see conn's `service`). The caller
    /// holds the sink pad's stream lock, as a chain call would. `direct`:
    /// the caller calls `push_pending` once it let go of that lock, and
    /// has another thread to go on reading while that push is held (see
    /// lanes' notes on direct pushes).
    pub fn take_tag(&self, tag: Tag, direct: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        if let Some(segment) = tag.segment {
            self.sink_event(&self.sinkpad, segment);
        }
        {
            let mut st = self.lock();
            st.arrival = tag.arrival;
            st.direct = direct;
            if tag.discont {
                st.discont();
            }
        }
        let dts = Some(gst::ClockTime::from_nseconds(tag.running_time));
        let r = self.demux_tag(tag.kind, tag.ts, &tag.body, dts);
        if !tag.more {
            self.wake_lanes();
        }
        r
    }

    /// The buffer of the last `take_tag` that skips its pad's queue, if
    /// any, pushed (see lanes' notes on direct pushes).
    pub fn push_pending(&self) {
        if self.pad_queues.load(Ordering::Relaxed) {
            self.lanes.push_pending();
        }
    }

    /// What was read while the streaming thread was held went to the pads'
    /// queues (conn's rescue): see lanes' `rescued`.
    pub fn rescued(&self) {
        if self.pad_queues.load(Ordering::Relaxed) {
            self.lanes.rescued();
        }
    }

    /// Whether the pads have queues and every one has room for another
    /// buffer: a tag would then be queued without waiting (and without a
    /// push from the caller's thread).
    pub fn have_room(&self) -> bool {
        self.pad_queues.load(Ordering::Relaxed)
            && !self.flv_mode.load(Ordering::Acquire)
            && self.lanes.have_room()
    }

    /// The FLV pad for rtmpsrc's `src` request pad (see `flv_pad`); there
    /// is one at most, and none once the stream plays on elementary pads.
    pub fn request_flv(&self) -> Result<gst::Pad, &'static str> {
        if !self.lock().pads().is_empty() {
            return Err(
                "the stream already plays on the elementary pads: request src before it starts",
            );
        }
        let pad = self.add_flv_pad(false)?;
        self.flv_mode.store(true, Ordering::Release);
        Ok(pad)
    }

    /// Whether the FLV pad there is was made by the demuxer (see
    /// `first_pad_taken`): rtmpsrc ghosts it as it comes, not on request.
    pub fn flv_is_auto(&self) -> bool {
        self.flv_auto.load(Ordering::Acquire)
    }

    /// The FLV pad made and added (not yet in FLV mode).
    fn add_flv_pad(&self, auto: bool) -> Result<gst::Pad, &'static str> {
        let mut flv = lock(&self.flv_pad);
        if flv.is_some() {
            return Err("rtmpsrc has one FLV pad (src), and it is there already");
        }
        let templ = self.obj().pad_template("src").expect("template");
        let pad = gst::Pad::builder_from_template(&templ)
            .name("src")
            .event_function(|pad, parent, event| {
                RtmpSrcDemux::catch_panic_pad_function(
                    parent,
                    || false,
                    |d| d.src_event(pad, event),
                )
            })
            .build();
        if self.obj().current_state() > gst::State::Ready {
            pad.set_active(true).ok();
        }
        *flv = Some(pad.clone());
        // Unlocked for the pad-added handlers, which may look at it.
        drop(flv);
        self.flv_auto.store(auto, Ordering::Release);
        if self.obj().add_pad(&pad).is_err() {
            *lock(&self.flv_pad) = None;
            self.flv_auto.store(false, Ordering::Release);
            return Err("the demuxer has a src pad already");
        }
        Ok(pad)
    }

    /// rtmpsrc's `src` pad released: elementary pads from the next tag.
    pub fn release_flv(&self) {
        let Some(pad) = lock(&self.flv_pad).take() else {
            return;
        };
        self.flv_mode.store(false, Ordering::Release);
        pad.set_active(false).ok();
        self.obj().remove_pad(&pad).ok();
        self.flv_auto.store(false, Ordering::Release);
    }

    fn flv_pad(&self) -> Option<gst::Pad> {
        lock(&self.flv_pad).clone()
    }

    /// A tag out on the FLV pad: its header and PreviousTagSize around the
    /// body, which is not copied; the file header before the first tag,
    /// and the pad's stream-start, caps and segment before that.
    fn flv_tag(
        &self,
        kind: u8,
        ts: u32,
        data: &bytes::Bytes,
        dts: Option<gst::ClockTime>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(pad) = self.flv_pad() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        let mut head = Vec::with_capacity(FLV_HEADER_SIZE + 4 + TAG_HEADER_SIZE);
        let (start, offset, discont) = {
            let mut st = self.lock();
            let start = (!std::mem::replace(&mut st.flv_started, true)).then(|| {
                let id = match st.stream_id.as_str() {
                    "" => "rtmpsrc/flv".to_string(),
                    id => id.to_string(),
                };
                let group = *st.group_id.get_or_insert_with(gst::GroupId::next);
                (id, group, st.segment.clone())
            });
            if st.flv_offset.is_none() {
                // The file header says what the metadata says the stream
                // has, where it came first and says it; else both.
                let (has_video, has_audio) = (kind == tag_type::SCRIPT)
                    .then(|| metadata_value(data))
                    .flatten()
                    .map(|m| kinds_said(&m))
                    .filter(|(v, a)| *v || *a)
                    .unwrap_or((true, true));
                FlvHeader {
                    has_audio,
                    has_video,
                }
                .write(&mut head);
            }
            write_tag_header(&mut head, kind, ts, data.len());
            let offset = st.flv_offset.unwrap_or(0);
            st.flv_offset = Some(offset + (head.len() + data.len() + 4) as u64);
            (start, offset, std::mem::take(&mut st.flv_discont))
        };
        if let Some((id, group, segment)) = start {
            pad.push_event(
                gst::event::StreamStart::builder(&id)
                    .group_id(group)
                    .build(),
            );
            pad.push_event(gst::event::Caps::new(&crate::caps::flv_caps()));
            pad.push_event(segment.unwrap_or_else(|| {
                gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new())
            }));
        }
        let size = head.len() + data.len() + 4;
        let mut b = gst::Buffer::new();
        {
            let b = b.get_mut().expect("new buffer is writable");
            b.append_memory(gst::Memory::from_mut_slice(head));
            b.append_memory(gst::Memory::from_slice(data.clone()));
            b.append_memory(gst::Memory::from_slice(previous_tag_size(data.len())));
            b.set_dts(dts);
            b.set_offset(offset);
            b.set_offset_end(offset + size as u64);
            let mut flags = gst::BufferFlags::empty();
            // The frame type: the high nibble, legacy or Enhanced (whose
            // top bit says an extended header).
            if kind == tag_type::VIDEO && data.first().is_some_and(|b| (b >> 4) & 7 != 1) {
                flags |= gst::BufferFlags::DELTA_UNIT;
            }
            if discont {
                flags |= gst::BufferFlags::DISCONT;
            }
            b.set_flags(flags);
        }
        let r = pad.push(b)?;
        if self.given_all(true) {
            return Err(gst::FlowError::Eos);
        }
        Ok(r)
    }

    fn demux_tag(
        &self,
        kind: u8,
        ts: u32,
        data: &bytes::Bytes,
        dts: Option<gst::ClockTime>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.given_all(false) {
            return Err(gst::FlowError::Eos);
        }
        if self.flv_mode.load(Ordering::Acquire) {
            return self.flv_tag(kind, ts, data, dts);
        }
        if self.prelude_open.load(Ordering::Relaxed) {
            self.keep_prelude(kind, ts, data, dts);
        }
        let r = match kind {
            tag_type::VIDEO => self.video(data, dts),
            tag_type::AUDIO => self.audio(data, dts),
            tag_type::SCRIPT => {
                self.metadata(data);
                Ok(gst::FlowSuccess::Ok)
            }
            _ => Ok(gst::FlowSuccess::Ok),
        };
        // The metadata's time is the server's choice (nginx-rtmp stamps
        // it 0 for a player that joins a stream hours in): the wait for
        // the tracks counts from the first audio or video.
        self.check_no_more_pads((kind != tag_type::SCRIPT).then_some(ts));
        r
    }

    /// A tag kept until the first elementary pad is looked at (see
    /// `State::prelude`), within bounds.
    fn keep_prelude(&self, kind: u8, ts: u32, data: &bytes::Bytes, dts: Option<gst::ClockTime>) {
        let mut st = self.lock();
        if st.decided {
            return;
        }
        st.prelude_bytes += data.len();
        if st.prelude.len() >= MAX_PRELUDE_TAGS || st.prelude_bytes > MAX_PRELUDE_BYTES {
            gst::debug!(
                CAT,
                imp = self,
                "no elementary pad after {} tags: the prelude is dropped",
                st.prelude.len()
            );
            st.prelude = Vec::new();
            st.decided = true;
            self.prelude_open.store(false, Ordering::Relaxed);
            return;
        }
        st.prelude.push(PreludeTag {
            kind,
            ts,
            data: data.clone(),
            dts,
        });
    }

    /// An elementary pad gone: its track keeps no pad, nothing more is
    /// held for it, and it leaves the flow combiner, the queues and the
    /// element.
    fn forget_pad(&self, pad: &gst::Pad) {
        {
            let mut st = self.lock();
            for (_, t) in &mut st.tracks {
                if t.pad.as_ref() == Some(pad) {
                    t.pad = None;
                }
            }
            st.held = None;
            st.hold_over = true;
        }
        self.flow.lock().unwrap().remove_pad(pad);
        pad.set_active(false).ok();
        self.lanes.remove(pad);
        self.obj().remove_pad(pad).ok();
    }

    /// Whether `ts` (a media tag's) is past the wait for the tracks,
    /// counted from the first media tag.
    fn late(st: &mut State, ts: Option<u32>) -> bool {
        let Some(ts) = ts else { return false };
        let first = *st.first_ts.get_or_insert(ts);
        i64::from(ts.wrapping_sub(first) as i32) > NO_MORE_PADS_AFTER_MS
    }

    fn check_no_more_pads(&self, ts: Option<u32>) {
        if let Some(held) = self.held_due(ts) {
            self.release(held);
        }
        let fire = {
            let mut st = self.lock();
            if st.no_more_pads {
                return;
            }
            let late = Self::late(&mut st, ts);
            let has = |video| {
                st.tracks
                    .iter()
                    .any(|(t, tr)| t.video == video && tr.pad.is_some())
            };
            let (has_v, has_a) = (has(true), has(false));
            // An announced track whose codec is left out will not come;
            // one that has not come that long after the first tag is not
            // waited for either (a player would wait for it forever).
            let done = match &st.expect {
                Some(tracks) => {
                    (late
                        || tracks
                            .iter()
                            .all(|t| st.pad(*t).is_some() || st.left_out(*t)))
                        && (has_v || has_a)
                }
                None => (has_v && has_a) || (late && (has_v || has_a)),
            };
            if done {
                st.no_more_pads = true;
            }
            done
        };
        if fire {
            self.signal_no_more_pads();
        }
    }

    /// After `no_more_pads` turned true: the tracks announced and never
    /// come leave the collection, and the application hears it.
    fn signal_no_more_pads(&self) {
        gst::debug!(CAT, imp = self, "no more pads");
        self.refresh_collection();
        self.obj().no_more_pads();
    }

    /// onMetaData: the stream's tags, each track's, and the tracks to
    /// expect (see `MetadataSays`).
    fn metadata(&self, body: &[u8]) {
        let Some(m) = metadata_value(body) else {
            return;
        };
        let said = MetadataSays::of(&m);
        let mut st = self.lock();
        if !said.expect.is_empty() {
            st.expect = Some(said.expect);
        }
        st.meta = Some(m);
        st.stream_tags = Some(said.stream_tags);
        st.track_tags = said.track_tags;
        for (_, t) in &mut st.tracks {
            t.tagged = false;
        }
        drop(st);
        self.refresh_collection();
    }

    /// Once there are pads, a change in the tracks known (announced, left
    /// out, or announced and never come by no-more-pads) is a new
    /// collection for them.
    fn refresh_collection(&self) {
        let update = {
            let mut st = self.lock();
            if st.tracks.iter().any(|(_, t)| t.pad.is_some()) {
                let (c, changed) = st.collection(None);
                changed.then(|| (st.pads(), c))
            } else {
                None
            }
        };
        if let Some((pads, c)) = update {
            self.announce(&pads, &c);
        }
    }

    /// Whether the audio pad is to wait for the video pad (see `Held`):
    /// its caps are then kept for it.
    fn hold(&self, id: PadTrack, caps: &gst::Caps) -> bool {
        if id != AUDIO0 {
            return false;
        }
        let mut st = self.lock();
        let video_to_come = st.expect.as_ref().is_some_and(|e| e.contains(&VIDEO0))
            && st.pad(VIDEO0).is_none()
            && !st.left_out(VIDEO0);
        if st.hold_over || st.no_more_pads || st.pad(id).is_some() || !video_to_come {
            return false;
        }
        match &mut st.held {
            Some(h) => h.caps = caps.clone(),
            None => {
                gst::debug!(CAT, imp = self, "audio before video: the audio pad waits");
                st.held = Some(Held {
                    caps: caps.clone(),
                    frames: Vec::new(),
                    bytes: 0,
                });
            }
        }
        true
    }

    /// The held audio, when its wait is over (`ts`: the tag just
    /// demuxed, for the stream time the wait is bounded by).
    fn held_due(&self, ts: Option<u32>) -> Option<Held> {
        let mut st = self.lock();
        st.held.as_ref()?;
        // Until the video pad has given its first frame, not only until it
        // is there: a sink linked to it prerolls on that frame before the
        // audio's sink comes. Else, with pad-queues=false, the audio's
        // sink prerolled first and waited for the video's, which waited
        // for this thread (the pipeline had lost its state to the video
        // sink's async start).
        if !Self::late(&mut st, ts) && !st.video_flowing && !st.left_out(VIDEO0) {
            return None;
        }
        st.hold_over = true;
        st.held.take()
    }

    /// The audio pad, after the video's, and what was held for it, in
    /// order (through the pad's queue, where there is one). A flow error
    /// shows again at the next frame.
    fn release(&self, held: Held) {
        gst::debug!(
            CAT,
            imp = self,
            "the audio pad after the video's, with {} frames held",
            held.frames.len()
        );
        self.set_caps(AUDIO0, held.caps);
        let (arrival, direct) = {
            let st = self.lock();
            (st.arrival, st.direct)
        };
        for f in held.frames {
            {
                let mut st = self.lock();
                st.arrival = f.arrival;
                st.direct = false;
            }
            if self.push(AUDIO0, &f.data, f.dts, 0, true).is_err() {
                break;
            }
        }
        let mut st = self.lock();
        st.arrival = arrival;
        st.direct = direct;
    }

    /// Creates the pad for a track, or changes its caps.
    fn set_caps(&self, id: PadTrack, caps: gst::Caps) {
        // The stream went out as FLV while the tag was demuxed (see
        // `first_pad_taken`).
        if self.flv_mode.load(Ordering::Acquire) || self.hold(id, &caps) {
            return;
        }
        let (new_pad, push, collection, first) = {
            let mut st = self.lock();
            let segment = st.segment.clone();
            let group_id = *st.group_id.get_or_insert_with(gst::GroupId::next);
            if st.track(id).caps.as_ref() == Some(&caps) {
                return;
            }
            let stream = st.stream(id);
            stream.set_caps(Some(&caps));
            let (collection, changed) = st.collection(Some(id));
            // A new collection goes to the pads there are as well.
            let update = changed.then(|| (st.pads(), collection.clone()));
            let track = st.track(id);
            track.caps = Some(caps.clone());
            let (new_pad, push) = match &track.pad {
                Some(p) => (None, Some((p.clone(), caps))),
                None => {
                    let pad = self.new_pad(
                        id,
                        PadStart {
                            group_id,
                            stream,
                            collection,
                            caps,
                            segment,
                        },
                    );
                    track.pad = Some(pad.clone());
                    track.discont = true;
                    (Some(pad), None)
                }
            };
            let first = new_pad.is_some() && !std::mem::replace(&mut st.decided, true);
            (new_pad, push, update, first)
        };
        if let Some((pads, c)) = collection {
            self.announce(&pads, &c);
        }
        if let Some(p) = new_pad {
            self.flow.lock().unwrap().add_pad(&p);
            self.obj().add_pad(&p).ok();
            gst::info!(
                CAT,
                imp = self,
                "added {} pad with {:?}",
                p.name(),
                p.sticky_event::<gst::event::Caps>(0)
                    .map(|c| c.caps_owned())
            );
            if first {
                self.first_pad_taken(&p);
            }
        }
        if let Some((p, caps)) = push {
            gst::info!(CAT, imp = self, "{} caps change: {caps}", p.name());
            self.send_event(&p, gst::event::Caps::new(&caps));
        }
    }

    /// A track's pad, active (behind its queue with pad-queues) and with
    /// its first sticky events, not yet added to the element.
    fn new_pad(&self, id: PadTrack, start: PadStart) -> gst::Pad {
        let templ = match (id.video, id.track) {
            (true, 0) => "video",
            (false, 0) => "audio",
            (true, _) => "video_%u",
            (false, _) => "audio_%u",
        };
        let templ = self.obj().pad_template(templ).expect("template");
        let mut builder = gst::Pad::builder_from_template(&templ)
            .name(id.name().as_str())
            .event_function(|pad, parent, event| {
                RtmpSrcDemux::catch_panic_pad_function(
                    parent,
                    || false,
                    |d| d.src_event(pad, event),
                )
            });
        let queued = self.pad_queues.load(Ordering::Relaxed);
        if queued {
            let lanes = self.lanes.clone();
            builder = builder.activatemode_function(move |pad, _, mode, active| match mode {
                gst::PadMode::Push => lanes.activate(pad, active),
                _ => Err(gst::loggable_error!(CAT, "push mode only")),
            });
        }
        let pad = builder.build();
        if queued {
            self.lanes.add(&pad, id.video);
        }
        // With a queue, its thread waits for the first buffer while the
        // first sticky events go straight to the pad.
        pad.set_active(true).ok();
        // The track's stream, then the collection it is in: parsebin takes
        // a stream-start that carries a stream for one whose collection
        // comes from upstream (without the collection, decodebin3 selected
        // nothing: a video-only stream failed in playbin3 with not-linked).
        let stream_id = start
            .stream
            .stream_id()
            .map(|i| i.to_string())
            .unwrap_or_default();
        pad.push_event(
            gst::event::StreamStart::builder(&stream_id)
                .group_id(start.group_id)
                .stream(start.stream)
                .build(),
        );
        pad.push_event(gst::event::StreamCollection::new(&start.collection));
        pad.push_event(gst::event::Caps::new(&start.caps));
        pad.push_event(start.segment.unwrap_or_else(|| {
            gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new())
        }));
        pad
    }

    /// A new collection of the tracks: on the pads there are (those made
    /// from now on give it after their stream-start) and on the bus.
    fn announce(&self, pads: &[gst::Pad], collection: &gst::StreamCollection) {
        gst::debug!(
            CAT,
            imp = self,
            "{} tracks in the collection",
            collection.len()
        );
        for p in pads {
            self.send_event(p, gst::event::StreamCollection::new(collection));
        }
        let msg = gst::message::StreamCollection::builder(collection)
            .src(&*self.obj())
            .build();
        self.obj().post_message(msg).ok();
    }

    fn push(
        &self,
        id: PadTrack,
        data: &bytes::Bytes,
        dts: Option<gst::ClockTime>,
        cts: i32,
        key: bool,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let Some(out) = self.outgoing(id, data, dts) else {
            return Ok(gst::FlowSuccess::Ok);
        };
        for t in [out.global_tags, out.own_tags].into_iter().flatten() {
            self.send_event(&out.pad, gst::event::Tag::new(t));
        }
        let b = frame_buffer(data, dts, cts, key, out.discont, out.arrival);
        let r = self.send_buffer(&out.pad, id.video, out.direct, b);
        // A pad already looked at (see `warn_left_out`) costs nothing more.
        if r == Err(gst::FlowError::NotLinked) && !out.left_out {
            self.warn_left_out(id, &out.pad);
        }
        let r = self.flow.lock().unwrap().update_pad_flow(&out.pad, r);
        if r == Err(gst::FlowError::NotLinked) {
            self.tell_not_linked();
        }
        let r = r?;
        if self.given_all(true) {
            return Err(gst::FlowError::Eos);
        }
        Ok(r)
    }

    /// Where a frame of track `id` goes and what goes before it; `None`
    /// where it goes nowhere now: no pad for the track (yet), or audio
    /// held until the video's pad comes (see `hold`). A held frame that
    /// fills the hold ends it: everything held is pushed from here
    /// (`release`), in the same lock's turn, rather than locking again
    /// for every audio frame.
    #[inline]
    fn outgoing(
        &self,
        id: PadTrack,
        data: &bytes::Bytes,
        dts: Option<gst::ClockTime>,
    ) -> Option<Outgoing> {
        let mut st = self.lock();
        let arrival = st.arrival;
        if id == AUDIO0
            && let Some(h) = st.held.as_mut()
        {
            h.bytes += data.len();
            h.frames.push(HeldFrame {
                data: data.clone(),
                dts,
                arrival,
            });
            if h.frames.len() >= MAX_HELD_FRAMES || h.bytes >= MAX_HELD_BYTES {
                st.hold_over = true;
                let held = st.held.take().expect("matched above");
                drop(st);
                self.release(held);
            }
            return None;
        }
        let direct = st.direct;
        let (_, tr) = st.tracks.iter_mut().find(|(t, _)| *t == id)?;
        let pad = tr.pad.clone()?;
        let discont = std::mem::take(&mut tr.discont);
        let left_out = tr.left_out;
        let first = !std::mem::replace(&mut tr.tagged, true);
        if id == VIDEO0 {
            st.video_flowing = true;
        }
        Some(Outgoing {
            pad,
            // The stream's tags before each pad's first frame; the track's
            // own with its next one.
            global_tags: if first { st.stream_tags.clone() } else { None },
            own_tags: st
                .track_tags
                .iter()
                .position(|(t, _)| *t == id)
                .map(|i| st.track_tags.swap_remove(i).1),
            discont,
            arrival,
            direct,
            left_out,
        })
    }

    /// Every pad's push came back not-linked: which pads there are, and
    /// how to link them, before the base class's "Internal data stream
    /// error". Nothing took the FLV pad offered either (see
    /// `first_pad_taken`), or something took the first pad and went.
    fn tell_not_linked(&self) {
        let pads = {
            let mut st = self.lock();
            if std::mem::replace(&mut st.told_not_linked, true) {
                return;
            }
            st.pads()
        };
        let pads: Vec<String> = pads
            .iter()
            .map(|p| format!("{} ({})", p.name(), media_type(p)))
            .collect();
        gst::element_imp_error!(
            self,
            gst::StreamError::Failed,
            (
                "Nothing is linked to rtmpsrc's pads: {}. Link them by name (rtmpsrc name=s s.video ! ...), or link its src pad for the stream as FLV: s.src ! ...",
                pads.join(", ")
            )
        );
    }

    /// A pad nothing is linked to while another of the pads went to an
    /// element that decodes one stream (decodebin, decodebin3, parsebin):
    /// what `rtmpsrc ! decodebin name=d d. ! ... d. ! ...` (written for
    /// rtmp2src, whose FLV decodebin takes whole) gives where the stream
    /// stayed on the elementary pads (see `first_pad_taken`: flvdemux
    /// could not read it). Linked to the first elementary pad, decodebin
    /// gives that stream alone; the line's other branch never links, and
    /// this pad's frames are dropped. Warned once per track, with the ways
    /// to have every stream. A pad left out on purpose, with no
    /// autoplugger on another, is not warned of.
    fn warn_left_out(&self, id: PadTrack, pad: &gst::Pad) {
        // Looked at once per track: a pad left out on purpose pushes on,
        // and the caller skips this once the track is marked.
        let others: Vec<gst::Pad> = {
            let mut st = self.lock();
            let track = st.track(id);
            if std::mem::replace(&mut track.left_out, true) {
                return;
            }
            st.pads().into_iter().filter(|p| p != pad).collect()
        };
        if outside_peer(pad).is_some() {
            // Linked: the not-linked came from further downstream.
            return;
        }
        let autoplugger = others.iter().find_map(|p| {
            let element = outside_peer(p)?.parent_element()?;
            let factory = factory_name(&element)?;
            matches!(factory.as_str(), "decodebin" | "decodebin3" | "parsebin")
                .then(|| (p.name(), element.name(), factory))
        });
        let Some((other, element, factory)) = autoplugger else {
            return;
        };
        let caps = media_type(pad);
        gst::element_imp_warning!(
            self,
            gst::StreamError::Failed,
            (
                "Nothing is linked to rtmpsrc's {} pad ({caps}): its frames are dropped. Its {other} pad went to {element} ({factory}), which takes that stream alone. For every stream, link each pad by name (rtmpsrc name=s s.video ! {factory} ... s.audio ! {factory} ...), or play the location with uridecodebin or playbin; rtmpsrc's src pad (FLV: s.src ! {factory}) gives every stream to one {factory} where its flvdemux reads them",
                pad.name()
            )
        );
    }

    fn warn_unmapped(&self, id: PadTrack, what: &str) {
        let mut st = self.lock();
        let track = st.track(id);
        if !track.warned && track.pad.is_none() {
            track.warned = true;
            drop(st);
            gst::element_imp_warning!(
                self,
                gst::StreamError::CodecNotFound,
                (
                    "The stream's {} is {}, which rtmpsrc does not map: leaving it out",
                    match (id.video, id.track) {
                        (true, 0) => "video".to_owned(),
                        (false, 0) => "audio".to_owned(),
                        (true, n) => format!("video track {n}"),
                        (false, n) => format!("audio track {n}"),
                    },
                    what
                )
            );
            self.refresh_collection();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_buffer_carries_the_tags_times_and_flags() {
        gst::init().unwrap();
        let body = bytes::Bytes::from_static(b"\x00\x00\x00\x01frame");
        let at = |ms| Some(gst::ClockTime::from_mseconds(ms));

        // A keyframe with a composition time: PTS = DTS + cts, the payload
        // the tag body's own bytes.
        let b = frame_buffer(&body, at(1000), 40, true, false, 7);
        assert_eq!(b.dts(), at(1000));
        assert_eq!(b.pts(), at(1040));
        assert_eq!(b.offset(), 7);
        assert!(b.flags().is_empty());
        assert_eq!(&*b.map_readable().unwrap(), &body[..]);

        // A delta frame after a gap: both flags.
        let b = frame_buffer(&body, at(1000), 0, false, true, 8);
        assert_eq!(
            b.flags(),
            gst::BufferFlags::DELTA_UNIT | gst::BufferFlags::DISCONT
        );
        assert_eq!(b.pts(), at(1000));

        // A negative composition time (B-frames reordered by a muxer that
        // shifted nothing) stays negative relative to DTS, but never
        // before 0.
        assert_eq!(
            frame_buffer(&body, at(1000), -40, true, false, 0).pts(),
            at(960)
        );
        assert_eq!(
            frame_buffer(&body, at(20), -40, true, false, 0).pts(),
            at(0)
        );

        // No time, no PTS.
        let b = frame_buffer(&body, None, 40, true, false, 0);
        assert_eq!((b.dts(), b.pts()), (None, None));
    }
}
