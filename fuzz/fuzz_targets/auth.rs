#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gstrtmp::rtmp::fuzzing::auth(data));
