"""
Prepare a GPT-2 BPE dataset for train.py: OpenWebText by default, any corpus with --input.

Every document is encoded with tiktoken's "gpt2" encoding (encode_ordinary, so text that looks
like a special token stays plain text) and followed by the end-of-text token 50256. Each document
goes to val with probability --val_fraction (seeded), otherwise to train. Writes to --out_dir:
  train.bin, val.bin   uint16 token ids. No meta.pkl: train.py reads its absence as GPT-2 BPE.

    python prepare_owt.py                          # OpenWebText: downloads 21 shards, then tokenizes
    python prepare_owt.py --shards=0-1             # only the first two shards
    python prepare_owt.py --input notes/ more.jsonl --out_dir=data/mine
    python prepare_owt.py --input=input.txt --split=tail --out_dir=data/shakespeare

--input takes .txt files (one document each; other suffixes too when named explicitly),
directories (searched recursively for .txt, .jsonl, .tar and .xz), globs, .jsonl (one
{"text": ...} object per line), and OpenWebText's own layout: .tar files of .xz members, each an
xz-compressed tar of .txt documents (a lone .xz of that kind works too).
"""
import argparse
import collections
import glob
import io
import itertools
import json
import lzma
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
import tiktoken
from tqdm import tqdm

OWT_URL = "https://huggingface.co/datasets/Skylion007/openwebtext/resolve/main"
OWT_SHARDS = 21  # subsets/urlsf_subset00.tar .. urlsf_subset20.tar
BATCH_BYTES = 1 << 20  # about this much text per task handed to a worker process
CORPUS_SUFFIXES = (".txt", ".jsonl", ".tar", ".xz")
# the cores this process may use (fewer than the machine has in a restricted container)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class PrepareError(Exception):
    """A problem the user can fix; main() prints it as one line and exits 1."""


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
            raise PrepareError(f"--shards={spec} is not understood; write e.g. --shards=0-2 or --shards=0,3,5")
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        if not first <= last < OWT_SHARDS:
            raise PrepareError(f"--shards={spec}: shards are numbered 0 to {OWT_SHARDS - 1}")
        shards.extend(i for i in range(first, last + 1) if i not in shards)
    return shards


def shard_url(base_url, i):
    return f"{base_url.rstrip('/')}/subsets/urlsf_subset{i:02d}.tar"


def download_error(url, e, resumable=False):
    reason = f"HTTP {e.response.status_code}" if isinstance(e, requests.HTTPError) else type(e).__name__
    hint = "then run again to resume" if resumable else "or pass --input=PATH to prepare a local corpus"
    return PrepareError(f"could not download {url} ({reason}); check the network, {hint}")


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
    """Download url to dest with a progress bar. The bytes go to dest.part, which a later run
    resumes with an HTTP Range request; dest appears only once its size matches Content-Length,
    so an existing dest is always a complete file."""
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
    part = dest + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if total is not None and have > total:
        have = 0  # not a prefix of this file: start over
    if total is None or have < total:
        os.makedirs(os.path.dirname(dest) or ".", exist_ok=True)
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=60) as r:
                r.raise_for_status()
                if r.status_code != 206:
                    have = 0  # the server ignored the Range and sends the whole file
                with open(part, "ab" if have else "wb") as f, \
                        tqdm(desc=name, total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024) as bar:
                    for chunk in r.iter_content(chunk_size=1 << 20):
                        f.write(chunk)
                        bar.update(len(chunk))
        except requests.RequestException as e:
            raise download_error(url, e, resumable=os.path.exists(part))
    size = os.path.getsize(part)
    if total is not None and size != total:
        raise PrepareError(f"{name}: got {size:,} of {total:,} bytes; run again to resume the download")
    os.replace(part, dest)


# ----------------------------------------------------------------------------
# the corpus as tasks: small units of work for the worker processes

def is_glob(pattern):
    return any(c in pattern for c in "*?[")


def check_inputs(patterns):
    """Fail before any work if an --input names nothing."""
    for pattern in patterns:
        if not (os.path.exists(pattern) or (is_glob(pattern) and glob.glob(pattern, recursive=True))):
            raise PrepareError(f"--input {pattern}: no such file or directory, and no files match it")


def input_files(patterns):
    """The files of --input, lazily, so that even millions of them take no memory: files as
    given, directories recursively (only files with a corpus suffix, in sorted order), globs as
    matched (sorted)."""
    for pattern in patterns:
        if os.path.isfile(pattern):
            yield pattern
        elif os.path.isdir(pattern):
            for folder, subfolders, names in os.walk(pattern):
                subfolders.sort()  # os.walk visits them in this order
                yield from (os.path.join(folder, name) for name in sorted(names) if name.endswith(CORPUS_SUFFIXES))
        elif is_glob(pattern):
            yield from input_files(sorted(glob.glob(pattern, recursive=True)))


