// SPDX-License-Identifier: MPL-2.0
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use crate::caps::{AudioFormat, VideoCodec, VideoFormat};
use crate::common::PadTrack;
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::flv::{
    AudioPacketType, AvMultitrackType, FrameType, TAG_HEADER_SIZE, VideoCodecId, VideoFourCc,
    VideoPacketType, tag_type,
};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "rtmpsinkmux",
        gst::DebugColorFlags::empty(),
        Some("RTMP sink muxer"),
    )
});

#[derive(Debug, Clone)]
enum Format {
    Video(VideoFormat),
    Audio(AudioFormat),
}

#[derive(Debug, Default)]
struct PadState {
    /// Kind and track id, from the pad's name.
    id: PadTrack,
    format: Option<Format>,
    /// The codec configuration last sent as a sequence header.
    sent_config: Option<Vec<u8>>,
    /// New caps came: look at the codec configuration again (only then,
    /// not on every frame).
    config_dirty: bool,
    /// The colorInfo last sent (Enhanced RTMP video), and whether new caps
    /// came since.
    sent_color: Option<Vec<u8>>,
    color_dirty: bool,
    frames: u64,
    last_dts: Option<u32>,
    /// Running time (ns) where the last buffer taken from this pad ends
    /// (DTS + duration): nothing earlier can come from it any more.
    taken_until: Option<i64>,
    bitrate: Option<u32>,
    /// From the pad's tags, for the track maps of onMetaData.
    language: Option<String>,
    title: Option<String>,
}

/// One sink pad: what interleaving needs to know of it, and what it holds.
#[derive(Debug)]
struct Input {
    pad: gst::Pad,
    tags: PadState,
    /// Buffers waiting for their turn, in arrival (DTS) order.
    queue: VecDeque<gst::Buffer>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    eos: bool,
    flushing: bool,
    /// Upstream's latency was asked since this pad's first buffer.
    asked: bool,
    /// The thread that brought the last buffer.
    fed_by: Option<std::thread::ThreadId>,
    /// Where an untimed buffer goes, if that is known: the segment's
    /// start until a buffer came, then where the last one ended (its DTS
    /// or PTS plus its duration, in stream time).
    next_ts: Option<gst::ClockTime>,
}

impl Input {
    fn new(pad: gst::Pad, tags: PadState) -> Self {
        Input {
            pad,
            tags,
            queue: VecDeque::new(),
            segment: gst::FormattedSegment::new(),
            eos: false,
            flushing: false,
            asked: false,
            fed_by: None,
            next_ts: None,
        }
    }

    /// Queues a buffer that came on the pad; false if it was left out (an
    /// encoder's header packet that FLV has no place for).
    fn take(&mut self, mut buf: gst::Buffer) -> bool {
        let header = buf.flags().contains(gst::BufferFlags::HEADER)
            && matches!(
                self.tags.format,
                Some(Format::Audio(
                    AudioFormat::Opus { .. } | AudioFormat::Flac { .. } | AudioFormat::Speex
                ))
            );
        if header {
            // An Opus, FLAC or Speex header packet (the encoders push them
            // before the first frame): what Opus's and FLAC's say goes in
            // the sequence start, from caps; FLV has no place for Speex's
            // (players make their own, as rtmpsrc does).
            return false;
        }
        let ts = match buf.dts().or(buf.pts()) {
            Some(t) => Some(t),
            // An encoder's untimed frame (GStreamer 1.22's speexenc gives
            // its first one no timestamp): it starts the segment, or
            // follows a frame whose end is known. Any other is an error
            // (`tags_for`), not a guess.
            None => self.next_ts.inspect(|&at| {
                gst::debug!(CAT, obj = self.pad, "untimed buffer stamped {at}");
                buf.make_mut().set_pts(at);
            }),
        };
        self.next_ts = ts.zip(buf.duration()).map(|(t, d)| t + d);
        if buf.flags().contains(gst::BufferFlags::GAP) && buf.size() == 0 {
            // A gap: nothing to send, but nothing earlier than its end
            // will come from this pad (the others' frames up to there
            // may go).
            let end = buf
                .pts()
                .or(buf.dts())
                .map(|t| t + buf.duration().unwrap_or_default());
            if let Some(end) = running_time(&self.segment, end) {
                self.tags.taken_until = Some(self.tags.taken_until.map_or(end, |t| t.max(end)));
            }
        } else {
            self.queue.push_back(buf);
        }
        self.fed_by = Some(std::thread::current().id());
        true
    }

    /// The running time (ns, signed) of a buffer's DTS (or PTS) here.
    fn dts_of(&self, buf: &gst::BufferRef) -> Option<i64> {
        running_time(&self.segment, buf.dts().or(buf.pts()))
    }

    /// The running time of the buffer next in line, if one is queued.
    fn head(&self) -> Option<i64> {
        self.queue
            .front()
            .map(|b| self.dts_of(b).unwrap_or(i64::MIN))
    }

    /// Whether the queue holds more than `span` ns (or a count no stream
    /// needs): its thread then waits until it drains.
    fn full(&self, span: i64) -> bool {
        if self.queue.len() >= MAX_QUEUED {
            return true;
        }
        match (self.head(), self.queue.back().and_then(|b| self.dts_of(b))) {
            (Some(first), Some(last)) => last.saturating_sub(first) > span,
            _ => false,
        }
    }
}

impl State {
    /// A pad's thread that would wait for its queue to drain, when each pad
    /// holding it back (interleaving: nothing queued, not at its end) was
    /// last fed by that same thread (a demuxer linked without queues): the
    /// wait would never end. The name of one such pad, if so.
    fn waiting_on_itself(&self, me: std::thread::ThreadId) -> Option<String> {
        if !self.interleave {
            return None;
        }
        let mut holders = self
            .pads
            .iter()
            .filter(|i| i.queue.is_empty() && !i.eos)
            .peekable();
        holders.peek()?;
        let mut name = None;
        for i in holders {
            if i.fed_by != Some(me) {
                return None;
            }
            name.get_or_insert_with(|| i.pad.name().to_string());
        }
        name
    }
}

