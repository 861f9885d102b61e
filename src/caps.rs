// SPDX-License-Identifier: MPL-2.0
//! Caps <-> FLV codec mapping shared by the sink and the source: what each
//! codec's caps say, and how it goes on the wire. H.264, AAC, MP3, G.711
//! and PCM are legacy FLV codecs (every server and player knows them), as
//! are Flash's own (Sorenson H.263, screen video, VP6, ADPCM, Nellymoser,
//! Speex);
//! H.265, AV1, VP9, Opus, FLAC, AC-3 and E-AC-3 are Enhanced RTMP FourCCs,
//! each with the configuration record its sequence start carries.

use std::str::FromStr;

use gst::prelude::*;

use crate::rtmp::codec::{ColorInfo, FLAC_STREAMINFO_SIZE, MasteringDisplay, OpusHead, Vp9Config};
use crate::rtmp::flv::{AudioFourCc, VideoCodecId, VideoFourCc};

/// What `rtmpsink`'s video pads take.
pub fn video_caps() -> gst::Caps {
    let mut caps = h264_caps();
    for (name, format, alignment) in [
        (
            "video/x-h265",
            gst::List::new(["hvc1", "hev1"]).to_send_value(),
            "au",
        ),
        ("video/x-av1", "obu-stream".to_send_value(), "tu"),
    ] {
        caps.merge(
            gst::Caps::builder(name)
                .field("stream-format", format)
                .field("alignment", alignment)
                .build(),
        );
    }
    caps.merge(gst::Caps::builder("video/x-vp9").build());
    for (_, name) in FLASH_VIDEO {
        caps.merge(gst::Caps::builder(name).build());
    }
    caps
}

/// Flash's own video codecs: FLV codec id and caps name, as flvdemux and
/// rtmpsrc give them and rtmpsink takes them (video/x-flash-video is
/// Sorenson H.263).
pub const FLASH_VIDEO: [(VideoCodecId, &str); 5] = [
    (VideoCodecId::SorensonH263, "video/x-flash-video"),
    (VideoCodecId::ScreenVideo, "video/x-flash-screen"),
    (VideoCodecId::ScreenVideo2, "video/x-flash-screen2"),
    (VideoCodecId::Vp6, "video/x-vp6-flash"),
    (VideoCodecId::Vp6Alpha, "video/x-vp6-alpha"),
];

/// The caps name of one of Flash's video codecs; None for the others.
pub fn flash_video_name(codec: VideoCodecId) -> Option<&'static str> {
    FLASH_VIDEO
        .iter()
        .find(|(c, _)| *c == codec)
        .map(|(_, n)| *n)
}

/// H.264 as FLV carries it (length-prefixed NAL units, whole access units).
pub fn h264_caps() -> gst::Caps {
    gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .build()
}

/// What `rtmpsink`'s audio pads take.
pub fn audio_caps() -> gst::Caps {
    let mut caps = gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .build();
    let more = [
        gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 1i32)
            .field("layer", 3i32)
            .build(),
        gst::Caps::builder("audio/x-opus").build(),
        gst::Caps::builder("audio/x-flac")
            .field("framed", true)
            .build(),
        gst::Caps::builder("audio/x-ac3")
            .field("framed", true)
            .field("alignment", "frame")
            .build(),
        gst::Caps::builder("audio/x-eac3")
            .field("framed", true)
            .field("alignment", "frame")
            .build(),
        gst::Caps::builder("audio/x-alaw")
            .field("rate", 8000i32)
            .field("channels", gst::IntRange::new(1i32, 2))
            .build(),
        gst::Caps::builder("audio/x-mulaw")
            .field("rate", 8000i32)
            .field("channels", gst::IntRange::new(1i32, 2))
            .build(),
        gst::Caps::builder("audio/x-raw")
            .field("format", gst::List::new(["S16LE", "U8"]))
            .field("layout", "interleaved")
            .field("rate", gst::List::new([5512i32, 11025, 22050, 44100]))
            .field("channels", gst::IntRange::new(1i32, 2))
            .build(),
        gst::Caps::builder("audio/x-adpcm")
            .field("layout", "swf")
            .field("rate", gst::List::new([5512i32, 11025, 22050, 44100]))
            .field("channels", gst::IntRange::new(1i32, 2))
            .build(),
        gst::Caps::builder("audio/x-nellymoser")
            .field(
                "rate",
                gst::List::new([5512i32, 8000, 11025, 16000, 22050, 44100]),
            )
            .field("channels", gst::IntRange::new(1i32, 2))
            .build(),
        // FLV's Speex is wideband mono only.
        gst::Caps::builder("audio/x-speex")
            .field("rate", 16_000i32)
            .field("channels", 1i32)
            .build(),
    ];
    for c in more {
        caps.merge(c);
    }
    caps
}

