// SPDX-License-Identifier: MPL-2.0
//! FLV tag bodies as RTMP audio/video messages carry them, legacy and
//! Enhanced RTMP v2, and the FLV file format (header, tags, back pointers).
//!
//! Parsing is strict about values it does not know (an unknown codec,
//! FourCC, packet type or frame type is an error that names it), because
//! guessing at a layout would hand garbage to a decoder.

use bytes::{Buf, Bytes, BytesMut};

use super::error::{Error, Result};
use super::reader::{Reader, put_u24};

fn truncated(what: &'static str) -> impl Fn(Error) -> Error {
    move |_| Error::malformed(format!("{what} is truncated"))
}

/// A FourCC as Enhanced RTMP writes it.
pub type FourCc = [u8; 4];

fn fourcc_str(f: &FourCc) -> String {
    f.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

macro_rules! fourcc_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $var:ident = $cc:literal),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var),* }

        impl $name {
            /// Its FourCC on the wire.
            pub fn fourcc(self) -> FourCc {
                match self { $($name::$var => *$cc),* }
            }

            /// The codec of a FourCC read from the wire.
            pub fn from_fourcc(f: FourCc) -> Result<Self> {
                match &f {
                    $($cc => Ok($name::$var),)*
                    _ => Err(Error::unsupported(format!(
                        concat!("unknown ", $what, " FourCC '{}'"),
                        fourcc_str(&f)
                    ))),
                }
            }
        }
    };
}

fourcc_enum!(
    /// Enhanced RTMP video codecs.
    VideoFourCc, "video" {
        /// H.264 (`avc1`).
        Avc = b"avc1",
        /// H.265 (`hvc1`).
        Hevc = b"hvc1",
        /// AV1 (`av01`).
        Av1 = b"av01",
        /// VP9 (`vp09`).
        Vp9 = b"vp09",
        /// VP8 (`vp08`).
        Vp8 = b"vp08",
    }
);

fourcc_enum!(
    /// Enhanced RTMP audio codecs.
    AudioFourCc, "audio" {
        /// Opus (`Opus`).
        Opus = b"Opus",
        /// AC-3 (`ac-3`).
        Ac3 = b"ac-3",
        /// E-AC-3 (`ec-3`).
        Eac3 = b"ec-3",
        /// FLAC (`fLaC`).
        Flac = b"fLaC",
        /// MP3 (`.mp3`).
        Mp3 = b".mp3",
        /// AAC (`mp4a`).
        Aac = b"mp4a",
    }
);

impl VideoFourCc {
    /// Codecs whose coded frames carry a composition time offset.
    pub fn has_composition_time(self) -> bool {
        matches!(self, VideoFourCc::Avc | VideoFourCc::Hevc)
    }
}

/// Legacy FLV SoundFormat values (9 is the Enhanced RTMP escape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoundFormat {
    /// Linear PCM in the sender's byte order (in practice little-endian).
    PcmPlatformEndian = 0,
    /// ADPCM.
    Adpcm = 1,
    /// MP3.
    Mp3 = 2,
    /// Linear PCM, little-endian.
    PcmLittleEndian = 3,
    /// Nellymoser, 16 kHz mono.
    Nellymoser16kMono = 4,
    /// Nellymoser, 8 kHz mono.
    Nellymoser8kMono = 5,
    /// Nellymoser.
    Nellymoser = 6,
    /// G.711 A-law.
    G711ALaw = 7,
    /// G.711 mu-law.
    G711MuLaw = 8,
    /// AAC.
    Aac = 10,
    /// Speex.
    Speex = 11,
    /// MP3 at 8 kHz.
    Mp3_8k = 14,
    /// Device-specific sound.
    DeviceSpecific = 15,
}

impl SoundFormat {
    fn from_code(c: u8) -> Result<Self> {
        use SoundFormat::*;
        Ok(match c {
            0 => PcmPlatformEndian,
            1 => Adpcm,
            2 => Mp3,
            3 => PcmLittleEndian,
            4 => Nellymoser16kMono,
            5 => Nellymoser8kMono,
            6 => Nellymoser,
            7 => G711ALaw,
            8 => G711MuLaw,
            10 => Aac,
            11 => Speex,
            14 => Mp3_8k,
            15 => DeviceSpecific,
            _ => return Err(Error::unsupported(format!("unknown FLV sound format {c}"))),
        })
    }
}

/// What an AAC legacy tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AacPacketType {
    /// The AudioSpecificConfig.
    SequenceHeader = 0,
    /// Raw AAC frames.
    Raw = 1,
}

/// A legacy audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyAudio {
    /// The codec.
    pub format: SoundFormat,
    /// 0 = 5.5 kHz, 1 = 11 kHz, 2 = 22 kHz, 3 = 44 kHz.
    pub rate: u8,
    /// Whether samples are 16 bits (else 8).
    pub sixteen_bit: bool,
    /// Stereo (else mono).
    pub stereo: bool,
    /// Present for AAC only.
    pub aac_packet_type: Option<AacPacketType>,
    /// The payload after the header byte(s).
    pub data: Bytes,
}

/// Enhanced RTMP audio packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioPacketType {
    /// The codec's configuration (OpusHead, AudioSpecificConfig, STREAMINFO...).
    SequenceStart = 0,
    /// Coded frames.
    CodedFrames = 1,
    /// The end of a sequence.
    SequenceEnd = 2,
    /// The channel layout.
    MultichannelConfig = 4,
    /// Several tracks in one tag.
    Multitrack = 5,
    /// A packet modifier extension comes first.
    ModEx = 7,
}

impl AudioPacketType {
    fn from_code(c: u8) -> Result<Self> {
        use AudioPacketType::*;
        Ok(match c {
            0 => SequenceStart,
            1 => CodedFrames,
            2 => SequenceEnd,
            4 => MultichannelConfig,
            5 => Multitrack,
            7 => ModEx,
            _ => {
                return Err(Error::unsupported(format!(
                    "unknown Enhanced RTMP audio packet type {c}"
                )));
            }
        })
    }
}

/// How the tracks of a multitrack tag are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvMultitrackType {
    /// One track, with a track id.
    OneTrack = 0,
    /// Several tracks of one codec.
    ManyTracks = 1,
    /// Several tracks, each with its codec.
    ManyTracksManyCodecs = 2,
}

impl AvMultitrackType {
    fn from_code(c: u8) -> Result<Self> {
        Ok(match c {
            0 => AvMultitrackType::OneTrack,
            1 => AvMultitrackType::ManyTracks,
            2 => AvMultitrackType::ManyTracksManyCodecs,
            _ => {
                return Err(Error::unsupported(format!(
                    "unknown Enhanced RTMP multitrack type {c}"
                )));
            }
        })
    }
}

/// A packet modifier extension (Enhanced RTMP v2 ModEx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModEx {
    /// Nanoseconds to add to the millisecond timestamp (below 1 ms).
    TimestampOffsetNano(u32),
}

/// An Enhanced RTMP audio channel layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultichannelConfig {
    /// The channel count only.
    Unspecified {
        /// How many channels.
        channels: u8,
    },
    /// Channel flags (bit per speaker position, Enhanced RTMP order).
    Native {
        /// How many channels.
        channels: u8,
        /// One bit per speaker position present.
        flags: u32,
    },
    /// One speaker position per channel.
    Custom {
        /// The speaker position of each channel.
        mapping: Vec<u8>,
    },
}

/// What one audio track of an Enhanced RTMP tag carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTrackData {
    /// The codec's configuration.
    SequenceStart(Bytes),
    /// Coded frames.
    CodedFrames(Bytes),
    /// The end of a sequence.
    SequenceEnd,
    /// A channel layout.
    MultichannelConfig(MultichannelConfig),
}

/// One track of an Enhanced RTMP audio tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioTrack {
    /// The codec.
    pub fourcc: AudioFourCc,
    /// The track id (0 for the only or first track).
    pub track_id: u8,
    /// What it carries.
    pub data: AudioTrackData,
}

/// An Enhanced RTMP audio tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExAudio {
    /// Packet modifier extensions, in order.
    pub mod_ex: Vec<ModEx>,
    /// Set for a multitrack tag; its tracks share one packet type.
    pub multitrack: Option<AvMultitrackType>,
    /// The tracks (one unless multitrack).
    pub tracks: Vec<AudioTrack>,
}

/// An audio tag body, legacy or Enhanced RTMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioTag {
    /// A legacy FLV audio tag (sound format in the high nibble).
    Legacy(LegacyAudio),
    /// An Enhanced RTMP audio tag (sound format 9, a FourCC).
    Enhanced(ExAudio),
}

/// Frame types of video tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// A keyframe.
    Key = 1,
    /// An inter frame.
    Inter = 2,
    /// A disposable inter frame (H.263 only).
    DisposableInter = 3,
    /// A keyframe the server generated (seeking).
    GeneratedKey = 4,
    /// A video info/command frame: carries a [`VideoCommand`], no picture.
    Command = 5,
}

