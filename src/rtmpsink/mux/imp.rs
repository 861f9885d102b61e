// SPDX-License-Identifier: MPL-2.0
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use crate::caps::{AudioFormat, VideoFormat};
use crate::common::PadTrack;
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::flv::{
    AudioPacketType, AvMultitrackType, FrameType, TAG_HEADER_SIZE, VideoFourCc, VideoPacketType,
    tag_type,
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
    /// The arrival stamps' probe, while latency is measured.
    probe: Option<gst::PadProbeId>,
}

#[derive(Debug, Default)]
struct State {
    header_sent: bool,
    /// Running time (ns) of the first DTS written: RTMP time 0.
    base: Option<i64>,
    pads: HashMap<String, PadState>,
    /// The metadata last sent, to send it again only when it changes.
    sent_meta: Option<Vec<u8>>,
    /// Caps or tags changed since the metadata was last made.
    meta_dirty: bool,
    encoder: Option<String>,
    video_frames: u64,
    audio_frames: u64,
    /// Whether upstream liveness has been looked at (on the first aggregate).
    live_checked: bool,
    /// Frames of the batch being sent: whether video, and when each came
    /// in (a [`crate::latency::stamp`], from the buffer's offset).
    in_flight: Vec<(bool, u64)>,
    /// Pad to socket, per kind, over the last frames.
    latency: crate::latency::Latencies,
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
                // H.264 on track 0 as legacy FLV, every other track and
                // codec as Enhanced RTMP.
                match (self.id.track, v.codec.fourcc()) {
                    (0, None) => legacy_video_tags(self, v, &frame, out)?,
                    _ => enhanced_video_tags(self, v, v.codec.enhanced_fourcc(), &frame, out)?,
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

#[derive(Default)]
pub struct RtmpSinkMux {
    state: Mutex<State>,
    /// `measure-latency`: stamp arrivals on the pads, time them out.
    measure: AtomicBool,
}

/// Stamps each buffer entering `pad` with its arrival (see crate::latency;
/// the offset field means nothing to the muxer otherwise).
fn stamp_arrivals(pad: &gst::Pad) -> Option<gst::PadProbeId> {
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        |_, info| {
            let at = crate::latency::stamp(Instant::now());
            match &mut info.data {
                Some(gst::PadProbeData::Buffer(b)) => b.make_mut().set_offset(at),
                Some(gst::PadProbeData::BufferList(l)) => {
                    let l = l.make_mut();
                    for i in 0..l.len() {
                        if let Some(b) = l.get_mut(i) {
                            b.set_offset(at);
                        }
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    )
}

#[glib::object_subclass]
impl ObjectSubclass for RtmpSinkMux {
    const NAME: &'static str = "GstRtmpSinkMux";
    type Type = super::RtmpSinkMux;
    type ParentType = gst_base::Aggregator;
}

impl ObjectImpl for RtmpSinkMux {}
impl GstObjectImpl for RtmpSinkMux {}

impl ElementImpl for RtmpSinkMux {
    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let pad_type = gst_base::AggregatorPad::static_type();
            let mut t = vec![
                gst::PadTemplate::with_gtype(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &crate::caps::flv_caps(),
                    pad_type,
                )
                .unwrap(),
            ];
            t.extend(crate::common::track_pad_templates(
                gst::PadDirection::Sink,
                gst::PadPresence::Request,
                &crate::caps::video_caps(),
                &crate::caps::audio_caps(),
                Some(pad_type),
            ));
            t
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let id = {
            let st = self.lock();
            let taken: Vec<PadTrack> = st.pads.values().map(|p| p.id).collect();
            match pick_track(templ.name_template(), name, &taken) {
                Ok(id) => id,
                Err(e) => {
                    drop(st);
                    gst::element_imp_warning!(self, gst::CoreError::Pad, ("{}", e));
                    return None;
                }
            }
        };
        // `video_0` stays `video_0`; the name is what the user asked for.
        let name = name.map_or_else(|| id.name(), str::to_owned);
        let pad = self.parent_request_new_pad(templ, Some(&name), caps)?;
        let probe = self
            .measure
            .load(Ordering::SeqCst)
            .then(|| stamp_arrivals(&pad))
            .flatten();
        self.lock().pads.insert(
            name,
            PadState {
                id,
                probe,
                ..Default::default()
            },
        );
        Some(pad)
    }

    fn release_pad(&self, pad: &gst::Pad) {
        self.lock().pads.remove(pad.name().as_str());
        self.parent_release_pad(pad);
    }
}

impl AggregatorImpl for RtmpSinkMux {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let mut st = self.lock();
        let pads = std::mem::take(&mut st.pads);
        *st = State::default();
        st.pads = pads
            .into_iter()
            .map(|(k, p)| {
                let fresh = PadState {
                    id: p.id,
                    probe: p.probe,
                    ..Default::default()
                };
                (k, fresh)
            })
            .collect();
        drop(st);
        self.parent_start()
    }

    fn create_new_pad(
        &self,
        templ: &gst::PadTemplate,
        req_name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst_base::AggregatorPad> {
        // Named as requested ("video", "audio_2"), not "sink_%u".
        Some(
            gst::PadBuilder::<gst_base::AggregatorPad>::from_template(templ)
                .name(req_name.unwrap_or(templ.name_template()))
                .build(),
        )
    }

    fn sink_event(&self, pad: &gst_base::AggregatorPad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                let caps = c.caps();
                let id = self.lock().pads.get(pad.name().as_str()).map(|p| p.id);
                let id = id.unwrap_or_default();
                let format = if id.video {
                    VideoFormat::from_caps(caps).map(Format::Video)
                } else {
                    AudioFormat::from_caps(caps).and_then(|a| {
                        if id.track != 0 && a.enhanced_fourcc().is_none() {
                            return Err(format!(
                                "{} cannot be track {} ({}): Enhanced RTMP has no FourCC for it, so only the audio pad (track 0) takes it",
                                caps.structure(0).map_or("?", |s| s.name().as_str()),
                                id.track,
                                pad.name()
                            ));
                        }
                        Ok(a)
                    }).map(Format::Audio)
                };
                match format {
                    Ok(f) => {
                        gst::debug!(CAT, obj = pad, "format {f:?}");
                        let mut st = self.lock();
                        st.meta_dirty = true;
                        let ps = st.pads.entry(pad.name().to_string()).or_default();
                        ps.format = Some(f);
                        ps.config_dirty = true;
                        ps.color_dirty = true;
                    }
                    Err(e) => {
                        gst::element_imp_error!(self, gst::StreamError::Format, ("{}", e));
                        return false;
                    }
                }
            }
            gst::EventView::Tag(t) => {
                let tags = t.tag();
                let mut st = self.lock();
                if let Some(e) = tags.get::<gst::tags::Encoder>() {
                    st.encoder = Some(e.get().to_owned());
                    st.meta_dirty = true;
                }
                // The nominal bitrate when told; otherwise the first measured
                // one only: parsers update a running bitrate every few
                // frames, and each change would send metadata again.
                let ps = st.pads.entry(pad.name().to_string()).or_default();
                let bitrate = match tags.get::<gst::tags::NominalBitrate>() {
                    Some(b) => Some(b.get()),
                    None if ps.bitrate.is_none() => {
                        tags.get::<gst::tags::Bitrate>().map(|b| b.get())
                    }
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
            _ => {}
        }
        self.parent_sink_event(pad, event)
    }

    fn aggregate(&self, timeout: bool) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.check_liveness();
        // Every buffer that can go out in DTS order goes out now, as one
        // list: one wake-up of this thread and one socket write per batch
        // rather than per frame.
        let mut list = gst::BufferList::new();
        let mut eos = false;
        while list.len() < MAX_BATCH {
            match self.next_pad(timeout && list.is_empty()) {
                Next::Pad(pad) => {
                    let Some(buf) = pad.pop_buffer() else { break };
                    if buf.flags().contains(gst::BufferFlags::GAP) && buf.size() == 0
                        || self.is_stream_header(&pad, &buf)
                    {
                        continue;
                    }
                    let l = list.get_mut().expect("new list is writable");
                    for t in self.tags_for(&pad, buf)? {
                        l.add(t);
                    }
                }
                Next::Wait => break,
                Next::Eos => {
                    eos = true;
                    break;
                }
            }
        }
        if !list.is_empty() {
            let sent = self.obj().finish_buffer_list(list);
            if self.measure.load(Ordering::Relaxed) {
                self.record_latencies(sent.is_ok());
            }
            sent?;
        } else if eos {
            return Err(gst::FlowError::Eos);
        } else if !timeout {
            return Err(gst_base::AGGREGATOR_FLOW_NEED_DATA);
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn negotiate(&self) -> bool {
        // The output caps never change; they are set before the first tag.
        true
    }
}

/// Buffers handled in one `aggregate` call at most.
const MAX_BATCH: usize = 64;
/// How much a pad may queue when upstream is not live, so that this
/// thread works in batches. Live pipelines keep the `latency` they set.
const NON_LIVE_QUEUE: gst::ClockTime = gst::ClockTime::from_mseconds(500);

enum Next {
    /// This pad's buffer has the earliest DTS.
    Pad(gst_base::AggregatorPad),
    /// A pad without data could still bring an earlier buffer.
    Wait,
    /// Every pad is at its end.
    Eos,
}

/// The running time of `t` in the pad's segment, signed, in ns.
fn running_time(pad: &gst_base::AggregatorPad, t: Option<gst::ClockTime>) -> Option<i64> {
    let seg = pad.segment();
    let seg = seg.downcast_ref::<gst::ClockTime>()?;
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

impl RtmpSinkMux {
    /// The pad whose next buffer goes out first. Without `timeout`, a pad
    /// not at its end and without a buffer holds everything back that
    /// might come after what it brings next: what starts after the end of
    /// the last buffer taken from it (its next one cannot start earlier:
    /// DTS only goes forward, and audio frames follow one another).
    /// Video then waits for audio up to its own time, not the next audio
    /// frame's.
    fn next_pad(&self, timeout: bool) -> Next {
        let mut best: Option<(gst_base::AggregatorPad, i64)> = None;
        let mut all_eos = true;
        // The earliest time a pad without a buffer could still bring.
        let mut hold: Option<i64> = None;
        for pad in self.obj().sink_pads() {
            let pad = pad
                .downcast::<gst_base::AggregatorPad>()
                .expect("aggregator pad");
            match pad.peek_buffer() {
                Some(buf) => {
                    all_eos = false;
                    let rt = running_time(&pad, buf.dts().or(buf.pts())).unwrap_or(i64::MIN);
                    if best.as_ref().is_none_or(|(_, b)| rt < *b) {
                        best = Some((pad, rt));
                    }
                }
                None if pad.is_eos() => {}
                None => {
                    all_eos = false;
                    if !timeout {
                        let until = self
                            .lock()
                            .pads
                            .get(pad.name().as_str())
                            .and_then(|p| p.taken_until);
                        // Nothing taken from it yet: anything may come.
                        let until = until.unwrap_or(i64::MIN);
                        hold = Some(hold.map_or(until, |h| h.min(until)));
                    }
                }
            }
        }
        match best {
            Some((_, rt)) if hold.is_some_and(|h| rt > h) => Next::Wait,
            Some((pad, _)) => Next::Pad(pad),
            None if all_eos => Next::Eos,
            None => Next::Wait,
        }
    }

    /// On the first aggregate: when no upstream is live, let pads queue
    /// more (see NON_LIVE_QUEUE). A user's larger latency is kept.
    fn check_liveness(&self) {
        if std::mem::replace(&mut self.lock().live_checked, true) {
            return;
        }
        let live = self.obj().sink_pads().iter().any(|p| {
            let mut q = gst::query::Latency::new();
            p.peer_query(&mut q) && q.result().0
        });
        let current: gst::ClockTime = self.obj().property("latency");
        if !live && current < NON_LIVE_QUEUE {
            gst::debug!(
                CAT,
                imp = self,
                "upstream is not live: pads may queue {NON_LIVE_QUEUE}"
            );
            self.obj().set_property("latency", NON_LIVE_QUEUE);
        }
    }

    /// An Opus or FLAC header packet (the encoders push them before the
    /// first frame): what they say goes in the sequence start, from caps.
    fn is_stream_header(&self, pad: &gst_base::AggregatorPad, buf: &gst::Buffer) -> bool {
        buf.flags().contains(gst::BufferFlags::HEADER)
            && matches!(
                self.lock()
                    .pads
                    .get(pad.name().as_str())
                    .and_then(|p| p.format.as_ref()),
                Some(Format::Audio(
                    AudioFormat::Opus { .. } | AudioFormat::Flac { .. }
                ))
            )
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
        let pads = self.obj().sink_pads();
        let mut st = self.lock();
        for pad in pads {
            let Some(ps) = st.pads.get_mut(pad.name().as_str()) else {
                continue;
            };
            match (on, ps.probe.take()) {
                (true, None) => ps.probe = stamp_arrivals(&pad),
                (true, Some(p)) => ps.probe = Some(p),
                (false, Some(p)) => pad.remove_probe(p),
                (false, None) => {}
            }
        }
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
        pad: &gst_base::AggregatorPad,
        buf: gst::Buffer,
    ) -> Result<Vec<gst::Buffer>, gst::FlowError> {
        let name = pad.name();
        let rt_dts = running_time(pad, buf.dts().or(buf.pts()));
        let rt_pts = running_time(pad, buf.pts().or(buf.dts()));
        let (Some(rt_dts), Some(rt_pts)) = (rt_dts, rt_pts) else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("{} buffer without a timestamp", name)
            );
            return Err(gst::FlowError::Error);
        };
        let mut out = Vec::with_capacity(4);
        out.extend(self.flv_header_once());
        let mut st = self.lock();
        let base = *st.base.get_or_insert(rt_dts);
        // Every pad has its state from the moment it was requested.
        let Some((format, ts, cts)) = st.pads.get_mut(name.as_str()).and_then(|ps| {
            let format = ps.format.clone()?;
            let duration = buf.duration().map_or(0, |d| d.nseconds() as i64);
            ps.taken_until = Some(rt_dts + duration);
            let (ts, cts) = ps.stamp(base, rt_dts, rt_pts);
            Some((format, ts, cts))
        }) else {
            drop(st);
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("{} buffer before caps", name)
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        // Made again only when caps or tags changed, sent only if it differs.
        if std::mem::take(&mut st.meta_dirty)
            && let Some(meta) = self.metadata(&st)
            && st.sent_meta.as_ref() != Some(&meta)
        {
            out.push(tag(tag_type::SCRIPT, ts, &meta, None));
            st.sent_meta = Some(meta);
        }
        let ps = st.pads.get_mut(name.as_str()).expect("looked up above");
        ps.frame_tags(&format, &buf, ts, cts, &mut out)?;
        let video = matches!(format, Format::Video(_));
        match video {
            true => st.video_frames += 1,
            false => st.audio_frames += 1,
        }
        if self.measure.load(Ordering::Relaxed) {
            st.in_flight.push((video, buf.offset()));
        }
        drop(st);
        let dts_out = gst::ClockTime::from_nseconds(rt_dts.max(0) as u64);
        let pts_out = gst::ClockTime::from_nseconds(rt_pts.max(0) as u64);
        for t in &mut out {
            let t = t.make_mut();
            t.set_dts(dts_out);
            t.set_pts(pts_out);
        }
        Ok(out)
    }

    /// The FLV file header, before the first tag only (its flags say which
    /// pads exist then).
    fn flv_header_once(&self) -> Option<gst::Buffer> {
        {
            let mut st = self.lock();
            if std::mem::replace(&mut st.header_sent, true) {
                return None;
            }
        }
        let obj = self.obj();
        obj.set_src_caps(&crate::caps::flv_caps());
        let (has_video, has_audio) = {
            let st = self.lock();
            let has = |video| st.pads.values().any(|p| p.id.video == video);
            (has(true), has(false))
        };
        let mut h = Vec::with_capacity(13);
        crate::rtmp::flv::FlvHeader {
            has_audio,
            has_video,
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
    fn metadata(&self, st: &State) -> Option<Vec<u8>> {
        let mut pads: Vec<&PadState> = st.pads.values().filter(|p| p.format.is_some()).collect();
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