pub fn flv_caps() -> gst::Caps {
    gst::Caps::builder("video/x-flv").build()
}

/// The number onMetaData gives an Enhanced RTMP codec: its FourCC read as
/// a big-endian integer, as FFmpeg writes it.
fn fourcc_number(f: [u8; 4]) -> f64 {
    f64::from(u32::from_be_bytes(f))
}

/// The video codecs rtmpsink sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    H264,
    H265,
    Av1,
    Vp9,
    /// One of Flash's own (Sorenson H.263, screen video 1 and 2, VP6 and
    /// VP6 with alpha): legacy FLV only, so track 0 only.
    Flash(VideoCodecId),
}

impl VideoCodec {
    /// Its Enhanced RTMP FourCC; `None` for the codecs sent as legacy FLV
    /// (H.264 and Flash's).
    pub fn fourcc(self) -> Option<VideoFourCc> {
        match self {
            VideoCodec::H264 | VideoCodec::Flash(_) => None,
            VideoCodec::H265 => Some(VideoFourCc::Hevc),
            VideoCodec::Av1 => Some(VideoFourCc::Av1),
            VideoCodec::Vp9 => Some(VideoFourCc::Vp9),
        }
    }

    /// Its FourCC as an Enhanced RTMP track (H.264 too: tracks other
    /// than 0 exist only in Enhanced RTMP); `None` for Flash's codecs,
    /// which Enhanced RTMP has none for.
    pub fn enhanced_fourcc(self) -> Option<VideoFourCc> {
        match self {
            VideoCodec::H264 => Some(VideoFourCc::Avc),
            _ => self.fourcc(),
        }
    }

    /// onMetaData's `videocodecid` (`track` 0: the legacy id for H.264;
    /// Flash's codecs have only theirs).
    pub fn metadata_id(self, track: u8) -> f64 {
        match (track, self) {
            (0, VideoCodec::H264) => 7.0,
            (_, VideoCodec::Flash(id)) => f64::from(id as u8),
            _ => self
                .enhanced_fourcc()
                .map_or(0.0, |f| fourcc_number(f.fourcc())),
        }
    }
}

/// A video stream as FLV describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFormat {
    pub codec: VideoCodec,
    /// The configuration record the sequence header carries (avcC, hvcC,
    /// av1C, vpcC). AV1 caps rarely have one: it is then made from the
    /// stream's sequence header OBU, and this is `None`.
    pub config: Option<gst::Buffer>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub framerate: Option<gst::Fraction>,
    /// Enhanced RTMP codecs: the `colorInfo` metadata packet's body, from
    /// the caps' colorimetry, mastering display and content light level.
    pub color_info: Option<gst::Buffer>,
}

