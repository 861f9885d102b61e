// SPDX-License-Identifier: MPL-2.0
//! The caps the demuxer gives its pads, made from what the stream says:
//! a legacy FLV tag's header, a sequence header (AVC/HEVC configuration,
//! AudioSpecificConfig), or an Enhanced RTMP codec's sequence start. Where
//! FLV carries no header a decoder starts from (Speex, Opus's comment,
//! FLAC's), one is made here, as the usual parser would give it.

use gst::glib;
use gst::prelude::*;

use crate::rtmp::flv::{AudioFourCc, SoundFormat, VideoFourCc};

/// Caps for a legacy FLV sound format other than AAC, from the tag's
/// header (rate, size, channels); None for formats not mapped.
pub(super) fn legacy_audio_caps(a: &crate::rtmp::flv::LegacyAudio) -> Option<gst::Caps> {
    let channels = if a.stereo { 2 } else { 1 };
    Some(match a.format {
        SoundFormat::Mp3 | SoundFormat::Mp3_8k => gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 1i32)
            .field("layer", 3i32)
            .field(
                "rate",
                if a.format == SoundFormat::Mp3_8k {
                    8000
                } else {
                    flv_rate(a.rate)
                },
            )
            .field("channels", channels)
            .field("parsed", false)
            .build(),
        SoundFormat::G711ALaw => gst::Caps::builder("audio/x-alaw")
            .field("rate", 8000i32)
            .field("channels", channels)
            .build(),
        SoundFormat::G711MuLaw => gst::Caps::builder("audio/x-mulaw")
            .field("rate", 8000i32)
            .field("channels", channels)
            .build(),
        SoundFormat::Speex => speex_caps(),
        // Flash's own codecs, as flvdemux gives them (FFmpeg's decoders in
        // gst-libav take them: avdec_adpcm_swf, avdec_nellymoser).
        SoundFormat::Adpcm => gst::Caps::builder("audio/x-adpcm")
            .field("layout", "swf")
            .field("rate", flv_rate(a.rate))
            .field("channels", channels)
            .build(),
        SoundFormat::Nellymoser16kMono
        | SoundFormat::Nellymoser8kMono
        | SoundFormat::Nellymoser => gst::Caps::builder("audio/x-nellymoser")
            .field(
                "rate",
                match a.format {
                    SoundFormat::Nellymoser16kMono => 16000,
                    SoundFormat::Nellymoser8kMono => 8000,
                    _ => flv_rate(a.rate),
                },
            )
            .field("channels", channels)
            .build(),
        SoundFormat::PcmLittleEndian | SoundFormat::PcmPlatformEndian => {
            gst::Caps::builder("audio/x-raw")
                .field("format", if a.sixteen_bit { "S16LE" } else { "U8" })
                .field("layout", "interleaved")
                .field("rate", flv_rate(a.rate))
                .field("channels", channels)
                .build()
        }
        _ => return None,
    })
}

/// Caps for one of Flash's video codecs (`crate::caps::FLASH_VIDEO`), as
/// flvdemux gives them (decoded by gst-libav's avdec_flv, avdec_flashsv,
/// avdec_flashsv2, avdec_vp6f and avdec_vp6a): Sorenson H.263 with
/// flvversion 1, and VP6 with its crop byte as codec_data, where FFmpeg's
/// decoder reads it (as FFmpeg's FLV reader puts it) and rtmpsink writes
/// it back from.
pub(super) fn flash_video_caps(name: &str, crop: Option<u8>) -> gst::Caps {
    let mut b = gst::Caps::builder(name);
    if name == "video/x-flash-video" {
        b = b.field("flvversion", 1i32);
    }
    if let Some(c) = crop {
        b = b.field("codec_data", gst::Buffer::from_slice([c]));
    }
    b.build()
}

pub(super) fn video_template_caps() -> gst::Caps {
    let mut c = crate::caps::h264_caps();
    c.merge(
        gst::Caps::builder("video/x-h265")
            .field("stream-format", "hvc1")
            .field("alignment", "au")
            .build(),
    );
    c.merge(
        gst::Caps::builder("video/x-av1")
            .field("stream-format", "obu-stream")
            .field("alignment", "tu")
            .build(),
    );
    c.merge(gst::Caps::builder("video/x-vp9").build());
    c.merge(gst::Caps::builder("video/x-vp8").build());
    for (_, name) in crate::caps::FLASH_VIDEO {
        c.merge(flash_video_caps(name, None));
    }
    c
}

