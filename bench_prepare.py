"""
Benchmark prepare_owt.py's tokenization against plain single-threaded encode_ordinary.

Builds a corpus of about --mb megabytes in a temporary directory: documents of 1 to 60 paragraphs
drawn at random from --text, one .txt file per document. Then times, over the same documents:
  prepare_owt       the real pipeline (read, tokenize in --num_proc processes, write .bin files)
  encode_ordinary   the baseline: read each file and call enc.encode_ordinary on it, one thread
  encode_to_numpy   the same with the call prepare_owt's workers make (same tokens, an array)
  threads           tiktoken's encode_ordinary_batch(num_threads=--num_proc), the token lists
                    turned into uint16 arrays as a worker does (the alternative to processes)
Each variant runs --repeat times, interleaved, and its best time counts. Peak memory is
resource.getrusage's ru_maxrss of this process and of its children (the worker processes).
The last line printed is the results as one JSON object.

    python bench_prepare.py --text=data/shakespeare_char/input.txt
"""
import argparse
import contextlib
import io
import json
import math
import os
import random
import resource
import sys
import tempfile
import time

import numpy as np

import common
import prepare_owt
from common import UserError
from files import not_a_regular_file


def build_corpus(paragraphs, megabytes, out_dir, seed):
    """Write documents of varied length (1 to 60 random paragraphs) until about `megabytes` MB."""
    rng = random.Random(seed)
    size, n = 0, 0
    while size < megabytes * 1e6:
        doc = "\n\n".join(rng.choice(paragraphs) for _ in range(rng.randint(1, 60)))
        folder = os.path.join(out_dir, f"{n // 1000:03d}")  # a few folders, to walk them as prepare_owt does
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{n:06d}.txt"), "w", encoding="utf-8") as f:
            f.write(doc)
        size += len(doc.encode("utf-8"))
        n += 1
    return n, size


def read_documents(files):
    for path in files:
        with open(path, encoding="utf-8") as f:
            yield f.read()


def single_thread(enc, files):
    """The baseline: plain encode_ordinary, one document after another."""
    t0 = time.time()
    tokens = sum(len(enc.encode_ordinary(doc)) + 1 for doc in read_documents(files))  # + 1: the end-of-text token
    return tokens, time.time() - t0


def single_thread_numpy(enc, files):
    """prepare_owt's per-document call (encode_to_numpy, same tokens as encode_ordinary), one thread."""
    t0 = time.time()
    tokens = sum(len(enc.encode_to_numpy(doc, disallowed_special=())) + 1 for doc in read_documents(files))
    return tokens, time.time() - t0


def threads(enc, files, num_threads):
    """tiktoken's thread pool over batches, each turned into the uint16 arrays a worker returns."""
    def encode(batch):
        lists = enc.encode_ordinary_batch(batch, num_threads=num_threads)
        return len(prepare_owt.join_documents([np.array(ids, dtype=np.uint16) for ids in lists], enc.eot_token))

    t0 = time.time()
    tokens, batch, size = 0, [], 0
    for doc in read_documents(files):
        batch.append(doc)
        size += len(doc)
        if size >= prepare_owt.BATCH_BYTES:
            tokens += encode(batch)
            batch, size = [], 0
    if batch:
        tokens += encode(batch)
    return tokens, time.time() - t0


def peak_rss_mb(who):
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def read_paragraphs(path):
    """The non-empty paragraphs of a UTF-8 text file, the corpus's building blocks."""
    what = not_a_regular_file(path)
    if what is not None:
        what = "not found" if what == "missing" else f"is {what}"
        raise UserError(f"--text={path} {what}; pass a text file, e.g. --text=data/shakespeare_char/input.txt")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UserError(f"cannot read --text={path} ({e.strerror}); pass a readable text file") from None
    except UnicodeDecodeError as e:
        raise UserError(f"--text={path} is not UTF-8 text (bad byte at offset {e.start}); pass a UTF-8 text file") from None
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    if not paragraphs:
        raise UserError(f"--text={path} holds no text to build a corpus from; pass a longer text")
    return paragraphs


