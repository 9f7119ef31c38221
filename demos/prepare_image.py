"""Prepare CIFAR-10 as sequences of colour tokens, for a GPT that draws images.

As in image-GPT, each pixel becomes one token: the index of its nearest colour in
a palette of 512 colours found by k-means on the training pixels. An image is read
row by row (32x32 -> 1024 tokens) after a start token (id = number of colours),
so that the model predicts the first pixel too:

    python demos/prepare_image.py                      # downloads CIFAR-10 (163 MB) -> data/cifar10
    python demos/prepare_image.py --input=cifar-10-python.tar.gz
    python demos/prepare_image.py --size=16            # 2x2-averaged 16x16 images: CPU-sized

Writes train.bin (the 50,000 training images) and val.bin (the 10,000 test
images) as flat uint16 token ids, one example of 1 + size*size tokens after the
other, meta.pkl, and preview.png (the first training images after quantisation).
The functions tokens_to_pixels, image_grid and write_png turn sampled tokens back
into a PNG.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the project's modules
import struct
import tarfile
import time
import zlib

import numpy as np

import common
import datafiles
import files

DEFAULT_BASE_URL = "https://www.cs.toronto.edu/~kriz"
BASE_URL_ENV = "CIFAR10_BASE_URL"
ARCHIVE = "cifar-10-python.tar.gz"
TRAIN_BATCHES = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "cifar-10-batches-py/test_batch"
CIFAR_SIZE = 32


# ----------------------------------------------------------------------------- loading

def load_batch(tar, name):
    """uint8 [N, 3072] image rows (1024 R, then 1024 G, then 1024 B values) of one batch file."""
    try:
        f = tar.extractfile(tar.getmember(name))
    except KeyError:
        raise common.UserError(f"the archive has no {name}: is it the CIFAR-10 python version ({ARCHIVE})?") from None
    # a plain pickle.load would run whatever callable a tampered batch names (os.system, ...);
    # the batches were written by Python 2: encoding="bytes" reads their str keys as bytes
    batch = files.load_pickle(name, file=f, encoding="bytes")
    data = batch.get(b"data") if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072):
        raise common.UserError(f"{name}: expected a dict with b'data' = uint8 array [N, 3072]")
    return data


def load_cifar10(archive_path):
    """(train, test) images as uint8 [N, 32, 32, 3], read from the archive without extracting it."""
    try:
        with tarfile.open(archive_path, "r:gz") as tar:
            train = np.concatenate([load_batch(tar, name) for name in TRAIN_BATCHES])
            test = load_batch(tar, TEST_BATCH)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise common.UserError(f"{archive_path} is not a readable tar.gz ({e}); pass --input=PATH/{ARCHIVE}, "
                               f"CIFAR-10's python version") from None
    return rows_to_images(train), rows_to_images(test)


def rows_to_images(rows):
    # each row is channel-planar: [R plane 32x32 | G plane | B plane] -> [N, 32, 32, 3]
    return rows.reshape(-1, 3, CIFAR_SIZE, CIFAR_SIZE).transpose(0, 2, 3, 1)


def downsample(images, size):
    """Average pooling of uint8 [N, 32, 32, 3] images to [N, size, size, 3] (size divides 32)."""
    f = images.shape[1] // size
    if f == 1:
        return images
    sums = images.reshape(-1, size, f, size, f, 3).sum(axis=(2, 4), dtype=np.uint16)  # [N, size, size, 3]
    return ((sums + f * f // 2) // (f * f)).astype(np.uint8)


# ----------------------------------------------------------------------------- palette

def nearest_colour(pixels, colours, chunk=4096, progress=None):
    """Index of the nearest colour (squared RGB distance, lowest index on ties) for each pixel.

    pixels [P, 3], colours [K, 3] -> uint16 [P]. Distances are taken `chunk` pixels at
    a time, so memory stays at chunk*K floats. With integer colours (the final uint8
    palette) every quantity is an integer below 2^24, so float32 arithmetic is exact.
    """
    c = np.asarray(colours, np.float32)  # [K, 3]
    minus_2ct = -2.0 * c.T  # [3, K]
    cc = (c * c).sum(axis=1)  # [K]; |x|^2 is the same for every colour, so it is left out
    out = np.empty(len(pixels), np.uint16)
    for i in range(0, len(pixels), chunk):
        x = np.asarray(pixels[i:i + chunk], np.float32)  # [B, 3]
        d = x @ minus_2ct  # [B, K]
        d += cc
        out[i:i + chunk] = d.argmin(axis=1)
        if progress is not None:
            progress.update(len(x))
    return out


def kmeans_palette(pixels, k, iters, rng):
    """k colours by k-means (Lloyd's algorithm) on uint8 pixels [P, 3] -> uint8 palette [k, 3]."""
    from tqdm import tqdm

    # start from k distinct colours of randomly ordered pixels (frequent colours more likely)
    order = rng.permutation(len(pixels))
    shuffled = pixels[order].astype(np.uint32)  # [P, 3]
    packed = (shuffled[:, 0] << 16) | (shuffled[:, 1] << 8) | shuffled[:, 2]  # one integer per colour
    _, first = np.unique(packed, return_index=True)
    distinct = pixels[order[np.sort(first)]]  # [D, 3] in random order
    if len(distinct) <= k:
        # no more colours than palette entries: the palette is the colours themselves
        pad = np.repeat(distinct[:1], k - len(distinct), axis=0)
        return np.concatenate([distinct, pad]).astype(np.uint8)
    centroids = distinct[:k].astype(np.float64)  # [k, 3]

    x = pixels.astype(np.float32)  # [P, 3]
    bar = tqdm(range(iters), desc=f"k-means, {k} colours")
    for _ in bar:
        assign = nearest_colour(x, centroids)  # [P]
        counts = np.bincount(assign, minlength=k)  # [k]
        sums = np.stack([np.bincount(assign, weights=x[:, ch], minlength=k) for ch in range(3)], axis=1)  # [k, 3]
        new = centroids.copy()
        used = counts > 0
        new[used] = sums[used] / counts[used, None]
        empty = np.flatnonzero(~used)
        new[empty] = x[rng.integers(0, len(x), len(empty))]  # re-seed colours nobody chose
        shift = np.abs(new - centroids).max()
        centroids = new
        bar.set_postfix(moved=f"{shift:.3f}", empty=len(empty))
        if shift < 1e-2 and len(empty) == 0:
            break
    bar.close()
    return np.clip(np.rint(centroids), 0, 255).astype(np.uint8)


def images_to_tokens(images, palette, start_token, desc):
    """uint8 [N, S, S, 3] -> uint16 [N, 1 + S*S]: the start token, then palette indices row by row."""
    from tqdm import tqdm

    n, h, w, _ = images.shape
    pixels = images.reshape(-1, 3)  # [N*S*S, 3], raster order
    tokens = np.empty((n, 1 + h * w), np.uint16)
    tokens[:, 0] = start_token
    with tqdm(total=len(pixels), unit="px", unit_scale=True, desc=desc) as bar:
        tokens[:, 1:] = nearest_colour(pixels, palette, progress=bar).reshape(n, -1)
    return tokens


# ----------------------------------------------------------------------------- tokens -> pictures

def tokens_to_pixels(tokens, palette, size):
    """Palette tokens -> uint8 images [N, size, size, 3].

    tokens: [N, size*size] (pixels only) or [N, 1 + size*size] (starting with the
    start token, as in train.bin, which is dropped); a 1-D sequence is one image.
    A token that is not a palette index (e.g. a stray start token) is drawn black.
    """
    tokens = np.asarray(tokens)
    if tokens.ndim == 1:
        tokens = tokens[None]
    if tokens.shape[-1] == size * size + 1:
        tokens = tokens[:, 1:]
    if tokens.ndim != 2 or tokens.shape[-1] != size * size:
        raise ValueError(f"expected {size * size} or {size * size + 1} tokens per image, got shape {tokens.shape}")
    palette = np.asarray(palette, np.uint8)
    colours = np.concatenate([palette, np.zeros((1, 3), np.uint8)])  # [K+1, 3]: last is black
    idx = np.where((tokens >= 0) & (tokens < len(palette)), tokens, len(palette))
    return colours[idx].reshape(-1, size, size, 3)


def image_grid(images, nrow, border=2, border_value=255):
    """uint8 images [N, h, w, 3] tiled `nrow` to a row, with a `border`-pixel frame -> [H, W, 3]."""
    images = np.asarray(images, np.uint8)
    n, h, w, _ = images.shape
    rows = -(-n // nrow)
    grid = np.full((rows * (h + border) + border, nrow * (w + border) + border, 3), border_value, np.uint8)
    for i, img in enumerate(images):
        top, left = border + (i // nrow) * (h + border), border + (i % nrow) * (w + border)
        grid[top:top + h, left:left + w] = img
    return grid


def write_png(path, rgb):
    """Write a uint8 [H, W, 3] array as an 8-bit RGB PNG (no dependencies but zlib)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] array, got {rgb.dtype} {rgb.shape}")
    h, w, _ = rgb.shape

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, colour type 2 (RGB), no interlace
    rows = np.concatenate([np.zeros((h, 1), np.uint8), rgb.reshape(h, w * 3)], axis=1)  # filter byte 0 per row
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
           + chunk(b"IDAT", zlib.compress(rows.tobytes(), 9)) + chunk(b"IEND", b""))
    with files.atomic_write(path) as f:
        f.write(png)


# ----------------------------------------------------------------------------- main

def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--input", help=f"a local copy of {ARCHIVE} (no download)")
    p.add_argument("--out_dir", default=os.path.join("data", "cifar10"), help="output directory (default data/cifar10)")
    p.add_argument("--base_url", default=None,
                   help=f"where to download {ARCHIVE} from (default ${BASE_URL_ENV} or {DEFAULT_BASE_URL})")
    p.add_argument("--size", type=int, default=32, choices=[32, 16, 8],
                   help="image side after average pooling (default 32; 16 trains on a CPU)")
    p.add_argument("--colors", type=int, default=512, help="palette size (default 512, as image-GPT)")
    p.add_argument("--kmeans_pixels", type=int, default=1_000_000,
                   help="training pixels sampled for k-means (default 1,000,000)")
    p.add_argument("--kmeans_iters", type=int, default=30, help="k-means iterations at most (default 30)")
    p.add_argument("--seed", type=int, default=1337, help="seed of the pixel sample and k-means (default 1337)")
    args = p.parse_args(argv)
    if not 2 <= args.colors <= 65535:
        p.error("--colors must be between 2 and 65535 (tokens are uint16)")
    if args.kmeans_pixels < 1 or args.kmeans_iters < 1:
        p.error("--kmeans_pixels and --kmeans_iters must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    t0 = time.time()
    if args.input:
        what = files.not_a_regular_file(args.input)
        if what == "missing":
            raise common.UserError(f"--input file not found: {args.input}; pass --input=PATH/{ARCHIVE}")
        if what is not None:  # a directory; a named pipe, which would be read forever
            raise common.UserError(f"--input={args.input} is {what}; pass the archive itself, "
                                   f"--input=PATH/{ARCHIVE}")
        archive = args.input
    else:
        archive = os.path.join(args.out_dir, ARCHIVE)
        if os.path.exists(archive):  # download() gives the archive its name only once it is whole
            print(f"using {archive} (already downloaded)")
        else:
            base_url = args.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
            try:
                files.download(f"{base_url.rstrip('/')}/{ARCHIVE}", archive)
            except common.UserError as e:
                raise common.UserError(f"{e}; offline, fetch {ARCHIVE} elsewhere and pass "
                                       f"--input=PATH/{ARCHIVE}") from None

    train, test = load_cifar10(archive)
    print(f"loaded {len(train):,} training and {len(test):,} test images from {archive}")
    train, test = downsample(train, args.size), downsample(test, args.size)

    rng = np.random.default_rng(args.seed)
    train_pixels = train.reshape(-1, 3)
    sample = train_pixels[rng.integers(0, len(train_pixels), min(args.kmeans_pixels, len(train_pixels)))]
    palette = kmeans_palette(sample, args.colors, args.kmeans_iters, rng)  # [colors, 3]

    start = args.colors
    splits = {"train": images_to_tokens(train, palette, start, "train.bin"),
              "val": images_to_tokens(test, palette, start, "val.bin")}
    meta = {
        "vocab_size": args.colors + 1,
        "example_len": 1 + args.size * args.size,
        "prompt_len": 1,
        "palette": palette,
        "image_size": args.size,
        "start_token": start,
    }
    quantised = tokens_to_pixels(splits["train"][:64], palette, args.size)
    mse = float(((quantised.astype(np.float32) - train[:64]) ** 2).mean())

    datafiles.write_dataset(args.out_dir, {"train.bin": lambda f: datafiles.write_array(f, splits["train"]),
                                           "val.bin": lambda f: datafiles.write_array(f, splits["val"])}, meta)
    preview = os.path.join(args.out_dir, "preview.png")
    try:
        write_png(preview, image_grid(quantised, nrow=8))
    except OSError as e:
        why = "the disk is full" if e.errno == 28 else e.strerror
        raise common.UserError(f"wrote the dataset to {args.out_dir}, but could not write {preview} ({why})") from None

    print(f"{args.size}x{args.size} images, {args.colors} colours + start token {start}: "
          f"vocab_size {meta['vocab_size']}, example_len {meta['example_len']}")
    for split, tokens in splits.items():
        print(f"{split}.bin: {len(tokens):,} images, {tokens.size:,} tokens")
    print(f"quantisation error on 64 training images: RMS {mse ** 0.5:.1f} per channel (0-255)")
    print(f"wrote {args.out_dir} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    common.run_main(main, sys.argv[1:])