#[derive(Debug)]
struct State {
    header_sent: bool,
    /// Running time (ns) of the first DTS written: RTMP time 0.
    base: Option<i64>,
    pads: Vec<Input>,
    /// The metadata last sent, to send it again only when it changes.
    sent_meta: Option<Vec<u8>>,
    /// Caps or tags changed since the metadata was last made.
    meta_dirty: bool,
    encoder: Option<String>,
    video_frames: u64,
    audio_frames: u64,
    /// Frames of the batch being sent: whether video, and when each came
    /// in (a [`crate::latency::stamp`], from the buffer's offset).
    in_flight: Vec<(bool, u64)>,
    /// Pad to socket, per kind, over the last frames.
    latency: crate::latency::Latencies,
    /// Between READY->PAUSED and PAUSED->READY; a waiting thread leaves
    /// when it turns false.
    running: bool,
    /// A thread is pushing downstream: the others queue and return, and it
    /// sends what they queued before it stops.
    pushing: bool,
    /// What the last push downstream gave, returned to every pad.
    flow: Result<gst::FlowSuccess, gst::FlowError>,
    /// Stream-start, caps and segment went out on the src pad.
    src_started: bool,
    eos_sent: bool,
    /// Threads waiting for their pad's queue to drain (wake-ups cost a
    /// system call: none when nobody waits).
    waiting: usize,
    /// The `latency` property: added to the latency reported, and to what
    /// a live pad may queue.
    extra_latency: gst::ClockTime,
    /// The `interleave` property: false, nothing waits for another pad.
    interleave: bool,
    /// Upstream's latency (live, min in ns), asked on the first buffer of
    /// each pad.
    upstream: Option<(bool, i64)>,
}

impl Default for State {
    fn default() -> Self {
        State {
            header_sent: false,
            base: None,
            pads: Vec::new(),
            sent_meta: None,
            meta_dirty: false,
            encoder: None,
            video_frames: 0,
            audio_frames: 0,
            in_flight: Vec::new(),
            latency: Default::default(),
            running: false,
            pushing: false,
            flow: Ok(gst::FlowSuccess::Ok),
            src_started: false,
            eos_sent: false,
            waiting: 0,
            extra_latency: gst::ClockTime::ZERO,
            interleave: true,
            upstream: None,
        }
    }
}

impl State {
    fn input(&self, pad: &gst::Pad) -> Option<&Input> {
        self.pads.iter().find(|i| &i.pad == pad)
    }

    fn input_mut(&mut self, pad: &gst::Pad) -> Option<&mut Input> {
        self.pads.iter_mut().find(|i| &i.pad == pad)
    }

    /// How long a pad's queue may get before its thread waits: half a
    /// second (so that the pushing thread works in batches when the input
    /// is a file), or more when live upstream needs it.
    fn queue_span(&self) -> i64 {
        let live = match self.upstream {
            Some((true, min)) => min.saturating_add(self.extra_latency.nseconds() as i64),
            _ => 0,
        };
        live.max(NON_LIVE_QUEUE.nseconds() as i64)
    }
}

impl PadState {
    /// The RTMP time (ms from `base`, the stream's first DTS; never back
    /// in time on a track) and the composition time (PTS - DTS, ms) of a
    /// buffer.
    fn stamp(&mut self, base: i64, rt_dts: i64, rt_pts: i64) -> (u32, i32) {
        let mut dts = round_ms(rt_dts - base).max(0);
        let pts = round_ms(rt_pts - base);
        if let Some(last) = self.last_dts {
            dts = dts.max(i64::from(last));
        }
        self.last_dts = Some(dts as u32);
        let cts = (pts - dts).clamp(-(1 << 23), (1 << 23) - 1) as i32;
        (dts as u32, cts)
    }

    /// The tags of one frame: its sequence header first when the codec
    /// configuration changed, then the frame.
    fn frame_tags(
        &mut self,
        format: &Format,
        buf: &gst::Buffer,
        ts: u32,
        cts: i32,
        out: &mut Vec<gst::Buffer>,
    ) -> Result<(), gst::FlowError> {
        match format {
            Format::Video(v) => {
                let frame = VideoFrame {
                    buf,
                    key: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    ts,
                    cts,
                };
                // H.264 and Flash's codecs on track 0 as legacy FLV, every
                // other track and codec as Enhanced RTMP.
                match (self.id.track, v.codec) {
                    (0, VideoCodec::H264) => legacy_video_tags(self, v, &frame, out)?,
                    (0, VideoCodec::Flash(id)) => flash_video_tag(id, v, &frame, out)?,
                    (_, codec) => {
                        // Checked with the caps: Flash's codecs are track 0's.
                        let fourcc = codec
                            .enhanced_fourcc()
                            .ok_or(gst::FlowError::NotNegotiated)?;
                        enhanced_video_tags(self, v, fourcc, &frame, out)?
                    }
                }
            }
            Format::Audio(a) => audio_tags(self, a, buf, ts, out)?,
        }
        self.frames += 1;
        Ok(())
    }
}

/// One video frame as it goes out: its RTMP time and composition time.
struct VideoFrame<'a> {
    buf: &'a gst::Buffer,
    key: bool,
    /// RTMP timestamp (DTS, ms).
    ts: u32,
    /// PTS - DTS, ms.
    cts: i32,
}

