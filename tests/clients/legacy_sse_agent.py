"""An MCP agent on the legacy HTTP+SSE transport (2024-11-05), built on the official Python SDK
(PyPI `mcp`): its `sse_client` transport and `ClientSession`. Not part of this repo's code.

usage: legacy_sse_agent.py SSE_URL CALLS_JSON [--call-timeout SECONDS]
  CALLS_JSON is a JSON list of [tool, arguments] pairs. The agent GETs SSE_URL, waits for the
  `endpoint` event, initializes, lists the tools and makes each call in order, printing one JSON
  line per step so a test can assert on what it saw:
    {"step": "session", "session_id": ..., "protocol_version": ...}
    {"step": "tools/list", "tools": [...]}
    {"step": "call", "tool": ..., "ok": true, "is_error": false, "text": ...}
    {"step": "call", "tool": ..., "ok": false, "code": ..., "message": ..., "data": ...}   (JSON-RPC error)
    {"step": "call", "tool": ..., "ok": false, "exception": ..., "message": ...}          (anything else)
    {"step": "transport_errors", "errors": [...]}   what the SDK's transport logged at ERROR level
  Each call waits at most --call-timeout seconds (default 5) for its answer on the stream: the
  transport does not report a POST refused with an HTTP error status to the caller. What the SDK
  (mcp 2.3.0) does when a POST is answered 403/429/400: `post_writer` calls raise_for_status(),
  the HTTPStatusError ends the writer task (logged as "Error in post_writer"), the JSON-RPC error
  body is never read, and the caller's call_tool waits until its read timeout (MCPError -32001
  "Request 'tools/call' timed out"; with no timeout it waits forever). Every later request in the
  session fails at once with MCPError -32000 "Connection closed".
"""

import argparse
import asyncio
import json
import logging
import time

import anyio
from mcp import ClientSession, MCPError
from mcp.client.sse import sse_client


class Collect(logging.Handler):
    """Keeps what the SDK's transport logs at ERROR (e.g. "Error in post_writer")."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.errors: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        entry = {"logger": record.name, "message": record.getMessage()}
        if record.exc_info and record.exc_info[1] is not None:
            entry["exceptions"] = [f"{type(e).__name__}: {e}" for e in leaves(record.exc_info[1])]
        self.errors.append(entry)


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, or the exception itself."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


def since(started: float) -> float:
    return round(time.monotonic() - started, 2)


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


async def main(url: str, calls: list, call_timeout: float) -> None:
    collected = Collect()
    logging.getLogger("mcp.client.sse").addHandler(collected)
    session_ids: list[str] = []
    async with sse_client(url, timeout=call_timeout, on_session_created=session_ids.append) as (read, write):
        async with ClientSession(read, write, read_timeout_seconds=call_timeout) as session:
            initialized = await session.initialize()
            emit({"step": "session", "session_id": session_ids[0] if session_ids else None,
                  "protocol_version": initialized.protocol_version})
            listed = await session.list_tools()
            emit({"step": "tools/list", "tools": sorted(t.name for t in listed.tools)})
            for tool, arguments in calls:
                started = time.monotonic()
                try:
                    with anyio.fail_after(call_timeout + 1):
                        result = await session.call_tool(tool, arguments)
                    text = " ".join(c.text for c in result.content if getattr(c, "type", "") == "text")
                    emit({"step": "call", "tool": tool, "ok": True, "is_error": bool(result.is_error), "text": text,
                          "seconds": since(started)})
                except MCPError as error:
                    emit({"step": "call", "tool": tool, "ok": False, "code": error.code,
                          "message": error.message, "data": error.data, "seconds": since(started)})
                except Exception as error:  # noqa: BLE001 - the test wants to see exactly what happened
                    emit({"step": "call", "tool": tool, "ok": False, "exception": type(error).__name__,
                          "message": str(error), "seconds": since(started)})
    emit({"step": "transport_errors", "errors": collected.errors})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("calls")
    parser.add_argument("--call-timeout", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.url, json.loads(args.calls), args.call_timeout))