/// The colour description of video caps, as Enhanced RTMP's `colorInfo`
/// says it; `None` if the caps say nothing about colour.
fn color_info(caps: &gst::CapsRef) -> Option<ColorInfo> {
    let s = caps.structure(0)?;
    let colorimetry = s
        .get::<&str>("colorimetry")
        .ok()
        .and_then(|c| gst_video::VideoColorimetry::from_str(c).ok());
    let known = |v: u32| (v != 2).then_some(v);
    let mut info = ColorInfo {
        bit_depth: s.get::<u32>("bit-depth-luma").ok(),
        primaries: colorimetry
            .as_ref()
            .and_then(|c| known(c.primaries().to_iso())),
        transfer: colorimetry
            .as_ref()
            .and_then(|c| known(c.transfer().to_iso())),
        matrix: colorimetry
            .as_ref()
            .and_then(|c| known(c.matrix().to_iso())),
        ..ColorInfo::default()
    };
    if let Ok(l) = gst_video::VideoContentLightLevel::from_caps(caps) {
        info.light_level = Some((
            u32::from(l.max_content_light_level()),
            u32::from(l.max_frame_average_light_level()),
        ));
    }
    if let Ok(m) = gst_video::VideoMasteringDisplayInfo::from_caps(caps) {
        let xy = |c: gst_video::VideoMasteringDisplayInfoCoordinate| {
            (f64::from(c.x) / 50_000.0, f64::from(c.y) / 50_000.0)
        };
        let [r, g, b] = m.display_primaries();
        info.mastering = Some(MasteringDisplay {
            primaries: [xy(r), xy(g), xy(b)],
            white: xy(m.white_point()),
            max_luminance: f64::from(m.max_display_mastering_luminance()) / 10_000.0,
            min_luminance: f64::from(m.min_display_mastering_luminance()) / 10_000.0,
        });
    }
    (info.primaries.is_some() || info.light_level.is_some() || info.mastering.is_some())
        .then_some(info)
}

/// Adds what a `colorInfo` says to video caps: colorimetry, mastering
/// display and content light level.
pub fn with_color_info(mut caps: gst::Caps, info: &ColorInfo) -> gst::Caps {
    let c = caps.make_mut();
    let (p, t, m) = (info.primaries, info.transfer, info.matrix);
    if p.is_some() || t.is_some() || m.is_some() {
        // colorInfo has no range: video's usual limited range. What it
        // leaves out stays unknown (FFmpeg 9 sends only the matrix).
        let colorimetry = gst_video::VideoColorimetry::new(
            gst_video::VideoColorRange::Range16_235,
            m.map_or(
                gst_video::VideoColorMatrix::Unknown,
                gst_video::VideoColorMatrix::from_iso,
            ),
            t.map_or(
                gst_video::VideoTransferFunction::Unknown,
                gst_video::VideoTransferFunction::from_iso,
            ),
            p.map_or(
                gst_video::VideoColorPrimaries::Unknown,
                gst_video::VideoColorPrimaries::from_iso,
            ),
        );
        if let Some(s) = c.structure_mut(0) {
            s.set("colorimetry", colorimetry.to_string());
        }
    }
    if let Some((max_cll, max_fall)) = info.light_level {
        gst_video::VideoContentLightLevel::new(
            u16::try_from(max_cll).unwrap_or(u16::MAX),
            u16::try_from(max_fall).unwrap_or(u16::MAX),
        )
        .add_to_caps(c);
    }
    if let Some(m) = &info.mastering {
        // In units of 0.00002, rounded (not truncated: 0.17 stays 8500).
        let xy = |(x, y): (f64, f64)| gst_video::VideoMasteringDisplayInfoCoordinate {
            x: (x * 50_000.0).round() as u16,
            y: (y * 50_000.0).round() as u16,
        };
        gst_video::VideoMasteringDisplayInfo::new(
            [xy(m.primaries[0]), xy(m.primaries[1]), xy(m.primaries[2])],
            xy(m.white),
            (m.max_luminance * 10_000.0).round() as u32,
            (m.min_luminance * 10_000.0).round() as u32,
        )
        .add_to_caps(c);
    }
    caps
}

