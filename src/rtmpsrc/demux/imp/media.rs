// SPDX-License-Identifier: MPL-2.0
//! Audio and video tags to pad buffers, legacy and Enhanced RTMP: caps
//! from each codec's sequence header (and the metadata's size, frame rate
//! and colour), frames with their times, each track on its pad.

use gst::subclass::prelude::*;

use super::{CAT, RtmpSrcDemux};
use crate::common::PadTrack;
use crate::rtmp::flv::{
    AacPacketType, AudioFourCc, AudioTag, AudioTrackData, AvcPacketType, SoundFormat, VideoCodecId,
    VideoFourCc, VideoTag, VideoTrackData,
};
use crate::rtmpsrc::demux::caps::{
    aac_caps, config_caps, enhanced_audio_caps, enhanced_video_caps, flash_video_caps,
    legacy_audio_caps,
};

impl RtmpSrcDemux {
    /// Size and frame rate from the metadata (the track's own entry for
    /// tracks other than 0).
    fn video_caps_extra(&self, id: PadTrack, mut caps: gst::Caps) -> gst::Caps {
        let st = self.lock();
        if let Some(m) = st.track_meta(id) {
            let c = caps.make_mut();
            let s = c.structure_mut(0).expect("one structure");
            if let (Some(w), Some(h)) = (m.get_f64("width"), m.get_f64("height"))
                && w > 0.0
                && h > 0.0
            {
                s.set("width", w as i32);
                s.set("height", h as i32);
            }
            if let Some(f) = m
                .get_f64("framerate")
                .or_else(|| m.get_f64("fps"))
                .filter(|f| *f > 0.0 && *f < 1000.0)
            {
                let fr = gst::Fraction::approximate_f64(f)
                    .unwrap_or_else(|| gst::Fraction::new(f.round() as i32, 1));
                s.set("framerate", fr);
            }
        }
        caps
    }

    pub(super) fn video(
        &self,
        body: &bytes::Bytes,
        dts: Option<gst::ClockTime>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let zero = PadTrack {
            video: true,
            track: 0,
        };
        let tag = match VideoTag::parse(body) {
            Ok(t) => t,
            Err(e) => {
                self.warn_unmapped(zero, &e.to_string());
                return Ok(gst::FlowSuccess::Ok);
            }
        };
        let key = tag.is_key();
        match tag {
            VideoTag::Legacy(v) if matches!(v.codec, VideoCodecId::Avc | VideoCodecId::Hevc) => {
                let name = if v.codec == VideoCodecId::Avc {
                    "video/x-h264"
                } else {
                    "video/x-h265"
                };
                match v.avc {
                    Some((AvcPacketType::SequenceHeader, _)) => {
                        let caps = config_caps(name, &v.data);
                        self.set_caps(zero, self.video_caps_extra(zero, caps));
                        Ok(gst::FlowSuccess::Ok)
                    }
                    Some((AvcPacketType::Nalu, cts)) if !v.data.is_empty() => {
                        self.push(zero, &v.data, dts, cts, key)
                    }
                    _ => Ok(gst::FlowSuccess::Ok),
                }
            }
            VideoTag::Legacy(v) => {
                let Some(name) = crate::caps::flash_video_name(v.codec) else {
                    self.warn_unmapped(zero, &format!("{:?}", v.codec));
                    return Ok(gst::FlowSuccess::Ok);
                };
                // VP6's first byte is the picture's crop; its frame starts
                // after it.
                let vp6 = matches!(v.codec, VideoCodecId::Vp6 | VideoCodecId::Vp6Alpha);
                let skip = usize::from(vp6);
                // A command frame (seeking's start and end) has no picture.
                if v.command.is_some() || v.data.len() <= skip {
                    return Ok(gst::FlowSuccess::Ok);
                }
                // These codecs have no sequence header: the caps come with
                // the first frame, or with another codec's (made only then,
                // not for every frame).
                let same = self
                    .lock()
                    .track(zero)
                    .caps
                    .as_ref()
                    .is_some_and(|c| c.structure(0).is_some_and(|s| s.name() == name));
                if !same {
                    let caps = flash_video_caps(name, vp6.then(|| v.data[0]));
                    self.set_caps(zero, self.video_caps_extra(zero, caps));
                }
                self.push(zero, &v.data.slice(skip..), dts, 0, key)
            }
            VideoTag::Enhanced(e) => {
                let dts = with_nano_offset(dts, &e.mod_ex);
                // Every track of the tag (one unless multitrack) on its pad.
                until_error(e.tracks.into_iter().map(|t| {
                    let id = PadTrack {
                        video: true,
                        track: t.track_id,
                    };
                    self.enhanced_video(id, t.fourcc, t.data, dts, key)
                }))
            }
        }
    }

    /// One track of an Enhanced RTMP video tag.
    fn enhanced_video(
        &self,
        id: PadTrack,
        fourcc: VideoFourCc,
        data: VideoTrackData,
        dts: Option<gst::ClockTime>,
        key: bool,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match data {
            VideoTrackData::SequenceStart(cfg) => {
                let caps = enhanced_video_caps(fourcc, &cfg);
                self.set_caps(id, self.with_color(id, self.video_caps_extra(id, caps)));
                Ok(gst::FlowSuccess::Ok)
            }
            VideoTrackData::Metadata(body) => {
                self.color_info(id, &body);
                Ok(gst::FlowSuccess::Ok)
            }
            VideoTrackData::CodedFrames {
                composition_time,
                data,
                ..
            } if !data.is_empty() => {
                if !self.has_pad(id) {
                    // No sequence start (VP8, or one that was lost):
                    // caps without a configuration record.
                    let caps = enhanced_video_caps(fourcc, &[]);
                    self.set_caps(id, self.video_caps_extra(id, caps));
                }
                self.push(id, &data, dts, composition_time, key)
            }
            _ => Ok(gst::FlowSuccess::Ok),
        }
    }

