# -*- coding: utf-8 -*-
"""A TLS front for a plain-HTTP test server (moto_server), for clients that speak only HTTPS to S3 (pgBackRest).

    python tls_proxy.py CERT KEY LISTEN_PORT TARGET_PORT

moto_server's own TLS (werkzeug) closes connections without a TLS close_notify, which pgBackRest's
OpenSSL 3 reports as "unexpected eof while reading"; asyncio's TLS transport ends them properly.
Every client of the bench's S3 goes through it, so TLS costs all of them alike.
"""

from __future__ import absolute_import, division, print_function

import asyncio
import ssl
import sys

CHUNK = 256 * 1024


async def _pipe(reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


def _handler(target_port):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
    return handle


async def serve(cert, key, listen_port, target_port):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(_handler(target_port), "127.0.0.1", listen_port, ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
