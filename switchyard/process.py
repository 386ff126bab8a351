"""Run `switchyard serve` as a child process (benchmarks measure a gateway that does not share
the client's interpreter and GIL)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from switchyard.threaded import free_port


class GatewayProcess:
    def __init__(self, config: Path, log: Path, port: int | None = None, ready_timeout: float = 120.0, args: tuple[str, ...] = ()) -> None:
        self.config, self.log, self.port, self.args = config, log, port or free_port(), args
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayProcess:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "switchyard.cli", "serve", "--config", str(self.config),
                                          "--port", str(self.port), *self.args], stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}: {self.log.read_text()[-500:]}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"gateway not ready after {self.ready_timeout:.0f} s; log: {self.log}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
