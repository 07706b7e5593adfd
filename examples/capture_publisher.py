"""Capture from code: a service publishes its own request/response pair to
vigil.capture.<app>, the way `vigil proxy` does (see docs/protocol.md,
"Captures"). A capture is a MessagePack map with named fields, sent with the
headers every vigil message carries. Redact before publishing: nothing
secret may reach NATS.

Needs nats-py and msgpack; the stream VIGIL_CAPTURE must exist
(`vigil setup-streams` or a running `vigil proxy` creates it).

usage: python3 capture_publisher.py NATS_URL APP PROMPT RESPONSE
prints the capture id
"""
import asyncio
import re
import sys
import time
import uuid
from datetime import datetime, timezone

import msgpack
import nats

EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


def redact(text: str) -> str:
    return EMAIL.sub("[REDACTED:email]", text)


async def main(url: str, app: str, prompt: str, response: str) -> None:
    started = time.monotonic()
    # ... call the model here; this example already has its answer ...
    latency_ms = (time.monotonic() - started) * 1000
    capture = {
        "capture_id": str(uuid.uuid4()),
        "request_id": "example-1",
        "app": app,
        "model": "my-model",
        "endpoint": "chat",
        "path": "/v1/chat/completions",
        "messages": [{"role": "user", "content": redact(prompt)}],
        "prompt": redact(prompt),
        "response_text": redact(response),
        "usage": {"input": len(prompt.split()), "output": len(response.split())},
        "status": 200,
        "latency_ms": latency_ms,
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "metadata": {"source": "python-example"},
    }
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.publish(
        f"vigil.capture.{app}",
        msgpack.packb(capture),
        headers={
            "Content-Type": "application/msgpack",
            "Vigil-Schema": "1",
            "Vigil-Schema-Min": "1",
            "Nats-Msg-Id": capture["capture_id"],
        },
    )
    print(capture["capture_id"])
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
