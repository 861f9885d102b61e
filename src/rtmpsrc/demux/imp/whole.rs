// SPDX-License-Identifier: MPL-2.0
//! Which pads a stream goes out on, decided once per stream when the first
//! elementary pad is taken: the elementary pads, or the whole stream as
//! FLV on `src` where what took that pad wants the whole stream
//! (an autoplugger, a byte sink, a relay into rtmpsink, a tee of those).

use std::sync::atomic::Ordering;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::{CAT, PreludeTag, RtmpSrcDemux, track_map_key};
use crate::rtmp::amf0::Amf0Value;
use crate::rtmp::flv::{VideoCodecId, tag_type};
use crate::rtmpsink::RtmpSink;
use crate::sync::lock;

/// What took rtmpsrc's first elementary pad, when it wants the whole
/// stream instead (see `RtmpSrcDemux::first_pad_taken`).
#[derive(Debug, Clone, PartialEq)]
enum WholeStream {
    /// decodebin, decodebin3, parsebin: it finds every stream in FLV, and
    /// takes one stream alone from an elementary pad.
    Autoplugger,
    /// A sink that writes or sends the bytes as they come (filesink,
    /// fdsink, giosink, tcpclientsink, tcpserversink): an FLV file or
    /// stream, where an elementary pad's bytes would be unframed frames of
    /// one track.
    Bytes,
    /// Our rtmpsink past a queue (or on a tee's branch), on the pad the
    /// pipeline's description linked it by (`rtmpsrc ! queue ! rtmpsink`:
    /// a relay, see `RtmpSink::relays_whole_stream_on`): its FLV pad is to
    /// take the queue instead. One per rtmpsink past a tee.
    Relay(Vec<(RtmpSink, gst::Pad)>),
}

pub(super) fn factory_name(e: &gst::Element) -> Option<String> {
    e.factory().map(|f| f.name().to_string())
}

/// Whether what `peer` (a sink pad) is on takes a whole stream: that
/// element, or the one behind it past a queue, or past a tee every one of
/// its branches (`rtmpsrc ! tee name=t t. ! queue ! rtmpsink ... t. !
/// queue ! rtmpsink ...`), each as bytes or relayed.
fn whole_stream_taker(peer: &gst::Pad) -> Option<(WholeStream, gst::Element)> {
    let tee = peer.parent_element()?;
    if factory_name(&tee)? != "tee" {
        return branch_taker(peer, false);
    }
    let branches = tee.src_pads();
    let mut relays = Vec::new();
    for branch in &branches {
        match branch_taker(&branch.peer()?, true)?.0 {
            WholeStream::Bytes => {}
            WholeStream::Relay(r) => relays.extend(r),
            WholeStream::Autoplugger => return None,
        }
    }
    let kind = match (branches.is_empty(), relays.is_empty()) {
        (true, _) => return None,
        (false, true) => WholeStream::Bytes,
        (false, false) => WholeStream::Relay(relays),
    };
    Some((kind, tee))
}

/// `whole_stream_taker` for one branch: rtmpsink relays there only on a
/// pad past a queue or a tee (`from_tee`), not linked to rtmpsrc itself.
fn branch_taker(peer: &gst::Pad, from_tee: bool) -> Option<(WholeStream, gst::Element)> {
    let mut element = peer.parent_element()?;
    let mut into = from_tee.then(|| peer.clone());
    if matches!(factory_name(&element)?.as_str(), "queue" | "queue2") {
        let past = element.static_pad("src")?.peer()?;
        element = past.parent_element()?;
        into = Some(past);
    }
    let kind = match factory_name(&element)?.as_str() {
        "decodebin" | "decodebin3" | "parsebin" => WholeStream::Autoplugger,
        "filesink" | "fdsink" | "giosink" | "tcpclientsink" | "tcpserversink" => WholeStream::Bytes,
        _ => {
            let sink = element.downcast_ref::<RtmpSink>()?;
            let into = into.filter(|p| sink.imp().relays_whole_stream_on(p))?;
            WholeStream::Relay(vec![(sink.clone(), into)])
        }
    };
    Some((kind, element))
}

/// An rtmpsink's elementary pad that gave way to its FLV pad: the sink,
/// the FLV pad, and the old pad's template and name, to put it back.
type Relayed = (RtmpSink, gst::Pad, gst::PadTemplate, glib::GString);

