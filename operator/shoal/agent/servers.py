"""What the session's Service points at: TensorBoard on 6006 and the live stream on 8000.

TensorBoard is the real server from PyPI, run as a child over the checkpoint volume's event files.
The stream is hand-written because nothing on PyPI serves MJPEG from a file without a web framework:
`/stream` is `multipart/x-mixed-replace` (any browser shows it in an <img>), `/` a page that shows it
with the recorded episodes, `/videos/NAME` the recordings.
"""

from __future__ import annotations

import html
import importlib.util
import json
import logging
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

log = logging.getLogger("shoal.agent.servers")
MAX_VIEWERS = 8


def start_tensorboard(logdir: Path, host: str, port: int) -> subprocess.Popen[bytes] | None:
    if not port or importlib.util.find_spec("tensorboard") is None:
        return None
    logdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host]
    cmd += ["--port", str(port), "--reload_interval", "5"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class StreamServer:
    def __init__(self, host: str, port: int, frame: Path, videos: Path, fps: float = 15.0) -> None:
        self.frame, self.videos, self.period = frame, videos, 1.0 / fps
        self.viewers = threading.BoundedSemaphore(MAX_VIEWERS)
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def start(self) -> None:
        threading.Thread(target=self.httpd.serve_forever, name="stream", daemon=True).start()

    def stop(self) -> None:
        """Stop serving and close the listening socket: a warm pod's next session binds the same port."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def recordings(self) -> list[str]:
        return sorted(p.name for p in self.videos.glob("*.mp4")) if self.videos.is_dir() else []

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # quiet: viewers poll often
                log.debug(format, *args)

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path == "/stream":
                    self._stream()
                elif path == "/":
                    items = "".join(
                        f'<li><a href="/videos/{html.escape(n)}">{html.escape(n)}</a></li>'
                        for n in server.recordings()
                    )
                    page = (
                        "<!doctype html><title>Shoal training stream</title>"
                        '<body style="margin:0;background:#222;color:#eee;font-family:sans-serif">'
                        '<img id="live" src="/stream" style="display:block;width:600px">'
                        f"<ul>{items}</ul></body>"
                    )
                    self._send(200, "text/html; charset=utf-8", page.encode())
                elif path == "/videos":
                    self._send(200, "application/json", json.dumps(server.recordings()).encode())
                elif path.startswith("/videos/") and path[8:] in server.recordings():
                    self._send(200, "video/mp4", (server.videos / path[8:]).read_bytes())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _stream(self) -> None:
                if not server.viewers.acquire(blocking=False):
                    self._send(503, "text/plain", f"at most {MAX_VIEWERS} viewers\n".encode())
                    return
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                    self.send_header("Cache-Control", "no-cache")
                    self.end_headers()
                    sent = -1.0
                    while True:
                        try:
                            mtime = server.frame.stat().st_mtime
                            jpeg = server.frame.read_bytes() if mtime != sent else b""
                        except OSError:
                            jpeg = b""
                        if jpeg:
                            sent = mtime
                            head = (
                                f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                            )
                            self.wfile.write(head.encode() + jpeg + b"\r\n")
                            self.wfile.flush()
                        time.sleep(server.period)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the viewer left
                finally:
                    server.viewers.release()

        return Handler
