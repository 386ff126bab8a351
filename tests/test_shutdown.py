"""Graceful shutdown of a real `switchyard serve` process on SIGTERM: liveness turns 503, new
requests get an OpenAI error, a stream in flight finishes, or at the drain timeout ends with
an error event; then the process exits."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import yaml

from experts.loopback import Behaviour
from switchyard.demo import expert_config
from switchyard.process import GatewayProcess

SHORT = {"model": "short", "stream": True, "messages": [{"role": "user", "content": "count slowly to ten please"}]}
LONG = {**SHORT, "model": "long"}


def _gateway(tmp: Path, expert_url: str, drain_s: float) -> GatewayProcess:
    config = tmp / "gateway.yaml"  # no router: no embedding model to load, so it starts fast
    config.write_text(yaml.safe_dump({"experts": expert_config(["short", "long"], expert_url.removesuffix("/v1")),
                                      "shutdown": {"drain_timeout_s": drain_s}, "health": {"enabled": False}}))
    return GatewayProcess(config, tmp / "gateway.log")


def _stream_in_background(url: str, body: dict) -> tuple[threading.Thread, list[str], threading.Event]:
    lines: list[str] = []
    first = threading.Event()

    def run() -> None:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
            for ln in r.iter_lines():
                if ln:
                    lines.append(ln)
                    first.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, lines, first


def test_sigterm_drains_in_flight_streams_and_refuses_new_requests(loopback, tmp_path) -> None:
    url, state = loopback
    state.behaviours["short"] = Behaviour(chunks=6, chunk_delay_s=0.25)  # 1.5 s: ends within the drain
    state.behaviours["long"] = Behaviour(chunks=20, chunk_delay_s=1.5)  # 7 words, 10 s: outlasts it
    with _gateway(tmp_path, url, drain_s=4.0) as gw:
        streams = [_stream_in_background(gw.url, body) for body in (SHORT, LONG)]
        assert all(first.wait(10) for _, _, first in streams)
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        assert httpx.get(f"{gw.url}/health/live").status_code == 503
        assert httpx.get(f"{gw.url}/health/ready").json()["status"] == "shutting_down"
        refused = httpx.post(f"{gw.url}/v1/chat/completions", json={**SHORT, "stream": False})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down"
        for t, _, _ in streams:
            t.join(15)
            assert not t.is_alive()
        (_, short, _), (_, long, _) = streams
        assert short[-1] == "data: [DONE]" and len(short) >= 6
        assert long[-1].startswith("data: {") and json.loads(long[-1].removeprefix("data: "))["error"]["code"] == "shutting_down" and len(long) < 7
        assert gw.proc.wait(15) is not None
    assert "Traceback" not in (tmp_path / "gateway.log").read_text()


def test_served_keep_alive_comes_from_the_config(tmp_path: Path) -> None:
    """`keep_alive_s` reaches uvicorn: at keep_alive_s = 2 an idle client connection outlives
    0.5 s and is closed about 2 s after its last answer, well before uvicorn's own 5 s default."""
    import socket

    config = tmp_path / "gateway.yaml"  # no router: starts fast; one (never called) expert makes it ready
    config.write_text(yaml.safe_dump({"keep_alive_s": 2, "health": {"enabled": False},
                                      "experts": expert_config(["short"], "http://127.0.0.1:9")}))

    def response(sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, body = data.split(b"\r\n\r\n", 1)
        length = next(int(v) for k, _, v in (ln.partition(b":") for ln in head.split(b"\r\n")) if k.lower() == b"content-length")
        while len(body) < length:
            body += sock.recv(4096)
        return head

    with GatewayProcess(config, tmp_path / "gateway.log") as gw:
        request = f"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n\r\n".encode()
        with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as sock:
            sock.sendall(request)
            assert response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)
            sock.sendall(request)  # still open after 0.5 s idle: the same connection answers
            assert response(sock).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            assert sock.recv(4096) == b""  # then the server closes it, once idle for keep_alive_s
            assert 1.0 < time.monotonic() - started < 4.5  # 2 s, not uvicorn's default 5 s
