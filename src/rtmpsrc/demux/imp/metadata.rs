// SPDX-License-Identifier: MPL-2.0
//! What a stream's onMetaData says: the tracks it has (legacy fields, and
//! Enhanced RTMP's track maps), and tags for the stream and each track.

use crate::common::PadTrack;
use crate::rtmp::amf0::{self, Amf0Value};

use super::CAT;

/// What metadata says, for the demuxer to keep.
pub(super) struct MetadataSays {
    /// The tracks it announces: pads to wait for before no-more-pads.
    pub expect: Vec<PadTrack>,
    /// The stream's: encoder, title, the total bitrate.
    pub stream_tags: gst::TagList,
    /// Each track's: bitrate, language, title.
    pub track_tags: Vec<(PadTrack, gst::TagList)>,
}

impl MetadataSays {
    pub fn of(m: &Amf0Value) -> Self {
        let (has_v, has_a) = kinds_said(m);
        let mut tags = gst::TagList::new();
        {
            let t = tags.get_mut().expect("new tag list");
            t.set_scope(gst::TagScope::Global);
            if let Some(e) = m.get_str("encoder") {
                t.add::<gst::tags::Encoder>(&e, gst::TagMergeMode::Replace);
            }
            if let Some(title) = m.get_str("title") {
                t.add::<gst::tags::Title>(&title, gst::TagMergeMode::Replace);
            }
            let rate = m.get_f64("videodatarate").unwrap_or(0.0)
                + m.get_f64("audiodatarate").unwrap_or(0.0);
            if rate > 0.0 {
                t.add::<gst::tags::Bitrate>(&((rate * 1000.0) as u32), gst::TagMergeMode::Replace);
            }
        }
        let mut expect = Vec::new();
        for (video, has) in [(true, has_v), (false, has_a)] {
            if has {
                expect.push(PadTrack { video, track: 0 });
            }
        }
        let mut track_tags = Vec::new();
        // Track 0's own bitrate is at the top level (unless a track map
        // names track 0 too: it then comes from there).
        for (video, has) in [(true, has_v), (false, has_a)] {
            let in_map = m
                .get(track_map_key(video))
                .and_then(|map| map.get("0"))
                .is_some();
            if has && !in_map {
                let own = track_bitrate(video, m);
                if own.n_tags() > 0 {
                    track_tags.push((PadTrack { video, track: 0 }, own));
                }
            }
        }
        for video in [true, false] {
            let Some(map) = m.get(track_map_key(video)).and_then(Amf0Value::properties) else {
                continue;
            };
            for (key, info) in map {
                let Ok(track) = key.parse::<u8>() else {
                    continue;
                };
                let id = PadTrack { video, track };
                if track != 0 {
                    expect.push(id);
                }
                track_tags.push((id, map_tags(video, info)));
            }
        }
        MetadataSays {
            expect,
            stream_tags: tags,
            track_tags,
        }
    }
}

/// The value of an onMetaData message; None for another data message or
/// one that cannot be read.
pub(super) fn metadata_value(body: &[u8]) -> Option<Amf0Value> {
    let Ok(mut values) = amf0::decode_all(body, &Default::default()) else {
        gst::warning!(CAT, "unreadable metadata");
        return None;
    };
    if values.first().and_then(|v| v.as_str()) != Some("onMetaData") || values.len() < 2 {
        return None;
    }
    Some(values.swap_remove(1))
}

/// Whether metadata says the stream has video, and audio. nginx-rtmp
/// rewrites the metadata for its players with every field, 0 where the
/// stream has none (`audiocodecid` 0 on a video-only stream): a kind is
/// there when a field of it says something.
pub(super) fn kinds_said(m: &Amf0Value) -> (bool, bool) {
    let said = |k: &str| match m.get(k) {
        None | Some(Amf0Value::Null | Amf0Value::Undefined) => false,
        Some(v) => v.as_f64().is_none_or(|n| n > 0.0),
    };
    (
        said("videocodecid") || said("width"),
        said("audiocodecid") || said("audiosamplerate") || said("audiodatarate"),
    )
}

/// Where metadata maps the tracks of a kind to their entries.
pub(super) fn track_map_key(video: bool) -> &'static str {
    if video {
        "videoTrackIdInfoMap"
    } else {
        "audioTrackIdInfoMap"
    }
}