/// H.264 as legacy FLV: the avcC sequence header, then AVC NALU tags with
/// the composition time.
fn legacy_video_tags(
    ps: &mut PadState,
    v: &VideoFormat,
    f: &VideoFrame,
    out: &mut Vec<gst::Buffer>,
) -> Result<(), gst::FlowError> {
    let avcc = v.config.as_ref().expect("H.264 caps have codec_data");
    if ps.config_changed(avcc)? {
        out.push(tag(tag_type::VIDEO, f.ts, &[0x17, 0, 0, 0, 0], Some(avcc)));
    }
    let c = (f.cts as u32).to_be_bytes();
    let head = [if f.key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
    out.push(tag(tag_type::VIDEO, f.ts, &head, Some(f.buf)));
    Ok(())
}

/// Flash's own codecs as legacy FLV: the frame type and codec id, then
/// for VP6 the crop byte (codec_data's, else none), then the frame.
fn flash_video_tag(
    codec: VideoCodecId,
    v: &VideoFormat,
    f: &VideoFrame,
    out: &mut Vec<gst::Buffer>,
) -> Result<(), gst::FlowError> {
    let frame_type = if f.key {
        FrameType::Key
    } else {
        FrameType::Inter
    };
    let first = (frame_type as u8) << 4 | codec as u8;
    match codec {
        VideoCodecId::Vp6 | VideoCodecId::Vp6Alpha => {
            let crop = match &v.config {
                Some(c) => {
                    let m = c.map_readable().map_err(|_| gst::FlowError::Error)?;
                    m.first().copied().unwrap_or(0)
                }
                None => 0,
            };
            out.push(tag(tag_type::VIDEO, f.ts, &[first, crop], Some(f.buf)));
        }
        _ => out.push(tag(tag_type::VIDEO, f.ts, &[first], Some(f.buf))),
    }
    Ok(())
}

/// The first bytes of an Enhanced RTMP tag, built on the stack: `first`
/// (the audio or video ExHeader bits, with the frame type for video), the
/// packet type and the FourCC; for a track other than 0, a one-track
/// Multitrack packet (`multitrack` is its packet type code) with the track
/// id. Room is left for a composition time.
struct ExHead {
    bytes: [u8; 10],
    len: usize,
}

impl ExHead {
    fn new(first: u8, multitrack: u8, packet_type: u8, cc: [u8; 4], track: u8) -> ExHead {
        let mut bytes = [0u8; 10];
        let len = if track == 0 {
            bytes[0] = first | packet_type;
            bytes[1..5].copy_from_slice(&cc);
            5
        } else {
            bytes[0] = first | multitrack;
            bytes[1] = (AvMultitrackType::OneTrack as u8) << 4 | packet_type;
            bytes[2..6].copy_from_slice(&cc);
            bytes[6] = track;
            7
        };
        ExHead { bytes, len }
    }

    fn video(frame_type: FrameType, packet_type: VideoPacketType, cc: [u8; 4], track: u8) -> Self {
        let first = 0x80 | (frame_type as u8) << 4;
        let multitrack = VideoPacketType::Multitrack as u8;
        ExHead::new(first, multitrack, packet_type as u8, cc, track)
    }

    fn audio(packet_type: AudioPacketType, cc: [u8; 4], track: u8) -> Self {
        let multitrack = AudioPacketType::Multitrack as u8;
        ExHead::new(0x90, multitrack, packet_type as u8, cc, track)
    }

    /// The SI24 composition time after the header.
    fn with_cts(mut self, cts: i32) -> Self {
        let c = (cts as u32).to_be_bytes();
        self.bytes[self.len..self.len + 3].copy_from_slice(&c[1..]);
        self.len += 3;
        self
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// H.265, AV1 and VP9 (and H.264 on tracks other than 0) as Enhanced RTMP:
/// SequenceStart with the configuration record, then CodedFrames (with the
/// composition time for H.264 and H.265, CodedFramesX where it is 0).
fn enhanced_video_tags(
    ps: &mut PadState,
    v: &VideoFormat,
    fourcc: VideoFourCc,
    f: &VideoFrame,
    out: &mut Vec<gst::Buffer>,
) -> Result<(), gst::FlowError> {
    let cc = fourcc.fourcc();
    let track = ps.id.track;
    let config = match &v.config {
        Some(c) => ps.config_changed(c)?.then(|| c.clone()),
        // AV1 without codec_data: av1C from the keyframes' sequence headers.
        None if f.key => ps.av1_config_changed(f.buf)?,
        None => None,
    };
    if let Some(c) = config {
        // A new sequence start: colorInfo goes again after it.
        ps.sent_color = None;
        ps.color_dirty = true;
        let head = ExHead::video(FrameType::Key, VideoPacketType::SequenceStart, cc, track);
        out.push(tag(tag_type::VIDEO, f.ts, head.as_slice(), Some(&c)));
    }
    // colorInfo after the sequence start, again whenever it changes.
    if let Some(c) = &v.color_info
        && ps.color_changed(c)?
    {
        let head = ExHead::video(FrameType::Command, VideoPacketType::Metadata, cc, track);
        out.push(tag(tag_type::VIDEO, f.ts, head.as_slice(), Some(c)));
    }
    let packet_type = match (fourcc.has_composition_time(), f.cts) {
        (true, 0) => VideoPacketType::CodedFramesX,
        _ => VideoPacketType::CodedFrames,
    };
    let frame_type = if f.key {
        FrameType::Key
    } else {
        FrameType::Inter
    };
    let mut head = ExHead::video(frame_type, packet_type, cc, track);
    if packet_type == VideoPacketType::CodedFrames && fourcc.has_composition_time() {
        head = head.with_cts(f.cts);
    }
    out.push(tag(tag_type::VIDEO, f.ts, head.as_slice(), Some(f.buf)));
    Ok(())
}

/// Audio: AAC's sequence header and raw frames, the other legacy codecs
/// as they are, the Enhanced RTMP ones (and every codec on a track other
/// than 0) with their FourCC and sequence start where the codec has a
/// configuration.
fn audio_tags(
    ps: &mut PadState,
    a: &AudioFormat,
    buf: &gst::Buffer,
    ts: u32,
    out: &mut Vec<gst::Buffer>,
) -> Result<(), gst::FlowError> {
    let h = a.tag_header();
    let track = ps.id.track;
    let fourcc = match track {
        0 => a.fourcc(),
        // Checked with the caps: every format on these tracks has one.
        _ => Some(a.enhanced_fourcc().ok_or(gst::FlowError::NotNegotiated)?),
    };
    match (fourcc, a) {
        (None, AudioFormat::Aac { asc, .. }) => {
            if ps.config_changed(asc)? {
                out.push(tag(tag_type::AUDIO, ts, &[h, 0], Some(asc)));
            }
            out.push(tag(tag_type::AUDIO, ts, &[h, 1], Some(buf)));
        }
        (None, _) => out.push(tag(tag_type::AUDIO, ts, &[h], Some(buf))),
        (Some(fourcc), _) => {
            let cc = fourcc.fourcc();
            let ex = |packet_type: AudioPacketType, payload: &gst::Buffer| {
                let head = ExHead::audio(packet_type, cc, track);
                tag(tag_type::AUDIO, ts, head.as_slice(), Some(payload))
            };
            if let Some(c) = a.config()
                && ps.config_changed(c)?
            {
                out.push(ex(AudioPacketType::SequenceStart, c));
            }
            out.push(ex(AudioPacketType::CodedFrames, buf));
        }
    }
    Ok(())
}

/// When `dirty` (new caps came), whether `now` differs from what was
/// `sent`, which it then becomes.
fn changed_since(
    dirty: &mut bool,
    sent: &mut Option<Vec<u8>>,
    now: &gst::Buffer,
) -> Result<bool, gst::FlowError> {
    if !std::mem::take(dirty) {
        return Ok(false);
    }
    let now = now
        .map_readable()
        .map_err(|_| gst::FlowError::Error)?
        .to_vec();
    let changed = sent.as_ref() != Some(&now);
    *sent = Some(now);
    Ok(changed)
}

impl PadState {
    /// Whether the codec configuration differs from the one last sent
    /// (looked at only after new caps).
    fn config_changed(&mut self, cfg: &gst::Buffer) -> Result<bool, gst::FlowError> {
        changed_since(&mut self.config_dirty, &mut self.sent_config, cfg)
    }

    /// Whether the colorInfo differs from the one last sent (looked at
    /// only after new caps or a new sequence start).
    fn color_changed(&mut self, info: &gst::Buffer) -> Result<bool, gst::FlowError> {
        changed_since(&mut self.color_dirty, &mut self.sent_color, info)
    }

    /// AV1 without codec_data in caps: the av1C of this keyframe's
    /// sequence header OBU, if it differs from the one last sent.
    fn av1_config_changed(
        &mut self,
        buf: &gst::Buffer,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let map = buf.map_readable().map_err(|_| gst::FlowError::Error)?;
        let av1c = match crate::rtmp::codec::av1c_from_temporal_unit(&map) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(None),
            Err(e) => {
                gst::warning!(CAT, "AV1 keyframe with an unreadable sequence header: {e}");
                return Ok(None);
            }
        };
        if self.sent_config.as_ref() == Some(&av1c) {
            return Ok(None);
        }
        self.sent_config = Some(av1c.clone());
        Ok(Some(gst::Buffer::from_mut_slice(av1c)))
    }
}

/// The muxer: requested sink pads, one src pad. No thread of its own: each
/// buffer is queued on its pad, and the thread that brought it sends
/// downstream whatever may go in DTS order (a buffer of one pad waits only
/// while another pad could still bring an earlier one). One thread sends
/// at a time; the others queue and return, and the sending thread takes
/// what they queued before it stops. A pad whose queue spans more than
/// half a second (or what live upstream needs) waits until it drains.
pub struct RtmpSinkMux {
    srcpad: gst::Pad,
    state: Mutex<State>,
    /// Signalled when queues shrink, pads flush or the element stops.
    drained: Condvar,
    /// `measure-latency`: stamp arrivals on the pads, time them out.
    measure: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for RtmpSinkMux {
    const NAME: &'static str = "GstRtmpSinkMux";
    type Type = super::RtmpSinkMux;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let templ = klass.pad_template("src").expect("src template");
        let srcpad = gst::Pad::builder_from_template(&templ)
            .query_function(|pad, parent, query| {
                RtmpSinkMux::catch_panic_pad_function(parent, || false, |m| m.src_query(pad, query))
            })
            .build();
        RtmpSinkMux {
            srcpad,
            state: Mutex::default(),
            drained: Condvar::new(),
            measure: AtomicBool::new(false),
        }
    }
}

impl ObjectImpl for RtmpSinkMux {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj()
            .add_pad(&self.srcpad)
            .expect("a new element takes its src pad");
    }
}

impl GstObjectImpl for RtmpSinkMux {}

impl ElementImpl for RtmpSinkMux {
    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let mut t = vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &crate::caps::flv_caps(),
                )
                .unwrap(),
            ];
            t.extend(crate::common::track_pad_templates(
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &crate::caps::video_caps(),
                &crate::caps::audio_caps(),
                None,
            ));
            t
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let mut st = self.lock();
        let taken: Vec<PadTrack> = st.pads.iter().map(|i| i.tags.id).collect();
        let id = match pick_track(templ.name_template(), name, &taken) {
            Ok(id) => id,
            Err(e) => {
                drop(st);
                gst::element_imp_warning!(self, gst::CoreError::Pad, ("{}", e));
                return None;
            }
        };
        // `video_0` stays `video_0`; the name is what the user asked for.
        let name = name.map_or_else(|| id.name(), str::to_owned);
        let pad = gst::Pad::builder_from_template(templ)
            .name(name.as_str())
            .chain_function(|pad, parent, buffer| {
                RtmpSinkMux::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |m| m.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                RtmpSinkMux::catch_panic_pad_function(
                    parent,
                    || false,
                    |m| m.sink_event(pad, event),
                )
            })
            .build();
        let tags = PadState {
            id,
            ..Default::default()
        };
        st.pads.push(Input::new(pad.clone(), tags));
        // A new pad may bring anything: no EOS until it has ended too.
        st.eos_sent = false;
        drop(st);
        self.obj().add_pad(&pad).ok()?;
        Some(pad)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let st = {
            let mut st = self.lock();
            st.pads.retain(|i| &i.pad != pad);
            self.drained.notify_all();
            st
        };
        self.obj().remove_pad(pad).ok();
        // It may have held the others back.
        drop(self.send(st));
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => {
                let mut st = self.lock();
                let pads = std::mem::take(&mut st.pads);
                *st = State {
                    running: true,
                    extra_latency: st.extra_latency,
                    interleave: st.interleave,
                    ..State::default()
                };
                st.pads = pads
                    .into_iter()
                    .map(|i| {
                        let fresh = PadState {
                            id: i.tags.id,
                            ..Default::default()
                        };
                        Input::new(i.pad, fresh)
                    })
                    .collect();
            }
            gst::StateChange::PausedToReady => {
                // Threads waiting for their queue to drain leave now.
                self.lock().running = false;
                self.drained.notify_all();
            }
            _ => {}
        }
        let ret = self.parent_change_state(transition)?;
        if transition == gst::StateChange::PausedToReady {
            for i in &mut self.lock().pads {
                i.queue.clear();
            }
        }
        Ok(ret)
    }
}