impl VideoFormat {
    pub fn from_caps(caps: &gst::CapsRef) -> Result<Self, String> {
        let s = caps.structure(0).ok_or("empty caps")?;
        let needs_codec_data = |parser: &str| {
            s.get::<gst::Buffer>("codec_data").map_err(|_| {
                format!(
                    "{} caps have no codec_data: put {parser} before rtmpsink",
                    s.name()
                )
            })
        };
        let mut v = VideoFormat {
            codec: VideoCodec::H264,
            config: None,
            width: s.get("width").ok(),
            height: s.get("height").ok(),
            framerate: s
                .get::<gst::Fraction>("framerate")
                .ok()
                .filter(|f| f.numer() > 0),
            color_info: None,
        };
        match s.name().as_str() {
            "video/x-h264" => v.config = Some(needs_codec_data("h264parse")?),
            "video/x-h265" => {
                v.codec = VideoCodec::H265;
                v.config = Some(needs_codec_data("h265parse")?);
            }
            "video/x-av1" => {
                v.codec = VideoCodec::Av1;
                v.config = s.get::<gst::Buffer>("codec_data").ok();
            }
            "video/x-vp9" => {
                v.codec = VideoCodec::Vp9;
                v.config = Some(gst::Buffer::from_mut_slice(v.vp9_config(s).build()));
            }
            name => {
                let Some(&(id, _)) = FLASH_VIDEO.iter().find(|(_, n)| *n == name) else {
                    return Err(format!("unsupported video caps {caps}"));
                };
                v.codec = VideoCodec::Flash(id);
                // VP6's crop byte, which each of its tags carries before
                // the frame, as rtmpsrc (and FFmpeg's reader) give it.
                v.config = s.get::<gst::Buffer>("codec_data").ok();
            }
        }
        if v.codec.fourcc().is_some() {
            v.color_info = color_info(caps).map(|c| gst::Buffer::from_mut_slice(c.to_amf()));
        }
        Ok(v)
    }

    /// VP9 has no codec_data in caps: its vpcC is made from the caps' fields.
    fn vp9_config(&self, s: &gst::StructureRef) -> Vp9Config {
        let profile = s
            .get::<&str>("profile")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let bit_depth = s.get::<u32>("bit-depth-luma").unwrap_or(8) as u8;
        let chroma_subsampling = match s.get::<&str>("chroma-format").unwrap_or("4:2:0") {
            "4:2:2" => 2,
            "4:4:4" => 3,
            _ => 1,
        };
        let colorimetry = s
            .get::<&str>("colorimetry")
            .ok()
            .and_then(|c| gst_video::VideoColorimetry::from_str(c).ok());
        let iso = |v: u32| u8::try_from(v).unwrap_or(2);
        let level = match (self.width, self.height) {
            (Some(w), Some(h)) if w > 0 && h > 0 => {
                let fps = self
                    .framerate
                    .map_or(30.0, |f| f64::from(f.numer()) / f64::from(f.denom()));
                Vp9Config::level_for(w as u32, h as u32, fps)
            }
            _ => 0,
        };
        Vp9Config {
            profile,
            level,
            bit_depth,
            chroma_subsampling,
            full_range: colorimetry
                .as_ref()
                .is_some_and(|c| c.range() == gst_video::VideoColorRange::Range0_255),
            colour_primaries: colorimetry
                .as_ref()
                .map_or(2, |c| iso(c.primaries().to_iso())),
            transfer_characteristics: colorimetry
                .as_ref()
                .map_or(2, |c| iso(c.transfer().to_iso())),
            matrix_coefficients: colorimetry.as_ref().map_or(2, |c| iso(c.matrix().to_iso())),
        }
    }
}

/// An audio stream as FLV describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioFormat {
    /// With its AudioSpecificConfig (the AAC sequence header).
    Aac {
        asc: gst::Buffer,
        rate: Option<i32>,
        channels: Option<i32>,
    },
    Mp3 {
        rate: Option<i32>,
        channels: Option<i32>,
    },
    /// With its identification header (OpusHead), the sequence start.
    Opus { head: gst::Buffer, channels: i32 },
    /// With its STREAMINFO block (34 bytes), the sequence start.
    Flac {
        streaminfo: gst::Buffer,
        rate: Option<i32>,
        channels: Option<i32>,
    },
    Ac3 {
        eac3: bool,
        rate: Option<i32>,
        channels: Option<i32>,
    },
    /// G.711 A-law or mu-law, 8 kHz.
    G711 { alaw: bool, channels: i32 },
    /// Little-endian PCM, 8 or 16 bits, at one of FLV's four rates.
    Pcm {
        rate: i32,
        channels: i32,
        sixteen: bool,
    },
    /// Flash's ADPCM, at one of FLV's four rates.
    Adpcm { rate: i32, channels: i32 },
    /// Nellymoser, at 8 or 16 kHz or one of FLV's four rates.
    Nellymoser { rate: i32, channels: i32 },
    /// Speex, 16 kHz mono (FLV carries no other); its header packets are
    /// not sent: FLV has no place for them.
    Speex,
}

