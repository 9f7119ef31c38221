"""
Prepare a BPE dataset for train.py: OpenWebText by default, any corpus with --input; tokens of
GPT-2's BPE, or (--vocab_size=N) of a byte-level BPE of N tokens trained on the corpus itself.

Every document is encoded (encode_ordinary, so text that looks like a special token stays plain
text) and followed by the end-of-text token (50256 in GPT-2's BPE, N - 1 in a BPE of N tokens).
Each document goes to val with probability --val_fraction (seeded), otherwise to train. Writes
to --out_dir:
  train.bin, val.bin   uint16 token ids
  meta.pkl             tokenizer ('gpt2', or the parts of a tiktoken.Encoding: pat_str,
                       mergeable_ranks, special_tokens), vocab_size, and token_bytes (the UTF-8
                       bytes each token id decodes to, for losses in bits per byte)

    python prepare_owt.py                          # OpenWebText: downloads 21 shards, then tokenizes
    python prepare_owt.py --shards=0-1             # only the first two shards
    python prepare_owt.py --input notes/ more.jsonl --out_dir=data/mine
    python prepare_owt.py --input=input.txt --split=tail --out_dir=data/shakespeare
    python prepare_owt.py --input=input.txt --split=tail --vocab_size=2048 --out_dir=data/shakespeare_bpe2048

--input takes .txt files (one document each; other suffixes too when named explicitly),
directories (searched recursively for .txt, .jsonl, .tar and .xz), globs, .jsonl (one
{"text": ...} object per line), and OpenWebText's own layout: .tar files of .xz members, each an
xz-compressed tar of .txt documents (a lone .xz of that kind works too). Only regular files are
read: a named pipe or a device named as an --input is refused (reading it could wait forever),
and what a directory or a glob holds besides regular files (broken links, pipes) is skipped and
listed in the summary.

--vocab_size=N trains the BPE with rustbpe on the train documents only (with --split=tail, on
the train part of the text), at most --bpe_sample_chars characters of them, taken in corpus
order; val text stays unseen, so its bits per byte compare fairly with other tokenizers. Words
are pre-split with GPT-4's pattern (cl100k_base); the vocabulary is the 256 bytes, N - 257
merges and <|endoftext|>. Only tiktoken is needed to use it.
"""
import argparse
import collections
import contextlib
import ctypes
import glob
import io
import itertools
import json
import lzma
import math
import os
import random
import re
import signal
import sys
import tarfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import requests
import rustbpe
from tqdm import tqdm

import common
import datafiles
import devices
from common import UserError
from files import download, not_a_regular_file
from tokenizer import bpe_encoding, encoding_byte_lengths

OWT_URL = "https://huggingface.co/datasets/Skylion007/openwebtext/resolve/main"
OWT_SHARDS = 21  # subsets/urlsf_subset00.tar .. urlsf_subset20.tar
BATCH_BYTES = 1 << 20  # about this much text per task handed to a worker process
CORPUS_SUFFIXES = (".txt", ".jsonl", ".tar", ".xz")
CORES = devices.cores()

# GPT-4's pre-split (tiktoken's cl100k_base): unlike GPT-2's, digits go in groups of at most 3
# (numbers do not use up merges), a word may carry one leading punctuation mark, punctuation
# keeps its line break (":\n"), and contractions match in any case. On tiny Shakespeare's val
# text a BPE trained with it needs 6-13% fewer tokens than one trained with GPT-2's pattern.
GPT4_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
EOT = "<|endoftext|>"
MIN_VOCAB, MAX_VOCAB = 256 + 1, 65_535  # the bytes and <|endoftext|>; ids stored as uint16
BPE_SAMPLE_CHARS = 10 ** 9  # default --bpe_sample_chars: rustbpe read tiny Shakespeare at 8 M characters/s on 2 cores


# ----------------------------------------------------------------------------
# downloading OpenWebText

