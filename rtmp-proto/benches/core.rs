// SPDX-License-Identifier: MPL-2.0
//! `cargo bench`: the protocol core's hot paths against a plain memcpy of
//! the same bytes, in the same run, printed as ratios (ours / memcpy, by
//! throughput: 1.0 means as fast as copying the bytes once).
//!
//! - decode: chunked stream fed in 64 KiB reads (as from a socket),
//!   reassembled into whole messages;
//! - encode: whole messages cut into chunks into the send buffer, which is
//!   then drained (as a socket write would);
//! - by ref: the same, the payloads referenced between the chunk headers
//!   instead of copied (`write_message_shared`), the pieces then taken
//!   for a vectored write;
//! - memcpy: the same bytes copied once, in the same 64 KiB pieces, into a
//!   reused 64 KiB buffer: the fastest a copy of these bytes gets here (its
//!   destination stays in cache), so the ratios are the strict ones;
//! - allocations per message in steady state, counted by the allocator.
//!
//! Pass a filter word (e.g. `cargo bench -- 4096`) to run fewer cases.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::collections::VecDeque;

use bytes::Bytes;
use rtmp_proto::Limits;
use rtmp_proto::amf0::{self, Amf0Value};
use rtmp_proto::chunk::{ChunkDecoder, ChunkEncoder};
use rtmp_proto::message::{ConnectParams, NetCommand, Status};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const TOTAL: usize = 32 << 20;
const READ: usize = 64 * 1024;

/// Median of `runs` timings of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm up caches and the allocator
    let mut t: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[runs / 2]
}

fn gbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e9
}

