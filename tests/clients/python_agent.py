"""An MCP agent built on the official Python SDK (PyPI `mcp`), which is not part of this repo.

usage: python_agent.py URL AGENT_ID CALLS_JSON
  CALLS_JSON is a JSON list of [tool, arguments] pairs. The agent connects (the SDK picks the
  protocol: it tries 2026-07-28 first and falls back to initialize), lists the tools, makes each
  call in order and prints one JSON line per step, so the test can assert on what it saw.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, agent: str, calls: list) -> None:
    async with httpx2.AsyncClient(headers={"x-agent-id": agent}) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            listed = await client.list_tools()
            print(json.dumps({"step": "tools/list", "tools": sorted(t.name for t in listed.tools)}), flush=True)
            for tool, arguments in calls:
                try:
                    result = await client.call_tool(tool, arguments)
                    print(json.dumps({"step": "call", "tool": tool, "ok": True, "is_error": bool(result.is_error)}), flush=True)
                except MCPError as error:
                    print(json.dumps({"step": "call", "tool": tool, "ok": False, "code": error.code,
                                      "message": error.message, "data": error.data}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
