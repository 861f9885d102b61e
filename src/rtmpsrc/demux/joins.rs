// SPDX-License-Identifier: MPL-2.0
//! Where the demuxer's pads meet downstream. A downstream element that
//! takes two of them on pads of its own and holds one until the other has
//! data (a muxer on collect pads: matroskamux, webmmux, avimux; an
//! input-selector) must not be fed by one thread: the push it holds is the
//! one that would bring the other pad's data. The lanes look before they
//! let the streaming thread push for a pad (see lanes' direct pushes).
//!
//! Only what is linked when it looks counts, and only through elements
//! with one sink pad (parsers, decoders, a tee, bins, which it goes into
//! and out of); a queue ends a branch (what comes after it has its own
//! thread). Aggregators (flvmux, mp4mux, mpegtsmux, compositor...) are not
//! counted: with a live source they time out rather than hold a pad for
//! another, and take buffers at once in practice. What this misses, the
//! rescue catches (see lanes' `rescued`).

use gst::prelude::*;

/// How far a branch is followed, in pads (a loop in a graph is an error
/// GStreamer does not prevent).
const DEPTH: u32 = 64;

/// Whether two of `pads` lead, with no queue in between, to one element
/// that takes both on sink pads of its own (and is not an aggregator).
pub fn meet(pads: &[gst::Pad]) -> bool {
    let mut seen: Vec<gst::Element> = Vec::new();
    for pad in pads {
        let mut here = Vec::new();
        joins_after(pad, 0, &mut here);
        if here.iter().any(|e| seen.contains(e)) {
            return true;
        }
        seen.extend(here);
    }
    false
}

/// The elements with several sink pads that `src` reaches with no queue
/// in between, into `out` (each once).
fn joins_after(src: &gst::Pad, depth: u32, out: &mut Vec<gst::Element>) {
    if depth >= DEPTH {
        return;
    }
    let Some(mut pad) = src.peer() else { return };
    // Into a bin: its sink ghost pad's target (bins in bins, down to an
    // element's pad).
    while let Some(ghost) = pad.downcast_ref::<gst::GhostPad>() {
        let Some(target) = ghost.target() else { return };
        pad = target;
    }
    // Out of a bin: the inner side of its source ghost pad, whose outer
    // side goes on.
    if let Some(proxy) = pad.downcast_ref::<gst::ProxyPad>() {
        if let Some(ghost) = proxy.internal() {
            joins_after(ghost.upcast_ref(), depth + 1, out);
        }
        return;
    }
    let Some(element) = pad.parent_element() else {
        return;
    };
    let factory = element.factory().map(|f| f.name());
    if matches!(factory.as_deref(), Some("queue" | "queue2" | "multiqueue")) {
        return;
    }
    if element.sink_pads().len() > 1 {
        if !element.is::<gst_base::Aggregator>() && !out.contains(&element) {
            out.push(element);
        }
        return;
    }
    for next in element.src_pads() {
        joins_after(&next, depth + 1, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pipeline `desc` (to keep it alive), and the source pads of its
    /// elements named v and a.
    fn pads(desc: &str) -> (gst::Element, Vec<gst::Pad>) {
        gst::init().unwrap();
        let p = gst::parse::launch(desc).unwrap();
        let bin = p.downcast_ref::<gst::Bin>().unwrap();
        let pads = ["v", "a"]
            .iter()
            .map(|n| bin.by_name(n).unwrap().static_pad("src").unwrap())
            .collect();
        (p, pads)
    }

    /// Two branches into a collect-pads muxer meet, through parsers and a
    /// bin; a queue on either branch, or an aggregator, parts them.
    #[test]
    fn pads_meet_at_a_muxer_that_collects() {
        let mkv = "fakesrc name=v ! h264parse ! m.video_0 fakesrc name=a ! aacparse ! m.audio_0 \
                   matroskamux name=m ! fakesink";
        assert!(meet(&pads(mkv).1));
        // Into a bin's ghost pads and out of it.
        let (p, srcs) = pads("fakesrc name=v fakesrc name=a fakesink name=out");
        let inner = "identity name=i0 ! m.video_0 identity name=i1 ! m.audio_0 matroskamux name=m";
        let bin = gst::parse::bin_from_description(inner, false).unwrap();
        let pipeline = p.downcast_ref::<gst::Bin>().unwrap();
        pipeline.add(&bin).unwrap();
        for (i, src) in srcs.iter().enumerate() {
            let target = bin.by_name(&format!("i{i}")).unwrap().static_pad("sink");
            let ghost = gst::GhostPad::builder_with_target(&target.unwrap())
                .unwrap()
                .name(format!("sink_{i}"))
                .build();
            bin.add_pad(&ghost).unwrap();
            src.link(&ghost).unwrap();
        }
        let muxed = bin.by_name("m").unwrap().static_pad("src").unwrap();
        bin.add_pad(&gst::GhostPad::with_target(&muxed).unwrap())
            .unwrap();
        bin.link(&pipeline.by_name("out").unwrap()).unwrap();
        assert!(meet(&srcs));
        let queued = "fakesrc name=v ! queue ! h264parse ! m.video_0 fakesrc name=a ! aacparse ! m.audio_0 \
                      matroskamux name=m ! fakesink";
        assert!(!meet(&pads(queued).1));
        let flv = "fakesrc name=v ! h264parse ! m.video fakesrc name=a ! aacparse ! m.audio \
                   flvmux name=m ! fakesink";
        assert!(!meet(&pads(flv).1));
        let apart = "fakesrc name=v ! h264parse ! fakesink fakesrc name=a ! tee name=t ! fakesink \
                     t. ! fakesink";
        assert!(!meet(&pads(apart).1));
    }
}
