"""The data steps of the two demos: addition (prepare_addition.py) and CIFAR-10 images (prepare_image.py).

Everything runs offline: the image tests build a miniature archive in the real
CIFAR-10 layout from a few synthetic pictures and serve it from 127.0.0.1. Most runs call the
script's main() in this process (helpers.run_in_process); one of each script runs it as a user
would, to prove its wiring.
"""
import io
import os
import pickle
import socket
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import common
import datafiles
import files
from helpers import assert_one_error_line, assert_one_error_line_after_progress, full_disk_at, needs_dev_full, \
    cut_off_server, run_in_process
import prepare_addition
import prepare_image

ROOT = Path(__file__).resolve().parent.parent  # the project folder


def run_script(script, *args):
    """Run one of the demos' scripts end to end, as a user would."""
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """run(script, *args): the script's main(args) in this process, with tmp_path as the working
    directory; its exit status, stdout and stderr as a subprocess.CompletedProcess."""
    monkeypatch.chdir(tmp_path)
    mains = {"demos/prepare_addition.py": prepare_addition.main, "demos/prepare_image.py": prepare_image.main}
    return lambda script, *args: run_in_process(capsys, mains[script], [str(a) for a in args])


def read_dataset(out_dir):
    meta = datafiles.check_dataset(str(out_dir), "the demo's prepare script")  # complete, sizes as recorded
    n = meta["example_len"]
    train = np.fromfile(Path(out_dir) / "train.bin", dtype=np.uint16)
    val = np.fromfile(Path(out_dir) / "val.bin", dtype=np.uint16)
    assert train.size % n == 0 and val.size % n == 0
    return meta, train.reshape(-1, n), val.reshape(-1, n)


def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# ----------------------------------------------------------------------------- addition

@pytest.fixture(scope="module")
def addition2(tmp_path_factory):
    out = tmp_path_factory.mktemp("addition2")
    r = run_script("demos/prepare_addition.py", f"--out_dir={out}")
    assert r.returncode == 0, r.stderr
    return out, r.stdout


def pair_set(examples, n):
    return {(a, b) for a, b, _ in (prepare_addition.decode_example(ex, n) for ex in examples)}


def test_addition_encode_and_decode_helpers():
    assert prepare_addition.encode_example(85, 50, 2) == [8, 5, 5, 0, 5, 3, 1]  # 135 reversed, 3 digits
    assert prepare_addition.encode_example(3, 4, 2) == [0, 3, 0, 4, 7, 0, 0]
    assert prepare_addition.decode_sum([5, 3, 1], 2) == 135
    assert prepare_addition.decode_sum(np.array([8, 9, 9, 1]), 3) == 1998
    with pytest.raises(ValueError):
        prepare_addition.decode_sum([5, 3], 2)
    with pytest.raises(ValueError):
        prepare_addition.encode_example(100, 1, 2)


def test_addition_every_example_decodes_to_a_correct_sum(addition2):
    out, _ = addition2
    _, train, val = read_dataset(out)
    for ex in np.concatenate([train, val]):
        a, b, c = prepare_addition.decode_example(ex, 2)
        assert c == a + b
        assert list(ex) == prepare_addition.encode_example(a, b, 2)
        assert prepare_addition.decode_sum(ex[4:], 2) == a + b


def test_addition_meta_describes_fixed_length_examples(addition2):
    out, _ = addition2
    meta, train, val = read_dataset(out)
    assert meta["example_len"] == 7 and meta["prompt_len"] == 4 and meta["digits"] == 2
    assert meta["vocab_size"] == 10
    assert meta["itos"] == {i: str(i) for i in range(10)}
    assert meta["stoi"] == {str(i): i for i in range(10)}
    assert train.max() <= 9 and val.max() <= 9


def test_addition_every_pair_once_and_held_out_pairs_never_in_train(addition2):
    out, stdout = addition2
    _, train, val = read_dataset(out)
    assert len(val) == 500 and len(train) == 9500  # minGPT's rule: min(20%, 500) held out
    train_pairs, val_pairs = pair_set(train, 2), pair_set(val, 2)
    assert len(train_pairs) == len(train) and len(val_pairs) == len(val)  # no pair twice
    assert not train_pairs & val_pairs
    assert train_pairs | val_pairs == {(a, b) for a in range(100) for b in range(100)}
    assert "9,500" in stdout and "500" in stdout


