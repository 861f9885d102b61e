// SPDX-License-Identifier: MPL-2.0
//! The codec configuration records Enhanced RTMP sequence starts carry,
//! made from what encoders give and read back for decoders: AV1's `av1C`
//! (made from the sequence header OBU, which AV1 streams carry in band),
//! VP9's `vpcC`, Opus's identification header (`OpusHead`) and FLAC's
//! STREAMINFO block.
//!
//! Everything here reads bytes a peer sent: lengths are checked, nothing
//! is trusted, and errors name what was wrong.

use super::error::{Error, Result};

/// Reads bits most significant first, as AV1 and FLAC write them.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bits { data, pos: 0 }
    }

    fn bit(&mut self) -> Result<bool> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| Error::malformed("the AV1 sequence header is truncated"))?;
        let b = byte >> (7 - self.pos % 8) & 1;
        self.pos += 1;
        Ok(b == 1)
    }

    fn bits(&mut self, n: u32) -> Result<u64> {
        let mut v = 0u64;
        for _ in 0..n {
            v = v << 1 | u64::from(self.bit()?);
        }
        Ok(v)
    }

    fn flag(&mut self) -> Result<bool> {
        self.bit()
    }

    /// AV1's uvlc(): leading zeros, then that many bits.
    fn uvlc(&mut self) -> Result<u64> {
        let mut zeros = 0;
        while !self.bit()? {
            zeros += 1;
            if zeros >= 32 {
                return Err(Error::malformed("an AV1 uvlc() value is too long"));
            }
        }
        Ok(self.bits(zeros)? + (1u64 << zeros) - 1)
    }
}

/// AV1's OBU type of a sequence header.
const OBU_SEQUENCE_HEADER: u8 = 1;

/// Reads a leb128() value: returns it and the bytes it took.
fn leb128(data: &[u8]) -> Result<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in data.iter().take(8).enumerate() {
        v |= u64::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((v, i + 1));
        }
    }
    Err(Error::malformed(
        "an AV1 OBU size (leb128) is truncated or too long",
    ))
}

/// One OBU of a low-overhead bitstream (`obu-stream`): its type, the whole
/// OBU (header included) and its payload.
fn next_obu(data: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    let header = *data.first().ok_or_else(|| Error::malformed("empty OBU"))?;
    if header & 0x80 != 0 {
        return Err(Error::malformed("an AV1 OBU has its forbidden bit set"));
    }
    let obu_type = (header >> 3) & 0x0F;
    let mut at = 1 + usize::from(header & 0x04 != 0);
    if header & 0x02 == 0 {
        return Err(Error::unsupported(
            "an AV1 OBU without a size field (rtmpsink takes stream-format=obu-stream)",
        ));
    }
    let (size, n) = leb128(data.get(at..).unwrap_or_default())?;
    at += n;
    let end = usize::try_from(size)
        .ok()
        .and_then(|s| at.checked_add(s))
        .filter(|&e| e <= data.len())
        .ok_or_else(|| Error::malformed("an AV1 OBU is longer than its temporal unit"))?;
    Ok((obu_type, &data[..end], &data[at..end]))
}

/// What `av1C` says about an AV1 stream, read from its sequence header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Av1Info {
    /// seq_profile (0 main, 1 high, 2 professional).
    pub profile: u8,
    /// seq_level_idx of the first operating point.
    pub level: u8,
    /// seq_tier of the first operating point.
    pub tier: bool,
    /// high_bitdepth (10 bits or more).
    pub high_bitdepth: bool,
    /// twelve_bit.
    pub twelve_bit: bool,
    /// mono_chrome.
    pub monochrome: bool,
    /// subsampling_x.
    pub subsampling_x: bool,
    /// subsampling_y.
    pub subsampling_y: bool,
    /// chroma_sample_position (0 unknown, 1 vertical, 2 colocated).
    pub chroma_sample_position: u8,
}

