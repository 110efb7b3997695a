"""Finding media in outputs and keeping a result's text small, by table."""

from __future__ import annotations

from typing import Any

import pytest

from fal_mcp.media.refs import find_media, render_text

BIG = "data:image/png;base64," + "A" * 5_000


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            {
                "images": [
                    {"url": "https://v3.fal.media/files/a.png", "content_type": "image/png", "width": 8, "height": 6}
                ]
            },
            [("output.images[0]", "image", "https://v3.fal.media/files/a.png")],
        ),
        (
            {"video": {"url": "https://v3.fal.media/files/v", "content_type": "video/mp4"}},
            [("output.video", "video", "https://v3.fal.media/files/v")],
        ),
        (
            {"audio_file": {"url": "https://x.example/speech.mp3?sig=1"}},
            [("output.audio_file", "audio", "https://x.example/speech.mp3?sig=1")],
        ),
        (
            {"image": {"url": "https://x.example/blob", "file_name": "out.webp"}},
            [("output.image", "image", "https://x.example/blob")],
        ),
        ({"image_url": "https://x.example/a.JPG"}, [("output.image_url", "image", "https://x.example/a.JPG")]),
        ({"images": [{"url": BIG}]}, [("output.images[0]", "image", BIG)]),
        ({"output": "see https://x.example/a.png", "text": "https://x.example/page.html"}, []),
        ({"file": {"url": "https://x.example/a.zip", "content_type": "application/zip"}}, []),
        ({"seed": 3, "has_nsfw_concepts": [False]}, []),
        ("data:text/plain;base64,aGk=", []),
    ],
)
def test_find_media(output: Any, expected: list[tuple[str, str, str]]) -> None:
    assert [(ref.where, ref.kind, ref.url) for ref in find_media(output)] == expected


def test_find_media_reads_file_metadata() -> None:
    (ref,) = find_media(
        {
            "images": [
                {
                    "url": "https://x/a.png",
                    "content_type": "image/png",
                    "file_size": 9,
                    "width": 4,
                    "height": 3,
                    "file_name": "a.png",
                }
            ]
        }
    )
    assert (ref.content_type, ref.size, ref.width, ref.height, ref.file_name, ref.inline) == (
        "image/png",
        9,
        4,
        3,
        "a.png",
        False,
    )


def test_inline_data_becomes_a_placeholder_naming_its_place() -> None:
    text = render_text("Done.", {"output": {"images": [{"url": BIG}], "small": "data:image/png;base64,AAAA"}})
    assert text.startswith("Done.\n")
    assert "base64,AAA" not in text.replace("data:image/png;base64,AAAA", "")
    assert (
        "<image/png data URI, 5,022 characters; the full value is in structuredContent at output.images[0].url>" in text
    )
    assert "data:image/png;base64,AAAA" in text  # short ones stay as they are


def test_text_is_cut_at_the_cap_with_a_pointer() -> None:
    text = render_text("Done.", {"output": {"words": ["word"] * 10_000}}, limit=2_000)
    assert len(text) <= 2_000
    assert text.endswith("the complete result is in structuredContent]")
    assert render_text("Done.", {"a": 1}, limit=2_000) == 'Done.\n{"a":1}'
