"""Shared pytest fixtures: made-up text, the real files a few tests need, and a local HTTP server.

Tests never touch the internet, and all of them pass without it. Files the scripts would
download are served from 127.0.0.1 by `http_server`, which understands HTTP Range requests so
resumed downloads can be tested too. Text is made up by the tests (`made_up_text`).

A few tests need the real thing and ask for it with a fixture that skips when it is missing
(they are marked `real_data`; `python -m pytest -m real_data` runs only them):
  tiny_shakespeare  nanoGPT's exact token counts: TINY_SHAKESPEARE=<path of its input.txt>
  gpt2_bpe          tiktoken's GPT-2 encoding: TIKTOKEN_CACHE_DIR=<folder with tiktoken's GPT-2 files>
Tests that compare with transformers' GPT-2 skip without torch and transformers; those marked
`transformers` are selected with `python -m pytest -m transformers` in an environment that has them.
"""
import atexit
import functools
import hashlib
import http.server
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "demos"))  # the demos' modules, for their tests

# tiktoken keeps a downloaded file in its cache folder under the sha1 of the file's URL
GPT2_BPE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/"
GPT2_BPE_FILES = [hashlib.sha1((GPT2_BPE_URL + name).encode()).hexdigest() for name in ("vocab.bpe", "encoder.json")]
GPT2_BPE_DIR = os.environ.get("TIKTOKEN_CACHE_DIR", "")
# Only tests that ask for gpt2_bpe get tiktoken's cache: for every other test (and the scripts it
# runs) the cache is off, so one that needs GPT-2's BPE without asking fails offline instead of
# passing here on files an earlier run left behind.
os.environ["TIKTOKEN_CACHE_DIR"] = ""
# The scripts the tests run keep what JAX compiles in one folder of this session's (not the user's
# ~/.cache), small programs too: runs of the same shapes in later tests skip their compilation.
os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="gpt-jax-tests-xla-")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)


def pytest_configure(config):
    config.addinivalue_line("markers", "real_data: needs tiny Shakespeare or GPT-2's BPE files (skipped without them)")
    config.addinivalue_line("markers", "transformers: compares with transformers' GPT-2 (needs torch and transformers: "
                                       "pip install -r requirements-transformers.txt; skipped without them)")


def pytest_collection_modifyitems(items):
    for item in items:
        if {"tiny_shakespeare", "gpt2_bpe"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real_data)


@pytest.fixture
def tiny_shakespeare():
    """The path of tiny Shakespeare's input.txt, for tests of nanoGPT's exact token counts."""
    path = os.environ.get("TINY_SHAKESPEARE")
    if not path:
        pytest.skip("needs tiny Shakespeare: set TINY_SHAKESPEARE=<path of its input.txt>")
    if not os.path.isfile(path):
        pytest.fail(f"TINY_SHAKESPEARE={path} is not a file")
    return Path(path)


@pytest.fixture
def gpt2_bpe(monkeypatch):
    """tiktoken's GPT-2 encoding, read from TIKTOKEN_CACHE_DIR (also for the scripts the test runs)."""
    if not GPT2_BPE_DIR or not all(os.path.isfile(os.path.join(GPT2_BPE_DIR, name)) for name in GPT2_BPE_FILES):
        pytest.skip("needs GPT-2's BPE: set TIKTOKEN_CACHE_DIR=<folder with tiktoken's GPT-2 files>")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", GPT2_BPE_DIR)
    import tiktoken
    return tiktoken.get_encoding("gpt2")


WORDS = ("the king queen crown sword night day love death blood heart eye hand war peace lord lady "
         "speak come go stay fear hope true false sweet bitter old young gentle noble fair foul "
         "café naïve — “quoted” ünïcödé ✓ 日本語").split()


@pytest.fixture
def made_up_text():
    """made_up_text(n_chars, seed=0): seeded text of lines and paragraphs like a play's, ASCII with
    a few other characters, for tests that need text but not any text in particular."""
    def make(n_chars, seed=0):
        rng = np.random.default_rng(seed)
        paragraphs, size = [], 0
        while size < n_chars:
            speaker = rng.choice(["KING", "QUEEN", "FOOL", "GHOST"])
            lines = [" ".join(rng.choice(WORDS, rng.integers(3, 12))).capitalize() + rng.choice([".", ",", "!", "?"])
                     for _ in range(rng.integers(1, 6))]
            paragraphs.append(f"{speaker}:\n" + "\n".join(lines))
            size += len(paragraphs[-1]) + 2
        return "\n\n".join(paragraphs)[:n_chars]
    return make


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range `Range: bytes=N-[M]` support (206 replies)."""

    def log_message(self, *args):  # keep test output quiet
        pass

    def send_head(self):
        self.server.seen.append((self.command, self.path, self.headers.get("Range")))
        rng = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not rng or not os.path.isfile(path):
            return super().send_head()
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
        size = os.path.getsize(path)
        start = int(m.group(1)) if m else 0
        end = int(m.group(2)) if m and m.group(2) else size - 1
        if not m or start >= size:
            self.send_error(416, "Requested Range Not Satisfiable")
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.range_left = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        left = getattr(self, "range_left", None)
        if left is None:
            return super().copyfile(source, outputfile)
        while left > 0:
            chunk = source.read(min(65536, left))
            if not chunk:
                break
            outputfile.write(chunk)
            left -= len(chunk)


class LocalServer:
    def __init__(self, root):
        self.root = Path(root)
        handler = functools.partial(RangeHandler, directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.seen = self.seen = []  # (method, path, Range header) of each request
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # it checks for shutdown() every poll_interval: 0.5 s by default, that long at the end of each test
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server(tmp_path):
    """A static file server on 127.0.0.1 over `server.root` (a fresh temp dir); `server.seen`
    lists the requests it answered."""
    root = tmp_path / "served"
    root.mkdir()
    server = LocalServer(root)
    yield server
    server.close()