impl Av1Info {
    /// Reads a sequence header OBU's payload (AV1 spec 5.5).
    pub fn parse_sequence_header(payload: &[u8]) -> Result<Self> {
        let mut r = Bits::new(payload);
        let mut info = Av1Info {
            profile: r.bits(3)? as u8,
            ..Av1Info::default()
        };
        if info.profile > 2 {
            return Err(Error::unsupported(format!(
                "AV1 seq_profile {} is reserved",
                info.profile
            )));
        }
        let _still_picture = r.flag()?;
        let reduced = r.flag()?;
        if reduced {
            info.level = r.bits(5)? as u8;
        } else {
            read_operating_points(&mut r, &mut info)?;
        }
        let width_bits = r.bits(4)? as u32 + 1;
        let height_bits = r.bits(4)? as u32 + 1;
        r.bits(width_bits)?;
        r.bits(height_bits)?;
        if !reduced && r.flag()? {
            // frame_id_numbers_present: delta and additional lengths.
            r.bits(4 + 3)?;
        }
        // use_128x128_superblock, enable_filter_intra, enable_intra_edge_filter
        r.bits(3)?;
        if !reduced {
            skip_tool_flags(&mut r)?;
        }
        // enable_superres, enable_cdef, enable_restoration
        r.bits(3)?;
        read_color_config(&mut r, &mut info)?;
        Ok(info)
    }

    /// The AV1CodecConfigurationRecord (`av1C`) with `sequence_header_obu`
    /// (the whole OBU, with its size field) as its configOBUs.
    pub fn av1c(&self, sequence_header_obu: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + sequence_header_obu.len());
        out.push(0x81); // marker, version 1
        out.push(self.profile << 5 | (self.level & 0x1F));
        out.push(
            u8::from(self.tier) << 7
                | u8::from(self.high_bitdepth) << 6
                | u8::from(self.twelve_bit) << 5
                | u8::from(self.monochrome) << 4
                | u8::from(self.subsampling_x) << 3
                | u8::from(self.subsampling_y) << 2
                | (self.chroma_sample_position & 3),
        );
        out.push(0); // no initial_presentation_delay
        out.extend_from_slice(sequence_header_obu);
        out
    }
}

fn read_operating_points(r: &mut Bits, info: &mut Av1Info) -> Result<()> {
    let mut decoder_model = false;
    let mut buffer_delay_bits = 0;
    if r.flag()? {
        // timing_info
        r.bits(32 + 32)?;
        if r.flag()? {
            r.uvlc()?;
        }
        decoder_model = r.flag()?;
        if decoder_model {
            buffer_delay_bits = r.bits(5)? as u32 + 1;
            // num_units_in_decoding_tick, buffer_removal_time_length_minus_1,
            // frame_presentation_time_length_minus_1
            r.bits(32 + 5 + 5)?;
        }
    }
    let initial_display_delay = r.flag()?;
    let count = r.bits(5)? + 1;
    for i in 0..count {
        r.bits(12)?; // operating_point_idc
        let level = r.bits(5)? as u8;
        let tier = level > 7 && r.flag()?;
        if i == 0 {
            info.level = level;
            info.tier = tier;
        }
        if decoder_model && r.flag()? {
            r.bits(2 * buffer_delay_bits + 1)?;
        }
        if initial_display_delay && r.flag()? {
            r.bits(4)?;
        }
    }
    Ok(())
}

/// The coding tool flags of a full sequence header, which av1C does not need.
fn skip_tool_flags(r: &mut Bits) -> Result<()> {
    // enable_interintra_compound, enable_masked_compound,
    // enable_warped_motion, enable_dual_filter
    r.bits(4)?;
    let order_hint = r.flag()?;
    if order_hint {
        r.bits(2)?; // enable_jnt_comp, enable_ref_frame_mvs
    }
    let force_screen_content_tools = if r.flag()? { 2 } else { r.bits(1)? };
    if force_screen_content_tools > 0 && !r.flag()? {
        r.bits(1)?; // seq_force_integer_mv
    }
    if order_hint {
        r.bits(3)?;
    }
    Ok(())
}