impl FrameType {
    fn from_code(c: u8) -> Result<Self> {
        Ok(match c {
            1 => FrameType::Key,
            2 => FrameType::Inter,
            3 => FrameType::DisposableInter,
            4 => FrameType::GeneratedKey,
            5 => FrameType::Command,
            _ => {
                return Err(Error::unsupported(format!(
                    "unknown FLV video frame type {c}"
                )));
            }
        })
    }

    /// Whether this frame type starts a decodable sequence.
    pub fn is_key(self) -> bool {
        matches!(self, FrameType::Key | FrameType::GeneratedKey)
    }
}

/// A video command frame's meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCommand {
    /// Start of client-side seeking.
    StartSeek = 0,
    /// End of client-side seeking.
    EndSeek = 1,
}

/// Legacy FLV video codec ids. HEVC (12) is not in Adobe's table but is
/// what Chinese CDNs and FFmpeg's flv muxer have long used, with AVC's layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodecId {
    /// Sorenson H.263.
    SorensonH263 = 2,
    /// Screen video.
    ScreenVideo = 3,
    /// On2 VP6.
    Vp6 = 4,
    /// On2 VP6 with alpha.
    Vp6Alpha = 5,
    /// Screen video version 2.
    ScreenVideo2 = 6,
    /// H.264.
    Avc = 7,
    /// H.265, laid out as AVC.
    Hevc = 12,
}

impl VideoCodecId {
    fn from_code(c: u8) -> Result<Self> {
        use VideoCodecId::*;
        Ok(match c {
            2 => SorensonH263,
            3 => ScreenVideo,
            4 => Vp6,
            5 => Vp6Alpha,
            6 => ScreenVideo2,
            7 => Avc,
            12 => Hevc,
            _ => {
                return Err(Error::unsupported(format!(
                    "unknown FLV video codec id {c}"
                )));
            }
        })
    }

    fn has_packet_type(self) -> bool {
        matches!(self, VideoCodecId::Avc | VideoCodecId::Hevc)
    }
}

/// What an AVC/HEVC legacy tag carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AvcPacketType {
    /// The decoder configuration record (avcC/hvcC).
    SequenceHeader = 0,
    /// NAL units (length-prefixed).
    Nalu = 1,
    /// The end of the sequence.
    EndOfSequence = 2,
}

/// A legacy video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyVideo {
    /// Key, inter, or command frame.
    pub frame_type: FrameType,
    /// The codec.
    pub codec: VideoCodecId,
    /// AVC/HEVC only: packet type and composition time (PTS - DTS, ms).
    pub avc: Option<(AvcPacketType, i32)>,
    /// A command frame's command.
    pub command: Option<VideoCommand>,
    /// The payload after the header.
    pub data: Bytes,
}

/// Enhanced RTMP video packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoPacketType {
    /// The codec's configuration record (avcC, hvcC, av1C, vpcC).
    SequenceStart = 0,
    /// Coded frames with a composition time offset.
    CodedFrames = 1,
    /// The end of a sequence.
    SequenceEnd = 2,
    /// Coded frames without a composition time (it is 0).
    CodedFramesX = 3,
    /// AMF-encoded metadata (colorInfo).
    Metadata = 4,
    /// An MPEG-2 TS sequence start (AV1 in TS).
    Mpeg2TsSequenceStart = 5,
    /// Several tracks in one tag.
    Multitrack = 6,
    /// A packet modifier extension comes first.
    ModEx = 7,
}

impl VideoPacketType {
    fn from_code(c: u8) -> Result<Self> {
        use VideoPacketType::*;
        Ok(match c {
            0 => SequenceStart,
            1 => CodedFrames,
            2 => SequenceEnd,
            3 => CodedFramesX,
            4 => Metadata,
            5 => Mpeg2TsSequenceStart,
            6 => Multitrack,
            7 => ModEx,
            _ => {
                return Err(Error::unsupported(format!(
                    "unknown Enhanced RTMP video packet type {c}"
                )));
            }
        })
    }
}

/// What one video track of an Enhanced RTMP tag carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTrackData {
    /// The codec's configuration record.
    SequenceStart(Bytes),
    /// CodedFrames (with a composition time) or CodedFramesX (`x`, none).
    CodedFrames {
        /// PTS - DTS in milliseconds (0 for CodedFramesX).
        composition_time: i32,
        /// Whether it came as CodedFramesX.
        x: bool,
        /// The frames.
        data: Bytes,
    },
    /// The end of a sequence.
    SequenceEnd,
    /// AMF-encoded metadata (colorInfo and the like).
    Metadata(Bytes),
    /// An MPEG-2 TS sequence start.
    Mpeg2TsSequenceStart(Bytes),
}

/// One track of an Enhanced RTMP video tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoTrack {
    /// The codec.
    pub fourcc: VideoFourCc,
    /// The track id (0 for the only or first track).
    pub track_id: u8,
    /// What it carries.
    pub data: VideoTrackData,
}

/// An Enhanced RTMP video tag body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExVideo {
    /// Key, inter, or command frame.
    pub frame_type: FrameType,
    /// Packet modifier extensions, in order.
    pub mod_ex: Vec<ModEx>,
    /// Set for a multitrack tag.
    pub multitrack: Option<AvMultitrackType>,
    /// A command frame's command; such a tag has no tracks.
    pub command: Option<VideoCommand>,
    /// The tracks (one unless multitrack; none for a command frame).
    pub tracks: Vec<VideoTrack>,
}

/// A video tag body, legacy or Enhanced RTMP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoTag {
    /// A legacy FLV video tag (codec id in the low nibble).
    Legacy(LegacyVideo),
    /// An Enhanced RTMP video tag (a FourCC).
    Enhanced(ExVideo),
}

/// Reads ModEx blocks while the packet type says one follows; returns the
/// packet type that comes after them.
fn read_mod_ex(
    r: &mut Reader,
    mut packet_type: u8,
    mod_ex_code: u8,
    out: &mut Vec<ModEx>,
) -> Result<u8> {
    while packet_type == mod_ex_code {
        let t = truncated("ModEx block");
        let mut size = usize::from(r.u8().map_err(&t)?) + 1;
        if size == 256 {
            size = usize::from(r.u16().map_err(&t)?) + 1;
        }
        let data = r.bytes(size).map_err(&t)?;
        let b = r.u8().map_err(&t)?;
        let kind = b >> 4;
        packet_type = b & 0x0F;
        match kind {
            0 => {
                let mut d = Reader::new(data);
                let nanos = d.u24().map_err(|_| {
                    Error::malformed(format!("TimestampOffsetNano of {size} bytes, needs 3"))
                })?;
                out.push(ModEx::TimestampOffsetNano(nanos));
            }
            k => return Err(Error::unsupported(format!("unknown ModEx type {k}"))),
        }
        if out.len() > 16 {
            return Err(Error::malformed("more than 16 ModEx blocks in one tag"));
        }
    }
    Ok(packet_type)
}

fn write_mod_ex(out: &mut Vec<u8>, mods: &[ModEx], mod_ex_code: u8, next: &[u8]) {
    // Each ModEx block ends with the type of what follows it.
    for (i, m) in mods.iter().enumerate() {
        let ModEx::TimestampOffsetNano(n) = m;
        out.push(2); // size - 1
        put_u24(out, *n);
        let following = if i + 1 < mods.len() {
            mod_ex_code
        } else {
            next[0]
        };
        out.push(following & 0x0F);
    }
}

/// What an Enhanced RTMP tag says between its ModEx blocks and its
/// tracks: their packet type, the multitrack layout if it has one, and
/// the FourCC its tracks share (none where each track names its own).
struct TrackHead {
    packet_type: u8,
    multitrack: Option<AvMultitrackType>,
    shared: Option<FourCc>,
}

impl TrackHead {
    /// Reads the multitrack byte where `packet_type` (after the ModEx
    /// blocks) says Multitrack, then the shared FourCC.
    fn read(r: &mut Reader, packet_type: u8, video: bool) -> Result<Self> {
        let (kind, multitrack, mod_ex, in_multitrack, alone) = if video {
            let (m, x) = (VideoPacketType::Multitrack, VideoPacketType::ModEx);
            (
                "video",
                m as u8,
                x as u8,
                "multitrack video tag",
                "video tag FourCC",
            )
        } else {
            let (m, x) = (AudioPacketType::Multitrack, AudioPacketType::ModEx);
            (
                "audio",
                m as u8,
                x as u8,
                "multitrack audio tag",
                "audio tag FourCC",
            )
        };
        let mut head = TrackHead {
            packet_type,
            multitrack: None,
            shared: None,
        };
        if packet_type == multitrack {
            let b = r.u8().map_err(truncated(in_multitrack))?;
            let mt = AvMultitrackType::from_code(b >> 4)?;
            head.packet_type = b & 0x0F;
            head.multitrack = Some(mt);
            if mt != AvMultitrackType::ManyTracksManyCodecs {
                head.shared = Some(r.fourcc().map_err(truncated(in_multitrack))?);
            }
        } else {
            head.shared = Some(r.fourcc().map_err(truncated(alone))?);
        }
        if head.packet_type == multitrack || head.packet_type == mod_ex {
            return Err(Error::malformed(format!(
                "{kind} multitrack or ModEx where a track packet type belongs"
            )));
        }
        Ok(head)
    }