def main(argv):
    parser = common.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", required=True, help="a UTF-8 text to draw paragraphs from (e.g. tiny Shakespeare)")
    parser.add_argument("--mb", type=float, default=50, help="corpus size in megabytes (default: %(default)s)")
    parser.add_argument("--num_proc", type=int, default=prepare_owt.CORES,
                        help="processes for prepare_owt, threads for the thread variant (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best time of each variant counts (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus (default: %(default)s)")
    args = parser.parse_args(argv)
    if not (math.isfinite(args.mb) and args.mb > 0):
        raise UserError(f"--mb={args.mb:g} must be a size in megabytes above 0")
    if args.repeat < 1:
        raise UserError(f"--repeat={args.repeat} must be at least 1")
    if args.num_proc < 1:
        raise UserError(f"--num_proc={args.num_proc} must be at least 1")
    paragraphs = read_paragraphs(args.text)

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus")
        try:
            n_docs, size = build_corpus(paragraphs, args.mb, corpus, args.seed)
        except OSError as e:
            raise UserError(f"could not write the {args.mb:g} MB corpus in {tmp} ({e.strerror}): lower --mb, "
                            f"or set TMPDIR to a folder with room") from None
        print(f"corpus: {n_docs:,} documents, {size / 1e6:.1f} MB in {corpus}")
        enc = prepare_owt.load_encoding("gpt2")
        files = list(prepare_owt.input_files([corpus]))
        argv = ["--input", corpus, "--out_dir", os.path.join(tmp, "out"), "--num_proc", str(args.num_proc)]

        # best of --repeat rounds, the three variants interleaved: other work on the machine
        # only ever slows a round down
        best = {"prepare_owt": float("inf"), "single": float("inf"), "single_numpy": float("inf"),
                "threads": float("inf")}
        tokens = {}
        for _ in range(args.repeat):
            with contextlib.redirect_stdout(io.StringIO()):  # its summary is printed below
                stats, seconds = prepare_owt.run(prepare_owt.parse_args(argv))
            tokens["prepare_owt"], best["prepare_owt"] = stats["train_tokens"] + stats["val_tokens"], min(best["prepare_owt"], seconds)
            for name, variant in (("single", single_thread), ("single_numpy", single_thread_numpy),
                                  ("threads", lambda enc, files: threads(enc, files, args.num_proc))):
                tokens[name], seconds = variant(enc, files)
                best[name] = min(best[name], seconds)
        rss_main, rss_worker = peak_rss_mb(resource.RUSAGE_SELF), peak_rss_mb(resource.RUSAGE_CHILDREN)
    if len(set(tokens.values())) != 1:
        print(f"error: the variants disagree on the number of tokens: {tokens}", file=sys.stderr)
        sys.exit(1)

    n_tokens = tokens["prepare_owt"]
    rate = {name: n_tokens / seconds for name, seconds in best.items()}
    results = {
        "corpus_mb": round(size / 1e6, 1),
        "documents": n_docs,
        "tokens": n_tokens,
        "num_proc": args.num_proc,
        "prepare_owt_tokens_per_s": round(rate["prepare_owt"]),
        "single_thread_tokens_per_s": round(rate["single"]),
        "single_thread_numpy_tokens_per_s": round(rate["single_numpy"]),
        "threads_tokens_per_s": round(rate["threads"]),
        "speedup": round(best["single"] / best["prepare_owt"], 2),
        "speedup_from_processes": round(best["single_numpy"] / best["prepare_owt"], 2),
        "threads_speedup": round(best["single"] / best["threads"], 2),
        "peak_rss_mb_main": round(rss_main),
        "peak_rss_mb_largest_worker": round(rss_worker),
        "peak_rss_mb_total_at_most": round(rss_main + args.num_proc * rss_worker),
        "load_average_before": round(load, 2),
    }
    print(f"{n_docs:,} documents, {n_tokens:,} tokens, best of {args.repeat} rounds "
          f"(load average before: {load:.2f} on {prepare_owt.CORES} cores)")
    print(f"prepare_owt, {args.num_proc} processes:           {best['prepare_owt']:5.2f} s, {rate['prepare_owt']:>11,.0f} tokens/s")
    print(f"encode_ordinary, one thread:           {best['single']:5.2f} s, {rate['single']:>11,.0f} tokens/s")
    print(f"encode_to_numpy, one thread:           {best['single_numpy']:5.2f} s, {rate['single_numpy']:>11,.0f} tokens/s")
    print(f"encode_ordinary_batch, {args.num_proc} threads:      {best['threads']:5.2f} s, {rate['threads']:>11,.0f} tokens/s")
    print(f"speed-up of prepare_owt over plain encode_ordinary: {results['speedup']:.2f}x "
          f"({results['speedup_from_processes']:.2f}x over the same call in one thread); "
          f"tiktoken's threads: {results['threads_speedup']:.2f}x")
    print(f"peak RSS: main {rss_main:.0f} MB, largest worker {rss_worker:.0f} MB, "
          f"all together at most {results['peak_rss_mb_total_at_most']:,} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    common.run_main(main, sys.argv[1:])
