"""A TCP proxy on 127.0.0.1 that delays every chunk the client sends by a fixed time, so a
local S3 stand-in (moto_server, MinIO) answers with roughly the per-request latency of real
object storage (20-50 ms in-region). Replies pass through undelayed.

    python bench/latency_proxy.py LISTEN_PORT TARGET_PORT DELAY_SECONDS
    # e.g. moto on 5077, the warehouse reached through 5078 with 30 ms a request:
    python bench/latency_proxy.py 5078 5077 0.03 &
    AWS_ENDPOINT_URL=http://127.0.0.1:5078 evallib runs --warehouse s3://bucket/wh

Used by bench/s3.py and tests/warehouse/test_s3.py.
"""

import asyncio
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def _main(listen: int, target: int, delay: float) -> None:
    async def handle(cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        sr, sw = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(_pipe(cr, sw, delay), _pipe(sr, cw, 0.0))

    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