/// Each relay's rtmpsink pad replaced by its FLV pad, linked where the old
/// one was (whose upstream must no longer see elementary caps); None, with
/// every one put back, where one cannot be.
fn relay_as_flv(relays: Vec<(RtmpSink, gst::Pad)>) -> Option<Vec<Relayed>> {
    let mut done = Vec::new();
    for (sink, into) in relays {
        let replaced = into.pad_template().and_then(|template| {
            let flv_in = sink.imp().replace_pad(&into, "sink", None)?;
            Some((sink.clone(), flv_in, template, into.name()))
        });
        let Some(replaced) = replaced else {
            relay_back(done);
            return None;
        };
        done.push(replaced);
    }
    Some(done)
}

/// The elementary pads `relay_as_flv` replaced, back.
fn relay_back(relayed: Vec<Relayed>) {
    for (sink, flv_in, template, name) in relayed {
        sink.imp()
            .replace_pad(&flv_in, template.name_template(), Some(&name));
    }
}

/// Whether the stream so far (its first tags, its metadata) is FLV that
/// flvdemux, which an autoplugger would plug, takes: H.264 and the legacy
/// sound formats, no Enhanced RTMP tag, no other track announced.
fn flvdemux_takes(prelude: &[PreludeTag], meta: Option<&Amf0Value>) -> bool {
    // The SoundFormat that says an Enhanced RTMP audio header follows.
    const EX_HEADER: u8 = 9;
    let tags = prelude.iter().all(|t| match (t.kind, t.data.first()) {
        (tag_type::VIDEO, Some(b)) => b & 0x80 == 0 && b & 0x0f == VideoCodecId::Avc as u8,
        (tag_type::AUDIO, Some(b)) => b >> 4 != EX_HEADER,
        _ => true,
    });
    let said = meta.is_none_or(|m| {
        m.get_f64("videocodecid")
            .is_none_or(|c| c == f64::from(VideoCodecId::Avc as u8))
            && m.get_f64("audiocodecid")
                .is_none_or(|c| c < 16.0 && c != f64::from(EX_HEADER))
            && m.get(track_map_key(true)).is_none()
            && m.get(track_map_key(false)).is_none()
    });
    tags && said
}

/// The pad the outside links to for one of the demuxer's: rtmpsrc's ghost
/// of it, or the pad itself where nothing ghosts it.
fn outward(pad: &gst::Pad) -> gst::Pad {
    pad.peer()
        .and_then(|p| p.parent())
        .and_then(|p| p.downcast::<gst::GhostPad>().ok())
        .map(|g| g.upcast())
        .unwrap_or_else(|| pad.clone())
}

/// The pad downstream of one of ours, past the ghost pad of rtmpsrc's bin
/// when there is one: None when nothing is linked there.
pub(super) fn outside_peer(pad: &gst::Pad) -> Option<gst::Pad> {
    outward(pad).peer()
}

