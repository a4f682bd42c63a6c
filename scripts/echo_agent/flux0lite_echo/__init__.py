"""An LLM-free agent runner for the real flux0 server, used by flux0lite's tests and demo.

The server loads it with FLUX0_MODULES=flux0lite_echo (this folder on PYTHONPATH). It registers
the agent type ``echo``. What it does depends on the first word of the user's latest message:

  (anything)    replies "Echo: <message>", one word per chunk
  !tool         a tool call (name and arguments streamed as patches), its result, then text
  !json         one chunk whose value is a JSON object instead of text
  !error        reports an error status
  !raise        raises at once: the server never ends the stream (clients need a read timeout)
  !slow         like plain echo, one second between words
  !many N       N numbered text chunks with no delay (for long streams and benchmarks)
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Dict, List

from flux0_core.agent_runners.api import AgentRunner, Deps, agent_runner
from flux0_core.agent_runners.context import Context
from flux0_core.ids import gen_id
from flux0_core.sessions import EventId, StatusEventData
from flux0_stream.types import ChunkEvent
from lagom import Container

WORD_DELAY = float(os.environ.get("FLUX0LITE_ECHO_DELAY", "0.01"))


def _latest_user_text(events: Any) -> tuple:  # type: ignore[type-arg]
    for event in reversed(list(events)):
        if event.source == "user" and event.type == "message":
            text = "".join(
                part["content"]
                for part in event.data.get("parts", [])
                if part.get("type") == "content" and isinstance(part.get("content"), str)
            )
            return event.offset, text
    return 0, ""


@agent_runner("echo")
class EchoRunner(AgentRunner):
    async def run(self, context: Context, deps: Deps) -> bool:
        correlation_id = deps.correlator.correlation_id
        emitter = deps.event_emitter
        agent = await deps.read_agent(context.agent_id)
        if agent is None:
            raise ValueError(f"unknown agent {context.agent_id}")
        metadata = {"agent_id": agent.id, "agent_name": agent.name}
        offset, text = _latest_user_text(await deps.list_session_events(context.session_id))
        words = text.split()
        command = words[0] if words else ""

        def status(name: str, data: Any = None) -> StatusEventData:
            return StatusEventData(type="status", acknowledged_offset=offset, status=name, data=data or {})

        async def send(event_id: EventId, seq: int, patches: List[Dict[str, Any]]) -> None:
            await emitter.enqueue_event_chunk(
                ChunkEvent(
                    correlation_id=correlation_id,
                    event_id=event_id,
                    seq=seq,
                    patches=patches,
                    metadata=dict(metadata),
                    timestamp=time.time(),
                )
            )

        async def say(pieces: List[str], delay: float) -> None:
            event_id = EventId(gen_id())
            await emitter.enqueue_status_event(correlation_id, status("typing"), event_id)
            for seq, piece in enumerate(pieces):
                await send(event_id, seq, [{"op": "add", "path": "/-", "value": piece}])
                if delay:
                    await asyncio.sleep(delay)
            await emitter.enqueue_status_event(correlation_id, status("ready"), event_id)

        if command == "!raise":
            raise RuntimeError("echo runner was asked to raise")
        run_id = EventId(gen_id())
        await emitter.enqueue_status_event(correlation_id, status("processing"), run_id)
        if command == "!error":
            await emitter.enqueue_status_event(
                correlation_id, status("error", {"exception": "EchoError: as asked"}), run_id
            )
        elif command == "!json":
            event_id = EventId(gen_id())
            await send(event_id, 0, [{"op": "add", "path": "/answer", "value": {"n": 42, "ok": True}}])
            await emitter.enqueue_status_event(correlation_id, status("ready"), event_id)
        elif command == "!tool":
            call_id = EventId(gen_id())
            await send(
                call_id,
                0,
                [
                    {
                        "op": "add",
                        "path": "/tool_calls/0",
                        "value": {"type": "tool_call", "tool_call_id": "call_1", "tool_name": "", "args": []},
                    },
                    {"op": "replace", "path": "/tool_calls/0/tool_name", "value": "search"},
                ],
            )
            await send(call_id, 1, [{"op": "add", "path": "/tool_calls/0/args/-", "value": '{"query": '}])
            await send(call_id, 2, [{"op": "add", "path": "/tool_calls/0/args/-", "value": '"weather"}'}])
            await emitter.enqueue_status_event(correlation_id, status("ready"), call_id)
            result_id = EventId(gen_id())
            await send(
                result_id,
                0,
                [
                    {"op": "add", "path": "/tool_call_results", "value": []},
                    {
                        "op": "add",
                        "path": "/tool_call_results/-",
                        "value": {
                            "tool_call_id": "call_1",
                            "tool_name": "search",
                            "data": {"result": "sunny"},
                            "args": {"query": "weather"},
                        },
                    },
                ],
            )
            await emitter.enqueue_status_event(correlation_id, status("ready"), result_id)
            await say(["It ", "is ", "sunny."], WORD_DELAY)
        elif command == "!many":
            count = int(words[1]) if len(words) > 1 and words[1].isdigit() else 100
            await say([f"{i} " for i in range(count)], 0.0)
        else:
            reply = ("Echo: " + text).split(" ")
            pieces = [w + " " for w in reply[:-1]] + [reply[-1]]
            await say([p for p in pieces if p], 1.0 if command == "!slow" else WORD_DELAY)
        # "completed" makes the server end the stream body.
        await emitter.enqueue_status_event(correlation_id, status("completed"), run_id)
        return True


async def init_module(container: Container) -> None:
    container[EchoRunner] = EchoRunner


async def shutdown_module() -> None:
    return None
