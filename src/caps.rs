// SPDX-License-Identifier: MPL-2.0
//! Caps <-> FLV codec mapping shared by the sink and the source.

/// What `rtmpsink`'s video pad takes.
pub fn h264_caps() -> gst::Caps {
    gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .build()
}

/// What `rtmpsink`'s audio pad takes: AAC (raw, with codec_data) or MP3.
pub fn audio_caps() -> gst::Caps {
    let mut caps = gst::Caps::builder("audio/mpeg")
        .field("mpegversion", 4i32)
        .field("stream-format", "raw")
        .build();
    caps.merge(
        gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 1i32)
            .field("layer", 3i32)
            .build(),
    );
    caps
}

pub fn flv_caps() -> gst::Caps {
    gst::Caps::builder("video/x-flv").build()
}

/// A video stream as FLV describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoFormat {
    /// The AVCDecoderConfigurationRecord: the AVC sequence header.
    pub avcc: gst::Buffer,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub framerate: Option<gst::Fraction>,
}

impl VideoFormat {
    pub fn from_caps(caps: &gst::CapsRef) -> Result<Self, String> {
        let s = caps.structure(0).ok_or("empty caps")?;
        if s.name() != "video/x-h264" {
            return Err(format!("unsupported video caps {caps}"));
        }
        let avcc = s.get::<gst::Buffer>("codec_data").map_err(|_| {
            "H.264 caps have no codec_data (avcC): put h264parse before rtmpsink".to_owned()
        })?;
        Ok(VideoFormat {
            avcc,
            width: s.get("width").ok(),
            height: s.get("height").ok(),
            framerate: s
                .get::<gst::Fraction>("framerate")
                .ok()
                .filter(|f| f.numer() > 0),
        })
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
}

impl AudioFormat {
    pub fn from_caps(caps: &gst::CapsRef) -> Result<Self, String> {
        let s = caps.structure(0).ok_or("empty caps")?;
        if s.name() != "audio/mpeg" {
            return Err(format!("unsupported audio caps {caps}"));
        }
        let rate = s.get::<i32>("rate").ok();
        let channels = s.get::<i32>("channels").ok();
        match s.get::<i32>("mpegversion") {
            Ok(4) | Ok(2) => {
                let asc = s.get::<gst::Buffer>("codec_data").map_err(|_| {
                    "AAC caps have no codec_data: put aacparse before rtmpsink".to_owned()
                })?;
                Ok(AudioFormat::Aac {
                    asc,
                    rate,
                    channels,
                })
            }
            Ok(1) => Ok(AudioFormat::Mp3 { rate, channels }),
            _ => Err(format!("unsupported audio caps {caps}")),
        }
    }

    /// The first byte of every audio tag body (FLV AUDIODATA header).
    pub fn tag_header(&self) -> u8 {
        match self {
            // AAC: always 44 kHz, 16-bit, stereo here; the decoder reads
            // the real values from the AudioSpecificConfig.
            AudioFormat::Aac { .. } => 0xAF,
            AudioFormat::Mp3 { rate, channels } => {
                let stereo = u8::from(channels.unwrap_or(2) > 1);
                let (format, rate_bits) = match rate.unwrap_or(44_100) {
                    8_000 => (14, 0),
                    r if r <= 5_512 => (2, 0),
                    r if r <= 11_025 => (2, 1),
                    r if r <= 22_050 => (2, 2),
                    _ => (2, 3),
                };
                (format << 4) | (rate_bits << 2) | 0x02 | stereo
            }
        }
    }

    /// FLV's audiocodecid for onMetaData.
    pub fn codec_id(&self) -> f64 {
        match self {
            AudioFormat::Aac { .. } => 10.0,
            AudioFormat::Mp3 {
                rate: Some(8_000), ..
            } => 14.0,
            AudioFormat::Mp3 { .. } => 2.0,
        }
    }

    pub fn rate(&self) -> Option<i32> {
        match self {
            AudioFormat::Aac { rate, .. } | AudioFormat::Mp3 { rate, .. } => *rate,
        }
    }

    pub fn channels(&self) -> Option<i32> {
        match self {
            AudioFormat::Aac { channels, .. } | AudioFormat::Mp3 { channels, .. } => *channels,
        }
    }
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
        assert_eq!(a.codec_id(), 10.0);
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
}