def parse_shards(spec):
    """'0-2' -> [0, 1, 2]; '0,3,5' -> [0, 3, 5]; ranges and lists mix; 'all' -> every shard."""
    if spec == "all":
        return list(range(OWT_SHARDS))
    shards = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise UserError(f"--shards={spec} is not understood; write e.g. --shards=0-2 or --shards=0,3,5")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if not first <= last < OWT_SHARDS:
            raise UserError(f"--shards={spec}: shards are numbered 0 to {OWT_SHARDS - 1}")
        shards.extend(i for i in range(first, last + 1) if i not in shards)
    return shards


def shard_url(base_url, i):
    return f"{base_url.rstrip('/')}/subsets/urlsf_subset{i:02d}.tar"


def download_error(url, e):
    reason = f"HTTP {e.response.status_code}" if isinstance(e, requests.HTTPError) else type(e).__name__
    return UserError(f"could not download {url} ({reason}); check the network, "
                     f"or pass --input=PATH to prepare a local corpus")


def remote_size(url):
    """Size in bytes of the file at url (None if the server does not say)."""
    r = requests.head(url, allow_redirects=True, timeout=30)
    r.raise_for_status()
    if "Content-Length" in r.headers:
        return int(r.headers["Content-Length"])
    for hop in r.history:  # Hugging Face states the size of a redirected large file here
        if "X-Linked-Size" in hop.headers:
            return int(hop.headers["X-Linked-Size"])
    return None


def fetch(url, dest):
    """Download url to dest unless dest is already complete, as its size on the server says
    (one HEAD request: a run that has every shard downloads nothing, and without a network it
    uses them as they are). files.download resumes what an interrupted run left in dest.part."""
    name = os.path.basename(dest)
    try:
        total = remote_size(url)
    except requests.RequestException as e:
        if os.path.exists(dest):
            print(f"{name}: cannot reach {url} to check it; using the complete copy on disk")
            return
        raise download_error(url, e)
    if os.path.exists(dest) and (total is None or os.path.getsize(dest) == total):
        print(f"{name}: already downloaded")
        return
    download(url, dest, what=name)


# ----------------------------------------------------------------------------
# the corpus as tasks: small units of work for the worker processes

def is_glob(pattern):
    return any(c in pattern for c in "*?[")


def check_inputs(patterns):
    """Fail before any work if an --input names nothing, or names something other than a file
    or a directory (a named pipe would be read forever)."""
    for pattern in patterns:
        what = not_a_regular_file(pattern)
        if what == "missing" and not (is_glob(pattern) and glob.glob(pattern, recursive=True)):
            raise UserError(f"--input {pattern}: no such file or directory, and no files match it")
        if what not in (None, "a directory", "missing"):
            raise UserError(f"--input {pattern} is {what}, not a file or a directory: pass text files, "
                            f"directories or globs")


def input_files(patterns, skipped=None):
    """The files of --input, lazily, so that even millions of them take no memory: files as
    given, directories recursively (only files with a corpus suffix, in sorted order), globs as
    matched (sorted). What a directory or a glob holds that is not a regular file (a broken
    link, a named pipe) is left out and noted in skipped, {path: what it is}."""
    for pattern in patterns:
        what = not_a_regular_file(pattern)
        if what is None:
            yield pattern
        elif what == "a directory":
            for folder, subfolders, names in os.walk(pattern):
                subfolders.sort()  # os.walk visits them in this order
                paths = [os.path.join(folder, name) for name in sorted(names) if name.endswith(CORPUS_SUFFIXES)]
                yield from input_files(paths, skipped)
        elif what == "missing" and is_glob(pattern):
            yield from input_files(sorted(glob.glob(pattern, recursive=True)), skipped)
        elif skipped is not None:
            skipped[pattern] = what


def unreadable(path, e):
    return UserError(f"cannot read {path} ({e.strerror or e}); make it readable, or leave it out of --input")


def owt_tar_tasks(path):
    """One task per .xz member of an OpenWebText shard. Only the compressed bytes are read
    here; the workers decompress, so that work runs in parallel too."""
    try:
        with tarfile.open(path, mode="r|") as tar:  # streamed: one pass, members in order
            for member in tar:
                if member.isfile() and member.name.endswith(".xz"):
                    yield "xz", (f"{path}/{member.name}", tar.extractfile(member).read())
    except tarfile.TarError as e:
        raise UserError(f"{path} is not a readable tar file ({e}); "
                           f"if it is a downloaded shard, delete it so the next run downloads it again")