/// Buffers sent downstream in one list at most.
const MAX_BATCH: usize = 64;
/// Buffers a pad may queue at most, whatever their times.
const MAX_QUEUED: usize = 4096;
/// How much a pad may queue before its thread waits (more when live
/// upstream declares more latency): the thread sending then works in
/// batches.
const NON_LIVE_QUEUE: gst::ClockTime = gst::ClockTime::from_mseconds(500);
/// How much (ns) a pad may queue when the thread that feeds it also feeds
/// the pads it waits for (see `State::waiting_on_itself`).
const ONE_THREAD_QUEUE: i64 = 10_000_000_000;

enum Next {
    /// This pad's buffer has the earliest DTS and may go.
    Pad(usize),
    /// A pad without data could still bring an earlier buffer.
    Wait,
    /// Every pad is at its end, with nothing queued.
    Eos,
}

/// The running time of `t` in `seg`, signed, in ns.
fn running_time(
    seg: &gst::FormattedSegment<gst::ClockTime>,
    t: Option<gst::ClockTime>,
) -> Option<i64> {
    match seg.to_running_time_full(t?)? {
        gst::Signed::Positive(v) => Some(v.nseconds() as i64),
        gst::Signed::Negative(v) => Some(-(v.nseconds() as i64)),
    }
}