def test_addition_split_is_seeded(addition2, run, tmp_path):
    out, _ = addition2
    assert run("demos/prepare_addition.py", "--out_dir=same").returncode == 0
    assert run("demos/prepare_addition.py", "--out_dir=other", "--seed=7").returncode == 0
    for name in ["train.bin", "val.bin", "meta.pkl"]:
        assert (tmp_path / "same" / name).read_bytes() == (out / name).read_bytes()
    _, _, val = read_dataset(out)
    _, _, other_val = read_dataset(tmp_path / "other")
    assert pair_set(other_val, 2) != pair_set(val, 2)
    assert not list(tmp_path.glob("*/*.tmp"))


def test_addition_test_fraction_flag(run, tmp_path):
    r = run("demos/prepare_addition.py", f"--out_dir={tmp_path}", "--digits=1", "--test_fraction=0.25")
    assert r.returncode == 0, r.stderr
    meta, train, val = read_dataset(tmp_path)
    assert (len(train), len(val)) == (75, 25)
    assert meta["example_len"] == 4 and meta["prompt_len"] == 2


def test_addition_three_digits_counts(run, tmp_path):
    r = run("demos/prepare_addition.py", f"--out_dir={tmp_path}", "--digits=3")
    assert r.returncode == 0, r.stderr
    meta, train, val = read_dataset(tmp_path)
    assert meta["example_len"] == 10 and meta["prompt_len"] == 6 and meta["digits"] == 3
    assert (len(train), len(val)) == (999_500, 500)
    for ex in np.concatenate([train[:: 9973], val]):
        a, b, c = prepare_addition.decode_example(ex, 3)
        assert c == a + b
    assert "999,500" in r.stdout


@pytest.mark.parametrize("flags, words", [
    (["--digits=0"], ["--digits must be between 1 and 3"]),
    (["--digits=4"], ["--digits must be between 1 and 3"]),
    (["--digits=two"], ["--digits: invalid int value: 'two'", "--help"]),
    (["--test_fraction=1.5"], ["--test_fraction must be between 0 and 1"]),
    (["--seed"], ["--seed: expected one argument"]),
    (["--base=16"], ["unrecognized arguments: --base=16", "--help"]),
])
def test_addition_bad_flags_exit_1_with_one_line(run, tmp_path, flags, words):
    r = run("demos/prepare_addition.py", "--out_dir=out", *flags)
    assert_one_error_line(r, *words)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- a miniature CIFAR-10

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
WHITE, BLACK, YELLOW, GREY = (255, 255, 255), (0, 0, 0), (255, 255, 0), (128, 128, 128)
COLOURS = [RED, GREEN, BLUE, WHITE, BLACK, YELLOW, GREY]


def solid(colour):
    return np.broadcast_to(np.array(colour, np.uint8), (32, 32, 3)).copy()