def jsonl_tasks(path):
    with open(path, "rb") as f:
        first, lines, size = 1, [], 0
        for lineno, line in enumerate(f, 1):
            lines.append(line)
            size += len(line)
            if size >= BATCH_BYTES:
                yield "jsonl", (path, first, lines)
                first, lines, size = lineno + 1, [], 0
        if lines:
            yield "jsonl", (path, first, lines)


def corpus_tasks(files):
    """Tasks of about BATCH_BYTES each, in the order of the files: ("txt", [paths]),
    ("xz", (name, compressed bytes)) and ("jsonl", (path, first line number, [lines]))."""
    paths, size = [], 0
    for path in files:
        if path.endswith((".tar", ".xz", ".jsonl")) and paths:
            yield "txt", paths  # keep the documents in file order
            paths, size = [], 0
        try:  # reading this path (an error of the code taking a task is not raised at its yield)
            if path.endswith(".tar"):
                yield from owt_tar_tasks(path)
            elif path.endswith(".xz"):  # one task: OpenWebText's .xz files hold a few MB of text each
                with open(path, "rb") as f:
                    yield "xz", (path, f.read())
            elif path.endswith(".jsonl"):
                yield from jsonl_tasks(path)
            else:
                paths.append(path)
                size += os.path.getsize(path)
        except OSError as e:
            raise unreadable(path, e) from None
        if size >= BATCH_BYTES:
            yield "txt", paths
            paths, size = [], 0
    if paths:
        yield "txt", paths


# ----------------------------------------------------------------------------
# what a worker does with a task: documents, then tokens

def decode(data, counts):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        counts["bad_utf8"] += 1
        return data.decode("utf-8", errors="replace")


def clean_owt(text):
    # what the reference OpenWebText loader does to each document
    return re.sub("\n\n\n+", "\n\n", text).strip()


def task_documents(kind, payload, counts):
    """The documents of one task, as strings. Only OpenWebText's layout is cleaned; other text
    is kept exactly as written."""
    if kind == "txt":
        for path in payload:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise unreadable(path, e) from None
            yield decode(data, counts)
    elif kind == "xz":
        name, data = payload
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r|xz") as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith(".txt"):
                        yield clean_owt(decode(tar.extractfile(member).read(), counts))
        except (tarfile.TarError, lzma.LZMAError, EOFError) as e:
            raise UserError(f"{name} is not a readable xz-compressed tar ({e})")
    elif kind == "jsonl":
        path, first, lines = payload
        for lineno, line in enumerate(lines, first):
            if not line.strip():
                continue
            try:
                text = json.loads(decode(line, counts))["text"]
            except (ValueError, TypeError, KeyError):
                text = None
            if not isinstance(text, str):
                raise UserError(f'{path}:{lineno}: expected a JSON object with a "text" string on each line')
            yield text


def split_documents(kind, payload, seed, val_fraction, counts):
    """(goes to val, text) for each non-empty document of one task, drawn from the task's own
    seed: every pass over the corpus (the BPE's sample, the encoding) sees the same split."""
    rng = random.Random(seed)
    for text in task_documents(kind, payload, counts):
        if not text.strip():
            counts["empty"] += 1
            continue
        yield rng.random() < val_fraction, text


ENC = None  # the tokenizer of a worker process (of the main one with --num_proc=1)


def init_worker(tokenizer, parent=None):
    """Ready a process for tasks; ENC becomes the encoding of `tokenizer` ('gpt2' or a trained
    BPE's parts; None for tasks that need none). parent: the main process's id, in a worker."""
    global ENC
    if parent is not None:
        die_with_parent(parent)
        # Ctrl-C is handled once, by the main process; it was held back since the fork (submit)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    ENC = None if tokenizer is None else load_encoding(tokenizer)