/// Milliseconds from ns, rounded to nearest. Computed from the absolute
/// time of every frame, so rounding never accumulates into drift.
fn round_ms(ns: i64) -> i64 {
    (ns + 500_000).div_euclid(1_000_000)
}

/// An FLV tag as one buffer: header and body prefix in one small memory,
/// then the payload's own memories (no copy), then the back pointer.
fn tag(kind: u8, ts: u32, prefix: &[u8], payload: Option<&gst::BufferRef>) -> gst::Buffer {
    let payload_len = payload.map_or(0, |p| p.size());
    let size = prefix.len() + payload_len;
    let mut head = Vec::with_capacity(TAG_HEADER_SIZE + prefix.len());
    head.push(kind);
    head.extend_from_slice(&(size as u32).to_be_bytes()[1..]);
    head.extend_from_slice(&ts.to_be_bytes()[1..]);
    head.push((ts >> 24) as u8);
    head.extend_from_slice(&[0, 0, 0]);
    head.extend_from_slice(prefix);
    let mut out = gst::Buffer::from_mut_slice(head);
    {
        let out = out.get_mut().expect("new buffer is writable");
        if let Some(p) = payload {
            for mem in p.iter_memories_owned() {
                out.append_memory(mem);
            }
        }
        out.append_memory(gst::Memory::from_slice(
            ((size + TAG_HEADER_SIZE) as u32).to_be_bytes(),
        ));
    }
    out
}

/// The input whose next buffer goes out first. A pad not at its end and
/// without a buffer holds everything back that might come after what it
/// brings next: what starts after the end of the last buffer taken from it
/// (its next one cannot start earlier: DTS only goes forward, and audio
/// frames follow one another). Video then waits for audio up to its own
/// time, not the next audio frame's. A pad that stops bringing data holds
/// the others until their queues are full (no timeout on the clock: after
/// downstream stalled it would fire for every pad and break the order
/// while the stream catches up). Without interleaving, once every pad has
/// brought its first buffer (the stream's time 0 is the earliest of them),
/// the earliest buffer queued goes at once.
fn next(st: &State) -> Next {
    let mut best: Option<(usize, i64)> = None;
    let mut all_eos = true;
    // The earliest time a pad without a buffer could still bring.
    let mut hold: Option<i64> = None;
    let mut starting = false;
    for (n, i) in st.pads.iter().enumerate() {
        match i.head() {
            Some(rt) => {
                all_eos = false;
                if best.is_none_or(|(_, b)| rt < b) {
                    best = Some((n, rt));
                }
            }
            None if i.eos => {}
            None => {
                all_eos = false;
                starting |= i.tags.taken_until.is_none();
                let until = i.tags.taken_until.unwrap_or(i64::MIN);
                hold = Some(hold.map_or(until, |h| h.min(until)));
            }
        }
    }
    match best {
        Some((n, rt)) => match hold {
            Some(h) if rt > h && (starting || st.interleave) => Next::Wait,
            _ => Next::Pad(n),
        },
        None if all_eos => Next::Eos,
        None => Next::Wait,
    }
}

impl RtmpSinkMux {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_waiting(&self, st: &State) {
        if st.waiting > 0 {
            self.drained.notify_all();
        }
    }

    /// The `interleave` property of rtmpsink; what waits goes now when it
    /// turns false (on the next buffer).
    pub fn set_interleave(&self, on: bool) {
        self.lock().interleave = on;
    }

    /// The `latency` property of rtmpsink.
    pub fn set_latency(&self, latency: gst::ClockTime) {
        self.lock().extra_latency = latency;
    }

    fn sink_chain(
        &self,
        pad: &gst::Pad,
        mut buf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if self.measure.load(Ordering::Relaxed) {
            // The frame's arrival, carried in the offset field (which
            // means nothing to the muxer otherwise: see crate::latency).
            // Here rather than in a pad probe, whose dispatch cost more
            // than the timing itself.
            let at = crate::latency::stamp(Instant::now());
            buf.make_mut().set_offset(at);
        }
        let mut st = self.ask_upstream_once(self.lock(), pad);
        if !st.running {
            return Err(gst::FlowError::Flushing);
        }
        st.flow?;
        let Some(i) = st.input_mut(pad) else {
            return Err(gst::FlowError::NotLinked);
        };
        if i.flushing {
            return Err(gst::FlowError::Flushing);
        }
        if i.eos {
            return Err(gst::FlowError::Eos);
        }
        if !i.take(buf) {
            return Ok(gst::FlowSuccess::Ok);
        }
        // Live, everything goes as soon as it may. Otherwise (a file) a
        // pad's thread sends only once its queue is full (it would wait
        // anyway), and the others only queue, so that they keep bringing
        // frames while it is held downstream (by the clock when the sink
        // syncs): it then takes what they brought in one list, a socket
        // write per batch rather than per frame. A frame that may let a
        // full pad's frames go wakes its thread.
        let batch = matches!(st.upstream, Some((false, _)));
        if batch {
            self.wake_waiting(&st);
        } else {
            st = self.send(st);
        }
        self.wait_for_room(st, pad)
    }