fn read_color_config(r: &mut Bits, info: &mut Av1Info) -> Result<()> {
    info.high_bitdepth = r.flag()?;
    if info.profile == 2 && info.high_bitdepth {
        info.twelve_bit = r.flag()?;
    }
    info.monochrome = info.profile != 1 && r.flag()?;
    let (mut primaries, mut transfer, mut matrix) = (2, 2, 2);
    if r.flag()? {
        primaries = r.bits(8)?;
        transfer = r.bits(8)?;
        matrix = r.bits(8)?;
    }
    if info.monochrome {
        (info.subsampling_x, info.subsampling_y) = (true, true);
        return Ok(());
    }
    // BT.709 primaries, sRGB transfer, identity matrix: 4:4:4, full range.
    if primaries == 1 && transfer == 13 && matrix == 0 {
        return Ok(());
    }
    r.flag()?; // color_range
    match info.profile {
        0 => (info.subsampling_x, info.subsampling_y) = (true, true),
        1 => {}
        _ if info.twelve_bit => {
            info.subsampling_x = r.flag()?;
            info.subsampling_y = info.subsampling_x && r.flag()?;
        }
        _ => info.subsampling_x = true,
    }
    if info.subsampling_x && info.subsampling_y {
        info.chroma_sample_position = r.bits(2)? as u8;
    }
    Ok(())
}

/// The `av1C` of a temporal unit that carries a sequence header OBU (a
/// keyframe's, as encoders write them); `None` if it carries none.
pub fn av1c_from_temporal_unit(tu: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut rest = tu;
    while !rest.is_empty() {
        let (obu_type, obu, payload) = next_obu(rest)?;
        if obu_type == OBU_SEQUENCE_HEADER {
            let info = Av1Info::parse_sequence_header(payload)?;
            return Ok(Some(info.av1c(obu)));
        }
        rest = &rest[obu.len()..];
    }
    Ok(None)
}

/// VP9's VPCodecConfigurationRecord (`vpcC`, as a version 1 full box body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Config {
    /// Profile 0 to 3.
    pub profile: u8,
    /// Level times ten (10, 11, 20 ... 62), 0 if unknown.
    pub level: u8,
    /// Bits per sample: 8, 10 or 12.
    pub bit_depth: u8,
    /// 0: 4:2:0 vertical, 1: 4:2:0 colocated, 2: 4:2:2, 3: 4:4:4.
    pub chroma_subsampling: u8,
    /// Full-range samples.
    pub full_range: bool,
    /// ISO/IEC 23091-4 colour primaries (2: unspecified).
    pub colour_primaries: u8,
    /// ISO/IEC 23091-4 transfer characteristics (2: unspecified).
    pub transfer_characteristics: u8,
    /// ISO/IEC 23091-4 matrix coefficients (2: unspecified).
    pub matrix_coefficients: u8,
}

impl Vp9Config {
    /// The record as the sequence start carries it (12 bytes).
    pub fn build(&self) -> Vec<u8> {
        vec![
            1,
            0,
            0,
            0,
            self.profile,
            self.level,
            (self.bit_depth & 0x0F) << 4
                | (self.chroma_subsampling & 7) << 1
                | u8::from(self.full_range),
            self.colour_primaries,
            self.transfer_characteristics,
            self.matrix_coefficients,
            0,
            0,
        ]
    }

