// SPDX-License-Identifier: MPL-2.0
//! The plugin file: named so that it shadows Debian's librtmp plugin.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn inspect(args: &[&str], dir: &Path, registry: &Path) -> String {
    let out = Command::new("gst-inspect-1.0")
        .args(args)
        .env("GST_PLUGIN_PATH", dir)
        .env("GST_REGISTRY", registry)
        .env_remove("GST_PLUGIN_SYSTEM_PATH")
        .output()
        .expect("gst-inspect-1.0 is installed (scripts/setup.sh)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn registers_statically_as_rtmp() {
    gst::init().unwrap();
    gstrtmp::plugin_register_static().unwrap();
    let p = gst::Registry::get()
        .find_plugin("rtmp")
        .expect("plugin rtmp");
    assert_eq!(p.description(), env!("CARGO_PKG_DESCRIPTION"));
}

#[test]
fn our_file_shadows_the_librtmp_plugin() {
    let Some(dir) = common::built_plugin_dir() else {
        return;
    };
    let ours = dir.join("libgstrtmp.so");
    let system = "/usr/lib/x86_64-linux-gnu/gstreamer-1.0/libgstrtmp.so";
    assert!(
        std::path::Path::new(system).exists(),
        "gstreamer1.0-plugins-bad is not installed: the shadowing cannot be checked"
    );
    let registry = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("registry-{}.bin", std::process::id()));
    let out = inspect(&["rtmp"], &dir, &registry);
    let filename = out
        .lines()
        .find(|l| l.trim_start().starts_with("Filename"))
        .unwrap_or_else(|| panic!("no Filename line:\n{out}"));
    assert!(
        filename.ends_with(&ours.display().to_string()),
        "{filename}"
    );
    assert!(out.contains(env!("CARGO_PKG_DESCRIPTION")), "{out}");
    // The librtmp elements are gone with the file they lived in; ours take
    // their names as they land.
    for element in ["rtmpsink", "rtmpsrc"] {
        let out = inspect(&[element], &dir, &registry);
        let shadowed = out.contains(&format!("No such element or plugin '{element}'"));
        let ours = out.lines().any(|l| {
            l.trim_start().starts_with("Filename") && l.ends_with(&ours.display().to_string())
        });
        assert!(
            shadowed || ours,
            "{element} still comes from the librtmp plugin:\n{out}"
        );
    }
    std::fs::remove_file(&registry).ok();
}