    /// An Enhanced RTMP video metadata packet: colorInfo goes into the
    /// track's caps (now if there are caps, else with the next ones).
    fn color_info(&self, id: PadTrack, body: &[u8]) {
        let info = match crate::rtmp::codec::ColorInfo::from_amf(body) {
            Ok(i) => i,
            Err(e) => {
                gst::debug!(CAT, imp = self, "video metadata left out: {e}");
                return;
            }
        };
        let caps = {
            let mut st = self.lock();
            let track = st.track(id);
            track.color = Some(info);
            track.caps.clone()
        };
        if let Some(caps) = caps {
            self.set_caps(id, self.with_color(id, caps));
        }
    }

    /// `caps` with the track's last colorInfo's colorimetry and HDR fields.
    fn with_color(&self, id: PadTrack, caps: gst::Caps) -> gst::Caps {
        match self.lock().track(id).color.clone() {
            Some(info) if !info.is_empty() => crate::caps::with_color_info(caps, &info),
            _ => caps,
        }
    }

    fn has_pad(&self, id: PadTrack) -> bool {
        self.lock().pad(id).is_some()
    }

    /// One track of an Enhanced RTMP audio tag: the sequence start gives
    /// the caps, frames go out as they are.
    fn enhanced_audio(
        &self,
        id: PadTrack,
        fourcc: AudioFourCc,
        data: AudioTrackData,
        dts: Option<gst::ClockTime>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match data {
            AudioTrackData::SequenceStart(cfg) => {
                match enhanced_audio_caps(fourcc, &cfg) {
                    Ok(caps) => self.set_caps(id, caps),
                    Err(e) => self.warn_unmapped(id, &e),
                }
                Ok(gst::FlowSuccess::Ok)
            }
            AudioTrackData::CodedFrames(data) if !data.is_empty() => {
                if !self.has_pad(id) {
                    // AC-3 and E-AC-3 need no sequence start; the others
                    // cannot be decoded without theirs.
                    match enhanced_audio_caps(fourcc, &[]) {
                        Ok(caps) => self.set_caps(id, caps),
                        Err(e) => {
                            self.warn_unmapped(id, &e);
                            return Ok(gst::FlowSuccess::Ok);
                        }
                    }
                }
                self.push(id, &data, dts, 0, true)
            }
            _ => Ok(gst::FlowSuccess::Ok),
        }
    }

    pub(super) fn audio(
        &self,
        body: &bytes::Bytes,
        dts: Option<gst::ClockTime>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let zero = PadTrack {
            video: false,
            track: 0,
        };
        let a = match AudioTag::parse(body) {
            Ok(AudioTag::Legacy(a)) => a,
            Ok(AudioTag::Enhanced(e)) => {
                let dts = with_nano_offset(dts, &e.mod_ex);
                // Every track of the tag (one unless multitrack) on its pad.
                return until_error(e.tracks.into_iter().map(|t| {
                    let id = PadTrack {
                        video: false,
                        track: t.track_id,
                    };
                    self.enhanced_audio(id, t.fourcc, t.data, dts)
                }));
            }
            Err(e) => {
                self.warn_unmapped(zero, &e.to_string());
                return Ok(gst::FlowSuccess::Ok);
            }
        };
        if a.format == SoundFormat::Speex && self.lock().speex.is_header(body) {
            gst::debug!(
                CAT,
                imp = self,
                "a Speex header packet sent as a frame: left out"
            );
            return Ok(gst::FlowSuccess::Ok);
        }
        let caps = match a.format {
            SoundFormat::Aac if a.aac_packet_type == Some(AacPacketType::SequenceHeader) => {
                self.set_caps(zero, aac_caps(&a.data));
                return Ok(gst::FlowSuccess::Ok);
            }
            SoundFormat::Aac => None,
            other => match legacy_audio_caps(&a) {
                Some(c) => Some(c),
                None => {
                    self.warn_unmapped(zero, &format!("{other:?}"));
                    return Ok(gst::FlowSuccess::Ok);
                }
            },
        };
        if let Some(c) = caps {
            self.set_caps(zero, c);
        }
        if a.data.is_empty() {
            return Ok(gst::FlowSuccess::Ok);
        }
        self.push(zero, &a.data, dts, 0, true)
    }
}

/// Pushes one after another until one fails: that failure, else Ok.
fn until_error(
    mut pushes: impl Iterator<Item = Result<gst::FlowSuccess, gst::FlowError>>,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    pushes
        .find(Result::is_err)
        .unwrap_or(Ok(gst::FlowSuccess::Ok))
}

/// The DTS of an Enhanced RTMP tag with its ModEx nanosecond offset (the
/// part of the time below the millisecond the RTMP timestamp has).
fn with_nano_offset(
    dts: Option<gst::ClockTime>,
    mod_ex: &[crate::rtmp::flv::ModEx],
) -> Option<gst::ClockTime> {
    let offset: u64 = mod_ex
        .iter()
        .map(|m| match m {
            crate::rtmp::flv::ModEx::TimestampOffsetNano(n) => u64::from(*n),
        })
        .sum();
    // Below a millisecond, as the spec has it: more is not trusted.
    dts.map(|d| d + gst::ClockTime::from_nseconds(offset.min(999_999)))
}