def die_with_parent(parent):
    """Have Linux kill this worker when the process that started it dies. The pool stops its
    workers when it shuts down, but a kill -9 of the main process gives it no chance, and the
    workers would wait for tasks forever."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before that call: no signal will come
            os._exit(1)


def submit(pool, fn, task):
    """pool.submit(fn, *task), with Ctrl-C held back while it may start workers: a worker that
    got a Ctrl-C before init_worker ignores it would end with a traceback. A Ctrl-C pressed
    meanwhile reaches the main process right after."""
    if not hasattr(signal, "pthread_sigmask"):
        return pool.submit(fn, *task)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return pool.submit(fn, *task)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def encode_ordinary(text):
    """ENC.encode_ordinary(text) as a uint16 array. With no special token allowed, tiktoken's
    encode_to_numpy (0.9 and later) gives exactly those tokens without building a Python list of
    ints first: 1.1x faster in one thread, and no list-to-array copy (bench_prepare.py)."""
    if hasattr(ENC, "encode_to_numpy"):
        return ENC.encode_to_numpy(text, disallowed_special=()).astype(np.uint16)
    return np.array(ENC.encode_ordinary(text), dtype=np.uint16)


def join_documents(arrays, eot):
    """One uint16 array of the documents' tokens, each document followed by eot."""
    eot = np.array([eot], dtype=np.uint16)
    return np.concatenate([part for ids in arrays for part in (ids, eot)] or [np.zeros(0, np.uint16)])


def encode_task(kind, payload, seed, val_fraction):
    """Tokens of one task's documents as (train, val) uint16 arrays, what was counted, and the
    length of the last train document (with its end-of-text token)."""
    counts = collections.Counter()
    train, val = [], []
    for to_val, text in split_documents(kind, payload, seed, val_fraction, counts):
        (val if to_val else train).append(encode_ordinary(text))
    counts["train_documents"] = len(train)
    counts["val_documents"] = len(val)
    last_train_tokens = len(train[-1]) + 1 if train else 0
    return join_documents(train, ENC.eot_token), join_documents(val, ENC.eot_token), counts, last_train_tokens


def train_texts(kind, payload, seed, val_fraction):
    """The texts of one task's train documents: what the BPE learns from."""
    documents = split_documents(kind, payload, seed, val_fraction, collections.Counter())
    return [text for to_val, text in documents if not to_val]


def map_in_order(fn, tasks, num_proc, tokenizer=None):
    """fn(*task) over tasks in num_proc processes (ENC in each: the encoding of `tokenizer`),
    yielding the results in task order. At most 2 * num_proc tasks are in flight, so memory
    stays flat however large the corpus.
    Processes, not threads: measured with bench_prepare.py (50 MB, 2 cores), tiktoken's
    encode_ordinary_batch(num_threads=2) ran only 1.1x faster than one thread (turning the tokens
    into Python lists holds the GIL), 2 processes 1.9x (2.1x over plain encode_ordinary)."""
    if num_proc == 1:
        init_worker(tokenizer)
        yield from (fn(*task) for task in tasks)
        return
    pool = ProcessPoolExecutor(num_proc, initializer=init_worker, initargs=(tokenizer, os.getpid()))
    try:
        pending = collections.deque()
        for task in tasks:
            pending.append(submit(pool, fn, task))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        # after an error, Ctrl-C, or a BPE sample complete before the corpus ends, the queued
        # tasks are dropped, not run: each worker finishes the one it holds and exits
        pool.shutdown(cancel_futures=True)


def seeded_tasks(files, seed, val_fraction):
    """The corpus's tasks with their arguments. Each task gets a seed from one seeded stream, so
    the split depends on --seed only, not on --num_proc."""
    rng = random.Random(seed)
    return ((kind, payload, rng.getrandbits(64), val_fraction) for kind, payload in corpus_tasks(files))


def tokenize_corpus(files, tokenizer, train_f, val_f, val_fraction, seed, num_proc, stats):
    """Encode the corpus, appending the tokens in order to the open train/val files."""
    last_train_tokens = 0
    with tqdm(desc="tokenizing", unit="tok", unit_scale=True) as bar:
        tasks = seeded_tasks(files, seed, val_fraction)
        for train, val, counts, last in map_in_order(encode_task, tasks, num_proc, tokenizer):
            datafiles.write_array(train_f, train)
            datafiles.write_array(val_f, val)
            stats.update(counts)
            last_train_tokens = last or last_train_tokens
            bar.update(len(train) + len(val))
    if stats["val_documents"] == 0 and stats["train_documents"] >= 2:
        move_last_document(train_f, val_f, last_train_tokens, stats)
    if train_f.tell() == 0 or val_f.tell() == 0:
        raise UserError("too few non-empty documents to fill both train and val; give more documents, "
                        "or --split=tail to split one text by position")