impl RtmpSrcDemux {
    /// The first elementary pad of the run was added, and the pad-added
    /// handlers ran: what took it says whether the stream goes out on
    /// the elementary pads or whole, as FLV on the `src` pad, as librtmp's
    /// rtmpsrc and rtmp2src give it to the launch lines written for them:
    ///
    /// - nothing took it (`rtmpsrc ! queue ! flvdemux`: the queue asks
    ///   flvdemux, which takes neither H.264 nor AAC): the FLV pad is
    ///   offered, and kept if something links it there and then;
    /// - an element that takes a whole stream (see `WholeStream`) took
    ///   it, directly or past a queue (`rtmpsrc ! decodebin name=d d. !
    ///   ... d. ! ...`, `rtmpsrc ! filesink location=x.flv`): the FLV pad
    ///   is linked there instead. An autoplugger only where flvdemux can
    ///   take the stream (see `flvdemux_takes`). A relay (`rtmpsrc !
    ///   queue ! rtmpsink`) has rtmpsink's FLV pad take the queue first.
    ///   Past a tee, every branch must take the whole stream.
    ///
    /// Not inside playbin's or uridecodebin's bins, which link pad by
    /// pad themselves, nor with rtmpsrc's auto-flv off. Nothing went out
    /// on the elementary pad yet; the FLV pad starts from the tags kept
    /// until now.
    pub(super) fn first_pad_taken(&self, pad: &gst::Pad) {
        self.prelude_open.store(false, Ordering::Relaxed);
        let (prelude, flvdemux_ok) = {
            let mut st = self.lock();
            let prelude = std::mem::take(&mut st.prelude);
            st.prelude_bytes = 0;
            let ok = flvdemux_takes(&prelude, st.meta.as_ref());
            (prelude, ok)
        };
        if !self.auto_flv.load(Ordering::Relaxed)
            || lock(&self.flv_pad).is_some()
            || self.under_playback_bin()
        {
            return;
        }
        // Where the FLV pad is to be linked: None to offer it. A relay's
        // rtmpsink takes FLV on its `sink` pad, in place of the one it had.
        let mut relayed = Vec::new();
        let onto = match outside_peer(pad) {
            None => None,
            Some(peer) => match whole_stream_taker(&peer) {
                Some((WholeStream::Relay(relays), _)) => {
                    // The queue (or tee), unlinked from the elementary
                    // pad, takes the FLV caps of rtmpsink's `sink` pad.
                    let out = outward(pad);
                    out.unlink(&peer).ok();
                    let Some(done) = relay_as_flv(relays) else {
                        out.link(&peer).ok();
                        return;
                    };
                    relayed = done;
                    Some(peer)
                }
                Some((WholeStream::Autoplugger, e)) if !flvdemux_ok => {
                    gst::info!(
                        CAT,
                        imp = self,
                        "{} took the {} pad: the stream is not one flvdemux takes, it stays on elementary pads",
                        e.name(),
                        pad.name()
                    );
                    return;
                }
                Some(_) => Some(peer),
                None => return,
            },
        };
        if let Some(flv) = self.swap_in_flv(pad, onto.as_ref()) {
            gst::info!(
                CAT,
                imp = self,
                "the {} pad made way for the src pad: {} takes the stream as FLV",
                pad.name(),
                outside_peer(&flv)
                    .and_then(|p| p.parent())
                    .map(|p| p.name())
                    .unwrap_or_default()
            );
            self.forget_pad(pad);
            for t in prelude {
                if let Err(e) = self.flv_tag(t.kind, t.ts, &t.data, t.dts) {
                    // The next tag meets it again and returns it.
                    gst::debug!(CAT, imp = self, "the FLV pad's first tags: {e:?}");
                    break;
                }
            }
        } else if !relayed.is_empty() {
            // No FLV pad: rtmpsink's elementary pads back, then the queue
            // on the elementary pad (which their FLV caps would refuse).
            relay_back(relayed);
            let out = outward(pad);
            if let (None, Some(queue)) = (out.peer(), onto) {
                out.link(&queue).ok();
            }
        }
    }

    /// The FLV pad added in place of `pad`: linked to `onto` (which `pad`
    /// was linked to), or offered to the pad-added handlers. Whether it
    /// was taken, in FLV mode then; else it is gone and `pad` is linked
    /// back where it was.
    pub(super) fn swap_in_flv(&self, pad: &gst::Pad, onto: Option<&gst::Pad>) -> Option<gst::Pad> {
        let out = outward(pad);
        if let Some(peer) = onto {
            out.unlink(peer).ok();
        }
        let flv = self
            .add_flv_pad(true)
            .inspect_err(|why| gst::warning!(CAT, imp = self, "no FLV pad: {why}"))
            .ok();
        let taken = flv.as_ref().is_some_and(|flv| {
            let flv_out = outward(flv);
            match onto {
                Some(peer) if flv_out.peer().is_none() => flv_out.link(peer).is_ok(),
                _ => flv_out.peer().is_some(),
            }
        });
        if !taken {
            if flv.is_some() {
                self.release_flv();
            }
            if let Some(peer) = onto {
                out.link(peer).ok();
            }
            return None;
        }
        self.flv_mode.store(true, Ordering::Release);
        flv
    }

    /// Inside a bin that links each pad of its source itself: playbin's
    /// and playbin3's (uridecodebin, urisourcebin) or uridecodebin alone.
    pub(super) fn under_playback_bin(&self) -> bool {
        let mut parent = self.obj().parent();
        while let Some(p) = parent {
            let factory = p.downcast_ref::<gst::Element>().and_then(factory_name);
            if factory.is_some_and(|f| {
                matches!(
                    f.as_str(),
                    "uridecodebin" | "uridecodebin3" | "urisourcebin" | "playbin" | "playbin3"
                )
            }) {
                return true;
            }
            parent = p.parent();
        }
        false
    }
}
