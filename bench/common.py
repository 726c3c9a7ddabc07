"""Shared pieces of the benchmarks: a server process, wrk, tables, the machine."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine() -> str:
    """Cores, memory and CPU model, for the report."""
    mem_kib = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({model}), {mem_kib / 1024 / 1024:.0f} GiB memory"


def command_line() -> str:
    """The command that produced this run, as a person would type it."""
    if sys.argv[0].endswith("__main__.py"):
        return " ".join(sys.argv)
    script = Path(sys.argv[0]).resolve().with_suffix("")
    # ``python -m bench.api`` sets argv[0] to the file: name the module, not the file.
    module = (
        ".".join(script.relative_to(ROOT).parts) if script.is_relative_to(ROOT) else script.name
    )
    return "python -m " + " ".join([module, *sys.argv[1:]])


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@contextlib.contextmanager
def server(env: dict[str, str], *, port: int | None = None) -> Iterator[tuple[str, int]]:
    """Run ``vidlib serve`` in a subprocess; yields (base URL, pid)."""
    port = port or free_port()
    full_env = {**os.environ, **env}
    proc = subprocess.Popen(
        [str(VENV_BIN / "vidlib"), "serve", "--port", str(port)],
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"server exited early: {err[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 60 s")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class WrkResult:
    """What one wrk run measured."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unexpected latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def ensure_wrk() -> str:
    """The wrk binary (installed from Debian's packages when missing)."""
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and could not be installed")
    return found


def wrk(url: str, *, seconds: int, connections: int, headers: dict[str, str]) -> WrkResult:
    """Drive ``url`` at a fixed concurrency for a fixed time."""
    cmd = [ensure_wrk(), "-t", "2", "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    for k, v in headers.items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s*50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return WrkResult(rps, p50, p99, total, errors)


# -- helpers shared by the upload, ingest and soak benchmarks ------------------------------


def ensure_command(name: str, package: str) -> str:
    """The ``name`` binary, installed from Debian's ``package`` when missing."""
    found = shutil.which(name)
    if found:
        return found
    install = ["apt-get", "install", "-y", "-q", package]
    if subprocess.run(install, check=False, stdout=subprocess.DEVNULL).returncode != 0:
        # A fresh machine may not have the package lists yet.
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed and could not be installed ({package})")
    return found


def _status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM), in KiB; 0 if gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid: int) -> int:
    """The resident set size of process ``pid`` now, in KiB."""
    return _status_kib(pid, "VmRSS")


class RssSampler:
    """Samples a process's RSS on a thread; the peak also uses a reset VmHWM when allowed.

    Writing ``5`` to ``/proc/<pid>/clear_refs`` resets the kernel's high-water mark
    (VmHWM) to the current RSS, so after the measured work VmHWM is the exact peak
    *during* it, however short the spike; the sampled peak is the fallback.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.before_kib = 0
        self.peak_kib = 0
        self.after_kib = 0
        self._hwm_reset = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kib = max(self.peak_kib, rss_kib(self.pid))

    def __enter__(self) -> RssSampler:
        self.before_kib = rss_kib(self.pid)
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self.peak_kib = self.before_kib
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.after_kib = rss_kib(self.pid)
        self.peak_kib = max(self.peak_kib, self.after_kib)
        if self._hwm_reset:
            self.peak_kib = max(self.peak_kib, _status_kib(self.pid, "VmHWM"))

    @property
    def growth_kib(self) -> int:
        """Peak during the work minus the RSS before it."""
        return self.peak_kib - self.before_kib


def load_average() -> str:
    """The 1/5/15-minute load averages, for the report."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) by the nearest-rank method; 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def scratch_postgres(prefix: str, admin_dsn: str = ADMIN_DSN) -> Iterator[str]:
    """A fresh PostgreSQL database ``<prefix>_<random>``; yields its SQLAlchemy URL.

    Dropped at the end (``WITH (FORCE)`` closes any connection left open).
    """
    import asyncio
    import uuid

    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"

    async def execute(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    host = admin_dsn.removeprefix("postgresql://").rsplit("/", 1)[0]
    try:
        yield f"postgresql+asyncpg://{host}/{name}"
    finally:
        asyncio.run(execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def random_video_file(path: Path, size: int, chunk: int = 8 * 1024 * 1024) -> Path:
    """``size`` bytes that sniff as MP4 (an ``ftyp`` box, then random bytes), streamed to disk."""
    header = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    with path.open("wb") as f:
        f.write(header)
        left = size - len(header)
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n
    return path


def random_video_bytes(size: int) -> bytes:
    """Like :func:`random_video_file`, in memory, for small uploads."""
    header = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
    return header + os.urandom(max(0, size - len(header)))