    /// At a pad's first buffer (and again as pads start): whether upstream
    /// is live (frames then go as soon as they may, not in batches) and
    /// its latency (how much a pad may queue). Asked outside the lock:
    /// upstream answers on this thread.
    fn ask_upstream_once<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        pad: &gst::Pad,
    ) -> MutexGuard<'a, State> {
        if st.input(pad).is_some_and(|i| !i.asked) {
            drop(st);
            let upstream = self.upstream_latency();
            st = self.lock();
            st.upstream = Some((upstream.0, upstream.1.nseconds() as i64));
            if let Some(i) = st.input_mut(pad) {
                i.asked = true;
            }
        }
        st
    }

    /// Waits while `pad`'s queue is full (more than the others can catch
    /// up with), sending what may go meanwhile; an error if only this
    /// pad's own thread could bring what the others wait for and it has
    /// waited too long.
    fn wait_for_room<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        pad: &gst::Pad,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        loop {
            let span = st.queue_span();
            let Some(i) = st.input(pad) else {
                return Err(gst::FlowError::NotLinked);
            };
            if i.flushing || !st.running {
                return Err(gst::FlowError::Flushing);
            }
            st.flow?;
            if !i.full(span) {
                return Ok(gst::FlowSuccess::Ok);
            }
            // Full: send what may go (unless another thread is at it), and
            // wait while the queue is still too long for the others to
            // catch up.
            st = self.send(st);
            if st.input(pad).is_some_and(|i| !i.full(span)) || st.flow.is_err() {
                continue;
            }
            if let Some(other) = st.waiting_on_itself(std::thread::current().id()) {
                // Only this thread can bring what the others wait for:
                // queue on (upstream interleaves, just more coarsely than
                // this queue's length), up to a bound.
                if st.input(pad).is_some_and(|i| !i.full(ONE_THREAD_QUEUE)) {
                    return Ok(gst::FlowSuccess::Ok);
                }
                drop(st);
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Mux,
                    (
                        "Pad {} has brought nothing in {} s of {}, and the same thread feeds both: upstream does not interleave them (put a queue before each of rtmpsink's pads)",
                        other,
                        ONE_THREAD_QUEUE / 1_000_000_000,
                        pad.name()
                    )
                );
                return Err(gst::FlowError::Error);
            }
            st.waiting += 1;
            st = self.drained.wait(st).unwrap_or_else(|p| p.into_inner());
            st.waiting -= 1;
        }
    }

    /// Sends downstream, in DTS order, every buffer that may go now, unless
    /// another thread is doing it (it then takes what was just queued
    /// before it stops). Gives the lock back.
    fn send<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if st.pushing || !st.running || st.flow.is_err() {
            return st;
        }
        st.pushing = true;
        loop {
            let (list, eos) = match self.take_batch(&mut st) {
                Ok(batch) => batch,
                Err(e) => {
                    st.flow = Err(e);
                    break;
                }
            };
            if list.is_empty() && !eos {
                break;
            }
            self.wake_waiting(&st);
            let start = !std::mem::replace(&mut st.src_started, true);
            drop(st);
            if start {
                self.start_src();
            }
            let mut ret = Ok(gst::FlowSuccess::Ok);
            if !list.is_empty() {
                ret = self.srcpad.push_list(list);
                if self.measure.load(Ordering::Relaxed) {
                    self.record_latencies(ret.is_ok());
                }
            }
            if ret.is_ok() && eos {
                self.srcpad.push_event(gst::event::Eos::new());
            }
            st = self.lock();
            if let Err(e) = ret {
                gst::debug!(CAT, imp = self, "downstream gave {e:?}");
                st.flow = Err(e);
                break;
            }
            if eos {
                break;
            }
        }
        st.pushing = false;
        self.wake_waiting(&st);
        st
    }

    /// Takes the buffers that may go now, as FLV tags (at most a batch),
    /// or says that every pad has ended (once).
    fn take_batch(&self, st: &mut State) -> Result<(gst::BufferList, bool), gst::FlowError> {
        let mut list = gst::BufferList::new();
        while list.len() < MAX_BATCH {
            match next(st) {
                Next::Pad(n) => {
                    let buf = st.pads[n].queue.pop_front().expect("next() saw a head");
                    let l = list.get_mut().expect("new list is writable");
                    for t in self.tags_for(st, n, buf)? {
                        l.add(t);
                    }
                }
                Next::Wait => break,
                Next::Eos => {
                    let first = !std::mem::replace(&mut st.eos_sent, true);
                    return Ok((list, first));
                }
            }
        }
        Ok((list, false))
    }

    /// Stream-start, caps and segment before the first tag.
    fn start_src(&self) {
        let id = format!("{}/flv", self.obj().name());
        self.srcpad
            .push_event(gst::event::StreamStart::builder(&id).build());
        self.srcpad
            .push_event(gst::event::Caps::new(&crate::caps::flv_caps()));
        self.srcpad
            .push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                gst::ClockTime,
            >::new()));
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => self.set_caps(pad, c.caps()),
            gst::EventView::Tag(t) => {
                self.take_tags(pad, t.tag());
                true
            }
            gst::EventView::Segment(s) => {
                let Some(seg) = s.segment().downcast_ref::<gst::ClockTime>() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ("{} got a segment not in time", pad.name())
                    );
                    return false;
                };
                if let Some(i) = self.lock().input_mut(pad) {
                    i.segment = seg.clone();
                    i.next_ts = seg.start();
                }
                true
            }
            gst::EventView::Gap(g) => {
                // Nothing comes from this pad until the gap's end.
                let (ts, duration) = g.get();
                let mut st = self.lock();
                if let Some(i) = st.input_mut(pad)
                    && let Some(end) =
                        running_time(&i.segment, Some(ts + duration.unwrap_or_default()))
                {
                    i.tags.taken_until = Some(i.tags.taken_until.map_or(end, |t| t.max(end)));
                }
                drop(self.send(st));
                true
            }
            gst::EventView::Eos(_) => {
                let mut st = self.lock();
                if let Some(i) = st.input_mut(pad) {
                    i.eos = true;
                }
                drop(self.send(st));
                true
            }
            gst::EventView::FlushStart(_) => {
                // This pad only (as a muxer does outside a seek): what it
                // queued goes, its thread stops waiting.
                if let Some(i) = self.lock().input_mut(pad) {
                    i.flushing = true;
                    i.queue.clear();
                }
                self.drained.notify_all();
                true
            }
            gst::EventView::FlushStop(_) => {
                let mut st = self.lock();
                if let Some(i) = st.input_mut(pad) {
                    i.flushing = false;
                    i.eos = false;
                    i.segment = gst::FormattedSegment::new();
                    i.next_ts = None;
                }
                st.eos_sent = false;
                true
            }
            // Stream-start and the rest stay here: the src pad has its own.
            _ => true,
        }
    }

    /// New caps on a pad: the codec and its configuration, looked at again
    /// before the next frame.
    fn set_caps(&self, pad: &gst::Pad, caps: &gst::CapsRef) -> bool {
        let id = self.lock().input(pad).map(|i| i.tags.id);
        let id = id.unwrap_or_default();
        let format = if id.video {
            VideoFormat::from_caps(caps).map(Format::Video)
        } else {
            AudioFormat::from_caps(caps).map(Format::Audio)
        };
        // A codec Enhanced RTMP has no FourCC for (G.711, PCM, Flash's)
        // goes as legacy FLV, so on track 0 only.
        let format = format.and_then(|f| {
            let fourcc = match &f {
                Format::Video(v) => v.codec.enhanced_fourcc().is_some(),
                Format::Audio(a) => a.enhanced_fourcc().is_some(),
            };
            if id.track != 0 && !fourcc {
                let kind = if id.video { "video" } else { "audio" };
                return Err(format!(
                    "{} cannot be track {} ({}): Enhanced RTMP has no FourCC for it, so only the {kind} pad (track 0) takes it",
                    caps.structure(0).map_or("?", |s| s.name().as_str()),
                    id.track,
                    pad.name()
                ));
            }
            Ok(f)
        });
        match format {
            Ok(f) => {
                gst::debug!(CAT, obj = pad, "format {f:?}");
                let mut st = self.lock();
                st.meta_dirty = true;
                if let Some(i) = st.input_mut(pad) {
                    i.tags.format = Some(f);
                    i.tags.config_dirty = true;
                    i.tags.color_dirty = true;
                }
                true
            }
            Err(e) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
                false
            }
        }
    }

    /// The encoder, bitrates, languages and titles, for onMetaData.
    fn take_tags(&self, pad: &gst::Pad, tags: &gst::TagListRef) {
        let mut st = self.lock();
        if let Some(e) = tags.get::<gst::tags::Encoder>() {
            st.encoder = Some(e.get().to_owned());
            st.meta_dirty = true;
        }
        let Some(i) = st.input_mut(pad) else { return };
        let ps = &mut i.tags;
        // The nominal bitrate when told; otherwise the first measured one
        // only: parsers update a running bitrate every few frames, and each
        // change would send metadata again.
        let bitrate = match tags.get::<gst::tags::NominalBitrate>() {
            Some(b) => Some(b.get()),
            None if ps.bitrate.is_none() => tags.get::<gst::tags::Bitrate>().map(|b| b.get()),
            None => None,
        };
        let mut changed = false;
        if let Some(b) = bitrate
            && ps.bitrate != Some(b)
        {
            ps.bitrate = Some(b);
            changed = true;
        }
        let language = tags
            .get::<gst::tags::LanguageCode>()
            .map(|l| l.get().to_owned());
        if language.is_some() && ps.language != language {
            ps.language = language;
            changed = true;
        }
        let title = tags.get::<gst::tags::Title>().map(|t| t.get().to_owned());
        if title.is_some() && ps.title != title {
            ps.title = title;
            changed = true;
        }
        st.meta_dirty |= changed;
    }

    /// Upstream's latency over every pad: live if any pad is, the largest
    /// minimum, the smallest maximum.
    fn upstream_latency(&self) -> (bool, gst::ClockTime, Option<gst::ClockTime>) {
        let pads: Vec<gst::Pad> = self.lock().pads.iter().map(|i| i.pad.clone()).collect();
        let (mut live, mut min, mut max) = (false, gst::ClockTime::ZERO, None::<gst::ClockTime>);
        for pad in pads {
            let mut q = gst::query::Latency::new();
            if pad.peer_query(&mut q) {
                let (l, lo, hi) = q.result();
                if l {
                    live = true;
                    min = min.max(lo);
                    max = match (max, hi) {
                        (Some(m), Some(h)) => Some(m.min(h)),
                        (m, h) => m.or(h),
                    };
                }
            }
        }
        (live, min, max)
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                let (live, min, max) = self.upstream_latency();
                let extra = self.lock().extra_latency;
                q.set(live, min + extra, max.map(|m| m + extra));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// Times the frames of the batch just pushed: downstream is the
    /// connection, so when the push returns they are in the socket (client
    /// mode) or in the players' queues (server mode).
    fn record_latencies(&self, sent: bool) {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        for (video, at) in st.in_flight.drain(..) {
            if let (true, Some(ns)) = (sent, crate::latency::since(at, now)) {
                match video {
                    true => st.latency.video.record(ns),
                    false => st.latency.audio.record(ns),
                }
            }
        }
    }

    /// The latency figures (see crate::latency) on a stats structure.
    pub fn write_latencies(&self, s: &mut gst::StructureRef) {
        self.lock().latency.write_to(s)
    }

    /// Measures latency or stops; before data flows (at start), so that
    /// every frame timed carries a stamp.
    pub fn set_measure_latency(&self, on: bool) {
        self.measure.store(on, Ordering::SeqCst);
    }

    pub fn frame_counts(&self) -> (u64, u64) {
        let st = self.lock();
        (st.video_frames, st.audio_frames)
    }

    /// The tags one input buffer becomes: the FLV header and metadata the
    /// first time, a sequence header when the codec configuration is new,
    /// then the frame.
    fn tags_for(
        &self,
        st: &mut State,
        n: usize,
        buf: gst::Buffer,
    ) -> Result<Vec<gst::Buffer>, gst::FlowError> {
        let input = &st.pads[n];
        let name = || input.pad.name();
        let rt_dts = running_time(&input.segment, buf.dts().or(buf.pts()));
        let rt_pts = running_time(&input.segment, buf.pts().or(buf.dts()));
        let (Some(rt_dts), Some(rt_pts)) = (rt_dts, rt_pts) else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("{} buffer without a timestamp", name())
            );
            return Err(gst::FlowError::Error);
        };
        let Some(format) = input.tags.format.clone() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("{} buffer before caps", name())
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let mut out = Vec::with_capacity(4);
        out.extend(flv_header_once(st));
        let base = *st.base.get_or_insert(rt_dts);
        let ps = &mut st.pads[n].tags;
        let duration = buf.duration().map_or(0, |d| d.nseconds() as i64);
        ps.taken_until = Some(rt_dts + duration);
        let (ts, cts) = ps.stamp(base, rt_dts, rt_pts);
        // Made again only when caps or tags changed, sent only if it differs.
        if std::mem::take(&mut st.meta_dirty)
            && let Some(meta) = metadata(st)
            && st.sent_meta.as_ref() != Some(&meta)
        {
            out.push(tag(tag_type::SCRIPT, ts, &meta, None));
            st.sent_meta = Some(meta);
        }
        st.pads[n]
            .tags
            .frame_tags(&format, &buf, ts, cts, &mut out)?;
        let video = matches!(format, Format::Video(_));
        match video {
            true => st.video_frames += 1,
            false => st.audio_frames += 1,
        }
        if self.measure.load(Ordering::Relaxed) {
            st.in_flight.push((video, buf.offset()));
        }
        let dts_out = gst::ClockTime::from_nseconds(rt_dts.max(0) as u64);
        let pts_out = gst::ClockTime::from_nseconds(rt_pts.max(0) as u64);
        for t in &mut out {
            let t = t.make_mut();
            t.set_dts(dts_out);
            t.set_pts(pts_out);
        }
        Ok(out)
    }
}