def move_last_document(train_f, val_f, n_tokens, stats):
    """A small corpus can draw no val document at all; then the last train document moves to
    val, so that val.bin is never empty (a BPE trained on the corpus has seen that one)."""
    train_f.flush()
    train_f.seek(-2 * n_tokens, os.SEEK_END)
    val_f.write(train_f.read())
    train_f.seek(-2 * n_tokens, os.SEEK_END)
    train_f.truncate()
    stats.update(train_documents=-1, val_documents=1)


def read_tail_split(path, val_fraction, stats):
    """One text and where it splits by position, as nanoGPT's data/shakespeare: the first
    characters go to train, the last val_fraction of them to val."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise unreadable(path, e) from None
    text = decode(data, stats)
    n = int(len(text) * (1 - val_fraction))
    if n == 0 or n == len(text):
        raise UserError(f"{path} has {len(text)} characters, too few to split; pass a longer text")
    return text, n


def tokenize_tail(text, n, enc, train_f, val_f, stats):
    """text[:n] to train, text[n:] to val, each part encoded whole, no end-of-text token."""
    datafiles.write_array(train_f, np.array(enc.encode_ordinary(text[:n]), dtype=np.uint16))
    datafiles.write_array(val_f, np.array(enc.encode_ordinary(text[n:]), dtype=np.uint16))
    stats.update(train_documents=1, val_documents=1)


# ----------------------------------------------------------------------------
# the tokenizer: GPT-2's BPE, or one trained on the corpus

def train_bpe(texts, vocab_size):
    """A byte-level BPE of vocab_size tokens learnt by rustbpe from texts (strings): the 256
    bytes as ids 0-255, then up to vocab_size - 257 merges, then <|endoftext|>. Returns the
    parts of its tiktoken.Encoding, as meta.pkl keeps them (fewer merges if the text runs out
    of pairs)."""
    bpe = rustbpe.Tokenizer()
    bpe.train_from_iterator(texts, vocab_size - 1, pattern=GPT4_PATTERN)
    ranks = {bytes(token): rank for token, rank in bpe.get_mergeable_ranks()}
    return {"pat_str": GPT4_PATTERN, "mergeable_ranks": ranks, "special_tokens": {EOT: len(ranks)}}


def learn_bpe(texts, vocab_size, sample_chars, stats):
    """train_bpe on the first sample_chars characters of texts, checked to reach vocab_size."""
    def sample():
        with tqdm(desc="BPE sample", unit="char", unit_scale=True) as bar:
            for text in texts:
                text = text[:sample_chars - stats["bpe_chars"]]
                stats["bpe_chars"] += len(text)
                bar.update(len(text))
                yield text
                if stats["bpe_chars"] >= sample_chars:
                    return

    t0 = time.time()
    parts = train_bpe(sample(), vocab_size)
    got = len(parts["mergeable_ranks"]) + len(parts["special_tokens"])
    if got < vocab_size:
        more = " or raise --bpe_sample_chars" if stats["bpe_chars"] >= sample_chars else ""
        raise UserError(f"the text is too small for a vocabulary of {vocab_size:,}: its {stats['bpe_chars']:,} "
                        f"characters give only {got:,} tokens; lower --vocab_size, or give more text{more}")
    print(f"trained a BPE of {vocab_size:,} tokens on {stats['bpe_chars']:,} characters in {time.time() - t0:.2f} s")
    return parts


def check_vocab(enc):
    if enc.max_token_value > np.iinfo(np.uint16).max:
        raise UserError(f"the {enc.name} vocabulary has {enc.max_token_value + 1:,} tokens, "
                        f"too many for uint16 .bin files; use a vocabulary of at most 65,536")


def load_encoding(tokenizer):
    """The tiktoken.Encoding of 'gpt2' or of a trained BPE's parts."""
    enc = bpe_encoding(tokenizer, "the trained BPE")
    check_vocab(enc)
    return enc


