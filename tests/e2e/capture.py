"""Local stand-ins for Discord's webhook API and Telegram's Bot API, for tests only.

They accept what the real services accept and refuse what they refuse where
pgmon could get it wrong: the webhook id/token or bot token in the path, JSON
bodies, and the message length limits (Discord content 2000 and embed
description 4096 characters; Telegram text 4096). A test can make either refuse
chosen messages as past its rate limit (429). Every message is recorded.
They bind to the address the caller gives (loopback or the tests' Docker
bridge) and never forward anything.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    body: dict
    at: float  # time.monotonic() when it arrived

    @property
    def text(self) -> str:
        """Everything a person would read in the message."""
        if "text" in self.body:  # Telegram
            return self.body["text"]
        parts = [self.body.get("content") or ""]
        for embed in self.body.get("embeds") or []:
            parts += [embed.get("title") or "", embed.get("description") or ""]
        return "\n".join(parts)


class _Capture(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler, secret: str):
        super().__init__(address, handler)
        self.secret = secret
        self.received: list[Received] = []
        self.rate_limited: list[Received] = []
        self.rate_limit = lambda message: False
        self.lock = threading.Lock()

    def take(self, message: Received) -> int | None:
        """The number of ``message`` among those received, or None when the rate limit refused it."""
        with self.lock:
            if self.rate_limit(message):
                self.rate_limited.append(message)
                return None
            self.received.append(message)
            return len(self.received)


class _Handler(BaseHTTPRequestHandler):
    server: _Capture

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def _reply(self, status: int, payload: dict | None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict | None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            return json.loads(raw)
        except ValueError:
            return None


class _DiscordHandler(_Handler):
    def do_POST(self) -> None:
        if self.path.split("?")[0] != f"/api/webhooks/{self.server.secret}":
            return self._reply(401, {"message": "Invalid Webhook Token", "code": 50027})
        body = self._body()
        if body is None:
            return self._reply(400, {"message": "Cannot send an empty message", "code": 50006})
        too_long = len(body.get("content") or "") > 2000 or any(
            len(e.get("description") or "") > 4096 or len(e.get("title") or "") > 256
            for e in body.get("embeds") or []
        )
        if too_long:
            return self._reply(400, {"message": "Invalid Form Body", "code": 50035})
        if self.server.take(Received(self.path, body, time.monotonic())) is None:
            return self._reply(
                429, {"message": "You are being rate limited.", "retry_after": 1.0, "global": False}
            )
        self._reply(204, None)


class _TelegramHandler(_Handler):
    def do_POST(self) -> None:
        if self.path.split("?")[0] != f"/bot{self.server.secret}/sendMessage":
            return self._reply(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        body = self._body()
        if body is None or "chat_id" not in body or not body.get("text"):
            return self._reply(
                400,
                {
                    "ok": False,
                    "error_code": 400,
                    "description": "Bad Request: message text is empty",
                },
            )
        if len(body["text"]) > 4096:
            return self._reply(
                400,
                {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"},
            )
        try:
            chat_id = int(body["chat_id"])  # clients send it as a string or a number
        except ValueError:
            return self._reply(
                400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
            )
        message_id = self.server.take(Received(self.path, body, time.monotonic()))
        if message_id is None:
            return self._reply(
                429,
                {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                },
            )
        # The shape of Telegram's answer: clients parse "result" as a Message.
        self._reply(
            200,
            {
                "ok": True,
                "result": {
                    "message_id": message_id,
                    "date": int(time.time()),
                    "text": body["text"],
                    "from": {
                        "id": 4242,
                        "is_bot": True,
                        "first_name": "pgmon",
                        "username": "pgmon_test_bot",
                    },
                    "chat": {"id": chat_id, "title": "pgmon test", "type": "supergroup"},
                },
            },
        )


class CaptureServer:
    """A running stand-in; ``secret`` is the webhook "id/token" (Discord) or bot token (Telegram)."""

    def __init__(self, kind: str, bind: str, secret: str):
        self.kind = kind
        handler = {"discord": _DiscordHandler, "telegram": _TelegramHandler}[kind]
        self._server = _Capture((bind, 0), handler, secret)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def received(self) -> list[Received]:
        with self._server.lock:
            return list(self._server.received)

    @property
    def rate_limited(self) -> list[Received]:
        """The messages refused by ``rate_limit``."""
        with self._server.lock:
            return list(self._server.rate_limited)

    def rate_limit(self, predicate) -> None:
        """Refuse the messages matching ``predicate`` as the service does past its rate limit (429); ``None``
        for none. Alertmanager gives up on Discord's 429 at once and retries Telegram's."""
        with self._server.lock:
            self._server.rate_limit = predicate or (lambda message: False)

    def clear(self) -> None:
        with self._server.lock:
            self._server.received.clear()
            self._server.rate_limited.clear()

    def wait_for(self, predicate, timeout: float) -> Received:
        """The first message matching ``predicate``, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.received:
                if predicate(message):
                    return message
            time.sleep(0.2)
        raise AssertionError(
            f"no matching message within {timeout:.0f}s; received: {[m.text[:200] for m in self.received]}"
        )

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