    /// Calls `each` with every track's FourCC, id and body: the rest of
    /// the tag for a tag of one track, each track's sized body otherwise.
    fn read_tracks<'a>(
        &self,
        r: &mut Reader<'a>,
        mut each: impl FnMut(FourCc, u8, &'a [u8]) -> Result<()>,
    ) -> Result<()> {
        let t = truncated("multitrack tag");
        let Some(mt) = self.multitrack else {
            return each(self.shared.unwrap_or(*b"????"), 0, r.rest());
        };
        loop {
            let fourcc = match self.shared {
                Some(f) => f,
                None => r.fourcc().map_err(&t)?,
            };
            let track_id = r.u8().map_err(&t)?;
            let body = if mt == AvMultitrackType::OneTrack {
                r.bytes(r.remaining()).map_err(&t)?
            } else {
                let n = r.u24().map_err(&t)? as usize;
                r.bytes(n).map_err(&t)?
            };
            each(fourcc, track_id, body)?;
            if mt == AvMultitrackType::OneTrack || r.is_empty() {
                return Ok(());
            }
        }
    }
}

impl LegacyAudio {
    /// The rest of a legacy audio tag whose first byte was `b0`.
    fn read(b0: u8, r: &mut Reader, p: &Bytes) -> Result<Self> {
        let format = SoundFormat::from_code(b0 >> 4)?;
        let aac_packet_type = if format == SoundFormat::Aac {
            Some(match r.u8().map_err(truncated("AAC audio tag"))? {
                0 => AacPacketType::SequenceHeader,
                1 => AacPacketType::Raw,
                t => return Err(Error::unsupported(format!("unknown AAC packet type {t}"))),
            })
        } else {
            None
        };
        Ok(LegacyAudio {
            format,
            rate: (b0 >> 2) & 3,
            sixteen_bit: b0 & 2 != 0,
            stereo: b0 & 1 != 0,
            aac_packet_type,
            data: p.slice(r.position()..),
        })
    }
}

impl AudioTrackData {
    /// One track's body (`body`, within the tag `p`) as its packet type says.
    fn read(packet_type: AudioPacketType, body: &[u8], p: &Bytes) -> Result<Self> {
        Ok(match packet_type {
            AudioPacketType::SequenceStart => AudioTrackData::SequenceStart(p.slice_ref(body)),
            AudioPacketType::CodedFrames => AudioTrackData::CodedFrames(p.slice_ref(body)),
            AudioPacketType::SequenceEnd => AudioTrackData::SequenceEnd,
            _ => AudioTrackData::MultichannelConfig(parse_multichannel(body)?),
        })
    }
}

impl AudioTag {
    /// Reads an audio tag body (legacy or Enhanced RTMP).
    pub fn parse(p: &Bytes) -> Result<Self> {
        let mut r = Reader::new(p);
        let b0 = r.u8().map_err(truncated("audio tag"))?;
        if b0 >> 4 != 9 {
            return LegacyAudio::read(b0, &mut r, p).map(AudioTag::Legacy);
        }
        let mut mod_ex = Vec::new();
        let pt = read_mod_ex(&mut r, b0 & 0x0F, AudioPacketType::ModEx as u8, &mut mod_ex)?;
        AudioPacketType::from_code(pt)?;
        let head = TrackHead::read(&mut r, pt, false)?;
        let packet_type = AudioPacketType::from_code(head.packet_type)?;
        let mut tracks = Vec::new();
        head.read_tracks(&mut r, |fourcc, track_id, body| {
            tracks.push(AudioTrack {
                fourcc: AudioFourCc::from_fourcc(fourcc)?,
                track_id,
                data: AudioTrackData::read(packet_type, body, p)?,
            });
            Ok(())
        })?;
        Ok(AudioTag::Enhanced(ExAudio {
            mod_ex,
            multitrack: head.multitrack,
            tracks,
        }))
    }

    /// Writes the tag body.
    pub fn build(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            AudioTag::Legacy(a) => {
                out.push(
                    ((a.format as u8) << 4)
                        | (a.rate << 2)
                        | (u8::from(a.sixteen_bit) << 1)
                        | u8::from(a.stereo),
                );
                if let Some(t) = a.aac_packet_type {
                    out.push(t as u8);
                }
                out.extend_from_slice(&a.data);
            }
            AudioTag::Enhanced(e) => {
                let pt = |d: &AudioTrackData| match d {
                    AudioTrackData::SequenceStart(_) => AudioPacketType::SequenceStart,
                    AudioTrackData::CodedFrames(_) => AudioPacketType::CodedFrames,
                    AudioTrackData::SequenceEnd => AudioPacketType::SequenceEnd,
                    AudioTrackData::MultichannelConfig(_) => AudioPacketType::MultichannelConfig,
                } as u8;
                let inner = e
                    .tracks
                    .first()
                    .map_or(AudioPacketType::SequenceEnd as u8, |t| pt(&t.data));
                let first = if e.multitrack.is_some() {
                    AudioPacketType::Multitrack as u8
                } else {
                    inner
                };
                let mod_code = AudioPacketType::ModEx as u8;
                out.push(0x90 | if e.mod_ex.is_empty() { first } else { mod_code });
                write_mod_ex(&mut out, &e.mod_ex, mod_code, &[first]);
                let body = |out: &mut Vec<u8>, d: &AudioTrackData| match d {
                    AudioTrackData::SequenceStart(b) | AudioTrackData::CodedFrames(b) => {
                        out.extend_from_slice(b)
                    }
                    AudioTrackData::SequenceEnd => {}
                    AudioTrackData::MultichannelConfig(m) => write_multichannel(out, m),
                };
                write_tracks(
                    &mut out,
                    e.multitrack,
                    inner,
                    &e.tracks,
                    |t| t.fourcc.fourcc(),
                    |t| t.track_id,
                    |out, t| body(out, &t.data),
                );
            }
        }
        Bytes::from(out)
    }
}

fn write_tracks<T>(
    out: &mut Vec<u8>,
    multitrack: Option<AvMultitrackType>,
    inner: u8,
    tracks: &[T],
    fourcc: impl Fn(&T) -> FourCc,
    track_id: impl Fn(&T) -> u8,
    body: impl Fn(&mut Vec<u8>, &T),
) {
    match multitrack {
        None => {
            if let Some(t) = tracks.first() {
                out.extend_from_slice(&fourcc(t));
                body(out, t);
            }
        }
        Some(mt) => {
            out.push(((mt as u8) << 4) | inner);
            if mt != AvMultitrackType::ManyTracksManyCodecs
                && let Some(t) = tracks.first()
            {
                out.extend_from_slice(&fourcc(t));
            }
            for t in tracks {
                if mt == AvMultitrackType::ManyTracksManyCodecs {
                    out.extend_from_slice(&fourcc(t));
                }
                out.push(track_id(t));
                if mt == AvMultitrackType::OneTrack {
                    body(out, t);
                } else {
                    let mut b = Vec::new();
                    body(&mut b, t);
                    put_u24(out, b.len() as u32);
                    out.extend_from_slice(&b);
                }
            }
        }
    }
}

fn parse_multichannel(b: &[u8]) -> Result<MultichannelConfig> {
    let t = truncated("multichannel config");
    let mut r = Reader::new(b);
    let order = r.u8().map_err(&t)?;
    let channels = r.u8().map_err(&t)?;
    Ok(match order {
        0 => MultichannelConfig::Unspecified { channels },
        1 => MultichannelConfig::Native {
            channels,
            flags: r.u32().map_err(&t)?,
        },
        2 => MultichannelConfig::Custom {
            mapping: r.bytes(usize::from(channels)).map_err(&t)?.to_vec(),
        },
        o => {
            return Err(Error::unsupported(format!(
                "unknown audio channel order {o}"
            )));
        }
    })
}

fn write_multichannel(out: &mut Vec<u8>, m: &MultichannelConfig) {
    match m {
        MultichannelConfig::Unspecified { channels } => out.extend_from_slice(&[0, *channels]),
        MultichannelConfig::Native { channels, flags } => {
            out.extend_from_slice(&[1, *channels]);
            out.extend_from_slice(&flags.to_be_bytes());
        }
        MultichannelConfig::Custom { mapping } => {
            out.extend_from_slice(&[2, mapping.len() as u8]);
            out.extend_from_slice(mapping);
        }
    }
}

