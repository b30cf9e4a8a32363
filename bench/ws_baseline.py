"""A minimal WebSocket broadcast server: the baseline that bench/fanout.py compares the hub with.

    .venv/bin/python bench/ws_baseline.py --port 8765 --publish-port 8766

Accepts any number of sockets at ws://127.0.0.1:PORT/ (no authentication, no
compression; pings every 20 s like Daphne). A request to
http://127.0.0.1:PUBLISH_PORT/ answers {"sockets": <open sockets>}; when it is
`POST /publish`, the server answers first and then sends the request body, as
one text message, to every open socket with `websockets.broadcast` (one
process, one event loop, no channel layer, no database). Stop it with SIGTERM
or Ctrl-C.
"""

import argparse
import asyncio
import contextlib
import resource
import signal

from websockets.asyncio.server import broadcast, serve

CLIENTS = set()


async def socket_handler(websocket):
    CLIENTS.add(websocket)
    try:
        await websocket.wait_closed()
    finally:
        CLIENTS.discard(websocket)


async def publish_handler(reader, writer):
    """Just enough HTTP/1.1 (keep-alive, Content-Length bodies) for an HTTP client."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.split(b"\r\n")
            length = 0
            for line in header_lines:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            payload = b'{"sockets": %d}' % len(CLIENTS)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (len(payload), payload)
            )
            if request_line.startswith(b"POST /publish "):
                broadcast(CLIENTS, body.decode())
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(args):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
    async with serve(
        socket_handler,
        args.host,
        args.port,
        compression=None,
        ping_interval=20,
        ping_timeout=30,
        backlog=1024,
    ):
        publisher = await asyncio.start_server(publish_handler, args.host, args.publish_port)
        async with publisher:
            await stop


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="WebSocket port (default 8765)")
    parser.add_argument("--publish-port", type=int, default=8766, help="HTTP publish port (default 8766)")
    raise_nofile()
    asyncio.run(main(parser.parse_args()))
