"""
Prepare a character-level dataset (tiny Shakespeare by default) for train.py.

Writes to --out_dir (default data/shakespeare_char):
  train.bin, val.bin  uint16 token ids, the first 90% / last 10% of the characters
  meta.pkl            {'vocab_size', 'itos', 'stoi'}: how to decode the ids again

    python prepare_char.py                       # downloads tiny Shakespeare once
    python prepare_char.py --input=my_text.txt   # any local UTF-8 text file
"""
import argparse
import os
import pickle
import sys

import numpy as np
import requests

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


class PrepareError(Exception):
    """A problem the user can fix; main() prints it as one line and exits 1."""


def download(url, path):
    """Fetch url into path. The bytes land in path.part first and are renamed only
    once complete, so a failed or interrupted download never looks like the real file."""
    part = path + ".part"
    try:
        with requests.get(url, stream=True, timeout=30) as r:
            r.raise_for_status()
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(part, "wb") as f:
                for chunk in r.iter_content(chunk_size=1 << 16):
                    f.write(chunk)
        os.replace(part, path)
    except (requests.RequestException, OSError) as e:
        reason = f"HTTP {e.response.status_code}" if isinstance(e, requests.HTTPError) else type(e).__name__
        raise PrepareError(f"could not download {url} ({reason}); "
                           f"check the network, or pass --input=FILE to use a local text file")
    finally:
        if os.path.exists(part):  # only left when the download did not complete
            os.remove(part)


def read_text(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise PrepareError(f"input file {path} not found; pass --input=FILE with an existing text file")
    except UnicodeDecodeError as e:
        raise PrepareError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); "
                           f"convert it to UTF-8 or pass another --input")


def build_vocab(text):
    chars = sorted(set(text))
    if len(chars) > 65536:  # ids are stored as uint16
        raise PrepareError(f"{len(chars):,} distinct characters do not fit in uint16 token ids; "
                           f"use prepare_owt.py (GPT-2 BPE) for this text")
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    return stoi, itos


def encode(text, stoi):
    return np.array([stoi[ch] for ch in text], dtype=np.uint16)


def save_atomically(path, write):
    """Write through a temporary name and rename, so a crash never leaves a half-written file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def prepare(text, out_dir):
    print(f"length of dataset in characters: {len(text):,}")
    stoi, itos = build_vocab(text)
    print("all the unique characters:", repr("".join(stoi)))
    print(f"vocab size: {len(stoi):,}")
    n = len(text)
    if int(n * 0.9) == 0 or int(n * 0.9) == n:
        raise PrepareError(f"the text has only {n} characters, too few to split 90/10; pass a longer --input")
    train_ids = encode(text[:int(n * 0.9)], stoi)
    val_ids = encode(text[int(n * 0.9):], stoi)
    print(f"train has {len(train_ids):,} tokens")
    print(f"val has {len(val_ids):,} tokens")
    meta = {"vocab_size": len(stoi), "itos": itos, "stoi": stoi}
    os.makedirs(out_dir, exist_ok=True)
    save_atomically(os.path.join(out_dir, "train.bin"), train_ids.tofile)
    save_atomically(os.path.join(out_dir, "val.bin"), val_ids.tofile)
    save_atomically(os.path.join(out_dir, "meta.pkl"), lambda f: pickle.dump(meta, f))
    print(f"wrote train.bin, val.bin, meta.pkl to {out_dir}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="local UTF-8 text file to use instead of downloading tiny Shakespeare")
    parser.add_argument("--out_dir", default=os.path.join("data", "shakespeare_char"),
                        help="where train.bin, val.bin and meta.pkl go (default: %(default)s)")
    parser.add_argument("--url", default=SHAKESPEARE_URL,
                        help="where to download the text from when --input is not given (default: tiny Shakespeare)")
    args = parser.parse_args()

    try:
        if args.input:
            text = read_text(args.input)
        else:
            # the downloaded copy is kept beside the outputs, so the next run needs no network
            input_path = os.path.join(args.out_dir, "input.txt")
            if not os.path.exists(input_path):
                print(f"downloading {args.url}")
                download(args.url, input_path)
            text = read_text(input_path)
        prepare(text, args.out_dir)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