    /// Reads a record.
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() < 12 {
            return Err(Error::malformed(format!(
                "a vpcC record of {} bytes, needs 12",
                data.len()
            )));
        }
        if data[0] != 1 {
            return Err(Error::unsupported(format!("vpcC version {}", data[0])));
        }
        Ok(Vp9Config {
            profile: data[4],
            level: data[5],
            bit_depth: data[6] >> 4,
            chroma_subsampling: (data[6] >> 1) & 7,
            full_range: data[6] & 1 == 1,
            colour_primaries: data[7],
            transfer_characteristics: data[8],
            matrix_coefficients: data[9],
        })
    }

    /// The lowest VP9 level (times ten) whose picture size and sample
    /// rate hold `width` x `height` at `fps`.
    pub fn level_for(width: u32, height: u32, fps: f64) -> u8 {
        const LEVELS: [(u8, u64, f64); 14] = [
            (10, 36_864, 829_440.0),
            (11, 73_728, 2_764_800.0),
            (20, 122_880, 4_608_000.0),
            (21, 245_760, 9_216_000.0),
            (30, 552_960, 20_736_000.0),
            (31, 983_040, 36_864_000.0),
            (40, 2_228_224, 83_558_400.0),
            (41, 2_228_224, 160_432_128.0),
            (50, 8_912_896, 311_951_360.0),
            (51, 8_912_896, 588_251_136.0),
            (52, 8_912_896, 1_176_502_272.0),
            (60, 35_651_584, 1_176_502_272.0),
            (61, 35_651_584, 2_353_004_544.0),
            (62, 35_651_584, 4_706_009_088.0),
        ];
        let size = u64::from(width) * u64::from(height);
        let rate = size as f64 * fps;
        LEVELS
            .iter()
            .find(|(_, s, r)| size <= *s && rate <= *r)
            .map_or(62, |l| l.0)
    }
}

/// Opus's identification header (`OpusHead`, RFC 7845 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channels.
    pub channels: u8,
    /// Samples (at 48 kHz) to drop at the start.
    pub pre_skip: u16,
    /// The input's sample rate, for information.
    pub input_rate: u32,
    /// Output gain, Q7.8 dB.
    pub gain: i16,
    /// Channel mapping family (0: mono/stereo, 1: Vorbis order, ...).
    pub mapping_family: u8,
    /// Family > 0: streams, coupled streams and the channel mapping.
    pub mapping: Option<(u8, u8, Vec<u8>)>,
}

impl OpusHead {
    /// Reads the header.
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() < 19 || &data[..8] != b"OpusHead" {
            return Err(Error::malformed("not an OpusHead packet"));
        }
        if data[8] >> 4 != 0 {
            return Err(Error::unsupported(format!("OpusHead version {}", data[8])));
        }
        let channels = data[9];
        if channels == 0 {
            return Err(Error::malformed("an OpusHead with 0 channels"));
        }
        let mapping_family = data[18];
        let mapping = if mapping_family == 0 {
            if channels > 2 {
                return Err(Error::malformed(format!(
                    "OpusHead mapping family 0 with {channels} channels"
                )));
            }
            None
        } else {
            let table = data
                .get(19..21 + usize::from(channels))
                .ok_or_else(|| Error::malformed("the OpusHead channel mapping is truncated"))?;
            Some((table[0], table[1], table[2..].to_vec()))
        };
        Ok(OpusHead {
            channels,
            pre_skip: u16::from_le_bytes([data[10], data[11]]),
            input_rate: u32::from_le_bytes([data[12], data[13], data[14], data[15]]),
            gain: i16::from_le_bytes([data[16], data[17]]),
            mapping_family,
            mapping,
        })
    }

    /// Writes the header.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(21 + usize::from(self.channels));
        out.extend_from_slice(b"OpusHead");
        out.push(1);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_rate.to_le_bytes());
        out.extend_from_slice(&self.gain.to_le_bytes());
        out.push(self.mapping_family);
        if let Some((streams, coupled, map)) = &self.mapping {
            out.push(*streams);
            out.push(*coupled);
            out.extend_from_slice(map);
        }
        out
    }
}

/// FLAC's STREAMINFO block: what a FLAC sequence start carries (the 34
/// bytes of the block, without its block header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlacStreamInfo {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Channels, 1 to 8.
    pub channels: u8,
    /// Bits per sample, 4 to 32.
    pub bits_per_sample: u8,
}

/// The size of a STREAMINFO block's body.
pub const FLAC_STREAMINFO_SIZE: usize = 34;

