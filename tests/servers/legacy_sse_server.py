"""A legacy HTTP+SSE MCP server (the 2024-11-05 transport) built on the official Python SDK
(PyPI `mcp`), which is not part of this repo.

usage: legacy_sse_server.py --port N [--host 127.0.0.1]

  GET  /sse                      the SSE stream; its first event (`endpoint`) names the POST
                                 endpoint, `/messages/?session_id=<hex>`
  POST /messages/?session_id=…   JSON-RPC from the client, answered 202; the answers go to the stream
  GET  /stats                    {"tool_calls": {"<tool>": n, ...}}: every tools/call this server
                                 executed, per tool, so a test can prove a refused call never got here

Tools: wechat_get_followers, wechat_mass_send, wechat_mass_delete (fake, they only return text).
It prints "listening on 127.0.0.1:N" once it accepts connections.
"""

import argparse
import asyncio
import threading
from collections import Counter

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mcp.server.mcpserver import MCPServer

TOOL_CALLS: Counter = Counter()
_LOCK = threading.Lock()  # the SDK may run plain-function tools on worker threads


def executed(tool: str) -> None:
    with _LOCK:
        TOOL_CALLS[tool] += 1

server = MCPServer("legacy-wechat", version="1.0.0", log_level="WARNING")


@server.tool(description="List the account's followers")
def wechat_get_followers(limit: int = 10) -> str:
    executed("wechat_get_followers")
    return f"followers: alice, bob, carol (limit {limit})"


@server.tool(description="Send a message to every follower")
def wechat_mass_send(text: str = "hello") -> str:
    executed("wechat_mass_send")
    return f"sent to 3 followers: {text}"


@server.tool(description="Delete a mass message")
def wechat_mass_delete(msg_id: str = "0") -> str:
    executed("wechat_mass_delete")
    return f"deleted mass message {msg_id}"


@server.custom_route("/stats", methods=["GET"])
async def stats(_request: Request) -> Response:
    with _LOCK:
        counts = dict(TOOL_CALLS)
    return JSONResponse({"tool_calls": counts})


async def main(host: str, port: int) -> None:
    app = server.sse_app(host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    http = uvicorn.Server(config)
    serving = asyncio.create_task(http.serve())
    while not http.started and not serving.done():
        await asyncio.sleep(0.02)
    if http.started:
        print(f"listening on {host}:{port}", flush=True)
    await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