impl AudioFormat {
    pub fn from_caps(caps: &gst::CapsRef) -> Result<Self, String> {
        let s = caps.structure(0).ok_or("empty caps")?;
        let rate = s.get::<i32>("rate").ok();
        let channels = s.get::<i32>("channels").ok();
        Ok(match s.name().as_str() {
            "audio/mpeg" => match s.get::<i32>("mpegversion") {
                Ok(4) | Ok(2) => {
                    let asc = s.get::<gst::Buffer>("codec_data").map_err(|_| {
                        "AAC caps have no codec_data: put aacparse before rtmpsink".to_owned()
                    })?;
                    AudioFormat::Aac {
                        asc,
                        rate,
                        channels,
                    }
                }
                Ok(1) => AudioFormat::Mp3 { rate, channels },
                _ => return Err(format!("unsupported audio caps {caps}")),
            },
            "audio/x-opus" => AudioFormat::Opus {
                head: gst::Buffer::from_mut_slice(opus_head(s)?),
                channels: channels.unwrap_or(2),
            },
            "audio/x-flac" => AudioFormat::Flac {
                streaminfo: gst::Buffer::from_mut_slice(flac_streaminfo(s)?),
                rate,
                channels,
            },
            "audio/x-ac3" | "audio/x-eac3" => AudioFormat::Ac3 {
                eac3: s.name() == "audio/x-eac3",
                rate,
                channels,
            },
            "audio/x-alaw" | "audio/x-mulaw" => AudioFormat::G711 {
                alaw: s.name() == "audio/x-alaw",
                channels: channels.unwrap_or(1),
            },
            "audio/x-raw" => AudioFormat::Pcm {
                rate: rate.ok_or("raw audio caps without a rate")?,
                channels: channels.unwrap_or(1),
                sixteen: s.get::<&str>("format") == Ok("S16LE"),
            },
            "audio/x-adpcm" if s.get::<&str>("layout") == Ok("swf") => AudioFormat::Adpcm {
                rate: rate.ok_or("ADPCM caps without a rate")?,
                channels: channels.unwrap_or(1),
            },
            "audio/x-nellymoser" => AudioFormat::Nellymoser {
                rate: rate.ok_or("Nellymoser caps without a rate")?,
                channels: channels.unwrap_or(1),
            },
            "audio/x-speex" => AudioFormat::Speex,
            _ => return Err(format!("unsupported audio caps {caps}")),
        })
    }

    /// Its Enhanced RTMP FourCC; `None` for the legacy FLV codecs.
    pub fn fourcc(&self) -> Option<AudioFourCc> {
        match self {
            AudioFormat::Opus { .. } => Some(AudioFourCc::Opus),
            AudioFormat::Flac { .. } => Some(AudioFourCc::Flac),
            AudioFormat::Ac3 { eac3: false, .. } => Some(AudioFourCc::Ac3),
            AudioFormat::Ac3 { eac3: true, .. } => Some(AudioFourCc::Eac3),
            _ => None,
        }
    }

    /// Its FourCC as an Enhanced RTMP track; `None` for the codecs
    /// Enhanced RTMP has none for (G.711, PCM, ADPCM, Nellymoser, Speex), which
    /// can only be track 0.
    pub fn enhanced_fourcc(&self) -> Option<AudioFourCc> {
        match self {
            AudioFormat::Aac { .. } => Some(AudioFourCc::Aac),
            AudioFormat::Mp3 { .. } => Some(AudioFourCc::Mp3),
            _ => self.fourcc(),
        }
    }

    /// What the sequence header carries, for codecs that have one.
    pub fn config(&self) -> Option<&gst::Buffer> {
        match self {
            AudioFormat::Aac { asc, .. } => Some(asc),
            AudioFormat::Opus { head, .. } => Some(head),
            AudioFormat::Flac { streaminfo, .. } => Some(streaminfo),
            _ => None,
        }
    }

