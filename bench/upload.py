"""Measure how much the web process's memory grows while it takes one very large upload.

Run from the repository root (Redis must be running; the job is queued, no worker is started):

    .venv/bin/python bench/upload.py                        # a 1024 MB wav (about 100 minutes)
    .venv/bin/python bench/upload.py --mb 200 --port 8201
    .venv/bin/python bench/upload.py --redis-url redis://127.0.0.1:6379/11

It writes a 16-bit stereo 44.1 kHz wav of the given size to disk in 1 MB pieces, starts daphne as
production runs it (bench/live_site.py: DEBUG off, a SECRET_KEY, STEMSITE_HTTPS=false, its own
SQLite database and media folder in a temporary folder, a Redis database it flushes; here with
the upload and duration limits raised to let the file in),
logs a user in through the login page and posts the file through the real upload form, streamed
from disk in 1 MB pieces so the client never holds it either. A thread reads daphne's VmRSS and
VmHWM from /proc/PID/status every 50 ms. Printed: baseline (after a warm-up page load), peak
during the upload, growth (peak - baseline; the target is under 50 MB), RSS a few seconds after
the answer, and how long the upload took from the first byte sent to the answer.
Not part of the test suite.
"""

import argparse
import http.client
import re
import secrets
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from live_site import DEFAULT_REDIS_URL, Site

RATE = 44100
MB = 1024 * 1024
CHUNK = MB


