#!/usr/bin/env python3
# SPDX-License-Identifier: MPL-2.0
"""Drives the studio's page (examples/studio.rs) in headless Chromium with
a fake camera and microphone, as a person would: fill in the server and
the key, Start, stay live, Stop. Prints what the page showed as JSON on
the last line of its output. Run by tests/studio.rs.

  studio_browser.py PAGE_URL SERVER KEY SECONDS SCREENSHOT live|error
"""
import json, re, sys, time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main():
    page, server, key, seconds, screenshot, expect = sys.argv[1:7]
    seconds = float(seconds)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
              "--autoplay-policy=no-user-gesture-required", "--window-size=1280,800"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    out = {"states": [], "errors": []}
    try:
        d.set_page_load_timeout(30)
        d.get(page)
        el = lambda i: d.find_element(By.ID, i)

        def wait(cond, limit, what):
            end = time.monotonic() + limit
            while time.monotonic() < end:
                state = el("state").text
                if not out["states"] or out["states"][-1] != state:
                    out["states"].append(state)
                if cond():
                    return True
                time.sleep(0.05)
            out["errors"].append(f"timed out waiting for {what}")
            return False

        wait(lambda: el("start").is_enabled(), 20, "the Start button")
        el("server").clear()
        el("server").send_keys(server)
        el("key").send_keys(key)
        el("start").click()
        if expect == "error":
            wait(lambda: el("error").is_displayed() and el("error").text, 30, "an error")
        else:
            if wait(lambda: el("state").text == "publishing", 30, "publishing"):
                live_at = time.monotonic()
                shot_at = live_at + min(3.0, seconds / 2)
                shot = False
                out["max_queued_ms"] = 0
                while time.monotonic() < live_at + seconds:
                    time.sleep(0.1)
                    m = re.search(r"queued (\d+) ms", el("latency").text)
                    if m:
                        out["max_queued_ms"] = max(out["max_queued_ms"], int(m.group(1)))
                    state = el("state").text
                    if out["states"][-1] != state:
                        out["states"].append(state)
                    if not shot and time.monotonic() >= shot_at:
                        d.save_screenshot(screenshot)
                        shot = True
                out["live_s"] = time.monotonic() - live_at
                out["live_indicator"] = el("live").text
                out["frames_live"] = el("frames").text
                out["latency"] = el("latency").text
                out["bitrate"] = el("bitrate").text
                out["encoder"] = el("encoder").text
                el("stop").click()
                wait(lambda: el("state").text == "stopped", 40, "stopped")
        out["state"] = el("state").text
        out["error"] = el("error").text if el("error").is_displayed() else ""
        out["frames"] = el("frames").text
        out["dropped"] = el("dropped").text
        out["page_text"] = d.find_element(By.TAG_NAME, "body").text
        if expect == "error":
            d.save_screenshot(screenshot)
        out["console"] = [e["message"] for e in d.get_log("browser")][-20:]
    finally:
        d.quit()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
