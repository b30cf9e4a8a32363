"""Real servers on loopback standing in for the outside world: an SMTP server
(aiosmtpd) that keeps what it receives, and an HTTP server that speaks the
Telegram Bot API's sendMessage contract and answers as it is told."""

import email
import email.policy
import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpSink:
    """Accepts mail and keeps it parsed in `messages`, numbered by the SMTP
    connection it came over; `reply_rcpt`/`reply_data`
    make it answer RCPT or DATA with a given SMTP reply instead; `delay` slows
    each DATA down."""

    def __init__(self):
        self.messages = []
        self.connections = 0
        self.reply_rcpt = None
        self.reply_data = None
        self.delay = 0.0
        self.lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    @property
    def port(self):
        return self.controller.port

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.reply_rcpt:
            return self.reply_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            time.sleep(self.delay)
        if self.reply_data:
            return self.reply_data
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            if not hasattr(session, "connection_number"):
                self.connections += 1
                session.connection_number = self.connections
            connection = session.connection_number
            self.messages.append({"to": list(envelope.rcpt_tos), "message": message, "connection": connection})
        return "250 Message accepted"

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()


class FakeTelegram:
    """POST /bot<token>/sendMessage. Answers, in turn, from `script` (a deque of
    "ok", "hang", (status, description), (429, retry_after), or ("raw", status,
    body) for a body that is not the Bot API's); "ok" when empty.
    Every request is kept in `requests` with its arrival time."""

    def __init__(self, token):
        self.token = token
        self.script = deque()
        self.requests = []
        self.hang_seconds = 5.0
        self.lock = threading.Lock()
        self.next_message_id = 1
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                with fake.lock:
                    fake.requests.append({"path": self.path, "json": body, "at": time.monotonic()})
                    answer = fake.script.popleft() if fake.script else "ok"
                    message_id = fake.next_message_id
                    fake.next_message_id += 1
                if self.path != f"/bot{fake.token}/sendMessage":
                    return self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                if answer == "hang":
                    time.sleep(fake.hang_seconds)
                    return self._reply(200, {"ok": True, "result": {"message_id": message_id}})
                if answer == "ok":
                    chat = {"id": int(body["chat_id"])}
                    return self._reply(200, {"ok": True, "result": {"message_id": message_id, "chat": chat}})
                if answer[0] == "raw":
                    return self._reply(answer[1], answer[2])
                status, detail = answer
                if status == 429:
                    return self._reply(
                        429,
                        {
                            "ok": False,
                            "error_code": 429,
                            "description": f"Too Many Requests: retry after {detail}",
                            "parameters": {"retry_after": detail},
                        },
                    )
                self._reply(status, {"ok": False, "error_code": status, "description": detail})

            def _reply(self, status, payload):
                raw = isinstance(payload, str)
                data = payload.encode() if raw else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def sent_texts(self):
        return [r["json"]["text"] for r in self.requests]

    def start(self):
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