    /// The first byte of every legacy audio tag body (FLV AUDIODATA
    /// header): format, rate, size and channels.
    pub fn tag_header(&self) -> u8 {
        let stereo = |c: Option<i32>| u8::from(c.unwrap_or(2) > 1);
        match self {
            // AAC: always 44 kHz, 16-bit, stereo here; the decoder reads
            // the real values from the AudioSpecificConfig.
            AudioFormat::Aac { .. } => 0xAF,
            AudioFormat::Mp3 { rate, channels } => {
                let (format, rate_bits) = match rate.unwrap_or(44_100) {
                    8_000 => (14, 0),
                    r => (2, flv_rate_bits(r)),
                };
                (format << 4) | (rate_bits << 2) | 0x02 | stereo(*channels)
            }
            AudioFormat::G711 { alaw, channels } => {
                let format = if *alaw { 7 } else { 8 };
                (format << 4) | stereo(Some(*channels))
            }
            AudioFormat::Pcm {
                rate,
                channels,
                sixteen,
            } => {
                (3 << 4)
                    | (flv_rate_bits(*rate) << 2)
                    | (u8::from(*sixteen) << 1)
                    | stereo(Some(*channels))
            }
            // ADPCM and Nellymoser decode to 16 bits: their size bit says
            // so (as FFmpeg writes them).
            AudioFormat::Adpcm { rate, channels } => {
                (1 << 4) | (flv_rate_bits(*rate) << 2) | 0x02 | stereo(Some(*channels))
            }
            AudioFormat::Nellymoser { rate, channels } => {
                let (format, rate_bits) = match rate {
                    16_000 => (4, 0),
                    8_000 => (5, 0),
                    r => (6, flv_rate_bits(*r)),
                };
                (format << 4) | (rate_bits << 2) | 0x02 | stereo(Some(*channels))
            }
            // Speex: rate 0, 16 bits, mono, as the FLV specification asks
            // (and flvmux writes; FFmpeg's rate bits differ, and every
            // reader ignores them for Speex).
            AudioFormat::Speex => 0xB2,
            // Enhanced RTMP: SoundFormat 9, the packet type below.
            _ => 0x90,
        }
    }

    /// onMetaData's `audiocodecid` (`track` 0: the legacy id where there
    /// is one).
    pub fn codec_id(&self, track: u8) -> f64 {
        let fourcc = match track {
            0 => self.fourcc(),
            _ => self.enhanced_fourcc(),
        };
        match fourcc {
            Some(f) => fourcc_number(f.fourcc()),
            None => f64::from(self.tag_header() >> 4),
        }
    }

    pub fn rate(&self) -> Option<i32> {
        match self {
            AudioFormat::Aac { rate, .. }
            | AudioFormat::Mp3 { rate, .. }
            | AudioFormat::Flac { rate, .. }
            | AudioFormat::Ac3 { rate, .. } => *rate,
            AudioFormat::Opus { .. } => Some(48_000),
            AudioFormat::G711 { .. } => Some(8_000),
            AudioFormat::Speex => Some(16_000),
            AudioFormat::Pcm { rate, .. }
            | AudioFormat::Adpcm { rate, .. }
            | AudioFormat::Nellymoser { rate, .. } => Some(*rate),
        }
    }

    pub fn channels(&self) -> Option<i32> {
        match self {
            AudioFormat::Aac { channels, .. }
            | AudioFormat::Mp3 { channels, .. }
            | AudioFormat::Flac { channels, .. }
            | AudioFormat::Ac3 { channels, .. } => *channels,
            AudioFormat::Opus { channels, .. }
            | AudioFormat::G711 { channels, .. }
            | AudioFormat::Pcm { channels, .. }
            | AudioFormat::Adpcm { channels, .. }
            | AudioFormat::Nellymoser { channels, .. } => Some(*channels),
            AudioFormat::Speex => Some(1),
        }
    }
}

