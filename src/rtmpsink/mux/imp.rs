// SPDX-License-Identifier: MPL-2.0
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use crate::caps::{AudioFormat, VideoFormat};
use crate::rtmp::amf0::{self, Amf0Value};
use crate::rtmp::flv::{
    AudioPacketType, FrameType, TAG_HEADER_SIZE, VideoFourCc, VideoPacketType, tag_type,
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
    bitrate: Option<u32>,
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
}

impl State {
    /// The RTMP time (ms from the first DTS, never back in time on a
    /// track) and the composition time (PTS - DTS, ms) of a buffer.
    fn stamp(&mut self, pad: &str, rt_dts: i64, rt_pts: i64) -> (u32, i32) {
        let base = *self.base.get_or_insert(rt_dts);
        let mut dts = round_ms(rt_dts - base).max(0);
        let pts = round_ms(rt_pts - base);
        let ps = self.pads.entry(pad.to_owned()).or_default();
        if let Some(last) = ps.last_dts {
            dts = dts.max(i64::from(last));
        }
        ps.last_dts = Some(dts as u32);
        let cts = (pts - dts).clamp(-(1 << 23), (1 << 23) - 1) as i32;
        (dts as u32, cts)
    }

    /// The tags of one frame: its sequence header first when the codec
    /// configuration changed, then the frame.
    fn frame_tags(
        &mut self,
        pad: &str,
        format: &Format,
        buf: &gst::Buffer,
        ts: u32,
        cts: i32,
        out: &mut Vec<gst::Buffer>,
    ) -> Result<(), gst::FlowError> {
        let ps = self.pads.entry(pad.to_owned()).or_default();
        match format {
            Format::Video(v) => {
                let frame = VideoFrame {
                    buf,
                    key: !buf.flags().contains(gst::BufferFlags::DELTA_UNIT),
                    ts,
                    cts,
                };
                match v.codec.fourcc() {
                    None => legacy_video_tags(ps, v, &frame, out)?,
                    Some(fourcc) => enhanced_video_tags(ps, v, fourcc, &frame, out)?,
                }
                ps.frames += 1;
                self.video_frames += 1;
            }
            Format::Audio(a) => {
                audio_tags(ps, a, buf, ts, out)?;
                ps.frames += 1;
                self.audio_frames += 1;
            }
        }
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

/// Enhanced RTMP's first byte of a video tag: the ExHeader bit, the frame
/// type and the packet type.
fn ex_video_byte(key: bool, packet_type: VideoPacketType) -> u8 {
    let frame_type = if key {
        FrameType::Key
    } else {
        FrameType::Inter
    };
    0x80 | (frame_type as u8) << 4 | packet_type as u8
}

/// H.265, AV1 and VP9 as Enhanced RTMP: SequenceStart with the
/// configuration record, then CodedFrames (with the composition time for
/// H.265, CodedFramesX where it is 0) .
fn enhanced_video_tags(
    ps: &mut PadState,
    v: &VideoFormat,
    fourcc: VideoFourCc,
    f: &VideoFrame,
    out: &mut Vec<gst::Buffer>,
) -> Result<(), gst::FlowError> {
    let cc = fourcc.fourcc();
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
        let start = ex_video_byte(true, VideoPacketType::SequenceStart);
        out.push(tag(
            tag_type::VIDEO,
            f.ts,
            &[start, cc[0], cc[1], cc[2], cc[3]],
            Some(&c),
        ));
    }
    // colorInfo after the sequence start, again whenever it changes.
    if let Some(c) = &v.color_info
        && ps.color_changed(c)?
    {
        let head = [
            0x80 | (FrameType::Command as u8) << 4 | VideoPacketType::Metadata as u8,
            cc[0],
            cc[1],
            cc[2],
            cc[3],
        ];
        out.push(tag(tag_type::VIDEO, f.ts, &head, Some(c)));
    }
    let packet_type = match (fourcc.has_composition_time(), f.cts) {
        (true, 0) => VideoPacketType::CodedFramesX,
        _ => VideoPacketType::CodedFrames,
    };
    // The header on the stack: no allocation per frame for it.
    let c = (f.cts as u32).to_be_bytes();
    let head = [
        ex_video_byte(f.key, packet_type),
        cc[0],
        cc[1],
        cc[2],
        cc[3],
        c[1],
        c[2],
        c[3],
    ];
    let with_cts = packet_type == VideoPacketType::CodedFrames && fourcc.has_composition_time();
    let len = if with_cts { 8 } else { 5 };
    out.push(tag(tag_type::VIDEO, f.ts, &head[..len], Some(f.buf)));
    Ok(())
}

/// Audio: AAC's sequence header and raw frames, the other legacy codecs
/// as they are, the Enhanced RTMP ones with their FourCC (and sequence
/// start where the codec has a configuration).
fn audio_tags(
    ps: &mut PadState,
    a: &AudioFormat,
    buf: &gst::Buffer,
    ts: u32,
    out: &mut Vec<gst::Buffer>,
) -> Result<(), gst::FlowError> {
    let h = a.tag_header();
    match (a.fourcc(), a) {
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
                let head = [0x90 | packet_type as u8, cc[0], cc[1], cc[2], cc[3]];
                tag(tag_type::AUDIO, ts, &head, Some(payload))
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
            vec![
                gst::PadTemplate::with_gtype(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &crate::caps::flv_caps(),
                    gst_base::AggregatorPad::static_type(),
                )
                .unwrap(),
                gst::PadTemplate::with_gtype(
                    "video",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &crate::caps::video_caps(),
                    gst_base::AggregatorPad::static_type(),
                )
                .unwrap(),
                gst::PadTemplate::with_gtype(
                    "audio",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &crate::caps::audio_caps(),
                    gst_base::AggregatorPad::static_type(),
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        _name: Option<&str>,
        caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        let name = templ.name_template();
        if self.obj().static_pad(name).is_some() {
            gst::warning!(CAT, imp = self, "there is already a {name} pad");
            return None;
        }
        let pad = self.parent_request_new_pad(templ, Some(name), caps)?;
        self.lock()
            .pads
            .insert(name.to_string(), PadState::default());
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
        st.pads = pads.into_keys().map(|k| (k, PadState::default())).collect();
        drop(st);
        self.parent_start()
    }

    fn create_new_pad(
        &self,
        templ: &gst::PadTemplate,
        _req_name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst_base::AggregatorPad> {
        // Named after the template ("video", "audio"), not "sink_%u".
        Some(
            gst::PadBuilder::<gst_base::AggregatorPad>::from_template(templ)
                .name(templ.name_template())
                .build(),
        )
    }

    fn sink_event(&self, pad: &gst_base::AggregatorPad, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Caps(c) => {
                let caps = c.caps();
                let format = if pad.name() == "video" {
                    VideoFormat::from_caps(caps).map(Format::Video)
                } else {
                    AudioFormat::from_caps(caps).map(Format::Audio)
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
                if let Some(b) = bitrate
                    && ps.bitrate != Some(b)
                {
                    ps.bitrate = Some(b);
                    st.meta_dirty = true;
                }
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
            self.obj().finish_buffer_list(list)?;
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
    /// The pad whose next buffer goes out first. Without `timeout`, every
    /// pad not at its end must have a buffer, or an earlier one might come.
    fn next_pad(&self, timeout: bool) -> Next {
        let mut best: Option<(gst_base::AggregatorPad, i64)> = None;
        let mut all_eos = true;
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
                        return Next::Wait;
                    }
                }
            }
        }
        match best {
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
        let (ts, cts) = st.stamp(&name, rt_dts, rt_pts);
        let Some(format) = st.pads.get(name.as_str()).and_then(|p| p.format.clone()) else {
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
        st.frame_tags(&name, &format, &buf, ts, cts, &mut out)?;
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
        let mut h = Vec::with_capacity(13);
        crate::rtmp::flv::FlvHeader {
            has_audio: obj.static_pad("audio").is_some(),
            has_video: obj.static_pad("video").is_some(),
        }
        .write(&mut h);
        let mut hb = gst::Buffer::from_mut_slice(h);
        hb.get_mut()
            .expect("writable")
            .set_flags(gst::BufferFlags::HEADER);
        Some(hb)
    }

    /// onMetaData as FLV players expect it, from the caps and tags known.
    fn metadata(&self, st: &State) -> Option<Vec<u8>> {
        let mut p: Vec<(String, Amf0Value)> = vec![("duration".into(), Amf0Value::Number(0.0))];
        let num = |p: &mut Vec<(String, Amf0Value)>, k: &str, v: f64| {
            p.push((k.into(), Amf0Value::Number(v)))
        };
        let mut any = false;
        // Video first, then audio: the same bytes for the same streams.
        for name in ["video", "audio"] {
            let Some(ps) = st.pads.get(name) else {
                continue;
            };
            match &ps.format {
                Some(Format::Video(v)) => {
                    any = true;
                    if let Some(w) = v.width {
                        num(&mut p, "width", f64::from(w));
                    }
                    if let Some(h) = v.height {
                        num(&mut p, "height", f64::from(h));
                    }
                    if let Some(f) = v.framerate {
                        num(
                            &mut p,
                            "framerate",
                            f64::from(f.numer()) / f64::from(f.denom()),
                        );
                    }
                    num(&mut p, "videocodecid", v.codec.metadata_id());
                    if let Some(b) = ps.bitrate {
                        num(&mut p, "videodatarate", f64::from(b) / 1000.0);
                    }
                }
                Some(Format::Audio(a)) => {
                    any = true;
                    num(&mut p, "audiocodecid", a.codec_id());
                    if let Some(r) = a.rate() {
                        num(&mut p, "audiosamplerate", f64::from(r));
                    }
                    num(&mut p, "audiosamplesize", 16.0);
                    if let Some(c) = a.channels() {
                        p.push(("stereo".into(), Amf0Value::Boolean(c > 1)));
                    }
                    if let Some(b) = ps.bitrate {
                        num(&mut p, "audiodatarate", f64::from(b) / 1000.0);
                    }
                }
                None => gst::trace!(CAT, imp = self, "{name} has no caps yet"),
            }
        }
        if !any {
            return None;
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
