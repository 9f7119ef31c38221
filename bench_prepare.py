"""
Benchmark prepare_owt.py's tokenization against plain single-threaded encode_ordinary.

Builds a corpus of about --mb megabytes in a temporary directory: documents of 1 to 60 paragraphs
drawn at random from --text, one .txt file per document. Then times, over the same documents:
  prepare_owt      the real pipeline (read, tokenize in --num_proc processes, write .bin files)
  single thread    read each file and call enc.encode_ordinary on it, nothing else
  threads          tiktoken's encode_ordinary_batch(num_threads=--num_proc) plus the same uint16
                   conversion prepare_owt does (the alternative to processes)
Each variant runs --repeat times, interleaved, and its best time counts. Peak memory is
resource.getrusage's ru_maxrss of this process and of its children (the worker processes).
The last line printed is the results as one JSON object.

    python bench_prepare.py --text=data/shakespeare_char/input.txt
"""
import argparse
import contextlib
import io
import json
import os
import random
import resource
import sys
import tempfile
import time

import prepare_owt


def build_corpus(text, megabytes, out_dir, seed):
    """Write documents of varied length (1 to 60 random paragraphs) until about `megabytes` MB."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
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
    t0 = time.time()
    tokens = sum(len(enc.encode_ordinary(doc)) + 1 for doc in read_documents(files))  # + 1: the end-of-text token
    return tokens, time.time() - t0


def threads(enc, files, num_threads):
    t0 = time.time()
    tokens, batch, chars = 0, [], 0
    for doc in read_documents(files):
        batch.append(doc)
        chars += len(doc)
        if chars >= prepare_owt.BATCH_BYTES:
            tokens += len(prepare_owt.to_uint16(enc.encode_ordinary_batch(batch, num_threads=num_threads), enc.eot_token))
            batch, chars = [], 0
    if batch:
        tokens += len(prepare_owt.to_uint16(enc.encode_ordinary_batch(batch, num_threads=num_threads), enc.eot_token))
    return tokens, time.time() - t0


def peak_rss_mb(who):
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", required=True, help="a UTF-8 text to draw paragraphs from (e.g. tiny Shakespeare)")
    parser.add_argument("--mb", type=float, default=50, help="corpus size in megabytes (default: %(default)s)")
    parser.add_argument("--num_proc", type=int, default=prepare_owt.CORES,
                        help="processes for prepare_owt, threads for the thread variant (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best time of each variant counts (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus (default: %(default)s)")
    args = parser.parse_args()
    if not os.path.isfile(args.text):
        print(f"error: --text={args.text} not found; pass a text file, e.g. --text=data/shakespeare_char/input.txt",
              file=sys.stderr)
        sys.exit(1)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus")
        n_docs, size = build_corpus(text, args.mb, corpus, args.seed)
        print(f"corpus: {n_docs:,} documents, {size / 1e6:.1f} MB in {corpus}")
        enc = prepare_owt.load_tokenizer()
        files = list(prepare_owt.input_files([corpus]))
        argv = ["--input", corpus, "--out_dir", os.path.join(tmp, "out"), "--num_proc", str(args.num_proc)]

        # best of --repeat rounds, the three variants interleaved: other work on the machine
        # only ever slows a round down
        prep_s = single_s = thread_s = float("inf")
        for _ in range(args.repeat):
            with contextlib.redirect_stdout(io.StringIO()):  # its summary is printed below
                stats, seconds = prepare_owt.run(prepare_owt.parse_args(argv))
            prep_s = min(prep_s, seconds)
            prep_tokens = stats["train_tokens"] + stats["val_tokens"]
            single_tokens, seconds = single_thread(enc, files)
            single_s = min(single_s, seconds)
            thread_tokens, seconds = threads(enc, files, args.num_proc)
            thread_s = min(thread_s, seconds)
        rss_main, rss_worker = peak_rss_mb(resource.RUSAGE_SELF), peak_rss_mb(resource.RUSAGE_CHILDREN)
    if not prep_tokens == single_tokens == thread_tokens:
        print(f"error: token counts differ: prepare_owt {prep_tokens:,}, single thread {single_tokens:,}, "
              f"threads {thread_tokens:,}", file=sys.stderr)
        sys.exit(1)

    results = {
        "corpus_mb": round(size / 1e6, 1),
        "documents": n_docs,
        "tokens": prep_tokens,
        "num_proc": args.num_proc,
        "prepare_owt_tokens_per_s": round(prep_tokens / prep_s),
        "single_thread_tokens_per_s": round(single_tokens / single_s),
        "threads_tokens_per_s": round(thread_tokens / thread_s),
        "speedup": round(single_s / prep_s, 2),
        "threads_speedup": round(single_s / thread_s, 2),
        "peak_rss_mb_main": round(rss_main),
        "peak_rss_mb_largest_worker": round(rss_worker),
        "peak_rss_mb_total_at_most": round(rss_main + args.num_proc * rss_worker),
        "load_average_before": round(load, 2),
    }
    print(f"{n_docs:,} documents, {prep_tokens:,} tokens, best of {args.repeat} rounds "
          f"(load average before: {load:.2f} on {prepare_owt.CORES} cores)")
    print(f"prepare_owt ({args.num_proc} processes): {prep_s:.2f} s, {results['prepare_owt_tokens_per_s']:,} tokens/s")
    print(f"single thread encode_ordinary: {single_s:.2f} s, {results['single_thread_tokens_per_s']:,} tokens/s")
    print(f"encode_ordinary_batch ({args.num_proc} threads): {thread_s:.2f} s, {results['threads_tokens_per_s']:,} tokens/s")
    print(f"speed-up of prepare_owt over one thread: {results['speedup']:.2f}x (threads: {results['threads_speedup']:.2f}x)")
    print(f"peak RSS: main {rss_main:.0f} MB, largest worker {rss_worker:.0f} MB, "
          f"all together at most {results['peak_rss_mb_total_at_most']:,} MB")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
