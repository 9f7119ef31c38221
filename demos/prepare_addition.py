"""Prepare the addition dataset: every pair of n-digit numbers and their sum.

As in minGPT's adder demo, each example is a sequence of digit tokens:

    a (n digits, zero-padded)  b (n digits)  c = a + b (n+1 digits, REVERSED)

e.g. n=2, 85 + 50 = 135 -> 8 5 5 0 5 3 1. The sum is written lowest digit first
because that is the order in which a person adds with carries: each output digit
then depends only on digits already seen. The first 2n tokens are the prompt;
the model is scored only on the n+1 digits of the sum.

    python demos/prepare_addition.py                # 2 digits: 10,000 pairs -> data/addition
    python demos/prepare_addition.py --digits=3     # 1,000,000 pairs

Writes train.bin / val.bin (flat uint16 token ids, example after example) and
meta.pkl. val.bin holds a seeded held-out set of pairs that never appear in
train.bin, so accuracy on it measures addition, not memorisation.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules
import numpy as np

import common
import datafiles

MAX_DIGITS = 3  # 4 digits would be 10^8 pairs (2.6 GB of tokens)


def encode_example(a, b, n):
    """Tokens of one example: digits of a, digits of b, then the n+1 digits of a+b reversed."""
    if not (0 <= a < 10**n and 0 <= b < 10**n):
        raise ValueError(f"operands must have at most {n} digits, got {a} and {b}")
    c = a + b
    return ([int(d) for d in f"{a:0{n}d}"]
            + [int(d) for d in f"{b:0{n}d}"]
            + [int(d) for d in f"{c:0{n + 1}d}"[::-1]])


def decode_sum(tokens_after_prompt, n):
    """The integer written by the n+1 (reversed) sum digits that follow the prompt."""
    digits = [int(t) for t in tokens_after_prompt]
    if len(digits) != n + 1 or not all(0 <= d <= 9 for d in digits):
        raise ValueError(f"expected {n + 1} digit tokens, got {digits}")
    return sum(d * 10**i for i, d in enumerate(digits))


def decode_example(tokens, n):
    """(a, b, c) from the 3n+1 tokens of one example."""
    tokens = [int(t) for t in tokens]
    a = int("".join(map(str, tokens[:n])))
    b = int("".join(map(str, tokens[n:2 * n])))
    return a, b, decode_sum(tokens[2 * n:], n)


def encode_pairs(pair_ids, n):
    """Vectorised encode_example for pair id = a * 10^n + b: uint16 array [len(pair_ids), 3n+1]."""
    a, b = np.divmod(pair_ids.astype(np.int64), 10**n)  # [P], [P]
    c = a + b
    powers_msb_first = 10 ** np.arange(n - 1, -1, -1)  # [n]
    powers_lsb_first = 10 ** np.arange(n + 1)  # [n+1]
    return np.concatenate([
        a[:, None] // powers_msb_first % 10,  # [P, n]
        b[:, None] // powers_msb_first % 10,  # [P, n]
        c[:, None] // powers_lsb_first % 10,  # [P, n+1] lowest digit first
    ], axis=1).astype(np.uint16)


def default_num_test(num_pairs):
    # minGPT's rule: 20% of the pairs, but never more than 500
    return min(int(num_pairs * 0.2), 500)


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--digits", type=int, default=2, help="digits per operand, 1..%d (default 2)" % MAX_DIGITS)
    p.add_argument("--out_dir", default=os.path.join("data", "addition"),
                   help="output directory (default data/addition)")
    p.add_argument("--seed", type=int, default=1337, help="seed of the train/test split (default 1337)")
    p.add_argument("--test_fraction", type=float, default=None,
                   help="fraction of pairs held out as val.bin (default: as minGPT, min(20%%, 500 pairs))")
    args = p.parse_args(argv)
    if not 1 <= args.digits <= MAX_DIGITS:
        p.error(f"--digits must be between 1 and {MAX_DIGITS}")
    if args.test_fraction is not None and not 0 < args.test_fraction < 1:
        p.error("--test_fraction must be between 0 and 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    n = args.digits
    num_pairs = 10 ** (2 * n)
    if args.test_fraction is None:
        num_test = default_num_test(num_pairs)
    else:
        num_test = int(num_pairs * args.test_fraction)
    num_test = min(max(num_test, 1), num_pairs - 1)

    perm = np.random.default_rng(args.seed).permutation(num_pairs)  # pair id = a * 10^n + b
    test_ids, train_ids = perm[:num_test], perm[num_test:]
    splits = {"train": encode_pairs(train_ids, n), "val": encode_pairs(test_ids, n)}
    meta = {
        "vocab_size": 10,
        "itos": {i: str(i) for i in range(10)},
        "stoi": {str(i): i for i in range(10)},
        "example_len": 3 * n + 1,
        "prompt_len": 2 * n,
        "digits": n,
    }

    datafiles.write_dataset(args.out_dir, {"train.bin": lambda f: datafiles.write_array(f, splits["train"]),
                                           "val.bin": lambda f: datafiles.write_array(f, splits["val"])}, meta)

    print(f"{n}-digit addition: {num_pairs:,} pairs, example_len {3 * n + 1} tokens "
          f"(prompt {2 * n} + sum {n + 1}), vocab 10")
    for split, tokens in splits.items():
        print(f"{split}.bin: {len(tokens):,} examples, {tokens.size:,} tokens")
    print(f"wrote {args.out_dir}")


if __name__ == "__main__":
    common.run_main(main, sys.argv[1:])