def synthetic_images(seed, count):
    """Solid colours, halves (top/bottom, left/right) and 2-pixel stripes of the 7 COLOURS."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        c1, c2 = (COLOURS[j] for j in rng.choice(len(COLOURS), 2, replace=False))
        img = solid(c1)
        kind = i % 4
        if kind == 1:
            img[16:] = c2  # bottom half
        elif kind == 2:
            img[:, 16:] = c2  # right half
        elif kind == 3:
            img[(np.arange(32) // 2) % 2 == 1] = c2  # horizontal stripes, 2 rows each
        images.append(img)
    return np.stack(images)


def cifar_batch_pickle(images):
    """One batch file as CIFAR-10 has it: a pickled dict, bytes keys, uint8 [N, 3072] channel-planar rows."""
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3072)  # [N, R plane | G plane | B plane]
    batch = {b"batch_label": b"synthetic", b"labels": [0] * len(images), b"data": rows,
             b"filenames": [b"img_%d.png" % i for i in range(len(images))]}
    # the real files were written by numpy 1.x, which named numpy.core.multiarray._reconstruct
    return pickle.dumps(batch, protocol=3).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def write_cifar_archive(path, train_batches, test_images, replace=None):
    """A tar.gz laid out as cifar-10-python.tar.gz; `replace` maps a batch name to raw bytes to use instead."""
    files = {f"data_batch_{i + 1}": cifar_batch_pickle(b) for i, b in enumerate(train_batches)}
    files["test_batch"] = cifar_batch_pickle(test_images)
    files.update(replace or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture
def cifar(tmp_path):
    train_batches = [synthetic_images(seed, 3) for seed in range(5)]
    train_batches[0][0] = solid(RED)  # the first training image is pure red
    test_images = synthetic_images(99, 4)
    archive = write_cifar_archive(tmp_path / prepare_image.ARCHIVE, train_batches, test_images)
    return archive, np.concatenate(train_batches), test_images


def average_pool_2x2(images):
    n, h, w, _ = images.shape
    return np.floor(images.reshape(n, h // 2, 2, w // 2, 2, 3).mean(axis=(2, 4)) + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- image pipeline

def test_image_tokens_reproduce_images_with_few_colours(cifar, tmp_path):
    archive, train_images, test_images = cifar
    out = tmp_path / "out"
    r = run_script("demos/prepare_image.py", f"--input={archive}", f"--out_dir={out}", "--colors=8")
    assert r.returncode == 0, r.stderr
    meta, train, val = read_dataset(out)
    assert meta["vocab_size"] == 9 and meta["start_token"] == 8
    assert meta["example_len"] == 1025 and meta["prompt_len"] == 1 and meta["image_size"] == 32
    assert meta["palette"].dtype == np.uint8 and meta["palette"].shape == (8, 3)
    assert files.load_pickle(out / "meta.pkl")["image_size"] == 32  # plain containers: the restricted loader reads it
    assert (len(train), len(val)) == (15, 4)
    # the start token opens every example and appears nowhere else
    assert (train[:, 0] == 8).all() and (val[:, 0] == 8).all()
    assert (train[:, 1:] < 8).all() and (val[:, 1:] < 8).all()
    # 7 colours, 8 palette entries: quantisation loses nothing, channel layout and raster order included
    decoded = prepare_image.tokens_to_pixels(train, meta["palette"], 32)
    assert decoded.shape == (15, 32, 32, 3)
    assert (decoded[0] == RED).all()
    np.testing.assert_array_equal(decoded, train_images)
    np.testing.assert_array_equal(prepare_image.tokens_to_pixels(val, meta["palette"], 32), test_images)
    assert (out / "preview.png").read_bytes().startswith(b"\x89PNG")
    assert "15 images" in r.stdout and not list(out.glob("*.tmp"))


def test_image_tokens_are_the_nearest_palette_colour(cifar, run, tmp_path):
    archive, train_images, test_images = cifar
    out = tmp_path / "out"
    r = run("demos/prepare_image.py", f"--input={archive}", "--out_dir=out", "--colors=4", "--size=16")
    assert r.returncode == 0, r.stderr
    meta, train, val = read_dataset(out)
    assert meta["example_len"] == 257 and meta["image_size"] == 16 and meta["vocab_size"] == 5
    assert (train[:, 0] == 4).all() and (val[:, 0] == 4).all()
    palette = meta["palette"].astype(np.int64)  # [4, 3]
    for tokens, images in [(train, train_images), (val, test_images)]:
        pixels = average_pool_2x2(images).reshape(-1, 3).astype(np.int64)  # [P, 3]
        dist = ((pixels[:, None, :] - palette[None, :, :]) ** 2).sum(-1)  # [P, 4], every colour tried
        chosen = tokens[:, 1:].reshape(-1).astype(np.int64)
        assert (dist[np.arange(len(pixels)), chosen] == dist.min(axis=1)).all()


def test_image_download_from_server_then_reuse(cifar, http_server, run, tmp_path, monkeypatch):
    archive, _, _ = cifar
    (http_server.root / prepare_image.ARCHIVE).write_bytes(archive.read_bytes())
    out = tmp_path / "out"
    monkeypatch.setenv(prepare_image.BASE_URL_ENV, http_server.url)
    r = run("demos/prepare_image.py", "--out_dir=out", "--colors=8")
    assert r.returncode == 0, r.stderr
    assert (out / prepare_image.ARCHIVE).read_bytes() == archive.read_bytes()
    assert not list(out.glob("*.part"))
    first = (out / "train.bin").read_bytes()
    # the archive is there: no second download, even with the network gone
    r = run("demos/prepare_image.py", "--out_dir=out", "--colors=8", f"--base_url={closed_port_url()}")
    assert r.returncode == 0, r.stderr
    assert "already downloaded" in r.stdout
    assert (out / "train.bin").read_bytes() == first


def test_image_without_network_fails_naming_input(run, tmp_path):
    out = tmp_path / "out"
    r = run("demos/prepare_image.py", "--out_dir=out", f"--base_url={closed_port_url()}")
    assert_one_error_line(r, "could not download", f"--input=PATH/{prepare_image.ARCHIVE}")
    assert not out.exists()  # no .part, no archive, no half dataset


def test_image_cut_off_download_leaves_no_archive_and_resumes(cifar, http_server, run, tmp_path):
    archive, _, _ = cifar
    data = archive.read_bytes()
    out = tmp_path / "out"
    server = cut_off_server(data)
    try:
        r = run("demos/prepare_image.py", "--out_dir=out", "--colors=8",
                f"--base_url=http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    # the download's progress bar, then the error on a line of its own
    assert_one_error_line_after_progress(r, "could not download", "run again to resume")
    # what arrived is kept under .part only: no file under the archive's name is ever partial
    assert os.listdir(out) == [prepare_image.ARCHIVE + ".part"]
    assert (out / (prepare_image.ARCHIVE + ".part")).read_bytes() == data[:len(data) // 2]

    (http_server.root / prepare_image.ARCHIVE).write_bytes(data)
    r = run("demos/prepare_image.py", "--out_dir=out", "--colors=8", f"--base_url={http_server.url}")
    assert r.returncode == 0, r.stderr
    assert ("GET", f"/{prepare_image.ARCHIVE}", f"bytes={len(data) // 2}-") in http_server.seen  # only the rest
    assert (out / prepare_image.ARCHIVE).read_bytes() == data
    assert not list(out.glob("*.part"))
    read_dataset(out)


@pytest.mark.parametrize("flags, words", [
    (["--input=nowhere/cifar-10-python.tar.gz"], ["--input file not found: nowhere/cifar-10-python.tar.gz",
                                                  "--input=PATH/cifar-10-python.tar.gz"]),
    (["--input=folder"], ["--input=folder is a directory", "--input=PATH/cifar-10-python.tar.gz"]),
    (["--input=pipe.tar.gz"], ["--input=pipe.tar.gz is a named pipe", "--input=PATH/cifar-10-python.tar.gz"]),
    (["--input=garbage.tar.gz"], ["garbage.tar.gz is not a readable tar.gz", "--input=PATH/cifar-10-python.tar.gz"]),
    (["--input=other.tar.gz"], ["the archive has no cifar-10-batches-py/data_batch_1", "CIFAR-10 python version"]),
    (["--input=cifar-10-python.tar.gz", "--colors=1"], ["--colors must be between 2 and 65535"]),
    (["--input=cifar-10-python.tar.gz", "--colors=70000"], ["--colors must be between 2 and 65535"]),
    (["--input=cifar-10-python.tar.gz", "--colors=many"], ["--colors: invalid int value: 'many'"]),
    (["--input=cifar-10-python.tar.gz", "--size=12"], ["--size: invalid choice: 12", "--help"]),
    (["--input=cifar-10-python.tar.gz", "--kmeans_iters=0"], ["--kmeans_pixels and --kmeans_iters must be positive"]),
])
def test_image_bad_input_exits_1_with_one_line(cifar, run, tmp_path, flags, words):
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe.tar.gz")
    (tmp_path / "garbage.tar.gz").write_bytes(b"not a tar file at all" * 100)
    with tarfile.open(tmp_path / "other.tar.gz", "w:gz") as tar:
        tar.add(cifar[0], arcname="something/else")
    r = run("demos/prepare_image.py", *flags, "--out_dir=out")
    assert_one_error_line(r, *words)
    assert not (tmp_path / "out").exists()


@needs_dev_full
def test_image_preview_on_a_full_disk_says_so_and_keeps_the_whole_dataset(cifar, run, tmp_path):
    with full_disk_at("preview.png"):
        r = run("demos/prepare_image.py", f"--input={cifar[0]}", "--out_dir=out", "--colors=8")
    assert_one_error_line_after_progress(r, "wrote the dataset to out, but could not write out/preview.png "
                                            "(the disk is full)")
    read_dataset(tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "out")) == ["meta.pkl", "train.bin", "val.bin"]  # no part of a preview


class RunsAShellCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_image_refuses_a_pickle_naming_a_foreign_callable(cifar, run, tmp_path):
    _, train_images, test_images = cifar
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": RunsAShellCommand(f"touch {marker}")}, protocol=3)
    archive = write_cifar_archive(tmp_path / "evil.tar.gz", [train_images[:3]] * 5, test_images,
                                  replace={"data_batch_3": evil})
    out = tmp_path / "out"
    r = run("demos/prepare_image.py", f"--input={archive}", "--out_dir=out", "--colors=8")
    assert_one_error_line(r, "cifar-10-batches-py/data_batch_3: refusing to load posix.system")
    assert not marker.exists()
    assert not out.exists()


def test_cifar_batches_load_with_the_restricted_unpickler_which_refuses_os_system():
    data = np.arange(12, dtype=np.uint8).reshape(2, 6)
    for protocol in (3, 4, 5):
        raw = pickle.dumps({b"data": data, b"labels": [1, 2]}, protocol=protocol)
        loaded = files.load_pickle("batch", file=io.BytesIO(raw), encoding="bytes")
        np.testing.assert_array_equal(loaded[b"data"], data)
    # the real batches were written by numpy 1.x (numpy.core) and Python 2 (str keys, read as bytes)
    batch = files.load_pickle("batch", file=io.BytesIO(cifar_batch_pickle(synthetic_images(0, 2))), encoding="bytes")
    assert batch[b"data"].shape == (2, 3072) and batch[b"batch_label"] == b"synthetic"
    with pytest.raises(common.UserError, match="batch: refusing to load posix.system"):
        files.load_pickle("batch", file=io.BytesIO(pickle.dumps({b"data": RunsAShellCommand("true")})), encoding="bytes")


# ----------------------------------------------------------------------------- tokens -> pictures -> PNG

def test_tokens_to_pixels_with_and_without_start_token():
    palette = np.array([RED, GREEN, BLUE], np.uint8)
    pixels_only = np.array([[0, 1, 2, 0], [2, 2, 1, 1]])
    with_start = np.concatenate([np.full((2, 1), 3), pixels_only], axis=1)
    expected = palette[pixels_only].reshape(2, 2, 2, 3)
    np.testing.assert_array_equal(prepare_image.tokens_to_pixels(pixels_only, palette, 2), expected)
    np.testing.assert_array_equal(prepare_image.tokens_to_pixels(with_start, palette, 2), expected)
    one = prepare_image.tokens_to_pixels([3, 1, 1, 3, 1], palette, 2)  # a stray start token is drawn black
    assert one.shape == (1, 2, 2, 3) and (one[0, 1, 0] == BLACK).all() and (one[0, 0, 0] == GREEN).all()
    with pytest.raises(ValueError):
        prepare_image.tokens_to_pixels([0, 1, 2], palette, 2)


def test_image_grid_places_images_inside_a_border():
    images = np.stack([solid(c)[:4, :5] for c in [RED, GREEN, BLUE, YELLOW, GREY]])  # 5 images 4x5
    grid = prepare_image.image_grid(images, nrow=3, border=2)
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (5 + 2) + 2, 3)
    for i, img in enumerate(images):
        top, left = 2 + (i // 3) * 6, 2 + (i % 3) * 7
        np.testing.assert_array_equal(grid[top:top + 4, left:left + 5], img)
    assert (grid[:2] == 255).all() and (grid[:, :2] == 255).all() and (grid[8:, 16:] == 255).all()


def read_png(path):
    """Decode an 8-bit RGB, non-interlaced PNG with filter type 0 rows, checking every CRC."""
    raw = Path(path).read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos:pos + 4])
        kind, data = raw[pos + 4:pos + 8], raw[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", raw[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF, f"bad CRC in {kind}"
        chunks.append((kind, data))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour_type, compression, filtering, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour_type, compression, filtering, interlace) == (8, 2, 0, 0, 0)
    stream = zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))
    rows = np.frombuffer(stream, np.uint8).reshape(height, 1 + 3 * width)
    assert (rows[:, 0] == 0).all()  # filter type 0: the bytes are the pixels
    return rows[:, 1:].reshape(height, width, 3)


@pytest.fixture
def png_and_pixels(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)  # not square: catches w/h swaps
    path = tmp_path / "img.png"
    prepare_image.write_png(path, rgb)
    return path, rgb


def test_png_writer_output_decodes_to_the_same_pixels(png_and_pixels):
    path, rgb = png_and_pixels
    decoded = read_png(path)
    assert decoded.shape == (5, 7, 3)
    np.testing.assert_array_equal(decoded, rgb)
    with pytest.raises(ValueError):
        prepare_image.write_png(path, rgb.astype(np.float32))


def test_png_writer_output_opens_with_pil(png_and_pixels):
    Image = pytest.importorskip("PIL.Image")
    path, rgb = png_and_pixels
    with Image.open(path) as img:
        assert img.size == (7, 5) and img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), rgb)