impl LegacyVideo {
    /// The rest of a legacy video tag whose first byte was `b0`.
    fn read(b0: u8, r: &mut Reader, p: &Bytes) -> Result<Self> {
        let frame_type = FrameType::from_code(b0 >> 4)?;
        let codec = VideoCodecId::from_code(b0 & 0x0F)?;
        let mut v = LegacyVideo {
            frame_type,
            codec,
            avc: None,
            command: None,
            data: Bytes::new(),
        };
        if frame_type == FrameType::Command {
            let c = r.u8().map_err(truncated("video command frame"))?;
            v.command = Some(video_command(c)?);
        } else if codec.has_packet_type() {
            let t = truncated("AVC video tag header");
            let pt = match r.u8().map_err(&t)? {
                0 => AvcPacketType::SequenceHeader,
                1 => AvcPacketType::Nalu,
                2 => AvcPacketType::EndOfSequence,
                v => return Err(Error::unsupported(format!("unknown AVC packet type {v}"))),
            };
            v.avc = Some((pt, r.i24().map_err(&t)?));
        }
        v.data = p.slice(r.position()..);
        Ok(v)
    }
}

impl VideoTrackData {
    /// One track's body (`body`, within the tag `p`) as its packet type
    /// says; CodedFrames starts with a composition time for the codecs
    /// that have one.
    fn read(
        packet_type: VideoPacketType,
        fourcc: VideoFourCc,
        body: &[u8],
        p: &Bytes,
    ) -> Result<Self> {
        let slice = |b: &[u8]| p.slice_ref(b);
        Ok(match packet_type {
            VideoPacketType::SequenceStart => VideoTrackData::SequenceStart(slice(body)),
            VideoPacketType::CodedFrames if fourcc.has_composition_time() => {
                let mut br = Reader::new(body);
                let cts = br
                    .i24()
                    .map_err(truncated("coded frames composition time"))?;
                VideoTrackData::CodedFrames {
                    composition_time: cts,
                    x: false,
                    data: slice(br.rest()),
                }
            }
            VideoPacketType::CodedFrames => VideoTrackData::CodedFrames {
                composition_time: 0,
                x: false,
                data: slice(body),
            },
            VideoPacketType::CodedFramesX => VideoTrackData::CodedFrames {
                composition_time: 0,
                x: true,
                data: slice(body),
            },
            VideoPacketType::SequenceEnd => VideoTrackData::SequenceEnd,
            VideoPacketType::Metadata => VideoTrackData::Metadata(slice(body)),
            _ => VideoTrackData::Mpeg2TsSequenceStart(slice(body)),
        })
    }
}

impl VideoTag {
    /// Reads a video tag body (legacy or Enhanced RTMP).
    pub fn parse(p: &Bytes) -> Result<Self> {
        let mut r = Reader::new(p);
        let b0 = r.u8().map_err(truncated("video tag"))?;
        if b0 & 0x80 == 0 {
            return LegacyVideo::read(b0, &mut r, p).map(VideoTag::Legacy);
        }
        let frame_type = FrameType::from_code((b0 >> 4) & 7)?;
        let mut mod_ex = Vec::new();
        let pt = read_mod_ex(&mut r, b0 & 0x0F, VideoPacketType::ModEx as u8, &mut mod_ex)?;
        if frame_type == FrameType::Command && pt != VideoPacketType::Metadata as u8 {
            let c = r.u8().map_err(truncated("video command frame"))?;
            return Ok(VideoTag::Enhanced(ExVideo {
                frame_type,
                mod_ex,
                multitrack: None,
                command: Some(video_command(c)?),
                tracks: Vec::new(),
            }));
        }
        VideoPacketType::from_code(pt)?;
        let head = TrackHead::read(&mut r, pt, true)?;
        let packet_type = VideoPacketType::from_code(head.packet_type)?;
        let mut tracks = Vec::new();
        head.read_tracks(&mut r, |fourcc, track_id, body| {
            let fourcc = VideoFourCc::from_fourcc(fourcc)?;
            tracks.push(VideoTrack {
                fourcc,
                track_id,
                data: VideoTrackData::read(packet_type, fourcc, body, p)?,
            });
            Ok(())
        })?;
        Ok(VideoTag::Enhanced(ExVideo {
            frame_type,
            mod_ex,
            multitrack: head.multitrack,
            command: None,
            tracks,
        }))
    }

    /// Writes the tag body.
    pub fn build(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            VideoTag::Legacy(v) => {
                out.push(((v.frame_type as u8) << 4) | v.codec as u8);
                if let Some(c) = v.command {
                    out.push(c as u8);
                } else if let Some((pt, cts)) = v.avc {
                    out.push(pt as u8);
                    put_u24(&mut out, (cts as u32) & 0xFF_FFFF);
                }
                out.extend_from_slice(&v.data);
            }
            VideoTag::Enhanced(e) => {
                let pt = |d: &VideoTrackData| match d {
                    VideoTrackData::SequenceStart(_) => VideoPacketType::SequenceStart,
                    VideoTrackData::CodedFrames { x: true, .. } => VideoPacketType::CodedFramesX,
                    VideoTrackData::CodedFrames { .. } => VideoPacketType::CodedFrames,
                    VideoTrackData::SequenceEnd => VideoPacketType::SequenceEnd,
                    VideoTrackData::Metadata(_) => VideoPacketType::Metadata,
                    VideoTrackData::Mpeg2TsSequenceStart(_) => {
                        VideoPacketType::Mpeg2TsSequenceStart
                    }
                } as u8;
                let mod_code = VideoPacketType::ModEx as u8;
                let head = 0x80 | ((e.frame_type as u8) << 4);
                if let Some(c) = e.command {
                    out.push(head | if e.mod_ex.is_empty() { 1 } else { mod_code });
                    write_mod_ex(&mut out, &e.mod_ex, mod_code, &[1]);
                    out.push(c as u8);
                    return Bytes::from(out);
                }
                let inner = e
                    .tracks
                    .first()
                    .map_or(VideoPacketType::SequenceEnd as u8, |t| pt(&t.data));
                let first = if e.multitrack.is_some() {
                    VideoPacketType::Multitrack as u8
                } else {
                    inner
                };
                out.push(head | if e.mod_ex.is_empty() { first } else { mod_code });
                write_mod_ex(&mut out, &e.mod_ex, mod_code, &[first]);
                let body = |out: &mut Vec<u8>, t: &VideoTrack| match &t.data {
                    VideoTrackData::SequenceStart(b)
                    | VideoTrackData::Metadata(b)
                    | VideoTrackData::Mpeg2TsSequenceStart(b) => out.extend_from_slice(b),
                    VideoTrackData::CodedFrames {
                        composition_time,
                        x,
                        data,
                    } => {
                        if !x && t.fourcc.has_composition_time() {
                            put_u24(out, (*composition_time as u32) & 0xFF_FFFF);
                        }
                        out.extend_from_slice(data);
                    }
                    VideoTrackData::SequenceEnd => {}
                };
                write_tracks(
                    &mut out,
                    e.multitrack,
                    inner,
                    &e.tracks,
                    |t| t.fourcc.fourcc(),
                    |t| t.track_id,
                    body,
                );
            }
        }
        Bytes::from(out)
    }

    /// Whether this tag starts a decodable picture (a key frame).
    pub fn is_key(&self) -> bool {
        match self {
            VideoTag::Legacy(v) => v.frame_type.is_key(),
            VideoTag::Enhanced(e) => e.frame_type.is_key(),
        }
    }
}

/// What a media message is to a server relaying it to players, read from
/// its first bytes without parsing the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRole {
    /// Decoder set-up (a sequence header): every player needs the latest
    /// one before any frame.
    Config,
    /// A picture a player can start decoding at.
    Key,
    /// Anything else; all audio frames are this.
    Frame,
}

/// The relay role of a video message body.
pub fn video_relay_role(body: &[u8]) -> RelayRole {
    let Some(&b0) = body.first() else {
        return RelayRole::Frame;
    };
    let frame = if b0 & 0x80 != 0 {
        (b0 >> 4) & 7
    } else {
        b0 >> 4
    };
    let key = if frame == FrameType::Key as u8 || frame == FrameType::GeneratedKey as u8 {
        RelayRole::Key
    } else {
        RelayRole::Frame
    };
    if b0 & 0x80 != 0 {
        // Enhanced RTMP: the packet type is the low nibble (past any ModEx
        // blocks); a multitrack packet has the tracks' packet type in the
        // next byte's.
        let coded = VideoPacketType::CodedFrames as u8;
        let packet = inner_packet_type(
            body,
            VideoPacketType::ModEx as u8,
            VideoPacketType::Multitrack as u8,
        )
        .unwrap_or(coded);
        if packet == VideoPacketType::SequenceStart as u8
            || packet == VideoPacketType::Mpeg2TsSequenceStart as u8
        {
            return RelayRole::Config;
        }
        return key;
    }
    let codec = b0 & 0x0F;
    if (codec == VideoCodecId::Avc as u8 || codec == VideoCodecId::Hevc as u8)
        && body.get(1) == Some(&(AvcPacketType::SequenceHeader as u8))
    {
        return RelayRole::Config;
    }
    key
}