pub(super) fn audio_template_caps() -> gst::Caps {
    let mut c = gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .build();
    c.merge(
        gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 1i32)
            .field("layer", 3i32)
            .build(),
    );
    c.merge(gst::Caps::builder("audio/x-alaw").build());
    c.merge(gst::Caps::builder("audio/x-mulaw").build());
    c.merge(gst::Caps::builder("audio/x-raw").build());
    c.merge(gst::Caps::builder("audio/x-speex").build());
    c.merge(
        gst::Caps::builder("audio/x-adpcm")
            .field("layout", "swf")
            .build(),
    );
    c.merge(gst::Caps::builder("audio/x-nellymoser").build());
    for name in [
        "audio/x-opus",
        "audio/x-flac",
        "audio/x-ac3",
        "audio/x-eac3",
    ] {
        c.merge(gst::Caps::builder(name).build());
    }
    c
}

/// Sampling rate and channels from an AudioSpecificConfig.
pub(super) fn parse_asc(asc: &[u8]) -> Option<(i32, i32)> {
    const RATES: [i32; 13] = [
        96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
    ];
    let bits = |from: usize, n: usize| -> Option<u32> {
        let mut v = 0u32;
        for i in from..from + n {
            let byte = *asc.get(i / 8)?;
            v = (v << 1) | u32::from((byte >> (7 - i % 8)) & 1);
        }
        Some(v)
    };
    let mut pos = 5;
    if bits(0, 5)? == 31 {
        pos += 6;
    }
    let idx = bits(pos, 4)?;
    pos += 4;
    let rate = if idx == 15 {
        let r = bits(pos, 24)? as i32;
        pos += 24;
        r
    } else {
        *RATES.get(idx as usize)?
    };
    let ch = bits(pos, 4)? as i32;
    Some((rate, if ch == 7 { 8 } else { ch }))
}

pub(super) fn flv_rate(code: u8) -> i32 {
    [5512, 11025, 22050, 44100][usize::from(code & 3)]
}

/// Speex in FLV is always 16 kHz wideband mono, and FLV carries none of the
/// header packets a Speex decoder starts from: they are made here, as
/// `streamheader` (an 80-byte Speex header and an empty comment packet).
pub(super) fn speex_caps() -> gst::Caps {
    let mut header = Vec::with_capacity(80);
    header.extend_from_slice(b"Speex   ");
    let mut version = [0u8; 20];
    version[..6].copy_from_slice(b"1.2rc1");
    header.extend_from_slice(&version);
    // version id, header size, rate, mode (1 = wideband), mode bitstream
    // version, channels, bitrate (-1 unknown), frame size, vbr, frames per
    // packet, extra headers, two reserved: all little-endian 32-bit.
    for v in [1i32, 80, 16_000, 1, 4, 1, -1, 320, 0, 1, 0, 0, 0] {
        header.extend_from_slice(&v.to_le_bytes());
    }
    gst::Caps::builder("audio/x-speex")
        .field("rate", 16_000i32)
        .field("channels", 1i32)
        .field(
            "streamheader",
            gst::Array::new([header_buffer(header), header_buffer(vorbis_comment())]),
        )
        .build()
}

/// Caps for an Enhanced RTMP video codec from its sequence start (`config`
/// empty when there was none).
pub(super) fn enhanced_video_caps(fourcc: VideoFourCc, config: &[u8]) -> gst::Caps {
    let with_config = |b: gst::caps::Builder<gst::caps::NoFeature>| {
        if config.is_empty() {
            b.build()
        } else {
            b.field("codec_data", gst::Buffer::from_slice(config.to_vec()))
                .build()
        }
    };
    match fourcc {
        VideoFourCc::Avc => config_caps("video/x-h264", config),
        VideoFourCc::Hevc => config_caps("video/x-h265", config),
        VideoFourCc::Av1 => with_config(
            gst::Caps::builder("video/x-av1")
                .field("stream-format", "obu-stream")
                .field("alignment", "tu"),
        ),
        VideoFourCc::Vp9 => {
            // Each tag is one whole super-frame, as in WebM and MP4.
            let mut b = gst::Caps::builder("video/x-vp9").field("alignment", "super-frame");
            if let Ok(c) = crate::rtmp::codec::Vp9Config::parse(config) {
                b = b
                    .field("profile", c.profile.to_string())
                    .field("bit-depth-luma", u32::from(c.bit_depth))
                    .field("bit-depth-chroma", u32::from(c.bit_depth));
            }
            b.build()
        }
        VideoFourCc::Vp8 => gst::Caps::builder("video/x-vp8").build(),
    }
}