/// A track's tags from its entry in a metadata track map: language,
/// title and bitrate.
fn map_tags(video: bool, info: &Amf0Value) -> gst::TagList {
    let mut tags = track_bitrate(video, info);
    let t = tags.get_mut().expect("new tag list");
    if let Some(l) = info.get_str("language") {
        t.add::<gst::tags::LanguageCode>(&l, gst::TagMergeMode::Replace);
    }
    if let Some(title) = info.get_str("title") {
        t.add::<gst::tags::Title>(&title, gst::TagMergeMode::Replace);
    }
    tags
}

/// A track's bitrate (`videodatarate`/`audiodatarate`, kbit/s) as a tag.
fn track_bitrate(video: bool, info: &Amf0Value) -> gst::TagList {
    let mut tags = gst::TagList::new();
    let t = tags.get_mut().expect("new tag list");
    let rate = info.get_f64(if video {
        "videodatarate"
    } else {
        "audiodatarate"
    });
    if let Some(r) = rate.filter(|r| *r > 0.0 && *r < f64::from(u32::MAX) / 1000.0) {
        t.add::<gst::tags::Bitrate>(&((r * 1000.0) as u32), gst::TagMergeMode::Replace);
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(fields: &[(&str, Amf0Value)]) -> Amf0Value {
        Amf0Value::EcmaArray(
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn n(v: f64) -> Amf0Value {
        Amf0Value::Number(v)
    }

    /// nginx-rtmp's metadata for a video-only stream (every field, 0 for
    /// the audio), and FFmpeg's with Enhanced RTMP track maps: the tracks
    /// to expect and each one's tags.
    #[test]
    fn tracks_and_tags_from_legacy_fields_and_track_maps() {
        gst::init().unwrap();
        let nginx = object(&[
            ("width", n(1280.0)),
            ("videocodecid", n(7.0)),
            ("videodatarate", n(2500.0)),
            ("audiocodecid", n(0.0)),
            ("audiodatarate", n(0.0)),
            ("encoder", Amf0Value::string("Lavf59.27.100")),
        ]);
        let said = MetadataSays::of(&nginx);
        assert_eq!(
            said.expect,
            [PadTrack {
                video: true,
                track: 0
            }]
        );
        let encoder = said.stream_tags.get::<gst::tags::Encoder>().unwrap();
        assert_eq!(encoder.get(), "Lavf59.27.100");
        let bitrate = said.stream_tags.get::<gst::tags::Bitrate>().unwrap();
        assert_eq!(bitrate.get(), 2_500_000);
        assert_eq!(said.stream_tags.scope(), gst::TagScope::Global);
        let tracks: Vec<_> = said.track_tags.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            tracks,
            [PadTrack {
                video: true,
                track: 0
            }]
        );

        let track = |lang: &str, rate: f64| {
            object(&[
                ("language", Amf0Value::string(lang)),
                ("audiodatarate", n(rate)),
            ])
        };
        let multitrack = object(&[
            ("audiocodecid", n(10.0)),
            ("audiodatarate", n(128.0)),
            ("title", Amf0Value::string("two languages")),
            (
                "audioTrackIdInfoMap",
                object(&[("1", track("fr", 96.0)), ("x", track("de", 1.0))]),
            ),
        ]);
        let said = MetadataSays::of(&multitrack);
        let audio = |track| PadTrack {
            video: false,
            track,
        };
        assert_eq!(
            said.expect,
            [audio(0), audio(1)],
            "the map's key x is no track"
        );
        let title = said.stream_tags.get::<gst::tags::Title>().unwrap();
        assert_eq!(title.get(), "two languages");
        let tags: Vec<(PadTrack, Option<String>, Option<u32>)> = said
            .track_tags
            .iter()
            .map(|(id, t)| {
                let lang = t
                    .get::<gst::tags::LanguageCode>()
                    .map(|v| v.get().to_owned());
                (*id, lang, t.get::<gst::tags::Bitrate>().map(|v| v.get()))
            })
            .collect();
        assert_eq!(
            tags,
            [
                (audio(0), None, Some(128_000)),
                (audio(1), Some("fr".into()), Some(96_000))
            ]
        );
    }
}