/// The relay role of an audio message body: AAC and Enhanced RTMP sequence
/// starts are `Config`, everything else `Frame`.
pub fn audio_relay_role(body: &[u8]) -> RelayRole {
    let Some(&b0) = body.first() else {
        return RelayRole::Frame;
    };
    match b0 >> 4 {
        10 if body.get(1) == Some(&0) => RelayRole::Config,
        9 => {
            let packet = inner_packet_type(
                body,
                AudioPacketType::ModEx as u8,
                AudioPacketType::Multitrack as u8,
            );
            if packet == Some(AudioPacketType::SequenceStart as u8) {
                RelayRole::Config
            } else {
                RelayRole::Frame
            }
        }
        _ => RelayRole::Frame,
    }
}

/// Tells Speex's header packets from its frames, in a stream of FLV audio
/// tag bodies. FLV has no place for the headers (every Speex stream in FLV
/// is 16 kHz wideband mono, and players make their own), but GStreamer's
/// flvmux writes speexenc's two as audio tags ahead of the frames: the
/// 80-byte header, which starts "Speex   ", then the comments. A decoder
/// given them as frames plays them as noise.
#[derive(Debug, Default, Clone)]
pub struct SpeexHeaders {
    /// The last Speex packet was the header: the comments may follow.
    after_header: bool,
}

impl SpeexHeaders {
    /// Whether `body`, an audio tag body (its first byte the tag's), is a
    /// Speex header packet: the header, or a comment packet right after it.
    /// Only Speex tags are looked at.
    pub fn is_header(&mut self, body: &[u8]) -> bool {
        let Some((&b0, packet)) = body.split_first() else {
            return false;
        };
        if b0 >> 4 != SoundFormat::Speex as u8 {
            return false;
        }
        let after_header = std::mem::take(&mut self.after_header);
        if packet.starts_with(b"Speex   ") {
            self.after_header = true;
            return true;
        }
        after_header && is_comment_packet(packet)
    }

    /// Whether the next Speex packet is looked at whole (`is_header` reads
    /// only the first 9 bytes of any other).
    pub fn wants_whole(&self) -> bool {
        self.after_header
    }
}

/// Whether `p` is a Vorbis-style comment packet, Speex's second header: a
/// vendor string and a counted list of strings, each after its length
/// (32-bit little-endian), filling the packet but for a framing byte.
fn is_comment_packet(p: &[u8]) -> bool {
    fn u32_at(p: &[u8], at: usize) -> Option<usize> {
        let b = p.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn end(p: &[u8]) -> Option<usize> {
        let mut at = 4usize.checked_add(u32_at(p, 0)?)?;
        let count = u32_at(p, at)?;
        at += 4;
        // Each string takes 4 bytes at least: the count is bounded by
        // the packet before the loop runs.
        if count > p.len() / 4 {
            return None;
        }
        for _ in 0..count {
            at = at.checked_add(4)?.checked_add(u32_at(p, at)?)?;
        }
        (at <= p.len()).then_some(at)
    }
    end(p).is_some_and(|at| p.len() - at <= 1)
}

/// The track a media message belongs to, read from its first bytes: the
/// track id of an Enhanced RTMP multitrack tag (its first track, where it
/// carries several), 0 for every other tag. Servers and backlogs keep one
/// sequence header per track, and start players at keyframes of one track.
pub fn relay_track(video: bool, body: &[u8]) -> u8 {
    let (mod_ex, multitrack) = match body.first() {
        Some(&b0) if video && b0 & 0x80 != 0 => (
            VideoPacketType::ModEx as u8,
            VideoPacketType::Multitrack as u8,
        ),
        Some(&b0) if !video && b0 >> 4 == 9 => (
            AudioPacketType::ModEx as u8,
            AudioPacketType::Multitrack as u8,
        ),
        _ => return 0,
    };
    let at = match packet_type_past_mod_ex(body, mod_ex) {
        Some((packet, at)) if packet == multitrack => at,
        _ => return 0,
    };
    // [multitrack type | packet type][FourCC][track id]...: the shared
    // FourCC, or the first track's own, sits at the same place.
    body.get(at + 5).copied().unwrap_or(0)
}

/// An Enhanced RTMP tag's packet type past its ModEx blocks, and where what
/// follows it starts; read without allocating. `None` if it is cut short.
fn packet_type_past_mod_ex(body: &[u8], mod_ex_code: u8) -> Option<(u8, usize)> {
    let mut packet = body.first()? & 0x0F;
    let mut at = 1;
    let mut blocks = 0;
    while packet == mod_ex_code {
        let mut size = usize::from(*body.get(at)?) + 1;
        at += 1;
        if size == 256 {
            size = usize::from(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?])) + 1;
            at += 2;
        }
        at += size;
        packet = body.get(at)? & 0x0F;
        at += 1;
        blocks += 1;
        if blocks > 16 {
            return None;
        }
    }
    Some((packet, at))
}

/// The packet type of an Enhanced RTMP tag's tracks: past ModEx blocks,
/// and inside a multitrack packet.
fn inner_packet_type(body: &[u8], mod_ex: u8, multitrack: u8) -> Option<u8> {
    let (packet, at) = packet_type_past_mod_ex(body, mod_ex)?;
    if packet == multitrack {
        return body.get(at).map(|b| b & 0x0F);
    }
    Some(packet)
}

fn video_command(c: u8) -> Result<VideoCommand> {
    match c {
        0 => Ok(VideoCommand::StartSeek),
        1 => Ok(VideoCommand::EndSeek),
        _ => Err(Error::unsupported(format!("unknown video command {c}"))),
    }
}

/// FLV file tag types.
pub mod tag_type {
    /// Audio.
    pub const AUDIO: u8 = 8;
    /// Video.
    pub const VIDEO: u8 = 9;
    /// Script data (onMetaData).
    pub const SCRIPT: u8 = 18;
}

/// Size of the FLV file header.
pub const FLV_HEADER_SIZE: usize = 9;
/// Size of an FLV tag header.
pub const TAG_HEADER_SIZE: usize = 11;

/// An FLV file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvHeader {
    /// Whether the file says it has audio.
    pub has_audio: bool,
    /// Whether the file says it has video.
    pub has_video: bool,
}

impl FlvHeader {
    /// The header followed by PreviousTagSize0.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"FLV\x01");
        out.push((u8::from(self.has_audio) << 2) | u8::from(self.has_video));
        out.extend_from_slice(&(FLV_HEADER_SIZE as u32).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
    }
}

/// One FLV file tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlvTag {
    /// Audio, video or script ([`tag_type`]).
    pub tag_type: u8,
    /// Milliseconds (24 bits plus an 8-bit extension).
    pub timestamp: u32,
    /// The tag body.
    pub data: Bytes,
}

impl FlvTag {
    /// The tag followed by its PreviousTagSize.
    pub fn write(&self, out: &mut Vec<u8>) {
        write_tag_header(out, self.tag_type, self.timestamp, self.data.len());
        out.extend_from_slice(&self.data);
        out.extend_from_slice(&previous_tag_size(self.data.len()));
    }
}

/// The header of a tag of `tag_type` whose body is `size` bytes (at most
/// 16 MiB - 1, as an RTMP message), stamped `timestamp` ms: what comes
/// before the body, so that a writer can put the body after it without
/// copying it.
pub fn write_tag_header(out: &mut Vec<u8>, tag_type: u8, timestamp: u32, size: usize) {
    out.push(tag_type);
    put_u24(out, size as u32);
    put_u24(out, timestamp & 0xFF_FFFF);
    out.push((timestamp >> 24) as u8);
    out.extend_from_slice(&[0, 0, 0]);
}

/// The PreviousTagSize after a tag whose body is `size` bytes.
pub fn previous_tag_size(size: usize) -> [u8; 4] {
    ((size + TAG_HEADER_SIZE) as u32).to_be_bytes()
}

/// A streaming FLV file reader: feed bytes, poll tags.
#[derive(Debug)]
pub struct FlvReader {
    buf: BytesMut,
    header: Option<FlvHeader>,
    max_tag_size: usize,
    /// Back pointers that did not match the tag before them (tolerated:
    /// several muxers have written them wrong).
    pub bad_back_pointers: u64,
    expect_back_pointer: Option<u32>,
}

impl FlvReader {
    /// A reader that refuses tags over `max_tag_size` bytes.
    pub fn new(max_tag_size: usize) -> Self {
        FlvReader {
            buf: BytesMut::new(),
            header: None,
            max_tag_size,
            bad_back_pointers: 0,
            expect_back_pointer: None,
        }
    }

    /// A reader for a stream of tags whose FLV header was read elsewhere.
    pub fn tags_only(max_tag_size: usize, header: FlvHeader) -> Self {
        FlvReader {
            header: Some(header),
            ..Self::new(max_tag_size)
        }
    }

    /// The file header, once read.
    pub fn header(&self) -> Option<FlvHeader> {
        self.header
    }

