"""Reading Server-Sent Events: the client side of fal's status stream (`…/requests/{id}/status/stream`).

Only what fal sends is needed: `data:` lines (joined when an event spans several), comment lines (`: ping`,
which keep an idle stream open and are skipped), and the blank line that ends an event. Fields we do not use
(`event:`, `id:`, `retry:`) are ignored rather than refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def sse_data(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """Yield the data of each event in a stream of text lines."""
    data: list[str] = []
    async for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # a stream that ends without the final blank line still delivered its event
        yield "\n".join(data)
