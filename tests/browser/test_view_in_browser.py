"""The view in a real browser, inside a real MCP Apps host, on a real fal-mcp: what a user sees in the chat."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.sync_api import expect

from fal_mcp.sandbox import FakeFal, SandboxServer
from tests.browser.conftest import HostPage

FLUX = "fal-ai/flux/schnell"
VIDEO = "fal-ai/kling-video/v2/master/text-to-video"
AUDIO = "fal-ai/stable-audio"
SCREENSHOTS = os.environ.get("FAL_MCP_VIEW_SCREENSHOTS")
"""A folder to write the README's screenshots into (`docs`); unset, they go to the test's temporary folder."""


def screenshot(host: HostPage, name: str, tmp_path: Path) -> None:
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    host.page.locator("#chat iframe").screenshot(path=str(folder / name))


def test_an_image_model_shows_every_image_side_by_side(host: HostPage, fake: FakeFal, tmp_path: Path) -> None:
    result = host.call("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a red fox", "num_images": 3, "seed": 4}})
    images = result["structuredContent"]["output"]["images"]
    view = host.view
    expect(view.locator("figure.image img")).to_have_count(3)
    assert [view.locator("figure.image img").nth(i).get_attribute("src") for i in range(3)] == [
        i["url"] for i in images
    ]
    loaded = host.in_view(
        "() => [...document.querySelectorAll('figure.image img')].map(i => i.complete && i.naturalWidth)"
    )
    assert loaded == [64, 64, 64]  # fetched under the view's CSP from the sandbox's CDN
    expect(view.locator("figure.image figcaption").first).to_contain_text("64×48")
    expect(view.locator("figure.image figcaption").first).to_contain_text(f"{images[0]['file_size'] / 1000:.1f} KB")
    assert host.refused() == []
    screenshot(host, "view-images.png", tmp_path)


def test_save_and_open_go_to_the_host_where_it_allows_them(host: HostPage, fake: FakeFal) -> None:
    result = host.call("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a red fox", "num_images": 2}})
    images = result["structuredContent"]["output"]["images"]
    first = host.view.locator("figure.image").first
    first.locator("button.save").click()
    expect(first.locator("button.save")).to_have_text("Saved")
    first.locator("button.open").click()
    recorded = host.recorded()
    (download,) = recorded["downloads"]
    assert download["contents"] == [
        {"type": "resource_link", "uri": images[0]["url"], "name": images[0]["file_name"], "mimeType": "image/png"}
    ]
    assert recorded["links"] == [images[0]["url"]]
    # the view reports its size, and the host sized the frame to it
    assert recorded["sizes"] and max(size.get("height", 0) for size in recorded["sizes"]) > 150
    # a click shows an image at full size, another brings the grid back
    first.locator("img").click()
    expect(first).to_have_class("media image full")
    first.locator("img").click()
    expect(first).to_have_class("media image")


def test_files_saved_by_save_to_are_listed(host: HostPage, fake: FakeFal, save_root: Path) -> None:
    result = host.call("run-model", {"endpoint_id": AUDIO, "input": {"prompt": "a bell"}, "save_to": str(save_root)})
    (saved,) = result["structuredContent"]["saved"]
    assert Path(saved).parent == save_root and Path(saved).stat().st_size > 44
    expect(host.view.locator(".saved code")).to_have_text(saved)


def test_a_host_that_allows_nothing_gets_no_buttons_and_a_still_job(host: HostPage, fake: FakeFal) -> None:
    fake.time_scale = 1.0
    host.call("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox"}}, capabilities={})
    expect(host.view.locator("figure.image img")).to_have_count(1)
    expect(host.view.locator("button")).to_have_count(0)
    host.call("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "waves"}, "wait_s": 0}, capabilities={})
    expect(host.view.locator(".live.still")).to_be_visible()
    expect(host.view.locator(".live .note")).to_contain_text("get-result")


def test_a_video_model_shows_the_browsers_player(host: HostPage, fake: FakeFal, tmp_path: Path) -> None:
    result = host.call("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "waves at dusk"}})
    video = result["structuredContent"]["output"]["video"]
    player = host.view.locator("figure.video video")
    expect(player).to_have_attribute("src", video["url"])
    expect(player).to_have_attribute("controls", "")
    expect(host.view.locator("figure.video figcaption")).to_contain_text(f"{video['file_size']} B")
    assert host.refused() == []
    screenshot(host, "view-video.png", tmp_path)


def test_an_audio_model_shows_the_browsers_player(host: HostPage, fake: FakeFal) -> None:
    result = host.call("run-model", {"endpoint_id": AUDIO, "input": {"prompt": "rain", "seconds_total": 2}})
    audio = result["structuredContent"]["output"]["audio_file"]
    expect(host.view.locator("figure.audio audio")).to_have_attribute("src", audio["url"])
    # the browser loaded the WAV through the view's CSP and knows how long it is
    duration = host.in_view(
        """() => new Promise((resolve) => {
            const audio = document.querySelector('audio');
            const done = () => resolve(audio.duration);
            audio.readyState >= 1 ? done() : audio.addEventListener('loadedmetadata', done);
        })"""
    )
    assert abs(duration - 2.0) < 0.05
    assert host.refused() == []


def test_a_queued_job_stays_live_until_its_media_appears_in_place(
    host: HostPage, fake: FakeFal, sandbox: SandboxServer, tmp_path: Path
) -> None:
    fake.time_scale = 0.3  # about 2 s in the queue, then 4 s running with a log line every third of a second
    result = host.call("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "a slow sunrise"}, "wait_s": 0})
    handle = result["structuredContent"]
    assert handle["status"] == "IN_QUEUE"
    view = host.view
    expect(view.locator(".live[data-state=IN_QUEUE]")).to_be_visible()
    expect(view.locator(".live .position")).to_contain_text("position")
    expect(view.locator(".live[data-state=IN_PROGRESS]")).to_be_visible(timeout=15_000)
    expect(view.locator(".live .logs li").first).to_contain_text("Generating frame batch", timeout=15_000)
    expect(view.locator(".live .elapsed")).to_have_text(re.compile(r"^\d+:\d\d$"))
    screenshot(host, "view-live.png", tmp_path)
    expected = f"{sandbox.cdn_url}/files/{handle['request_id']}.mp4"
    expect(view.locator("figure.video video")).to_have_attribute("src", expected, timeout=20_000)
    expect(view.locator(".live")).to_have_count(0)
    expect(view.locator(".result .badge")).to_have_attribute("data-state", "COMPLETED")


def test_cancel_stops_the_job_at_fal_with_one_click(host: HostPage, fake: FakeFal) -> None:
    fake.time_scale = 1.0  # six seconds in the queue
    result = host.call("run-model", {"endpoint_id": VIDEO, "input": {"prompt": "never mind"}, "wait_s": 0})
    request_id = result["structuredContent"]["request_id"]
    view = host.view
    expect(view.locator(".live[data-state=IN_QUEUE]")).to_be_visible()
    view.locator("button.cancel").click()
    expect(view.locator(".result .badge")).to_have_attribute("data-state", "CANCELLED", timeout=15_000)
    assert fake.jobs[request_id].cancelled
    expect(view.locator(".result .error")).to_contain_text("cancelled")


def test_list_requests_shows_a_gallery_and_follows_a_live_one(
    host: HostPage, fake: FakeFal, sandbox: SandboxServer
) -> None:
    image = host.quiet("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a gallery fox"}})["structuredContent"]
    sound = host.quiet("run-model", {"endpoint_id": AUDIO, "input": {"prompt": "a gallery bell"}})["structuredContent"]
    fake.time_scale = 0.2
    queued = host.quiet("submit", {"endpoint_id": VIDEO, "input": {"prompt": "a gallery wave"}})["structuredContent"]
    host.call("list-requests", {"limit": 10})
    view = host.view
    image_card = view.locator(f"article.card[data-request-id='{image['request_id']}']")
    expect(image_card.locator("img")).to_have_attribute("src", image["output"]["images"][0]["url"])
    expect(image_card.locator(".badge")).to_have_attribute("data-state", "COMPLETED")
    sound_card = view.locator(f"article.card[data-request-id='{sound['request_id']}']")
    expect(sound_card.locator("audio")).to_have_attribute("src", sound["output"]["audio_file"]["url"])
    live_card = view.locator(f"article.card[data-request-id='{queued['request_id']}']")
    live_card.locator("button.follow").click()
    expected = f"{sandbox.cdn_url}/files/{queued['request_id']}.mp4"
    expect(view.locator("figure.video video")).to_have_attribute("src", expected, timeout=20_000)


def test_text_is_readable_long_text_folded_and_errors_plain(host: HostPage, fake: FakeFal) -> None:
    host.call("run-model", {"endpoint_id": "fal-ai/any-llm", "input": {"prompt": "hello there"}})
    expect(host.view.locator(".prose")).to_have_text("[sandbox/echo-llm] You said: hello there")
    long_text = "\n".join(f"line {n} of a long transcript" for n in range(40))
    host.call("run-model", {"endpoint_id": "workflows/sandbox/echo", "input": {"text": long_text}})
    folded = host.view.locator("details.folded")
    expect(folded).not_to_have_attribute("open", "")
    expect(folded.locator("summary")).to_contain_text("line 0 of a long transcript")
    folded.locator("summary").click()
    expect(folded.locator(".prose")).to_have_text(long_text)
    host.call("run-model", {"endpoint_id": "fal-ai/sandbox/always-fails", "input": {}})
    expect(host.view.locator(".error")).to_contain_text("crashed")


def test_the_view_follows_the_hosts_dark_theme(host: HostPage, fake: FakeFal) -> None:
    host.call("run-model", {"endpoint_id": FLUX, "input": {"prompt": "a fox at night"}}, theme="dark")
    expect(host.view.locator("figure.image img")).to_have_count(1)
    theme, background = host.in_view(
        "() => [document.documentElement.dataset.theme, getComputedStyle(document.body).backgroundColor]"
    )
    assert (theme, background) == ("dark", "rgb(24, 24, 27)")