fn chunk_case(msg: usize, chunk: u32) {
    let n = (TOTAL / msg).max(8);
    // Every message is fresh memory, as frames are: no payload is read twice
    // within a run, so neither path gets to read from cache.
    let source: Vec<u8> = (0..n * msg).map(|i| (i * 31 + i / 4093) as u8).collect();
    let payload_of = |i: usize| &source[i * msg..(i + 1) * msg];
    let payload = payload_of(0);
    let mut enc = ChunkEncoder::new();
    enc.set_chunk_size(chunk).unwrap();
    // Video on one chunk stream, timestamps 40 ms apart: the common case.
    for i in 0..n {
        enc.write_message(6, (i * 40) as u32, 9, 1, payload_of(i))
            .unwrap();
    }
    let stream = enc.send_buf().to_vec();
    let bytes = n * msg;

    let decode_once = || {
        let mut dec = ChunkDecoder::new(Limits::default());
        set_chunk(&mut dec, chunk);
        let mut got = 0usize;
        for piece in stream.chunks(READ) {
            dec.feed(piece);
            while let Some(m) = dec.poll_message().unwrap() {
                got += m.payload.len();
                black_box(&m);
            }
        }
        assert_eq!(got, bytes);
    };
    let encode_once = || {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(chunk).unwrap();
        for i in 0..n {
            enc.write_message(6, (i * 40) as u32, 9, 1, payload_of(i))
                .unwrap();
            if enc.pending() >= READ {
                black_box(enc.send_buf());
                let p = enc.pending();
                enc.advance(p);
            }
        }
    };
    let shared = Bytes::from(source.clone());
    let mut pieces = VecDeque::new();
    let mut by_ref_once = || {
        let mut enc = ChunkEncoder::new();
        enc.set_chunk_size(chunk).unwrap();
        for i in 0..n {
            let part = shared.slice(i * msg..(i + 1) * msg);
            enc.write_message_shared(6, (i * 40) as u32, 9, 1, &[part])
                .unwrap();
            if enc.pending() >= READ {
                enc.take_send_pieces(&mut pieces);
                black_box(&pieces);
                pieces.clear();
            }
        }
    };
    let mut dst = vec![0u8; READ];
    let memcpy_once = || {
        for piece in stream.chunks(READ) {
            dst[..piece.len()].copy_from_slice(piece);
            black_box(&dst);
        }
    };
    let runs = 7;
    let d = median(runs, decode_once);
    let e = median(runs, encode_once);
    let r = median(runs, &mut by_ref_once);
    let mut memcpy_once = memcpy_once;
    let m = median(runs, &mut memcpy_once);

    // Allocations per message in steady state (after the first messages).
    let mut dec = ChunkDecoder::new(Limits::default());
    set_chunk(&mut dec, chunk);
    let warm = stream.len() / 4;
    dec.feed(&stream[..warm]);
    while dec.poll_message().unwrap().is_some() {}
    let before = ALLOCS.load(Ordering::Relaxed);
    let mut msgs = 0u64;
    for piece in stream[warm..].chunks(READ) {
        dec.feed(piece);
        while let Some(m) = dec.poll_message().unwrap() {
            msgs += 1;
            drop(m);
        }
    }
    let dec_allocs = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / msgs.max(1) as f64;
    let mut enc = ChunkEncoder::new();
    enc.set_chunk_size(chunk).unwrap();
    for i in 0..64 {
        enc.write_message(6, i * 40, 9, 1, payload).unwrap();
        let p = enc.pending();
        enc.advance(p);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in 0..n {
        enc.write_message(6, (64 + i * 40) as u32, 9, 1, payload_of(i))
            .unwrap();
        let p = enc.pending();
        enc.advance(p);
    }
    let enc_allocs = (ALLOCS.load(Ordering::Relaxed) - before) as f64 / n as f64;

    let (dg, eg, rg, mg) = (
        gbps(bytes, d),
        gbps(bytes, e),
        gbps(bytes, r),
        gbps(stream.len(), m),
    );
    println!(
        "chunk {chunk:>6}  msg {:>5} KiB | decode {dg:6.2} GB/s  x{:.2} memcpy  {dec_allocs:.2} alloc/msg | encode {eg:6.2} GB/s  x{:.2} memcpy  {enc_allocs:.2} alloc/msg | by ref x{:.2} memcpy | memcpy {mg:6.2} GB/s",
        msg / 1024,
        dg / mg,
        eg / mg,
        rg / mg
    );
}

/// The decoder learns the chunk size from the stream in real use; here
/// the stream starts mid-connection, so it is told the same way a peer
/// would tell it: with a Set Chunk Size message.
fn set_chunk(dec: &mut ChunkDecoder, chunk: u32) {
    let mut enc = ChunkEncoder::new();
    enc.write_message(2, 0, 1, 0, &chunk.to_be_bytes()).unwrap();
    dec.feed(enc.send_buf());
    while dec.poll_message().unwrap().is_some() {}
}

fn amf_case() {
    let connect = NetCommand::Connect(Box::new(ConnectParams {
        app: "live".into(),
        tc_url: Some("rtmp://ingest.example.com:1935/live".into()),
        flash_ver: Some("FMLE/3.0 (compatible; FMSc/1.0)".into()),
        swf_url: Some("rtmp://ingest.example.com:1935/live".into()),
        kind: Some("nonprivate".into()),
        fourcc_list: vec!["av01".into(), "vp09".into(), "hvc1".into()],
        ..Default::default()
    }))
    .into_command(1.0)
    .encode();
    let status = NetCommand::OnStatus(Status::new(
        "status",
        "NetStream.Publish.Start",
        "live/key is now published.",
    ))
    .into_command(0.0)
    .encode();
    let meta = amf0::encode_all(&[
        Amf0Value::string("onMetaData"),
        Amf0Value::EcmaArray(
            [
                ("duration", 0.0),
                ("width", 1920.0),
                ("height", 1080.0),
                ("framerate", 30.0),
                ("videocodecid", 7.0),
                ("audiocodecid", 10.0),
                ("audiosamplerate", 48000.0),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), Amf0Value::Number(*v)))
            .collect(),
        ),
    ]);
    for (name, body) in [
        ("connect", &connect),
        ("onStatus", &status),
        ("onMetaData", &meta),
    ] {
        let iters = 200_000;
        let limits = Default::default();
        let d = median(5, || {
            for _ in 0..iters {
                black_box(amf0::decode_all(black_box(body), &limits).unwrap());
            }
        });
        let mut dst = vec![0u8; body.len()];
        let m = median(5, || {
            for _ in 0..iters {
                dst.copy_from_slice(black_box(body));
                black_box(&dst);
            }
        });
        let rate = iters as f64 / d.as_secs_f64();
        println!(
            "amf0 {name:<10} {:>4} bytes | {:>9.0} decodes/s  {:6.1} MB/s  x{:.3} memcpy",
            body.len(),
            rate,
            rate * body.len() as f64 / 1e6,
            m.as_secs_f64() / d.as_secs_f64()
        );
    }
}

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |s: &str| filter.is_empty() || filter.iter().any(|f| s.contains(f.as_str()));
    println!(
        "(ratios are throughput against a memcpy of the same bytes in this run; higher is better)"
    );
    for chunk in [128u32, 4096, 65536] {
        for msg in [
            1usize << 10,
            4 << 10,
            16 << 10,
            64 << 10,
            256 << 10,
            1 << 20,
        ] {
            if wanted(&format!("chunk {chunk} msg {}", msg >> 10)) {
                chunk_case(msg, chunk);
            }
        }
    }
    if wanted("amf0") {
        amf_case();
    }
}