    /// Adds bytes of the file.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes fed and not yet used.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next tag, `Ok(None)` when more bytes are needed.
    pub fn poll_tag(&mut self) -> Result<Option<FlvTag>> {
        if self.header.is_none() {
            if self.buf.len() < FLV_HEADER_SIZE {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err(Error::malformed(
                    "not an FLV stream: it does not start with 'FLV'",
                ));
            }
            let offset =
                u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]) as usize;
            if !(FLV_HEADER_SIZE..=1024).contains(&offset) {
                return Err(Error::malformed(format!(
                    "FLV header size {offset} is not plausible"
                )));
            }
            if self.buf.len() < offset + 4 {
                return Ok(None);
            }
            let flags = self.buf[4];
            self.header = Some(FlvHeader {
                has_audio: flags & 4 != 0,
                has_video: flags & 1 != 0,
            });
            self.buf.advance(offset + 4);
        }
        loop {
            if self.buf.len() < TAG_HEADER_SIZE {
                return Ok(None);
            }
            let h = &self.buf[..TAG_HEADER_SIZE];
            let kind = h[0];
            let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
            let timestamp = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            if kind & 0x20 != 0 {
                return Err(Error::unsupported("encrypted FLV tags are not supported"));
            }
            if size > self.max_tag_size {
                return Err(Error::limit(format!(
                    "FLV tag of {size} bytes exceeds the limit of {}",
                    self.max_tag_size
                )));
            }
            if self.buf.len() < TAG_HEADER_SIZE + size + 4 {
                return Ok(None);
            }
            self.buf.advance(TAG_HEADER_SIZE);
            let data = self.buf.split_to(size).freeze();
            let bp = self.buf.get_u32();
            if bp as usize != size + TAG_HEADER_SIZE {
                self.bad_back_pointers += 1;
            }
            self.expect_back_pointer = Some(bp);
            match kind & 0x1F {
                tag_type::AUDIO | tag_type::VIDEO | tag_type::SCRIPT => {
                    return Ok(Some(FlvTag {
                        tag_type: kind & 0x1F,
                        timestamp,
                        data,
                    }));
                }
                // Unknown tag types are skipped, as the FLV spec asks.
                _ => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn relay_track_of_multitrack_tags() {
        // Legacy and single-track Enhanced RTMP tags are track 0.
        assert_eq!(relay_track(true, &[0x17, 1, 0, 0, 0]), 0);
        assert_eq!(relay_track(true, b"\x91hvc1\0\0\0"), 0);
        assert_eq!(relay_track(false, &[0xAF, 1]), 0);
        assert_eq!(relay_track(false, b"\x91Opus"), 0);
        // OneTrack, ManyTracks (shared FourCC), ManyTracksManyCodecs.
        assert_eq!(relay_track(true, b"\x96\x01hvc1\x02\0\0\0"), 2);
        assert_eq!(relay_track(true, b"\x96\x11avc1\x01\0\0\x05"), 1);
        assert_eq!(relay_track(true, b"\x96\x21av01\x07\0\0\x01"), 7);
        assert_eq!(relay_track(false, b"\x95\x01Opus\x03"), 3);
        // Past a ModEx block (TimestampOffsetNano, then Multitrack).
        assert_eq!(
            relay_track(true, b"\x97\x02\x00\x00\x01\x06\x01hvc1\x04"),
            4
        );
        assert_eq!(
            video_relay_role(b"\x97\x02\x00\x00\x01\x06\x00hvc1\x04"),
            RelayRole::Config
        );
        assert_eq!(
            video_relay_role(b"\x97\x02\x00\x00\x01\x00hvc1"),
            RelayRole::Config
        );
        assert_eq!(
            audio_relay_role(b"\x97\x02\x00\x00\x01\x00Opus"),
            RelayRole::Config
        );
        // Cut short: track 0, never a panic.
        assert_eq!(relay_track(true, b"\x96\x01hv"), 0);
        assert_eq!(relay_track(true, b"\x97\x02\x00"), 0);
        assert_eq!(relay_track(false, &[]), 0);
    }

    /// A Speex comment packet as speexenc writes it: the vendor, one
    /// comment, a framing byte.
    fn speex_comments() -> Vec<u8> {
        let string = |c: &mut Vec<u8>, s: &[u8]| {
            c.extend_from_slice(&(s.len() as u32).to_le_bytes());
            c.extend_from_slice(s);
        };
        let mut c = vec![0xB2];
        string(&mut c, b"Encoded with GStreamer Speexenc");
        c.extend_from_slice(&1u32.to_le_bytes());
        string(&mut c, b"DESCRIPTION=audiotest wave");
        c.push(1);
        c
    }

    #[test]
    fn speex_header_packets_told_from_frames() {
        let mut header = b"\xB2Speex   1.2.1".to_vec();
        header.resize(81, 0);
        let comments = speex_comments();
        let frame = [0xB2, 0x30, 0x54, 0x98, 0x22, 0xD9, 0x00, 0x00, 0x68];
        // flvmux's order: header, comments, frames.
        let mut s = SpeexHeaders::default();
        assert!(s.is_header(&header));
        assert!(s.wants_whole());
        assert!(s.is_header(&comments));
        assert!(!s.wants_whole());
        assert!(!s.is_header(&frame));
        // Comments only right after a header: elsewhere a packet that
        // reads as one is a frame.
        assert!(!s.is_header(&comments));
        // A header not followed by comments: the frame after it stays.
        assert!(s.is_header(&header));
        assert!(!s.is_header(&frame));
        assert!(!s.is_header(&comments));
        // Other codecs are not looked at and do not move the state.
        assert!(s.is_header(&header));
        let mut aac = header.clone();
        aac[0] = 0xAF;
        assert!(!s.is_header(&aac));
        assert!(!s.is_header(&[]));
        assert!(s.is_header(&comments));
        // Comment packets that do not add up: lengths past the end, a
        // count beyond what the packet could hold, bytes left over.
        let bad: [&[u8]; 5] = [
            b"\xB2\xFF\xFF\xFF\xFFab",
            b"\xB2\x01\0\0\0a\xFF\xFF\xFF\x7F\x01\0\0\0",
            b"\xB2\x01\0\0\0a\x01\0\0\0\x09\0\0\0abc",
            b"\xB2\x01\0\0\0a\0\0\0\0\x01\x02",
            b"\xB2\x01\0\0",
        ];
        for b in bad {
            assert!(s.is_header(&header));
            assert!(!s.is_header(b), "{b:?}");
        }
        // With the framing byte or without: both add up.
        assert!(s.is_header(&header));
        assert!(s.is_header(&comments[..comments.len() - 1]));
    }

    #[test]
    fn relay_roles_from_the_first_bytes() {
        use RelayRole::*;
        // Legacy AVC/HEVC: key, inter, sequence header; other codecs key by frame type.
        assert_eq!(video_relay_role(&[0x17, 0x01, 0, 0, 0]), Key);
        assert_eq!(video_relay_role(&[0x27, 0x01, 0, 0, 0]), Frame);
        assert_eq!(video_relay_role(&[0x17, 0x00, 0, 0, 0]), Config);
        assert_eq!(video_relay_role(&[0x1C, 0x00, 0, 0, 0]), Config);
        assert_eq!(video_relay_role(&[0x12]), Key);
        assert_eq!(video_relay_role(&[0x52, 0x00]), Frame);
        assert_eq!(video_relay_role(&[]), Frame);
        // Enhanced RTMP: SequenceStart, CodedFrames(X), multitrack.
        assert_eq!(video_relay_role(b"\x90hvc1"), Config);
        assert_eq!(video_relay_role(b"\x91hvc1"), Key);
        assert_eq!(video_relay_role(b"\xA3av01"), Frame);
        assert_eq!(video_relay_role(b"\x96\x00hvc1"), Config);
        assert_eq!(video_relay_role(b"\x96\x01hvc1"), Key);
        // Audio: AAC sequence header, AAC frame, MP3, Enhanced Opus.
        assert_eq!(audio_relay_role(&[0xAF, 0x00, 0x12, 0x10]), Config);
        assert_eq!(audio_relay_role(&[0xAF, 0x01, 0x21]), Frame);
        assert_eq!(audio_relay_role(&[0x2F, 0xFF]), Frame);
        assert_eq!(audio_relay_role(b"\x90Opus"), Config);
        assert_eq!(audio_relay_role(b"\x91Opus"), Frame);
        assert_eq!(audio_relay_role(b"\x95\x00Opus"), Config);
    }

    #[test]
    fn legacy_avc_and_aac() {
        let seq = Bytes::from_static(&[0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1F]);
        let VideoTag::Legacy(v) = VideoTag::parse(&seq).unwrap() else {
            panic!()
        };
        assert_eq!(v.frame_type, FrameType::Key);
        assert_eq!(v.codec, VideoCodecId::Avc);
        assert_eq!(v.avc, Some((AvcPacketType::SequenceHeader, 0)));
        assert_eq!(&v.data[..], &[0x01, 0x64, 0x00, 0x1F]);
        // Negative composition time survives.
        let nal = Bytes::from_static(&[0x27, 0x01, 0xFF, 0xFF, 0xD8, 0, 0, 0, 1, 0x41]);
        let t = VideoTag::parse(&nal).unwrap();
        let VideoTag::Legacy(v) = &t else { panic!() };
        assert_eq!(v.avc, Some((AvcPacketType::Nalu, -40)));
        assert!(!t.is_key());
        assert_eq!(t.build(), nal);

        let aac = Bytes::from_static(&[0xAF, 0x00, 0x12, 0x10]);
        let AudioTag::Legacy(a) = AudioTag::parse(&aac).unwrap() else {
            panic!()
        };
        assert_eq!(
            (a.format, a.rate, a.sixteen_bit, a.stereo),
            (SoundFormat::Aac, 3, true, true)
        );
        assert_eq!(a.aac_packet_type, Some(AacPacketType::SequenceHeader));
        assert_eq!(AudioTag::Legacy(a).build(), aac);
        for (b, f) in [
            (0x2F, SoundFormat::Mp3),
            (0x72, SoundFormat::G711ALaw),
            (0x82, SoundFormat::G711MuLaw),
            (0xB2, SoundFormat::Speex),
            (0x3E, SoundFormat::PcmLittleEndian),
        ] {
            let AudioTag::Legacy(a) = AudioTag::parse(&Bytes::from(vec![b, 1, 2])).unwrap() else {
                panic!()
            };
            assert_eq!(a.format, f);
            assert_eq!(a.aac_packet_type, None);
            assert_eq!(&a.data[..], &[1, 2]);
        }
    }

    /// The head between the ModEx blocks and the tracks, shared by audio
    /// and video: each track's FourCC (shared or its own), id and body,
    /// and every way it can be cut short or nest what may not nest.
    #[test]
    fn multitrack_heads_and_their_malformed_forms() {
        // Many tracks, many codecs: each names its FourCC; sized bodies.
        let tag =
            Bytes::from_static(b"\x95\x21Opus\x01\x00\x00\x01\xAAfLaC\x02\x00\x00\x02\xBB\xCC");
        let AudioTag::Enhanced(a) = AudioTag::parse(&tag).unwrap() else {
            panic!()
        };
        assert_eq!(a.multitrack, Some(AvMultitrackType::ManyTracksManyCodecs));
        let tracks: Vec<_> = a
            .tracks
            .iter()
            .map(|t| (t.fourcc, t.track_id, t.data.clone()))
            .collect();
        let frames = |b: &'static [u8]| AudioTrackData::CodedFrames(Bytes::from_static(b));
        assert_eq!(
            tracks,
            [
                (AudioFourCc::Opus, 1, frames(b"\xAA")),
                (AudioFourCc::Flac, 2, frames(b"\xBB\xCC"))
            ]
        );
        assert_eq!(AudioTag::Enhanced(a).build(), tag);
        // One track with an id: the rest of the tag is its body, and a
        // codec with a composition time reads it from there.
        let tag = Bytes::from_static(b"\x96\x01hvc1\x03\x00\x00\x28\x01\x02");
        let VideoTag::Enhanced(v) = VideoTag::parse(&tag).unwrap() else {
            panic!()
        };
        assert_eq!(
            (v.multitrack, v.tracks.len()),
            (Some(AvMultitrackType::OneTrack), 1)
        );
        assert_eq!(
            (v.tracks[0].fourcc, v.tracks[0].track_id),
            (VideoFourCc::Hevc, 3)
        );
        assert_eq!(
            v.tracks[0].data,
            VideoTrackData::CodedFrames {
                composition_time: 40,
                x: false,
                data: Bytes::from_static(&[1, 2])
            }
        );
        for (bytes, video, words) in [
            // Multitrack or ModEx where the tracks' packet type belongs.
            (&b"\x96\x06hvc1\x00"[..], true, "video multitrack or ModEx"),
            (&b"\x96\x07hvc1\x00"[..], true, "video multitrack or ModEx"),
            (&b"\x95\x05Opus\x00"[..], false, "audio multitrack or ModEx"),
            (&b"\x95\x07Opus\x00"[..], false, "audio multitrack or ModEx"),
            // Cut short: the multitrack byte, the shared FourCC, a lone
            // FourCC, a track's id, a track's size, a track's body.
            (&b"\x96"[..], true, "multitrack video tag is truncated"),
            (
                &b"\x95\x11Op"[..],
                false,
                "multitrack audio tag is truncated",
            ),
            (&b"\x90av"[..], true, "video tag FourCC is truncated"),
            (&b"\x95\x11Opus"[..], false, "multitrack tag is truncated"),
            (
                &b"\x95\x11Opus\x01\x00"[..],
                false,
                "multitrack tag is truncated",
            ),
            (
                &b"\x95\x11Opus\x01\x00\x00\x05\xAA"[..],
                false,
                "multitrack tag is truncated",
            ),
            (
                &b"\x95\x21Opus\x01\x00\x00\x01\xAAfL"[..],
                false,
                "multitrack tag is truncated",
            ),
            (&b"\x95\x31Opus"[..], false, "multitrack type 3"),
        ] {
            let b = Bytes::copy_from_slice(bytes);
            let e = if video {
                VideoTag::parse(&b).unwrap_err()
            } else {
                AudioTag::parse(&b).unwrap_err()
            };
            assert!(e.reason().contains(words), "{bytes:?}: {e}");
        }
    }

    #[test]
    fn unknown_values_are_named() {
        for (bytes, words) in [
            (&[0x1D, 0][..], "codec id 13"),
            (&[0x0D, 0][..], "frame type 0"),
            (&[0x17, 5, 0, 0, 0][..], "AVC packet type 5"),
            (&[0xC0, 0, 0, 0][..], "sound format 12"),
            (&[0x90, b'x', b'y', b'z', b'w'][..], "audio FourCC 'xyzw'"),
            (&[0x91, b'O', b'p', b'u'][..], "truncated"),
            (&[0x9C][..], "audio packet type 12"),
        ] {
            let b = Bytes::copy_from_slice(bytes);
            let e = if bytes[0] & 0xF0 == 0x90 || bytes[0] == 0xC0 {
                AudioTag::parse(&b).unwrap_err()
            } else {
                VideoTag::parse(&b).unwrap_err()
            };
            assert!(e.reason().contains(words), "{bytes:?}: {e}");
        }
        let e = VideoTag::parse(&Bytes::from_static(b"\x90hev1")).unwrap_err();
        assert!(e.reason().contains("video FourCC 'hev1'"), "{e}");
        let e = VideoTag::parse(&Bytes::from_static(b"\x98hvc1")).unwrap_err();
        assert!(e.reason().contains("video packet type 8"), "{e}");
    }

    #[test]
    fn enhanced_hevc_with_cts_modex_and_command() {
        // hvc1 CodedFrames, key frame, cts -33.
        let mut b = vec![0x91];
        b.extend_from_slice(b"hvc1");
        b.extend_from_slice(&[0xFF, 0xFF, 0xDF, 9, 9]);
        let b = Bytes::from(b);
        let t = VideoTag::parse(&b).unwrap();
        let VideoTag::Enhanced(e) = &t else { panic!() };
        assert!(t.is_key());
        assert_eq!(e.tracks[0].fourcc, VideoFourCc::Hevc);
        assert_eq!(
            e.tracks[0].data,
            VideoTrackData::CodedFrames {
                composition_time: -33,
                x: false,
                data: Bytes::from_static(&[9, 9])
            }
        );
        assert_eq!(t.build(), b);

        // av01 CodedFrames carries no composition time.
        let t = VideoTag::parse(&Bytes::from_static(b"\x91av01\x0a\x0b")).unwrap();
        let VideoTag::Enhanced(e) = &t else { panic!() };
        assert_eq!(
            e.tracks[0].data,
            VideoTrackData::CodedFrames {
                composition_time: 0,
                x: false,
                data: Bytes::from_static(&[0x0a, 0x0b])
            }
        );

        // ModEx with a nanosecond offset, then CodedFramesX.
        let mut b = vec![0x97, 2, 0x00, 0x01, 0xF4, 0x03];
        b.extend_from_slice(b"avc1\x42");
        let b = Bytes::from(b);
        let t = VideoTag::parse(&b).unwrap();
        let VideoTag::Enhanced(e) = &t else { panic!() };
        assert_eq!(e.mod_ex, vec![ModEx::TimestampOffsetNano(500)]);
        assert_eq!(
            e.tracks[0].data,
            VideoTrackData::CodedFrames {
                composition_time: 0,
                x: true,
                data: Bytes::from_static(&[0x42])
            }
        );
        assert_eq!(t.build(), b);

        // Command frame.
        let b = Bytes::from_static(&[0xD1, 0x00]);
        let t = VideoTag::parse(&b).unwrap();
        let VideoTag::Enhanced(e) = &t else { panic!() };
        assert_eq!(e.command, Some(VideoCommand::StartSeek));
        assert_eq!(t.build(), b);
    }

    fn arb_video_data(fourcc: VideoFourCc) -> impl Strategy<Value = VideoTrackData> {
        let bytes = prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from);
        let cts_ok = fourcc.has_composition_time();
        prop_oneof![
            bytes.clone().prop_map(VideoTrackData::SequenceStart),
            (-(1i32 << 23)..(1 << 23), any::<bool>(), bytes.clone()).prop_map(
                move |(c, x, data)| {
                    VideoTrackData::CodedFrames {
                        composition_time: if x || !cts_ok { 0 } else { c },
                        x,
                        data,
                    }
                }
            ),
            Just(VideoTrackData::SequenceEnd),
            bytes.clone().prop_map(VideoTrackData::Metadata),
            bytes.prop_map(VideoTrackData::Mpeg2TsSequenceStart),
        ]
    }

    fn arb_video_fourcc() -> impl Strategy<Value = VideoFourCc> {
        prop_oneof![
            Just(VideoFourCc::Avc),
            Just(VideoFourCc::Hevc),
            Just(VideoFourCc::Av1),
            Just(VideoFourCc::Vp9),
            Just(VideoFourCc::Vp8)
        ]
    }

    fn arb_audio_fourcc() -> impl Strategy<Value = AudioFourCc> {
        prop_oneof![
            Just(AudioFourCc::Opus),
            Just(AudioFourCc::Ac3),
            Just(AudioFourCc::Eac3),
            Just(AudioFourCc::Flac),
            Just(AudioFourCc::Mp3),
            Just(AudioFourCc::Aac)
        ]
    }

    fn arb_ex_video() -> impl Strategy<Value = ExVideo> {
        let mt = prop_oneof![
            Just(None),
            Just(Some(AvMultitrackType::OneTrack)),
            Just(Some(AvMultitrackType::ManyTracks)),
            Just(Some(AvMultitrackType::ManyTracksManyCodecs))
        ];
        (
            mt,
            arb_video_fourcc(),
            1usize..4,
            prop::collection::vec(
                any::<u16>().prop_map(|n| ModEx::TimestampOffsetNano(u32::from(n))),
                0..3,
            ),
            0usize..5,
            1u8..5,
        )
            .prop_flat_map(|(mt, fourcc, n, mod_ex, kind, ft)| {
                let n = if matches!(mt, None | Some(AvMultitrackType::OneTrack)) {
                    1
                } else {
                    n
                };
                let many_codecs = mt == Some(AvMultitrackType::ManyTracksManyCodecs);
                let track = (arb_video_fourcc(), any::<u8>(), any::<u64>()).prop_flat_map(
                    move |(f, id, _)| {
                        let f = if many_codecs { f } else { fourcc };
                        arb_video_data(f).prop_map(move |d| (f, id, d))
                    },
                );
                prop::collection::vec(track, n).prop_map(move |tracks| {
                    // All tracks of a tag share one packet type: use the first's.
                    let kind_of = |d: &VideoTrackData| std::mem::discriminant(d);
                    let first = tracks[0].2.clone();
                    let _ = kind;
                    let tracks: Vec<VideoTrack> = tracks
                        .into_iter()
                        .map(|(f, id, d)| {
                            let d = if kind_of(&d) == kind_of(&first) {
                                match (&d, &first) {
                                    (
                                        VideoTrackData::CodedFrames {
                                            composition_time,
                                            data,
                                            ..
                                        },
                                        VideoTrackData::CodedFrames { x, .. },
                                    ) => VideoTrackData::CodedFrames {
                                        composition_time: if *x || !f.has_composition_time() {
                                            0
                                        } else {
                                            *composition_time
                                        },
                                        x: *x,
                                        data: data.clone(),
                                    },
                                    _ => d,
                                }
                            } else {
                                match &first {
                                    VideoTrackData::CodedFrames { x, .. } => {
                                        VideoTrackData::CodedFrames {
                                            composition_time: 0,
                                            x: *x,
                                            data: Bytes::new(),
                                        }
                                    }
                                    other => other.clone(),
                                }
                            };
                            VideoTrack {
                                fourcc: f,
                                track_id: if mt.is_none() { 0 } else { id },
                                data: d,
                            }
                        })
                        .collect();
                    ExVideo {
                        frame_type: FrameType::from_code(ft).unwrap(),
                        mod_ex: mod_ex.clone(),
                        multitrack: mt,
                        command: None,
                        tracks,
                    }
                })
            })
    }

    proptest! {
        #[test]
        fn enhanced_video_round_trip(e in arb_ex_video()) {
            let t = VideoTag::Enhanced(e);
            let b = t.build();
            prop_assert_eq!(VideoTag::parse(&b).unwrap(), t);
        }

        #[test]
        fn enhanced_audio_round_trip(
            mt in prop_oneof![Just(None), Just(Some(AvMultitrackType::OneTrack)), Just(Some(AvMultitrackType::ManyTracks)), Just(Some(AvMultitrackType::ManyTracksManyCodecs))],
            fourccs in prop::collection::vec(arb_audio_fourcc(), 1..4),
            kind in 0u8..4,
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), 4),
            mod_ex in prop::collection::vec((0u32..(1 << 24)).prop_map(ModEx::TimestampOffsetNano), 0..2),
        ) {
            let n = if matches!(mt, None | Some(AvMultitrackType::OneTrack)) { 1 } else { fourccs.len() };
            let tracks = (0..n).map(|i| {
                let fourcc = if mt == Some(AvMultitrackType::ManyTracksManyCodecs) { fourccs[i] } else { fourccs[0] };
                let p = Bytes::from(payloads[i].clone());
                let data = match kind {
                    0 => AudioTrackData::SequenceStart(p),
                    1 => AudioTrackData::CodedFrames(p),
                    2 => AudioTrackData::SequenceEnd,
                    _ => AudioTrackData::MultichannelConfig(match i % 3 {
                        0 => MultichannelConfig::Unspecified { channels: 2 },
                        1 => MultichannelConfig::Native { channels: 6, flags: 0x3F },
                        _ => MultichannelConfig::Custom { mapping: vec![0, 1, 2] },
                    }),
                };
                AudioTrack { fourcc, track_id: if mt.is_none() { 0 } else { i as u8 }, data }
            }).collect();
            let t = AudioTag::Enhanced(ExAudio { mod_ex, multitrack: mt, tracks });
            prop_assert_eq!(AudioTag::parse(&t.build()).unwrap(), t);
        }

        #[test]
        fn legacy_video_round_trip(ft in 1u8..5, codec in prop_oneof![Just(2u8), Just(4), Just(7), Just(12)], pt in 0u8..3, cts in -(1i32 << 23)..(1 << 23), data in prop::collection::vec(any::<u8>(), 0..16)) {
            let codec = VideoCodecId::from_code(codec).unwrap();
            let avc = codec.has_packet_type().then(|| ([AvcPacketType::SequenceHeader, AvcPacketType::Nalu, AvcPacketType::EndOfSequence][pt as usize], cts));
            let t = VideoTag::Legacy(LegacyVideo { frame_type: FrameType::from_code(ft).unwrap(), codec, avc, command: None, data: Bytes::from(data) });
            prop_assert_eq!(VideoTag::parse(&t.build()).unwrap(), t);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..64)) {
            let b = Bytes::from(b);
            let _ = VideoTag::parse(&b);
            let _ = AudioTag::parse(&b);
        }

        #[test]
        fn flv_file_round_trip(tags in prop::collection::vec((prop_oneof![Just(8u8), Just(9), Just(18)], any::<u32>(), prop::collection::vec(any::<u8>(), 0..300)), 0..10), split in 1usize..700) {
            let mut out = Vec::new();
            FlvHeader { has_audio: true, has_video: false }.write(&mut out);
            let tags: Vec<FlvTag> = tags.into_iter().map(|(t, ts, d)| FlvTag { tag_type: t, timestamp: ts, data: Bytes::from(d) }).collect();
            for t in &tags {
                t.write(&mut out);
            }
            let mut r = FlvReader::new(1 << 20);
            let mut got = Vec::new();
            for piece in out.chunks(split) {
                r.feed(piece);
                while let Some(t) = r.poll_tag().unwrap() {
                    got.push(t);
                }
            }
            prop_assert_eq!(r.header(), Some(FlvHeader { has_audio: true, has_video: false }));
            prop_assert_eq!(got, tags);
            prop_assert_eq!(r.bad_back_pointers, 0);
        }
    }

    #[test]
    fn flv_reader_limits() {
        let mut r = FlvReader::new(100);
        let mut out = Vec::new();
        FlvHeader {
            has_audio: true,
            has_video: true,
        }
        .write(&mut out);
        FlvTag {
            tag_type: 9,
            timestamp: 0,
            data: Bytes::from(vec![0; 101]),
        }
        .write(&mut out);
        r.feed(&out);
        assert!(r.poll_tag().is_err());
        let mut r = FlvReader::new(100);
        r.feed(b"GIF89a\0\0\0\0\0\0\0");
        assert!(r.poll_tag().unwrap_err().reason().contains("not an FLV"));
    }
}