impl FlacStreamInfo {
    /// Reads a STREAMINFO body.
    pub fn parse(data: &[u8]) -> Result<Self> {
        if data.len() < FLAC_STREAMINFO_SIZE {
            return Err(Error::malformed(format!(
                "a FLAC STREAMINFO of {} bytes, needs {FLAC_STREAMINFO_SIZE}",
                data.len()
            )));
        }
        let mut r = Bits::new(&data[10..]);
        let rate = r.bits(20)? as u32;
        let channels = r.bits(3)? as u8 + 1;
        let bits_per_sample = r.bits(5)? as u8 + 1;
        if rate == 0 {
            return Err(Error::malformed(
                "a FLAC STREAMINFO with a sample rate of 0",
            ));
        }
        Ok(FlacStreamInfo {
            rate,
            channels,
            bits_per_sample,
        })
    }
}

/// The colour description an Enhanced RTMP `colorInfo` metadata packet
/// carries (video packet type Metadata): colour config, content light
/// level (`hdrCll`) and mastering display colour volume (`hdrMdcv`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ColorInfo {
    /// Bits per sample.
    pub bit_depth: Option<u32>,
    /// ISO/IEC 23091-4 colour primaries.
    pub primaries: Option<u32>,
    /// ISO/IEC 23091-4 transfer characteristics.
    pub transfer: Option<u32>,
    /// ISO/IEC 23091-4 matrix coefficients.
    pub matrix: Option<u32>,
    /// Maximum content and frame-average light level (cd/m²).
    pub light_level: Option<(u32, u32)>,
    /// The mastering display.
    pub mastering: Option<MasteringDisplay>,
}

/// A mastering display colour volume, as `hdrMdcv` writes it: CIE 1931
/// chromaticities (0 to 1) and luminances in cd/m².
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MasteringDisplay {
    /// Red, green and blue primaries (x, y).
    pub primaries: [(f64, f64); 3],
    /// White point (x, y).
    pub white: (f64, f64),
    /// Maximum luminance.
    pub max_luminance: f64,
    /// Minimum luminance.
    pub min_luminance: f64,
}

impl ColorInfo {
    /// Whether it says nothing.
    pub fn is_empty(&self) -> bool {
        *self == ColorInfo::default()
    }

