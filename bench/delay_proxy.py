#!/usr/bin/env python3
"""A latency injector for the remote-engine benchmark (stdlib only).

Listens on 127.0.0.1:PORT and forwards every connection to the engine's
unix socket, delaying each direction by half the round-trip time: a chunk
read at time t is written at t + RTT/2, in order, so the byte stream of
either direction is unchanged (HTTP, and the hijacked streams of docker
attach and exec alike) and only its timing moves. An end of stream is
passed on the same way (a half-close: `docker exec -i` closes its stdin
like this). Bounded: at most MAX_CONNS connections at once and at most
MAX_QUEUED chunks of at most CHUNK bytes held per direction (a full queue
stops reading, so a slow reader slows the writer as it would on a link).

  delay_proxy.py --port PORT --rtt-ms 20 [--socket /var/run/docker.sock]

Prints "listening PORT" on stdout once ready; ends on SIGTERM or SIGINT.
"""

import argparse
import asyncio
import signal
import sys

CHUNK = 256 * 1024
MAX_QUEUED = 64  # chunks per direction: at most 16 MiB in flight
MAX_CONNS = 256


async def pump(reader, writer, delay, loop):
    """Copies reader to writer, each chunk `delay` seconds after it was read."""
    q = asyncio.Queue(MAX_QUEUED)

    async def read_side():
        try:
            while True:
                b = await reader.read(CHUNK)
                await q.put((loop.time() + delay, b))
                if not b:
                    return
        except (ConnectionError, OSError):
            await q.put((loop.time() + delay, b""))

    async def write_side():
        try:
            while True:
                due, b = await q.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not b:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(b)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    r = asyncio.ensure_future(read_side())
    try:
        await write_side()
    finally:
        r.cancel()


async def handle(client_r, client_w, args, slots, loop):
    if slots.locked():
        client_w.close()
        return
    async with slots:
        try:
            engine_r, engine_w = await asyncio.open_unix_connection(args.socket)
        except OSError as e:
            print(f"delay_proxy: cannot reach {args.socket}: {e}", file=sys.stderr)
            client_w.close()
            return
        half = args.rtt_ms / 2000.0
        try:
            await asyncio.gather(pump(client_r, engine_w, half, loop),
                                 pump(engine_r, client_w, half, loop))
        finally:
            for w in (client_w, engine_w):
                try:
                    w.close()
                except OSError:
                    pass


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rtt-ms", type=float, required=True)
    ap.add_argument("--socket", default="/var/run/docker.sock")
    args = ap.parse_args()
    if not 0 <= args.rtt_ms <= 10_000:
        ap.error("--rtt-ms must be between 0 and 10000")
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(MAX_CONNS)
    server = await asyncio.start_server(lambda r, w: handle(r, w, args, slots, loop),
                                        "127.0.0.1", args.port, limit=CHUNK)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
