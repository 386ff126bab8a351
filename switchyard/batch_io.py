"""Batch job files: OpenAI's batch input lines in, OpenAI's batch output lines out, and the
append-only progress log that makes a job resumable.

Input line:  {"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
Output line: {"id": "batch_req_...", "custom_id": "...",
              "response": {"status_code": 200, "request_id": "req_...", "body": {..., "routing": {...}}},
              "error": null}
A line that cannot run (invalid JSON, no or a duplicate custom_id, another url, a bad body)
gets `"response": null, "error": {"code", "message", "line"}`; a request that ran and failed
gets its HTTP status and an OpenAI error body, as the gateway would have answered it.

Progress: every finished line is appended to OUT.progress as {"i", "key", "record"} (key =
the hash of the input line, so an edited line runs again) and flushed; a rerun skips the
lines found there. When all lines are done, OUT is written in input order to a temporary
file and renamed over OUT (atomic), and the progress log is removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from gateway.errors import error_body
from gateway.schemas import ChatCompletionRequest

URL = "/v1/chat/completions"


@dataclass
class Line:
    index: int  # position among the request lines; output order
    number: int  # line number in the file, for messages
    key: str  # hash of the raw line
    custom_id: str | None
    request: ChatCompletionRequest | None = None
    error: tuple[str, str] | None = None  # (code, message) when the line cannot run


def _parse(index: int, number: int, raw: bytes, seen: set[str]) -> Line:
    line = Line(index, number, hashlib.sha256(raw).hexdigest(), None)

    def bad(code: str, message: str) -> Line:
        line.error = (code, message)
        return line

    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return bad("invalid_json", f"line {number} is not valid JSON: {exc}")
    if not isinstance(data, dict):
        return bad("invalid_json", f"line {number} is not a JSON object")
    cid = data.get("custom_id")
    if not isinstance(cid, str) or not cid:
        return bad("missing_custom_id", f"line {number} has no custom_id (a non-empty string)")
    line.custom_id = cid
    if cid in seen:
        return bad("duplicate_custom_id", f"line {number}: custom_id {cid!r} appears on an earlier line")
    seen.add(cid)
    if data.get("method", "POST") != "POST":
        return bad("invalid_method", f"line {number}: method must be POST")
    if data.get("url", URL) != URL:
        return bad("invalid_url", f"line {number}: url must be {URL}, not {data.get('url')!r}")
    body = data.get("body")
    if not isinstance(body, dict):
        return bad("invalid_body", f"line {number}: body must be a JSON object")
    try:
        line.request = ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        return bad("invalid_body", f"line {number}: body.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
    if line.request.stream:
        line.request = None
        return bad("invalid_body", f"line {number}: stream is not available in batch jobs")
    return line


def read_lines(path: Path) -> list[Line]:
    """Every non-blank line of the input, parsed; bad lines carry their error instead of failing the file."""
    try:
        raw_lines = path.read_bytes().split(b"\n")
    except FileNotFoundError:
        raise ValueError(f"input file not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"input is a folder, not a JSONL file: {path}") from None
    seen: set[str] = set()
    lines = [_parse(0, n, raw.strip(), seen) for n, raw in enumerate(raw_lines, 1) if raw.strip()]
    if not lines:
        raise ValueError(f"{path}: no request lines")
    for i, line in enumerate(lines):
        line.index = i
    return lines


def _record(line: Line, response: dict[str, Any] | None, error: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": f"batch_req_{uuid.uuid4().hex}", "custom_id": line.custom_id, "response": response, "error": error}


def line_error(line: Line) -> dict[str, Any]:
    assert line.error is not None
    code, message = line.error
    return _record(line, None, {"code": code, "message": message, "line": line.number})


def response_record(line: Line, status: int, body: dict[str, Any]) -> dict[str, Any]:
    return _record(line, {"status_code": status, "request_id": f"req_{uuid.uuid4().hex}", "body": body}, None)


def failure_record(line: Line, status: int, message: str, code: str | None, routing: dict[str, Any] | None = None) -> dict[str, Any]:
    body = error_body(status, message, code=code)
    if routing is not None:
        body["routing"] = routing  # which expert the line was routed to, as on a success
    return response_record(line, status, body)


def retryable(record: dict[str, Any]) -> bool:
    """A server-side failure (5xx: expert down, model failed to load) worth running again."""
    response = record.get("response")
    return bool(response) and int(response.get("status_code", 0)) >= 500


def finished_output(out: Path, lines: list[Line]) -> dict[int, tuple[str, dict[str, Any]]]:
    """A finished OUT's records, line by line, where the custom_id still matches the input's."""
    done = {}
    for i, raw in enumerate(out.read_text(encoding="utf-8").splitlines()):
        try:
            record = json.loads(raw)
        except ValueError:
            continue
        if i < len(lines) and isinstance(record, dict) and record.get("custom_id") == lines[i].custom_id:
            done[i] = (lines[i].key, record)
    return done


class ProgressLog:
    """The append-only log of finished lines next to OUT; one writer at a time (flock)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out.with_name(out.name + ".progress")
        self._file: IO[bytes] | None = None

    def open(self) -> dict[int, tuple[str, dict[str, Any]]]:
        """Lock the log and return what it holds: line index -> (key, record), the last entry winning."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+b")  # noqa: SIM115 - held open (and locked) for the whole job
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise ValueError(f"another batch job is writing {self.out} (its progress log {self.path} is locked)") from None
        f.seek(0)
        data = f.read()
        if data and not data.endswith(b"\n"):  # a write cut short by a kill: drop the torn tail
            data = data[: data.rfind(b"\n") + 1]
            f.truncate(len(data))
        done: dict[int, tuple[str, dict[str, Any]]] = {}
        for raw in data.splitlines():
            try:
                entry = json.loads(raw)
                done[int(entry["i"])] = (str(entry["key"]), entry["record"])
            except (ValueError, KeyError, TypeError):
                continue
        self._file = f
        return done

    def append(self, line: Line, record: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write((json.dumps({"i": line.index, "key": line.key, "record": record}) + "\n").encode())
        self._file.flush()  # in the OS once written: a killed process loses nothing it reported done

    def finalize(self, records: list[dict[str, Any]]) -> None:
        """Write OUT in input order, atomically, then drop the log."""
        tmp = self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.out)
        self.path.unlink(missing_ok=True)
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