def owt_tar_tasks(path):
    """One task per .xz member of an OpenWebText shard. Only the compressed bytes are read
    here; the workers decompress, so that work runs in parallel too."""
    try:
        with tarfile.open(path, mode="r|") as tar:  # streamed: one pass, members in order
            for member in tar:
                if member.isfile() and member.name.endswith(".xz"):
                    yield "xz", (f"{path}/{member.name}", tar.extractfile(member).read())
    except tarfile.TarError as e:
        raise PrepareError(f"{path} is not a readable tar file ({e}); "
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
            with open(path, "rb") as f:
                yield decode(f.read(), counts)
    elif kind == "xz":
        name, data = payload
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r|xz") as tar:
                for member in tar:
                    if member.isfile() and member.name.endswith(".txt"):
                        yield clean_owt(decode(tar.extractfile(member).read(), counts))
        except (tarfile.TarError, lzma.LZMAError, EOFError) as e:
            raise PrepareError(f"{name} is not a readable xz-compressed tar ({e})")
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
                raise PrepareError(f'{path}:{lineno}: expected a JSON object with a "text" string on each line')
            yield text


ENC = None  # the tokenizer of a worker process (of the main one with --num_proc=1)


def init_worker(main_process=False):
    global ENC
    if not main_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled once, by the main process
    ENC = load_tokenizer()


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
    length of the last train document (with its end-of-text token). Each document goes to val
    with probability val_fraction, drawn from the task's own seed."""
    counts = collections.Counter()
    rng = random.Random(seed)
    train, val = [], []
    for text in task_documents(kind, payload, counts):
        if not text.strip():
            counts["empty"] += 1
            continue
        (val if rng.random() < val_fraction else train).append(encode_ordinary(text))
    counts["train_documents"] = len(train)
    counts["val_documents"] = len(val)
    last_train_tokens = len(train[-1]) + 1 if train else 0
    return join_documents(train, ENC.eot_token), join_documents(val, ENC.eot_token), counts, last_train_tokens


def encode_in_order(tasks, num_proc):
    """encode_task over tasks in num_proc processes, yielding the results in task order. At
    most 2 * num_proc tasks are in flight, so memory stays flat however large the corpus.
    Processes, not threads: measured with bench_prepare.py (50 MB, 2 cores), tiktoken's
    encode_ordinary_batch(num_threads=2) ran only 1.1x faster than one thread (turning the tokens
    into Python lists holds the GIL), 2 processes 1.9x (2.1x over plain encode_ordinary)."""
    if num_proc == 1:
        init_worker(main_process=True)
        yield from (encode_task(*task) for task in tasks)
        return
    with ProcessPoolExecutor(num_proc, initializer=init_worker) as pool:
        pending = collections.deque()
        for task in tasks:
            pending.append(pool.submit(encode_task, *task))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def tokenize_corpus(files, train_f, val_f, val_fraction, seed, num_proc, stats):
    """Encode the corpus, appending the tokens in order to the open train/val files. Each task
    gets a seed from one seeded stream, so the split depends on --seed only, not on --num_proc."""
    rng = random.Random(seed)
    tasks = ((kind, payload, rng.getrandbits(64), val_fraction) for kind, payload in corpus_tasks(files))
    last_train_tokens = 0
    with tqdm(desc="tokenizing", unit="tok", unit_scale=True) as bar:
        for train, val, counts, last in encode_in_order(tasks, num_proc):
            train.tofile(train_f)
            val.tofile(val_f)
            stats.update(counts)
            last_train_tokens = last or last_train_tokens
            bar.update(len(train) + len(val))
    if stats["val_documents"] == 0 and stats["train_documents"] >= 2:
        move_last_document(train_f, val_f, last_train_tokens, stats)


def move_last_document(train_f, val_f, n_tokens, stats):
    """A small corpus can draw no val document at all; then the last train document moves to
    val, so that val.bin is never empty."""
    train_f.flush()
    train_f.seek(-2 * n_tokens, os.SEEK_END)
    val_f.write(train_f.read())
    train_f.seek(-2 * n_tokens, os.SEEK_END)
    train_f.truncate()
    stats.update(train_documents=-1, val_documents=1)


def tokenize_tail(path, val_fraction, train_f, val_f, stats):
    """One text split by position, as nanoGPT's data/shakespeare does: the first characters to
    train, the last val_fraction of them to val, each part encoded whole, no end-of-text token."""
    with open(path, "rb") as f:
        text = decode(f.read(), stats)
    n = int(len(text) * (1 - val_fraction))
    if n == 0 or n == len(text):
        raise PrepareError(f"{path} has {len(text)} characters, too few to split; pass a longer text")
    enc = load_tokenizer()
    np.array(enc.encode_ordinary(text[:n]), dtype=np.uint16).tofile(train_f)
    np.array(enc.encode_ordinary(text[n:]), dtype=np.uint16).tofile(val_f)
    stats.update(train_documents=1, val_documents=1)


# ----------------------------------------------------------------------------

def check_vocab(enc):
    if enc.max_token_value > np.iinfo(np.uint16).max:
        raise PrepareError(f"the {enc.name} vocabulary has {enc.max_token_value + 1:,} tokens, "
                           f"too many for uint16 .bin files; use a vocabulary of at most 65,536")


def load_tokenizer():
    try:
        enc = tiktoken.get_encoding("gpt2")
    except requests.RequestException as e:
        raise PrepareError(f"could not download the GPT-2 BPE files tiktoken needs on first use ({type(e).__name__}); "
                           f"check the network, or set TIKTOKEN_CACHE_DIR to a folder that holds them")
    check_vocab(enc)
    return enc


def write_bins(out_dir, fill):
    """fill(train_f, val_f) writes tokens into train.bin.tmp / val.bin.tmp; they are renamed to
    train.bin / val.bin only once complete, so an interrupted run never leaves a .bin that looks
    finished."""
    os.makedirs(out_dir, exist_ok=True)
    final = {split: os.path.join(out_dir, f"{split}.bin") for split in ("train", "val")}
    tmp = {split: path + ".tmp" for split, path in final.items()}
    try:
        with open(tmp["train"], "w+b") as train_f, open(tmp["val"], "w+b") as val_f:
            fill(train_f, val_f)
            sizes = {"train": train_f.tell() // 2, "val": val_f.tell() // 2}
        if sizes["train"] == 0 or sizes["val"] == 0:
            raise PrepareError("too few non-empty documents to fill both train and val; give more documents, "
                               "or --split=tail to split one text by position")
        for split in ("train", "val"):
            os.replace(tmp[split], final[split])
    finally:
        for path in tmp.values():
            if os.path.exists(path):
                os.remove(path)
    return sizes


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", nargs="+", metavar="PATH",
                        help="a local corpus instead of OpenWebText: files, directories, globs (see above)")
    parser.add_argument("--out_dir", default=os.path.join("data", "openwebtext"),
                        help="where train.bin and val.bin go (default: %(default)s)")
    parser.add_argument("--split", choices=("doc", "tail"), default="doc",
                        help="doc: each document to train or val at random (default); tail: split one text "
                             "file by position, no end-of-text tokens (as nanoGPT's data/shakespeare)")
    parser.add_argument("--val_fraction", type=float,
                        help="share of documents (doc) or of characters (tail) for val (default: 0.0005 doc, 0.1 tail)")
    parser.add_argument("--seed", type=int, default=2357, help="seed of the document split (default: %(default)s)")
    parser.add_argument("--shards", default="all",
                        help="OpenWebText shards to use, e.g. 0-2 or 0,3,5 (default: all 21, numbered 0-20)")
    parser.add_argument("--base_url", default=OWT_URL,
                        help="where OpenWebText's subsets/ folder is served (default: %(default)s)")
    parser.add_argument("--download_dir", help="where downloaded shards are kept (default: <out_dir>/downloads)")
    parser.add_argument("--num_proc", type=int, default=CORES,
                        help="tokenizer processes (default: one per core, %(default)s)")
    return parser.parse_args(argv)


def run(args):
    """Download (unless --input), tokenize, write; returns the counts and the seconds taken."""
    val_fraction = args.val_fraction if args.val_fraction is not None else (0.1 if args.split == "tail" else 0.0005)
    if not 0 < val_fraction < 1:
        raise PrepareError(f"--val_fraction={val_fraction} must be between 0 and 1")
    if args.num_proc < 1:
        raise PrepareError(f"--num_proc={args.num_proc} must be at least 1")
    load_tokenizer()  # fail early, before any download, if the tokenizer is unavailable

    if args.input:
        check_inputs(args.input)
        files = input_files(args.input)
    else:
        shards = parse_shards(args.shards)
        download_dir = args.download_dir or os.path.join(args.out_dir, "downloads")
        files = [os.path.join(download_dir, f"urlsf_subset{i:02d}.tar") for i in shards]
        for i, path in zip(shards, files):
            fetch(shard_url(args.base_url, i), path)

    stats = collections.Counter()
    if args.split == "tail":
        files = list(itertools.islice(files, 2))
        if len(files) != 1 or files[0].endswith((".jsonl", ".tar", ".xz")):
            raise PrepareError("--split=tail splits one text file; pass exactly one --input=FILE, "
                               "or use --split=doc for a corpus of many documents")
        fill = lambda train_f, val_f: tokenize_tail(files[0], val_fraction, train_f, val_f, stats)
        print(f"tokenizing {files[0]}, split at {1 - val_fraction:.0%} of its characters, into {args.out_dir}")
    else:
        fill = lambda train_f, val_f: tokenize_corpus(files, train_f, val_f, val_fraction, args.seed,
                                                      args.num_proc, stats)
        print(f"tokenizing with {args.num_proc} process(es) into {args.out_dir}")
    t0 = time.time()
    sizes = write_bins(args.out_dir, fill)
    seconds = time.time() - t0
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
    return stats, seconds


def main():
    args = parse_args(sys.argv[1:])
    try:
        run(args)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: no .bin files were written", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
