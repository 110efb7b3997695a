"""Endpoint ids, request ids and URL building: tables, including hostile input."""

from __future__ import annotations

import pytest

from fal_mcp.fal.endpoint import EndpointId, FalUrls, InvalidIdError, check_request_id, join_url, resolve_endpoint

RID = "80e732af-1d7c-4b3a-9a3c-0123456789ab"


@pytest.mark.parametrize(
    ("given", "base", "full"),
    [
        ("fal-ai/fast-sdxl", "fal-ai/fast-sdxl", "fal-ai/fast-sdxl"),
        ("fal-ai/flux/schnell", "fal-ai/flux", "fal-ai/flux/schnell"),
        (
            "fal-ai/kling-video/v2/master/text-to-video",
            "fal-ai/kling-video",
            "fal-ai/kling-video/v2/master/text-to-video",
        ),
        ("fal-ai/flux-pro/v1.1-ultra", "fal-ai/flux-pro", "fal-ai/flux-pro/v1.1-ultra"),
        ("workflows/me/wf", "workflows/me/wf", "workflows/me/wf"),
        ("workflows/me/wf/sub", "workflows/me/wf", "workflows/me/wf/sub"),
        ("comfy/owner/app/x/y", "comfy/owner/app", "comfy/owner/app/x/y"),
        ("123-myapp", "123/myapp", "123/myapp"),
        ("some_user/my_app", "some_user/my_app", "some_user/my_app"),
    ],
)
def test_parse_endpoint_ids(given: str, base: str, full: str) -> None:
    endpoint = EndpointId.parse(given)
    assert endpoint.base == base
    assert str(endpoint) == full


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        " ",
        "flux",
        "fal-ai",
        "/fal-ai/flux",
        "fal-ai/flux/",
        "fal-ai//flux",
        "fal-ai/../admin",
        "fal-ai/flux/..",
        "../../etc/passwd",
        "fal-ai/flux%2F..%2Fadmin",
        "fal-ai%2Fflux",
        "fal-ai/flux?x=1",
        "fal-ai/flux#frag",
        "user@evil.example/x",
        "evil.example:443/x",
        "http://evil.example/x",
        "//evil.example/x",
        "fal-ai\\flux",
        "fal-ai/flux schnell",
        "fal-ai/flux\nschnell",
        "fal-ai/flux\x00",
        "fal-ai/flux\t",
        "fаl-ai/flux",  # Cyrillic а
        "fal-ai/ﬂux",  # ligature
        "fal-ai/flux\u200b",  # zero-width space
        "fal-ai/-flux",
        ".hidden/app",
        "workflows/me",
        "a/" + "b" * 101,
        "/".join(["a"] * 13),
    ],
)
def test_hostile_endpoint_ids_are_refused(hostile: str) -> None:
    with pytest.raises(InvalidIdError):
        EndpointId.parse(hostile)


@pytest.mark.parametrize(
    ("owner", "app", "variant", "full"),
    [
        ("fal-ai", "flux", "schnell", "fal-ai/flux/schnell"),
        ("fal-ai", "fast-sdxl", None, "fal-ai/fast-sdxl"),
        ("fal-ai", "kling-video", "v2/master/text-to-video", "fal-ai/kling-video/v2/master/text-to-video"),
        ("workflows", "me", "wf", "workflows/me/wf"),
    ],
)
def test_segments_form(owner: str, app: str, variant: str | None, full: str) -> None:
    assert str(resolve_endpoint(None, owner, app, variant)) == full


@pytest.mark.parametrize(
    ("endpoint_id", "owner", "app", "variant"),
    [
        (None, None, None, None),
        ("", "", "", ""),
        ("fal-ai/flux", "fal-ai", "flux", None),
        (None, "fal-ai", None, None),
        (None, None, "flux", "schnell"),
        (None, "fal-ai/x", "flux", None),
        (None, "fal-ai", "flux/..", None),
        (None, "fal-ai", "flux", "../x"),
        (None, "fal-ai", "flux", "a//b"),
        (None, "fal-ai", "flux", "a?b"),
    ],
)
def test_segments_form_refusals(
    endpoint_id: str | None, owner: str | None, app: str | None, variant: str | None
) -> None:
    with pytest.raises(InvalidIdError):
        resolve_endpoint(endpoint_id, owner, app, variant)


@pytest.mark.parametrize("good", [RID, "abc", "a1_b2-c3", "0" * 128])
def test_request_ids_accepted(good: str) -> None:
    assert check_request_id(good) == good


@pytest.mark.parametrize(
    "bad", ["", "../x", "a/b", "a?b", "a#b", "a@b", "a%2Fb", "a b", "-abc", "é" * 5, "a\nb", "0" * 129, "a.b"]
)
def test_request_ids_refused(bad: str) -> None:
    with pytest.raises(InvalidIdError):
        check_request_id(bad)


@pytest.mark.parametrize(
    ("run_base", "queue_base"),
    [
        ("https://fal.run", "https://queue.fal.run"),
        ("http://127.0.0.1:9000/run", "http://127.0.0.1:9000/queue/"),
    ],
)
def test_url_table(run_base: str, queue_base: str) -> None:
    urls = FalUrls(run_base=run_base, queue_base=queue_base)
    q = queue_base.rstrip("/")
    r = run_base.rstrip("/")
    flux = EndpointId.parse("fal-ai/flux/schnell")
    assert urls.run(flux) == f"{r}/fal-ai/flux/schnell"
    assert urls.submit(flux) == f"{q}/fal-ai/flux/schnell"
    assert urls.request(flux, RID) == f"{q}/fal-ai/flux/requests/{RID}"
    assert urls.status(flux, RID) == f"{q}/fal-ai/flux/requests/{RID}/status"
    assert urls.status_stream(flux, RID) == f"{q}/fal-ai/flux/requests/{RID}/status/stream"
    assert urls.cancel(flux, RID) == f"{q}/fal-ai/flux/requests/{RID}/cancel"
    workflow = EndpointId.parse("workflows/me/wf/sub")
    assert urls.submit(workflow) == f"{q}/workflows/me/wf/sub"
    assert urls.status(workflow, RID) == f"{q}/workflows/me/wf/requests/{RID}/status"


def test_request_urls_refuse_hostile_request_ids() -> None:
    urls = FalUrls(run_base="https://fal.run", queue_base="https://queue.fal.run")
    with pytest.raises(InvalidIdError):
        urls.status(EndpointId.parse("fal-ai/flux"), "../../admin")


@pytest.mark.parametrize(
    ("base", "parts", "joined"),
    [
        ("https://fal.run", ("a/b",), "https://fal.run/a/b"),
        ("https://fal.run/", ("a/b",), "https://fal.run/a/b"),
        ("http://127.0.0.1:1/p/q/", ("/a/", "b"), "http://127.0.0.1:1/p/q/a/b"),
        ("http://h/x", (), "http://h/x"),
    ],
)
def test_join_url(base: str, parts: tuple[str, ...], joined: str) -> None:
    assert join_url(base, *parts) == joined