/// The FLV file header, before the first tag only (its flags say which
/// pads exist then).
fn flv_header_once(st: &mut State) -> Option<gst::Buffer> {
    if std::mem::replace(&mut st.header_sent, true) {
        return None;
    }
    let has = |video| st.pads.iter().any(|i| i.tags.id.video == video);
    let mut h = Vec::with_capacity(13);
    crate::rtmp::flv::FlvHeader {
        has_audio: has(false),
        has_video: has(true),
    }
    .write(&mut h);
    let mut hb = gst::Buffer::from_mut_slice(h);
    hb.get_mut()
        .expect("writable")
        .set_flags(gst::BufferFlags::HEADER);
    Some(hb)
}

/// onMetaData as FLV players expect it, from the caps and tags known:
/// track 0's fields at the top, the other tracks' in Enhanced RTMP's
/// `videoTrackIdInfoMap` and `audioTrackIdInfoMap`.
fn metadata(st: &State) -> Option<Vec<u8>> {
    let mut pads: Vec<&PadState> = st
        .pads
        .iter()
        .map(|i| &i.tags)
        .filter(|p| p.format.is_some())
        .collect();
    if pads.is_empty() {
        return None;
    }
    // Video first, then audio, each by track: the same bytes for the
    // same streams.
    pads.sort_by_key(|p| (!p.id.video, p.id.track));
    let mut p: Vec<(String, Amf0Value)> = vec![("duration".into(), Amf0Value::Number(0.0))];
    let (mut video_map, mut audio_map) = (Vec::new(), Vec::new());
    for ps in pads {
        let fields = track_fields(ps);
        match (ps.id.track, ps.id.video) {
            (0, _) => p.extend(fields),
            (n, true) => video_map.push((n.to_string(), Amf0Value::Object(fields))),
            (n, false) => audio_map.push((n.to_string(), Amf0Value::Object(fields))),
        }
    }
    for (key, map) in [
        ("videoTrackIdInfoMap", video_map),
        ("audioTrackIdInfoMap", audio_map),
    ] {
        if !map.is_empty() {
            p.push((key.into(), Amf0Value::Object(map)));
        }
    }
    let encoder = st
        .encoder
        .clone()
        .unwrap_or_else(|| format!("GStreamer rtmpsink {}", env!("CARGO_PKG_VERSION")));
    p.push(("encoder".into(), Amf0Value::String(encoder)));
    Some(amf0::encode_all(&[
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(p),
    ]))
}

