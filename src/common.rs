//! What both elements do the same way: checking `location`, and turning
//! `extra-connect-args` into connect command properties.

use gst::glib;

use crate::rtmp::amf0::{Amf0Value, Properties};
use crate::rtmp::url::{RtmpUrl, Scheme};

/// The URL a `location` names, or the error message `start()` returns.
pub fn location_url(location: Option<String>) -> Result<RtmpUrl, gst::ErrorMessage> {
    let Some(location) = location else {
        return Err(gst::error_msg!(
            gst::ResourceError::Settings,
            ["No location set: set location=rtmp://host/app/stream"]
        ));
    };
    let url = RtmpUrl::parse(&location)
        .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["Invalid location: {}", e]))?;
    if url.scheme == Scheme::Rtmps {
        return Err(gst::error_msg!(
            gst::ResourceError::Settings,
            ["rtmps:// (RTMP over TLS) is not supported yet: use rtmp://"]
        ));
    }
    if url.stream.is_empty() {
        return Err(gst::error_msg!(
            gst::ResourceError::Settings,
            [
                "Invalid location {}: no stream name (rtmp://host/app/stream)",
                url.redacted()
            ]
        ));
    }
    Ok(url)
}

/// The fields of `extra-connect-args` that AMF0 can carry (strings,
/// booleans, numbers), in order.
pub fn connect_extra(args: &gst::Structure) -> Properties {
    args.iter()
        .filter_map(|(k, v)| to_amf(v).map(|a| (k.to_string(), a)))
        .collect()
}

fn to_amf(v: &glib::SendValue) -> Option<Amf0Value> {
    if let Ok(s) = v.get::<String>() {
        return Some(Amf0Value::String(s));
    }
    if let Ok(b) = v.get::<bool>() {
        return Some(Amf0Value::Boolean(b));
    }
    if let Ok(n) = v.get::<f64>() {
        return Some(Amf0Value::Number(n));
    }
    if let Ok(n) = v.get::<i32>() {
        return Some(Amf0Value::Number(f64::from(n)));
    }
    if let Ok(n) = v.get::<u32>() {
        return Some(Amf0Value::Number(f64::from(n)));
    }
    if let Ok(n) = v.get::<i64>() {
        return Some(Amf0Value::Number(n as f64));
    }
    None
}
