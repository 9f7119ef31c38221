"""
Prepare a character-level dataset (tiny Shakespeare by default) for train.py.

Writes to --out_dir (default data/shakespeare_char), all four files or none of them:
  input.txt           the text itself (for prepare_owt.py --split=tail, and the next run here)
  train.bin, val.bin  uint16 token ids, the first 90% / last 10% of the characters
  meta.pkl            {'vocab_size', 'itos', 'stoi', 'files'}: how to decode the ids, the files' sizes

    python prepare_char.py                       # downloads tiny Shakespeare once
    python prepare_char.py --input=my_text.txt   # any local UTF-8 text file
"""
import argparse
import os
import sys

import numpy as np

import common
import datafiles
import files

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


def read_text(path):
    """The text of a UTF-8 file."""
    what = files.not_a_regular_file(path)
    if what not in (None, "missing", "a directory"):  # reading a named pipe would wait forever
        raise common.UserError(f"{path} is {what}; pass --input=FILE with one text file")
    try:
        with open(path, "rb") as f:
            data = f.read()  # the text exactly as written (text mode would turn \r\n into \n)
    except FileNotFoundError:
        raise common.UserError(f"input file {path} not found; pass --input=FILE with an existing text file") from None
    except IsADirectoryError:
        raise common.UserError(f"{path} is a directory; pass --input=FILE with one text file") from None
    except OSError as e:
        raise common.UserError(f"cannot read {path} ({e.strerror}); pass --input=FILE with a readable text file") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise common.UserError(f"{path} is not UTF-8 text (bad byte at offset {e.start}); "
                               f"convert it to UTF-8 or pass another --input") from None


def build_vocab(text):
    chars = sorted(set(text))
    if len(chars) > 65536:  # ids are stored as uint16
        raise common.UserError(f"{len(chars):,} distinct characters do not fit in uint16 token ids; "
                               f"use prepare_owt.py (GPT-2 BPE) for this text")
    stoi = {ch: i for i, ch in enumerate(chars)}
    itos = {i: ch for i, ch in enumerate(chars)}
    return stoi, itos


def encode(text, stoi):
    return np.array([stoi[ch] for ch in text], dtype=np.uint16)


def prepare(text, out_dir):
    print(f"length of dataset in characters: {len(text):,}")
    stoi, itos = build_vocab(text)
    print("all the unique characters:", repr("".join(stoi)))
    print(f"vocab size: {len(stoi):,}")
    n = len(text)
    if int(n * 0.9) == 0 or int(n * 0.9) == n:
        raise common.UserError(f"the text has only {n} characters, too few to split 90/10; pass a longer --input")
    train_ids = encode(text[:int(n * 0.9)], stoi)
    val_ids = encode(text[int(n * 0.9):], stoi)
    print(f"train has {len(train_ids):,} tokens")
    print(f"val has {len(val_ids):,} tokens")
    # the text goes with its tokens: a later run, or prepare_owt.py, reads the same text
    datafiles.write_dataset(out_dir, {"input.txt": lambda f: f.write(text.encode("utf-8")),
                                      "train.bin": lambda f: datafiles.write_array(f, train_ids),
                                      "val.bin": lambda f: datafiles.write_array(f, val_ids)},
                            {"vocab_size": len(stoi), "itos": itos, "stoi": stoi})
    print(f"wrote input.txt, train.bin, val.bin, meta.pkl to {out_dir}")


def main(argv=None):
    parser = common.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", help="local UTF-8 text file to use instead of downloading tiny Shakespeare")
    parser.add_argument("--out_dir", default=os.path.join("data", "shakespeare_char"),
                        help="where input.txt, train.bin, val.bin and meta.pkl go (default: %(default)s)")
    parser.add_argument("--url", default=SHAKESPEARE_URL,
                        help="where to download the text from when --input is not given (default: tiny Shakespeare)")
    args = parser.parse_args(argv)

    input_path = args.input or os.path.join(args.out_dir, "input.txt")
    if not args.input and not os.path.exists(input_path):  # downloaded once, kept beside the outputs
        print(f"downloading {args.url}")
        try:
            files.download(args.url, input_path)
        except common.UserError as e:
            raise common.UserError(f"{e}, or pass --input=FILE to use a local text file") from None
    prepare(read_text(input_path), args.out_dir)


if __name__ == "__main__":
    common.run_main(main, sys.argv[1:])