/// One track's onMetaData fields, named as for the top level; tracks other
/// than 0 also carry their language and title tags.
fn track_fields(ps: &PadState) -> Vec<(String, Amf0Value)> {
    let mut p = Vec::new();
    let mut num = |k: &str, v: f64| p.push((k.to_owned(), Amf0Value::Number(v)));
    let track = ps.id.track;
    match &ps.format {
        Some(Format::Video(v)) => {
            if let Some(w) = v.width {
                num("width", f64::from(w));
            }
            if let Some(h) = v.height {
                num("height", f64::from(h));
            }
            if let Some(f) = v.framerate {
                num("framerate", f64::from(f.numer()) / f64::from(f.denom()));
            }
            num("videocodecid", v.codec.metadata_id(track));
            if let Some(b) = ps.bitrate {
                num("videodatarate", f64::from(b) / 1000.0);
            }
        }
        Some(Format::Audio(a)) => {
            num("audiocodecid", a.codec_id(track));
            if let Some(r) = a.rate() {
                num("audiosamplerate", f64::from(r));
            }
            num("audiosamplesize", 16.0);
            if let Some(b) = ps.bitrate {
                num("audiodatarate", f64::from(b) / 1000.0);
            }
            if let Some(c) = a.channels() {
                p.push(("stereo".into(), Amf0Value::Boolean(c > 1)));
                if track != 0 {
                    p.push(("channels".into(), Amf0Value::Number(f64::from(c))));
                }
            }
        }
        None => {}
    }
    if track != 0 {
        for (k, v) in [("language", &ps.language), ("title", &ps.title)] {
            if let Some(v) = v {
                p.push((k.to_owned(), Amf0Value::String(v.clone())));
            }
        }
    }
    p
}

/// The track a requested pad gets: `video`/`audio` are track 0, a name
/// like `audio_2` track 2, and a template request without a name the
/// lowest free track from 1. A track already taken (`video` and `video_0`
/// are the same track) or out of Enhanced RTMP's 0-255 is an error.
fn pick_track(template: &str, name: Option<&str>, taken: &[PadTrack]) -> Result<PadTrack, String> {
    let video = template.starts_with("video");
    let id = match name {
        Some(n) => match PadTrack::from_name(n) {
            Some(id) if id.video == video => id,
            _ => {
                return Err(format!(
                    "pad name {n} does not fit template {template} (video, audio, video_N or audio_N with N from 0 to 255)"
                ));
            }
        },
        None if !template.contains('%') => PadTrack { video, track: 0 },
        None => {
            let free = (1..=255u8).find(|&t| !taken.contains(&PadTrack { video, track: t }));
            let track = free.ok_or("all 255 tracks are taken")?;
            PadTrack { video, track }
        }
    };
    if taken.contains(&id) {
        let kind = if video { "video" } else { "audio" };
        return Err(format!(
            "there is already a pad for {kind} track {} (video and video_0, audio and audio_0, are the same track)",
            id.track
        ));
    }
    Ok(id)
}
