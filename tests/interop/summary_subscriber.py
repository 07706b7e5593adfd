"""A subscriber in another language: waits for one run summary on vigil.runs.>
and prints it as JSON. It knows nothing of vigil but the contract: MessagePack
maps with named fields, headers Content-Type and Vigil-Schema.

usage: python3 summary_subscriber.py NATS_URL READY_FILE
"""
import asyncio
import json
import sys

import msgpack
import nats


async def main(url: str, ready_file: str) -> None:
    nc = await nats.connect(url)
    sub = await nc.subscribe("vigil.runs.>")
    await nc.flush()
    open(ready_file, "w").close()
    msg = await sub.next_msg(timeout=120)
    summary = msgpack.unpackb(msg.data, raw=False)
    assert isinstance(summary, dict), type(summary)
    print(json.dumps({
        "subject": msg.subject,
        "content_type": (msg.headers or {}).get("Content-Type"),
        "schema": (msg.headers or {}).get("Vigil-Schema"),
        "summary": summary,
    }))
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