/// Caps for an Enhanced RTMP audio codec from its sequence start (`config`
/// empty when there was none); an error says why it cannot be played.
pub(super) fn enhanced_audio_caps(fourcc: AudioFourCc, config: &[u8]) -> Result<gst::Caps, String> {
    use crate::rtmp::codec::{FlacStreamInfo, OpusHead};
    Ok(match fourcc {
        AudioFourCc::Aac => {
            parse_asc(config).ok_or("AAC without an AudioSpecificConfig")?;
            aac_caps(config)
        }
        AudioFourCc::Mp3 => gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 1i32)
            .field("layer", 3i32)
            .field("parsed", false)
            .build(),
        AudioFourCc::Opus => {
            let head = OpusHead::parse(config).map_err(|e| format!("Opus: {e}"))?;
            opus_caps(&head, config)
        }
        AudioFourCc::Flac => {
            let info = FlacStreamInfo::parse(config).map_err(|e| format!("FLAC: {e}"))?;
            flac_caps(&info, config)
        }
        AudioFourCc::Ac3 => framed_caps("audio/x-ac3"),
        AudioFourCc::Eac3 => framed_caps("audio/x-eac3"),
    })
}

/// Raw AAC caps from an AudioSpecificConfig (legacy or Enhanced RTMP),
/// with the rate and channels it gives.
pub(super) fn aac_caps(asc: &[u8]) -> gst::Caps {
    let mut b = gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .field("codec_data", gst::Buffer::from_slice(asc.to_vec()));
    if let Some((rate, ch)) = parse_asc(asc) {
        b = b.field("rate", rate).field("channels", ch);
    }
    b.build()
}

/// Caps of a codec whose tags each carry whole frames (AC-3, E-AC-3).
pub(super) fn framed_caps(name: &str) -> gst::Caps {
    gst::Caps::builder(name)
        .field("framed", true)
        .field("alignment", "frame")
        .build()
}

/// A Vorbis comment (as Opus and FLAC headers carry it): our vendor
/// string and no comments.
pub(super) fn vorbis_comment() -> Vec<u8> {
    let vendor = b"gst-plugin-rtmp";
    let mut c = Vec::with_capacity(8 + vendor.len());
    c.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    c.extend_from_slice(vendor);
    c.extend_from_slice(&0u32.to_le_bytes());
    c
}

/// A buffer flagged as a stream header.
pub(super) fn header_buffer(data: Vec<u8>) -> glib::SendValue {
    let mut b = gst::Buffer::from_mut_slice(data);
    b.get_mut()
        .expect("new buffer")
        .set_flags(gst::BufferFlags::HEADER);
    b.to_send_value()
}

/// Opus caps as opusparse gives them: the header's fields, and both
/// header packets (the comment header made here) as streamheader.
pub(super) fn opus_caps(head: &crate::rtmp::codec::OpusHead, raw: &[u8]) -> gst::Caps {
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&vorbis_comment());
    let mut b = gst::Caps::builder("audio/x-opus")
        .field("rate", 48_000i32)
        .field("channels", i32::from(head.channels))
        .field("channel-mapping-family", i32::from(head.mapping_family));
    if let Some((streams, coupled, map)) = &head.mapping {
        b = b
            .field("stream-count", i32::from(*streams))
            .field("coupled-count", i32::from(*coupled))
            .field(
                "channel-mapping",
                gst::Array::new(map.iter().map(|&c| i32::from(c))),
            );
    } else {
        b = b
            .field("stream-count", 1i32)
            .field("coupled-count", i32::from(head.channels == 2));
    }
    b.field(
        "streamheader",
        gst::Array::new([header_buffer(raw.to_vec()), header_buffer(tags)]),
    )
    .build()
}

/// FLAC caps as flacparse gives them: the Ogg-mapping first header
/// (`fLaC` and STREAMINFO) and an empty VORBIS_COMMENT block, as
/// streamheader.
pub(super) fn flac_caps(info: &crate::rtmp::codec::FlacStreamInfo, streaminfo: &[u8]) -> gst::Caps {
    let mut first = b"\x7fFLAC\x01\x00\x00\x01fLaC\x00\x00\x00\x22".to_vec();
    first.extend_from_slice(&streaminfo[..crate::rtmp::codec::FLAC_STREAMINFO_SIZE]);
    let body = vorbis_comment();
    let mut comment = vec![0x84]; // the last block, VORBIS_COMMENT
    comment.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    comment.extend_from_slice(&body);
    gst::Caps::builder("audio/x-flac")
        .field("framed", true)
        .field("rate", info.rate as i32)
        .field("channels", i32::from(info.channels))
        .field(
            "streamheader",
            gst::Array::new([header_buffer(first), header_buffer(comment)]),
        )
        .build()
}

pub(super) fn config_caps(name: &str, config: &[u8]) -> gst::Caps {
    let format = if name == "video/x-h264" {
        "avc"
    } else {
        "hvc1"
    };
    gst::Caps::builder(name)
        .field("stream-format", format)
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(config.to_vec()))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_specific_config() {
        assert_eq!(parse_asc(&[0x12, 0x10]), Some((44100, 2)));
        assert_eq!(parse_asc(&[0x11, 0x90]), Some((48000, 2)));
        assert_eq!(parse_asc(&[0x13, 0x88]), Some((22050, 1)));
        assert_eq!(parse_asc(&[0x12]), None);
    }
}
