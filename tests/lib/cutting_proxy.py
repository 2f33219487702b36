# -*- coding: utf-8 -*-
"""A network that breaks off mid-transfer, for tests::

    with CuttingProxy(upstream_port=server.port, cut_after=100000) as proxy:
        ...  # talk to 127.0.0.1:proxy.port instead of the server

A TCP proxy on a free 127.0.0.1 port, relaying every connection to the upstream port; once a
connection has carried ``cut_after`` bytes from the server to the client it is dropped (both
sides shut down), as when a cable is pulled halfway through a download. Reconnections are cut
the same way, so retries cannot hide the break. Threads only; closed with the context.
"""

from __future__ import absolute_import, division, print_function

import socket
import threading

RECV_BYTES = 64 * 1024


class CuttingProxy(object):
    def __init__(self, upstream_port, cut_after):
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.cuts = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.closed = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.closed:
            try:
                client, _address = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client):
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
        except OSError:
            _drop(client)
            return
        upstream.settimeout(None)
        threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
        self._pump(upstream, client, self.cut_after)

    def _pump(self, source, target, limit):
        sent = 0
        try:
            while True:
                data = source.recv(RECV_BYTES)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    target.sendall(data[:max(0, limit - sent)])
                    self.cuts += 1
                    break
                target.sendall(data)
                sent += len(data)
        except OSError:
            pass
        finally:
            _drop(source)
            _drop(target)

    def close(self):
        self.closed = True
        _drop(self.listener)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _drop(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
