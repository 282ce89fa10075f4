#!/usr/bin/env python3
"""WebSocket peer for tern's tests: Python's `websockets` (not written here).

    ws_echo_server.py --port 18082 [--tls-port 18449 --cert CHAIN.pem --key KEY.pem
                      [--mtls-port 18450 --client-ca CLIENT_CA.pem]]

Serves ws:// on 127.0.0.1:PORT; with --tls-port, wss:// on 127.0.0.1:TLS_PORT (the
test PKI's `localhost` leaf, so clients trust $TERN_TEST_CA; ALPN http/1.1 only);
with --mtls-port, wss:// that requires a client certificate issued by CLIENT_CA.
Runs until SIGTERM/SIGINT. Routes (the path; query parameters as shown):

  /health               plain HTTP 200 "ok" (no upgrade): the readiness check
  /echo                 every message back, text as text, binary as binary
  /headers              first a text message: JSON [[name, value], ...] of the
                        upgrade request's headers, as received; then echo
  /subprotocol          picks "chat.v2" or else "chat.v1" from what the client
                        offers (none: no subprotocol); sends the choice (or "")
                        as a text message; then echo
  /cookie               the 101 response carries Set-Cookie: wsc=1; Path=/; echo
  /reject               no upgrade: 403 with body "forbidden\\n"
  /auth                 401 unless an Authorization header came; then echo
  /close?code=N&reason=R  closes at once with that code and reason
  /fragments            sends "frag-" "mented " "text" as one fragmented text
                        message, then b"\\x00\\x01" b"\\x02" as one fragmented
                        binary message; then echo
  /big?n=N              sends one binary message of N bytes of b"x"; then echo
  /ping?every=MS        pings every MS milliseconds (payload "srv"); echo
  /peer                 a text message: the client certificate's subject as JSON
                        ("null" without one); then echo
  /silent               sends nothing, answers pings (websockets does), waits
                        for the client to close

permessage-deflate stays enabled as websockets ships it: it is only used when the
client offers it, which tern does not (a test asserts no extension is in the 101).
"""

import argparse
import asyncio
import json
import signal
import ssl
import sys
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

SUBPROTOCOLS = ["chat.v2", "chat.v1"]
MAX_SIZE = 64 * 1024 * 1024


def route(path):
    u = urlsplit(path)
    return u.path, {k: v[-1] for k, v in parse_qs(u.query).items()}


def select_subprotocol(connection, offered):
    path, _ = route(connection.request.path)
    if path != "/subprotocol":
        return None
    for p in SUBPROTOCOLS:
        if p in offered:
            return p
    return None


def process_request(connection, request):
    path, _ = route(request.path)
    if path == "/health":
        return connection.respond(HTTPStatus.OK, "ok\n")
    if path == "/reject":
        return connection.respond(HTTPStatus.FORBIDDEN, "forbidden\n")
    if path == "/auth" and "Authorization" not in request.headers:
        resp = connection.respond(HTTPStatus.UNAUTHORIZED, "who are you?\n")
        resp.headers["WWW-Authenticate"] = 'Basic realm="ws"'
        return resp
    return None


def process_response(connection, request, response):
    path, _ = route(request.path)
    if path == "/cookie" and response.status_code == 101:
        response.headers["Set-Cookie"] = "wsc=1; Path=/"
    return None


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def pinger(ws, every_ms):
    while True:
        await asyncio.sleep(every_ms / 1000)
        await ws.ping(b"srv")


async def handler(ws):
    path, q = route(ws.request.path)
    try:
        if path == "/headers":
            await ws.send(json.dumps([[k, v] for k, v in ws.request.headers.raw_items()]))
        elif path == "/subprotocol":
            await ws.send(ws.subprotocol or "")
        elif path == "/peer":
            cert = ws.transport.get_extra_info("peercert")
            await ws.send(json.dumps(cert and cert.get("subject")))
        elif path == "/close":
            await ws.close(int(q.get("code", "1000")), q.get("reason", ""))
            return
        elif path == "/fragments":
            await ws.send(["frag-", "mented ", "text"])
            await ws.send([b"\x00\x01", b"\x02"])
        elif path == "/big":
            await ws.send(b"x" * int(q["n"]))
        elif path == "/ping":
            task = asyncio.create_task(pinger(ws, int(q.get("every", "100"))))
            try:
                await echo(ws)
            finally:
                task.cancel()
            return
        elif path == "/silent":
            await ws.wait_closed()
            return
        elif path not in ("/echo", "/cookie", "/auth"):
            await ws.close(1008, "unknown path")
            return
        await echo(ws)
    except ConnectionClosed:
        pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls-port", type=int)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--mtls-port", type=int)
    ap.add_argument("--client-ca")
    a = ap.parse_args()

    common = dict(
        select_subprotocol=select_subprotocol,
        process_request=process_request,
        process_response=process_response,
        max_size=MAX_SIZE,
        ping_interval=None,  # deterministic: only /ping pings
        close_timeout=2,
    )
    servers = [await serve(handler, a.host, a.port, **common)]
    urls = [f"ws://{a.host}:{a.port}"]
    def tls_context(client_ca=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.cert, a.key)
        ctx.set_alpn_protocols(["http/1.1"])
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        return ctx

    if a.tls_port:
        ctx = tls_context()
        servers.append(await serve(handler, a.host, a.tls_port, ssl=ctx, **common))
        urls.append(f"wss://{a.host}:{a.tls_port}")
    if a.mtls_port:
        ctx = tls_context(a.client_ca)
        servers.append(await serve(handler, a.host, a.mtls_port, ssl=ctx, **common))
        urls.append(f"wss://{a.host}:{a.mtls_port} (client certificate required)")
    print("ws_echo_server: " + " ".join(urls), flush=True)

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    await stop
    for s in servers:
        s.close()
    await asyncio.gather(*(s.wait_closed() for s in servers))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