def write_wav(path: Path, megabytes: int) -> float:
    """A 16-bit stereo wav of `megabytes` MB, written piece by piece; returns its length in seconds."""
    frames = (megabytes * MB - 44) // 4
    data_bytes = frames * 4
    header = b"RIFF" + (36 + data_bytes).to_bytes(4, "little") + b"WAVEfmt "
    header += (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (2).to_bytes(2, "little")
    header += RATE.to_bytes(4, "little") + (RATE * 4).to_bytes(4, "little")
    header += (4).to_bytes(2, "little") + (16).to_bytes(2, "little")
    header += b"data" + data_bytes.to_bytes(4, "little")
    rng = np.random.default_rng(0)
    piece_frames = CHUNK // 4
    t = np.arange(piece_frames) / RATE
    with path.open("wb") as handle:
        handle.write(header)
        written = 0
        while written < frames:
            n = min(piece_frames, frames - written)
            tone = 0.3 * np.sin(2 * np.pi * 220 * (t[:n] + written / RATE))
            noise = 0.05 * rng.standard_normal((n, 2))
            samples = np.clip(tone[:, None] + noise, -1, 1)
            handle.write((samples * 32767).astype("<i2").tobytes())
            written += n
    return frames / RATE


class RssSampler(threading.Thread):
    """Reads VmRSS and VmHWM (kB) of one process every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int, int]] = []
        self.stopping = threading.Event()

    def read(self) -> tuple[int, int]:
        status = Path(f"/proc/{self.pid}/status").read_text()
        values = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE))
        return int(values["VmRSS"]), int(values["VmHWM"])

    def run(self) -> None:
        while not self.stopping.is_set():
            self.samples.append((time.monotonic(), *self.read()))
            self.stopping.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self.join()


class Browser:
    """Just enough of a browser for the login and upload forms: cookies and the CSRF token."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)

    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def keep_cookies(self, response: http.client.HTTPResponse) -> None:
        for header in response.headers.get_all("Set-Cookie") or []:
            name, value = header.split(";", 1)[0].split("=", 1)
            self.cookies[name.strip()] = value.strip()

    def get(self, path: str) -> tuple[int, str]:
        conn = self.connection()
        conn.request("GET", path, headers={"Cookie": self.cookie_header()})
        response = conn.getresponse()
        body = response.read().decode()
        self.keep_cookies(response)
        conn.close()
        return response.status, body

    def csrf_token(self, page: str) -> str:
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)

    def login(self, username: str, password: str) -> None:
        _, page = self.get("/accounts/login/")
        body = f"csrfmiddlewaretoken={self.csrf_token(page)}&username={username}&password={password}"
        conn = self.connection()
        conn.request("POST", "/accounts/login/", body=body, headers={
            "Cookie": self.cookie_header(), "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"http://127.0.0.1:{self.port}/accounts/login/",
        })  # fmt: skip
        response = conn.getresponse()
        response.read()
        self.keep_cookies(response)
        conn.close()
        if response.status != 302 or "sessionid" not in self.cookies:
            raise SystemExit(f"login failed: {response.status}")

    def upload(self, path: Path) -> tuple[int, str, float]:
        """Post the upload form with `path` as its file, read from disk piece by piece."""
        _, page = self.get("/")
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrfmiddlewaretoken"\r\n\r\n'
            f"{self.csrf_token(page)}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        conn = self.connection()
        started = time.monotonic()
        conn.putrequest("POST", "/jobs/new/")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + path.stat().st_size + len(tail)))
        conn.putheader("Cookie", self.cookie_header())
        conn.putheader("Referer", f"http://127.0.0.1:{self.port}/")
        conn.endheaders()
        conn.send(head)
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                conn.send(block)
        conn.send(tail)
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        seconds = time.monotonic() - started
        conn.close()
        location = response.headers.get("Location", "")
        if response.status != 302:
            errors = re.findall(r'class="[^"]*error[^"]*"[^>]*>([^<]+)<', body)
            location = "; ".join(e.strip() for e in errors) or body[:500]
        return response.status, location, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=1024, help="size of the uploaded wav in MB")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait before 'after'")
    parser.add_argument("--work", type=Path, help="keep files here instead of a temporary folder")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL, help="a Redis database it may flush")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stemsite-bench-upload-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        wav = work / "long.wav"
        started = time.monotonic()
        seconds = write_wav(wav, args.mb)
        print(f"wrote {wav.stat().st_size / MB:.0f} MB wav ({seconds / 60:.1f} min) "
              f"in {time.monotonic() - started:.1f} s")  # fmt: skip
        password = secrets.token_urlsafe(16)
        limits = {
            "STEMSITE_MAX_UPLOAD_MB": str(args.mb + 8),
            "STEMSITE_MAX_DURATION_SECONDS": str(int(seconds) + 600),
            "STEMSITE_STORAGE_QUOTA_MB": "0",
            "STEMSITE_UPLOADS_PER_HOUR": "0",
        }
        with Site("sqlite", work, "upload", args.redis_url, limits) as site:
            from django.contrib.auth import get_user_model

            get_user_model().objects.create_user("bench", password=password)
            site.start(args.port)
            browser = Browser(args.port)
            browser.login("bench", password)
            browser.get("/")  # warm-up: the upload page's imports and templates
            sampler = RssSampler(site.server_pids[0])
            baseline, hwm_before = sampler.read()
            sampler.start()
            status, where, took = browser.upload(wav)
            answered = time.monotonic()
            time.sleep(args.settle)
            sampler.stop()
            after, hwm = sampler.read()
        during = [rss for t, rss, _ in sampler.samples if t <= answered]
        # VmHWM catches a peak between two samples, once it passes the high-water mark of start-up.
        peak = max(*during, hwm if hwm > hwm_before else 0)
        print(f"answer: {status} {where}")
        print(f"upload of {args.mb} MB took {took:.1f} s ({args.mb / took:.0f} MB/s)")
        print(f"daphne RSS  baseline {baseline / 1024:7.1f} MB")
        print(f"            peak     {peak / 1024:7.1f} MB  ({len(during)} samples every 50 ms)")
        print(f"            growth   {(peak - baseline) / 1024:7.1f} MB  (target < 50 MB)")
        print(f"            after    {after / 1024:7.1f} MB  ({args.settle:g} s after the answer)")
        print(f"            VmHWM    {hwm / 1024:7.1f} MB  (high-water mark since daphne started)")
        if status != 302:
            raise SystemExit("the upload was not accepted")


if __name__ == "__main__":
    main()