/// FLV's two rate bits: 5.5, 11, 22 or 44 kHz.
fn flv_rate_bits(rate: i32) -> u8 {
    match rate {
        r if r <= 5_512 => 0,
        r if r <= 11_025 => 1,
        r if r <= 22_050 => 2,
        _ => 3,
    }
}

/// The OpusHead of Opus caps: the first streamheader buffer (opusenc and
/// opusparse give it), or one made from the caps' fields.
fn opus_head(s: &gst::StructureRef) -> Result<Vec<u8>, String> {
    if let Ok(headers) = s.get::<gst::ArrayRef>("streamheader")
        && let Some(first) = headers.first().and_then(|v| v.get::<gst::Buffer>().ok())
    {
        let map = first
            .map_readable()
            .map_err(|_| "unreadable streamheader")?;
        OpusHead::parse(&map).map_err(|e| format!("Opus caps: {e}"))?;
        return Ok(map.to_vec());
    }
    let channels = s.get::<i32>("channels").unwrap_or(2);
    let family = s.get::<i32>("channel-mapping-family").unwrap_or(0);
    let mapping = if family == 0 {
        None
    } else {
        let map: Vec<u8> = s
            .get::<gst::ArrayRef>("channel-mapping")
            .map_err(|_| "Opus caps with a mapping family but no channel-mapping")?
            .iter()
            .filter_map(|v| v.get::<i32>().ok())
            .map(|c| c as u8)
            .collect();
        Some((
            s.get::<i32>("stream-count").unwrap_or(1) as u8,
            s.get::<i32>("coupled-count").unwrap_or(0) as u8,
            map,
        ))
    };
    Ok(OpusHead {
        channels: u8::try_from(channels).map_err(|_| "Opus caps: too many channels")?,
        pre_skip: 0,
        input_rate: s.get::<i32>("rate").unwrap_or(48_000) as u32,
        gain: 0,
        mapping_family: family as u8,
        mapping,
    }
    .build())
}