    /// The metadata packet's body: the AMF0 string `colorInfo` and the
    /// object.
    pub fn to_amf(&self) -> Vec<u8> {
        use super::amf0::{self, Amf0Value};
        let num = |k: &str, v: f64| (k.to_owned(), Amf0Value::Number(v));
        let mut info = Vec::new();
        let config: Vec<_> = [
            ("bitDepth", self.bit_depth),
            ("colorPrimaries", self.primaries),
            ("transferCharacteristics", self.transfer),
            ("matrixCoefficients", self.matrix),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| num(k, f64::from(v))))
        .collect();
        if !config.is_empty() {
            info.push(("colorConfig".to_owned(), Amf0Value::Object(config)));
        }
        if let Some((max_cll, max_fall)) = self.light_level {
            info.push((
                "hdrCll".to_owned(),
                Amf0Value::Object(vec![
                    num("maxFall", f64::from(max_fall)),
                    num("maxCLL", f64::from(max_cll)),
                ]),
            ));
        }
        if let Some(m) = &self.mastering {
            let [r, g, b] = m.primaries;
            info.push((
                "hdrMdcv".to_owned(),
                Amf0Value::Object(vec![
                    num("redX", r.0),
                    num("redY", r.1),
                    num("greenX", g.0),
                    num("greenY", g.1),
                    num("blueX", b.0),
                    num("blueY", b.1),
                    num("whitePointX", m.white.0),
                    num("whitePointY", m.white.1),
                    num("maxLuminance", m.max_luminance),
                    num("minLuminance", m.min_luminance),
                ]),
            ));
        }
        amf0::encode_all(&[Amf0Value::string("colorInfo"), Amf0Value::Object(info)])
    }

    /// Reads a metadata packet's body; an error if it is not `colorInfo`.
    /// Values out of range are left out rather than trusted.
    pub fn from_amf(body: &[u8]) -> Result<Self> {
        use super::amf0::{self, Amf0Value};
        let values = amf0::decode_all(body, &Default::default())?;
        let (Some(Amf0Value::String(name)), Some(info)) = (values.first(), values.get(1)) else {
            return Err(Error::malformed(
                "a video metadata packet without a name and a value",
            ));
        };
        if name != "colorInfo" {
            return Err(Error::unsupported(format!("video metadata '{name}'")));
        }
        let small = |o: Option<&Amf0Value>, k: &str, max: f64| {
            o.and_then(|o| o.get_f64(k))
                .filter(|v| v.is_finite() && *v >= 0.0 && *v <= max)
        };
        let code = |k: &str| small(info.get("colorConfig"), k, 255.0).map(|v| v as u32);
        let cll = info.get("hdrCll");
        let mdcv = info.get("hdrMdcv");
        let xy = |x: &str, y: &str| Some((small(mdcv, x, 1.0)?, small(mdcv, y, 1.0)?));
        let mastering = (|| {
            Some(MasteringDisplay {
                primaries: [
                    xy("redX", "redY")?,
                    xy("greenX", "greenY")?,
                    xy("blueX", "blueY")?,
                ],
                white: xy("whitePointX", "whitePointY")?,
                max_luminance: small(mdcv, "maxLuminance", 1e6)?,
                min_luminance: small(mdcv, "minLuminance", 1e6)?,
            })
        })();
        Ok(ColorInfo {
            bit_depth: small(info.get("colorConfig"), "bitDepth", 32.0).map(|v| v as u32),
            primaries: code("colorPrimaries"),
            transfer: code("transferCharacteristics"),
            matrix: code("matrixCoefficients"),
            light_level: small(cll, "maxCLL", 65535.0)
                .zip(small(cll, "maxFall", 65535.0))
                .map(|(c, f)| (c as u32, f as u32)),
            mastering,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sequence header FFmpeg 9's libaom wrapper wrote for 320x240
    /// 4:2:0 8-bit (an FLV it made): av1C 81 00 0c 00, then this OBU.
    const AOM_SEQ_OBU: [u8; 13] = [
        0x0a, 0x0b, 0x00, 0x00, 0x00, 0x04, 0x3c, 0xff, 0xbc, 0xfa, 0xf9, 0x80, 0x40,
    ];

    #[test]
    fn av1c_matches_what_ffmpeg_wrote() {
        let mut tu = vec![0x12, 0x00]; // a temporal delimiter OBU
        tu.extend_from_slice(&AOM_SEQ_OBU);
        tu.extend_from_slice(&[0x32, 0x02, 0xAA, 0xBB]); // a frame OBU
        let av1c = av1c_from_temporal_unit(&tu).unwrap().unwrap();
        assert_eq!(&av1c[..4], &[0x81, 0x00, 0x0c, 0x00]);
        assert_eq!(&av1c[4..], &AOM_SEQ_OBU);
        // Without a sequence header: none; cut short: an error, no panic.
        assert_eq!(av1c_from_temporal_unit(&[0x12, 0x00]).unwrap(), None);
        for n in 0..tu.len() {
            let _ = av1c_from_temporal_unit(&tu[..n]);
        }
        assert!(av1c_from_temporal_unit(&[0x0a, 0x7f, 1]).is_err());
        assert!(
            av1c_from_temporal_unit(&[0x08, 0x00]).is_err(),
            "no size field"
        );
    }

    #[test]
    fn vpcc_round_trips_and_matches_ffmpeg() {
        // FFmpeg 9's libvpx-vp9 at 320x240 4:2:0 8-bit.
        let ffmpeg = [1, 0, 0, 0, 0, 0x14, 0x82, 2, 2, 2, 0, 0];
        let c = Vp9Config::parse(&ffmpeg).unwrap();
        assert_eq!(
            (c.profile, c.level, c.bit_depth, c.chroma_subsampling),
            (0, 20, 8, 1)
        );
        assert_eq!(c.build(), ffmpeg);
        assert_eq!(Vp9Config::level_for(320, 240, 25.0), 20);
        assert_eq!(Vp9Config::level_for(1920, 1080, 30.0), 40);
        assert_eq!(Vp9Config::level_for(1920, 1080, 60.0), 41);
        assert!(Vp9Config::parse(&ffmpeg[..11]).is_err());
    }

    #[test]
    fn opus_head_round_trips() {
        // What opusenc put in its caps, mono.
        let head = [
            0x4f, 0x70, 0x75, 0x73, 0x48, 0x65, 0x61, 0x64, 1, 1, 0x38, 1, 0x80, 0xbb, 0, 0, 0, 0,
            0,
        ];
        let h = OpusHead::parse(&head).unwrap();
        assert_eq!((h.channels, h.pre_skip, h.input_rate), (1, 312, 48_000));
        assert_eq!(h.build(), head);
        let surround = OpusHead {
            channels: 6,
            pre_skip: 312,
            input_rate: 48_000,
            gain: 0,
            mapping_family: 1,
            mapping: Some((4, 2, vec![0, 4, 1, 2, 3, 5])),
        };
        assert_eq!(OpusHead::parse(&surround.build()).unwrap(), surround);
        assert!(OpusHead::parse(&head[..18]).is_err());
        let mut bad = surround.build();
        bad.truncate(24);
        assert!(OpusHead::parse(&bad).is_err());
    }

    #[test]
    fn flac_streaminfo() {
        // FFmpeg 9's for a 44.1 kHz mono 16-bit sine.
        let si = [
            0x04, 0x00, 0x04, 0x00, 0, 0, 0, 0, 0x08, 0x15, 0x0a, 0xc4, 0x40, 0xf0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let i = FlacStreamInfo::parse(&si).unwrap();
        assert_eq!((i.rate, i.channels, i.bits_per_sample), (44_100, 1, 16));
        assert!(FlacStreamInfo::parse(&si[..33]).is_err());
    }

    #[test]
    fn color_info_round_trips_and_reads_ffmpegs() {
        let hdr10 = ColorInfo {
            bit_depth: Some(10),
            primaries: Some(9),
            transfer: Some(16),
            matrix: Some(9),
            light_level: Some((1000, 400)),
            mastering: Some(MasteringDisplay {
                primaries: [(0.708, 0.292), (0.17, 0.797), (0.131, 0.046)],
                white: (0.3127, 0.329),
                max_luminance: 1000.0,
                min_luminance: 0.005,
            }),
        };
        assert_eq!(ColorInfo::from_amf(&hdr10.to_amf()).unwrap(), hdr10);
        // FFmpeg 9's for an SDR stream: a colorConfig of "unspecified".
        let ffmpeg = [
            0x02, 0x00, 0x09, b'c', b'o', b'l', b'o', b'r', b'I', b'n', b'f', b'o', 0x03, 0x00,
            0x0b, b'c', b'o', b'l', b'o', b'r', b'C', b'o', b'n', b'f', b'i', b'g', 0x03, 0x00,
            0x00, 0x09, 0x00, 0x00, 0x09,
        ];
        let c = ColorInfo::from_amf(&ffmpeg).unwrap();
        assert!(c.is_empty(), "{c:?}");
        // Not colorInfo, or values out of range: refused or left out.
        let other = super::super::amf0::encode_all(&[
            super::super::amf0::Amf0Value::string("cuePoint"),
            super::super::amf0::Amf0Value::Null,
        ]);
        assert!(ColorInfo::from_amf(&other).is_err());
        let mut bad = hdr10.clone();
        bad.mastering.as_mut().unwrap().white = (7.0, 0.3);
        assert_eq!(ColorInfo::from_amf(&bad.to_amf()).unwrap().mastering, None);
    }
}