# ----------------------------------------------------------------------------

def parse_args(argv):
    parser = common.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", metavar="PATH",
                        help="a local corpus instead of OpenWebText: files, directories, globs (see above)")
    parser.add_argument("--out_dir", default=os.path.join("data", "openwebtext"),
                        help="where train.bin, val.bin and meta.pkl go (default: %(default)s)")
    parser.add_argument("--split", choices=("doc", "tail"), default="doc",
                        help="doc: each document to train or val at random (default); tail: split one text "
                             "file by position, no end-of-text tokens (as nanoGPT's data/shakespeare)")
    parser.add_argument("--val_fraction", type=float,
                        help="share of documents (doc) or of characters (tail) for val (default: 0.0005 doc, 0.1 tail)")
    parser.add_argument("--seed", type=int, default=2357, help="seed of the document split (default: %(default)s)")
    parser.add_argument("--vocab_size", type=int,
                        help=f"train a byte-level BPE of this many tokens ({MIN_VOCAB} to {MAX_VOCAB:,}, {EOT} "
                             f"included) on the train text (default: GPT-2's BPE, 50,257 tokens)")
    parser.add_argument("--bpe_sample_chars", type=float,
                        help=f"with --vocab_size: the BPE learns from at most this many characters of train text, "
                             f"in corpus order (default: {BPE_SAMPLE_CHARS:.0e})")
    parser.add_argument("--shards", default="all",
                        help="OpenWebText shards to use, e.g. 0-2 or 0,3,5 (default: all 21, numbered 0-20)")
    parser.add_argument("--base_url", default=OWT_URL,
                        help="where OpenWebText's subsets/ folder is served (default: %(default)s)")
    parser.add_argument("--download_dir", help="where downloaded shards are kept (default: <out_dir>/downloads)")
    parser.add_argument("--num_proc", type=int, default=CORES,
                        help="tokenizer processes (default: one per core, %(default)s)")
    return parser.parse_args(argv)


def check_args(args):
    """Every setting checked before any work; returns val_fraction with its default."""
    val_fraction = args.val_fraction if args.val_fraction is not None else (0.1 if args.split == "tail" else 0.0005)
    if not 0 < val_fraction < 1:
        raise UserError(f"--val_fraction={val_fraction} must be between 0 and 1")
    if args.num_proc < 1:
        raise UserError(f"--num_proc={args.num_proc} must be at least 1")
    if args.vocab_size is not None and not MIN_VOCAB <= args.vocab_size <= MAX_VOCAB:
        raise UserError(f"--vocab_size={args.vocab_size} must be from {MIN_VOCAB} (the 256 bytes and {EOT}) "
                        f"to {MAX_VOCAB:,} (token ids are stored as uint16)")
    if args.bpe_sample_chars is not None:
        if args.vocab_size is None:
            raise UserError("--bpe_sample_chars is the text a trained BPE learns from: it goes with --vocab_size "
                            "(without it, the tokens are GPT-2's)")
        if not (math.isfinite(args.bpe_sample_chars) and args.bpe_sample_chars >= 1):
            raise UserError(f"--bpe_sample_chars={args.bpe_sample_chars:g} must be a number of characters, "
                            f"at least 1 (e.g. 1e8)")
    return val_fraction