/// The STREAMINFO body of FLAC caps: in the first streamheader buffer,
/// after the `fLaC` marker and the block's 4-byte header.
fn flac_streaminfo(s: &gst::StructureRef) -> Result<Vec<u8>, String> {
    let missing = "FLAC caps have no streamheader: put flacparse before rtmpsink";
    let first = s
        .get::<gst::ArrayRef>("streamheader")
        .map_err(|_| missing)?
        .first()
        .and_then(|v| v.get::<gst::Buffer>().ok())
        .ok_or(missing)?;
    let map = first
        .map_readable()
        .map_err(|_| "unreadable streamheader")?;
    let at = map
        .windows(4)
        .position(|w| w == b"fLaC")
        .ok_or("the FLAC streamheader has no fLaC marker")?;
    let block = &map[at + 4..];
    if block.len() < 4 + FLAC_STREAMINFO_SIZE || block[0] & 0x7F != 0 {
        return Err("the FLAC streamheader does not start with STREAMINFO".into());
    }
    Ok(block[4..4 + FLAC_STREAMINFO_SIZE].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_from_caps() {
        gst::init().unwrap();
        let avcc = gst::Buffer::from_slice([1u8, 0x64, 0, 0x1f, 0xff]);
        let caps = gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field("alignment", "au")
            .field("codec_data", &avcc)
            .field("width", 1280i32)
            .field("height", 720i32)
            .field("framerate", gst::Fraction::new(30000, 1001))
            .build();
        let v = VideoFormat::from_caps(&caps).unwrap();
        assert_eq!(v.width, Some(1280));
        assert_eq!(v.framerate, Some(gst::Fraction::new(30000, 1001)));
        assert_eq!(v.codec.metadata_id(0), 7.0);
        let no_cd = gst::Caps::builder("video/x-h264").build();
        assert!(
            VideoFormat::from_caps(&no_cd)
                .unwrap_err()
                .contains("h264parse")
        );

        let asc = gst::Buffer::from_slice([0x12u8, 0x10]);
        let caps = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("codec_data", &asc)
            .field("rate", 44_100i32)
            .field("channels", 2i32)
            .build();
        let a = AudioFormat::from_caps(&caps).unwrap();
        assert_eq!(a.tag_header(), 0xAF);
        assert_eq!(a.codec_id(0), 10.0);
        // On a multitrack track, AAC and H.264 are their FourCCs.
        assert_eq!(a.codec_id(1), f64::from(u32::from_be_bytes(*b"mp4a")));
        assert_eq!(
            VideoCodec::H264.metadata_id(2),
            f64::from(u32::from_be_bytes(*b"avc1"))
        );
        let mp3 = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 1i32)
            .field("layer", 3i32)
            .field("rate", 22_050i32)
            .field("channels", 1i32)
            .build();
        let a = AudioFormat::from_caps(&mp3).unwrap();
        assert_eq!(a.tag_header(), 0x2A);
        let mp3_8k = AudioFormat::Mp3 {
            rate: Some(8000),
            channels: Some(1),
        };
        assert_eq!(mp3_8k.tag_header() >> 4, 14);
    }

    #[test]
    fn enhanced_formats_from_caps() {
        gst::init().unwrap();
        // vp9parse's caps for 4:2:0 8-bit BT.709 at 720p30.
        let vp9 = gst::Caps::builder("video/x-vp9")
            .field("profile", "0")
            .field("width", 1280i32)
            .field("height", 720i32)
            .field("framerate", gst::Fraction::new(30, 1))
            .field("colorimetry", "bt709")
            .field("chroma-format", "4:2:0")
            .field("bit-depth-luma", 8u32)
            .build();
        let v = VideoFormat::from_caps(&vp9).unwrap();
        let cfg = v.config.unwrap().map_readable().unwrap().to_vec();
        assert_eq!(cfg, [1, 0, 0, 0, 0, 31, 0x82, 1, 1, 1, 0, 0]);
        assert_eq!(
            v.codec.metadata_id(0),
            f64::from(u32::from_be_bytes(*b"vp09"))
        );
        let av1 = gst::Caps::builder("video/x-av1")
            .field("stream-format", "obu-stream")
            .build();
        assert_eq!(VideoFormat::from_caps(&av1).unwrap().config, None);
        let hevc = gst::Caps::builder("video/x-h265").build();
        assert!(
            VideoFormat::from_caps(&hevc)
                .unwrap_err()
                .contains("h265parse")
        );

        // flacparse's first header: the Ogg mapping, fLaC, STREAMINFO.
        let mut h = b"\x7fFLAC\x01\x00\x00\x02fLaC\x00\x00\x00\x22".to_vec();
        let si: Vec<u8> = (0..34).collect();
        h.extend_from_slice(&si);
        let flac = gst::Caps::builder("audio/x-flac")
            .field("framed", true)
            .field(
                "streamheader",
                gst::Array::new([gst::Buffer::from_mut_slice(h).to_send_value()]),
            )
            .build();
        let AudioFormat::Flac { streaminfo, .. } = AudioFormat::from_caps(&flac).unwrap() else {
            panic!("not FLAC")
        };
        assert_eq!(streaminfo.map_readable().unwrap().as_slice(), &si[..]);
        let bare = gst::Caps::builder("audio/x-flac").build();
        assert!(
            AudioFormat::from_caps(&bare)
                .unwrap_err()
                .contains("flacparse")
        );

        let opus = gst::Caps::builder("audio/x-opus")
            .field("rate", 48_000i32)
            .field("channels", 2i32)
            .field("channel-mapping-family", 0i32)
            .build();
        let a = AudioFormat::from_caps(&opus).unwrap();
        let head = OpusHead::parse(&a.config().unwrap().map_readable().unwrap()).unwrap();
        assert_eq!((head.channels, head.mapping_family), (2, 0));
        assert_eq!(a.tag_header(), 0x90);

        let alaw = gst::Caps::builder("audio/x-alaw")
            .field("rate", 8000i32)
            .field("channels", 1i32)
            .build();
        assert_eq!(AudioFormat::from_caps(&alaw).unwrap().tag_header(), 0x70);
        let pcm = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 22_050i32)
            .field("channels", 2i32)
            .build();
        assert_eq!(AudioFormat::from_caps(&pcm).unwrap().tag_header(), 0x3B);
    }
}
