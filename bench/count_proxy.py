#!/usr/bin/env python3
"""A TCP proxy on loopback that counts every byte in both directions, for wire benchmarks.

Usage: count_proxy.py LISTEN_PORT UPSTREAM_HOST:PORT COUNT_FILE
Writes "<up> <down>" (bytes client->server, server->client) to COUNT_FILE after every chunk.
"""
import asyncio
import sys

listen_port, upstream, count_file = int(sys.argv[1]), sys.argv[2], sys.argv[3]
host, port = upstream.rsplit(":", 1)
totals = [0, 0]


def save():
    with open(count_file, "w") as f:
        f.write(f"{totals[0]} {totals[1]}\n")


async def pipe(reader, writer, index):
    try:
        while data := await reader.read(65536):
            totals[index] += len(data)
            save()
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    server_reader, server_writer = await asyncio.open_connection(host, int(port))
    await asyncio.gather(
        pipe(client_reader, server_writer, 0),
        pipe(server_reader, client_writer, 1),
        return_exceptions=True,
    )


async def main():
    save()
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