def run(args):
    """Download (unless --input), train the BPE (--vocab_size), tokenize, write; returns the
    counts and the seconds the tokenizing and writing took."""
    val_fraction = check_args(args)
    skipped = {}  # what the --input directories and globs hold that is not a regular file
    if args.input:
        check_inputs(args.input)
        files = lambda: input_files(args.input, skipped)  # lazily, anew for each pass over the corpus
    else:
        shards = parse_shards(args.shards)
        download_dir = args.download_dir or os.path.join(args.out_dir, "downloads")
        shard_paths = [os.path.join(download_dir, f"urlsf_subset{i:02d}.tar") for i in shards]
        files = lambda: shard_paths
    if args.split == "tail":
        paths = list(itertools.islice(files(), 2))
        if len(paths) != 1 or paths[0].endswith((".jsonl", ".tar", ".xz")):
            raise UserError("--split=tail splits one text file; pass exactly one --input=FILE, "
                            "or use --split=doc for a corpus of many documents")
    if args.vocab_size is None:
        tokenizer = "gpt2"
        load_encoding(tokenizer)  # fail early, before any download, if GPT-2's BPE files are unavailable
    if not args.input:
        for i, path in zip(shards, shard_paths):
            fetch(shard_url(args.base_url, i), path)

    stats = collections.Counter()
    sample_chars = int(args.bpe_sample_chars or BPE_SAMPLE_CHARS)
    if args.split == "tail":
        text, n = read_tail_split(paths[0], val_fraction, stats)
        if args.vocab_size:
            tokenizer = learn_bpe([text[:n]], args.vocab_size, sample_chars, stats)
        enc = load_encoding(tokenizer)
        fill = lambda train_f, val_f: tokenize_tail(text, n, enc, train_f, val_f, stats)
        print(f"tokenizing {paths[0]}, split at {1 - val_fraction:.0%} of its characters, into {args.out_dir}")
    else:
        if args.vocab_size:
            print(f"reading the train documents for the BPE with {args.num_proc} process(es)")
            tasks = seeded_tasks(files(), args.seed, val_fraction)
            texts = (text for texts in map_in_order(train_texts, tasks, args.num_proc) for text in texts)
            with contextlib.closing(texts):  # the sample may end early: then its processes stop here
                tokenizer = learn_bpe(texts, args.vocab_size, sample_chars, stats)
        enc = load_encoding(tokenizer)
        fill = lambda train_f, val_f: tokenize_corpus(files(), tokenizer, train_f, val_f, val_fraction, args.seed,
                                                      args.num_proc, stats)
        print(f"tokenizing with {args.num_proc} process(es) into {args.out_dir}")
    meta = {"tokenizer": tokenizer, "vocab_size": enc.n_vocab, "token_bytes": encoding_byte_lengths(enc)}
    t0 = time.time()
    meta = datafiles.write_dataset(args.out_dir, {("train.bin", "val.bin"): fill}, meta)
    seconds = time.time() - t0
    sizes = {split: meta["files"][f"{split}.bin"] // 2 for split in ("train", "val")}
    stats["train_tokens"], stats["val_tokens"] = sizes["train"], sizes["val"]

    tokens = sizes["train"] + sizes["val"]
    if args.split == "doc":
        documents = stats["train_documents"] + stats["val_documents"]
        print(f"train has {sizes['train']:,} tokens from {stats['train_documents']:,} documents")
        print(f"val has {sizes['val']:,} tokens from {stats['val_documents']:,} documents")
        print(f"empty documents skipped: {stats['empty']:,}; documents with bad UTF-8 (replaced): {stats['bad_utf8']:,}")
        print(f"{documents:,} documents, {tokens:,} tokens in {seconds:.2f} s ({tokens / seconds:,.0f} tokens/s)")
    else:
        print(f"train has {sizes['train']:,} tokens")
        print(f"val has {sizes['val']:,} tokens")
        if stats["bad_utf8"]:
            print("replaced bad UTF-8 in the text")
        print(f"{tokens:,} tokens in {seconds:.2f} s ({tokens / seconds:,.0f} tokens/s)")
    if skipped:
        listed = ", ".join(f"{path} ({what})" for path, what in itertools.islice(skipped.items(), 3))
        print(f"skipped {len(skipped):,} entries that are not regular files: {listed}{', ...' if len(skipped) > 3 else ''}")
    what = "GPT-2's BPE" if tokenizer == "gpt2" else f"its own BPE of {enc.n_vocab:,} tokens"
    print(f"wrote train.bin, val.bin and meta.pkl ({what}) to {args.out_dir}")
    return stats, seconds


def main(argv):
    run(parse_args(argv))


if __name__ == "__main__":
    common.run_main(main, sys.argv[1:])
