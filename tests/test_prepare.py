"""Tests of prepare_char.py, prepare_owt.py and bench_prepare.py: the .bin files decode back to
exactly the input, the splits are as documented, a BPE trained on the corpus is one tiktoken
reads, downloads (also resumed ones) work against a local server, every bad input ends in one
clear line and exit code 1 with no output files left behind, and no fault (a full disk, a kill,
Ctrl-C) leaves a dataset that looks complete but is not.

Most runs call the script's main() in this process (helpers.run_in_process: what the user would
see, without starting Python again); a few run the script itself, to prove its wiring, or where
only a process of its own can show the property (a kill, Ctrl-C, something that could hang)."""
import errno
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import tiktoken

import bench_prepare
import common
import datafiles
import files
import prepare_addition
import prepare_char
import prepare_image
import prepare_owt
import tokenizer
from helpers import (PROGRESS_LINE, assert_one_error_line, assert_one_error_line_after_progress, full_disk_at,
                     needs_dev_full, run_in_process)

ROOT = Path(__file__).resolve().parent.parent  # the project folder
EOT = 50256
MAINS = {"prepare_char.py": prepare_char.main, "prepare_owt.py": prepare_owt.main,
         "bench_prepare.py": bench_prepare.main, "demos/prepare_addition.py": prepare_addition.main,
         "demos/prepare_image.py": prepare_image.main}


@pytest.fixture
def enc(gpt2_bpe):
    return gpt2_bpe


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    """run(script, *args): the script's main(args) in this process, with tmp_path as the working
    directory; its exit status, stdout and stderr as a subprocess.CompletedProcess."""
    monkeypatch.chdir(tmp_path)
    return lambda script, *args: run_in_process(capsys, MAINS[script], [str(a) for a in args])


def run_script(script, *args, cwd, prefix=(), timeout=120):
    """Run one of the scripts end to end, as a user would."""
    return subprocess.run([*prefix, sys.executable, str(ROOT / script), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens: what a machine without network sees."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def bin_documents(path, enc):
    """The documents in a BPE .bin file: the token runs ended by end-of-text, decoded."""
    tokens = np.fromfile(path, dtype=np.uint16).tolist()
    assert tokens and tokens[-1] == enc.eot_token
    docs, start = [], 0
    for i, t in enumerate(tokens):
        if t == enc.eot_token:
            docs.append(tokens[start:i])
            start = i + 1
    return [enc.decode(ids) for ids in docs], tokens


def assert_split_in_order(all_docs, train_docs, val_docs):
    """train and val together hold every document once, each in the original order."""
    it, iv = 0, 0
    for doc in all_docs:
        if it < len(train_docs) and train_docs[it] == doc:
            it += 1
        elif iv < len(val_docs) and val_docs[iv] == doc:
            iv += 1
        else:
            pytest.fail(f"document {doc[:40]!r} missing or out of order")
    assert (it, iv) == (len(train_docs), len(val_docs))


def make_owt_shard(path, members, shard=0):
    """An OpenWebText shard in the real layout: a tar of openwebtext/urlsf_subsetNN-K_data.xz
    members, each an xz-compressed tar of .txt documents (given as bytes)."""
    with tarfile.open(path, "w") as outer:
        for k, docs in enumerate(members):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w:xz") as tar:
                for j, data in enumerate(docs):
                    info = tarfile.TarInfo(f"{j:07d}-{k:04x}{j:028x}.txt")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            info = tarfile.TarInfo(f"openwebtext/urlsf_subset{shard:02d}-{k}_data.xz")
            info.size = inner.tell()
            inner.seek(0)
            outer.addfile(info, inner)


def cut_documents(text, n, seed=0):
    """n distinct documents of varied length cut from the paragraphs of text."""
    paragraphs = text.split("\n\n")
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        start = int(rng.integers(0, len(paragraphs) - 8))
        docs.append(f"[{i}] " + "\n\n".join(paragraphs[start:start + int(rng.integers(1, 8))]))
    return docs


def made_up_documents(n, seed=0):
    """n distinct documents of made-up text: words with accents, CJK, digits and contractions,
    sentences and paragraphs of varied length."""
    words = ["the", "cat", "sat", "on", "a", "mat", "naïve", "café", "über", "日本語", "1984", "don't",
             "HELLO", "x", "—", "ünïcödé", "✓", "and", "then", "    indented"]
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        paragraphs = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 30))) + rng.choice(".!?:")
                      for _ in range(rng.randint(1, 4))]
        docs.append(f"[{i}] " + "\n\n".join(paragraphs))
    return docs


def write_documents(folder, docs):
    """Each document as a .txt file of its own in folder, in order."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (folder / f"{i:03d}.txt").write_text(doc, encoding="utf-8")


def dead_pid():
    """The id of a process that has ended."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


# ----------------------------------------------------------------------------
# prepare_char.py

def read_char_dataset(out_dir):
    """The text train.bin + val.bin decode to, after datafiles.check_dataset has found the set complete."""
    meta = datafiles.check_dataset(str(out_dir), "python prepare_char.py")
    ids = np.concatenate([np.fromfile(Path(out_dir) / f"{s}.bin", dtype=np.uint16) for s in ("train", "val")])
    return "".join(meta["itos"][i] for i in ids.tolist())


def test_char_tiny_shakespeare_round_trips_with_nanogpt_sizes(tiny_shakespeare, run, tmp_path):
    result = run("prepare_char.py", f"--input={tiny_shakespeare}", "--out_dir=sc")
    assert result.returncode == 0, result.stderr
    assert "vocab size: 65" in result.stdout
    assert "train has 1,003,854 tokens" in result.stdout and "val has 111,540 tokens" in result.stdout

    text = tiny_shakespeare.read_text(encoding="utf-8")
    train = np.fromfile(tmp_path / "sc" / "train.bin", dtype=np.uint16)
    val = np.fromfile(tmp_path / "sc" / "val.bin", dtype=np.uint16)
    meta = datafiles.check_dataset(str(tmp_path / "sc"), "python prepare_char.py")
    assert set(meta) == {"vocab_size", "itos", "stoi", "files"} and meta["vocab_size"] == 65
    assert list(meta["stoi"]) == sorted(set(text))
    assert all(meta["itos"][i] == ch for ch, i in meta["stoi"].items())
    assert (len(train), len(val)) == (1_003_854, 111_540)
    assert "".join(meta["itos"][i] for i in train.tolist()) == text[:int(len(text) * 0.9)]
    assert "".join(meta["itos"][i] for i in val.tolist()) == text[int(len(text) * 0.9):]
    assert sorted(os.listdir(tmp_path / "sc")) == ["input.txt", "meta.pkl", "train.bin", "val.bin"]
    assert (tmp_path / "sc" / "input.txt").read_bytes() == tiny_shakespeare.read_bytes()


def test_char_any_utf8_text_round_trips(run, tmp_path):
    text = "naïve café — ünïcödé ✓ 日本語\r\n" * 50  # \r kept: the text exactly as written
    (tmp_path / "mine.txt").write_bytes(text.encode("utf-8"))
    result = run("prepare_char.py", "--input=mine.txt", "--out_dir=out")
    assert result.returncode == 0, result.stderr
    assert read_char_dataset(tmp_path / "out") == text
    assert (tmp_path / "out" / "input.txt").read_bytes() == text.encode("utf-8")
    (tmp_path / "plain").write_text("a new file")  # the dataset's files get the permissions any new file gets
    assert {(tmp_path / "out" / name).stat().st_mode for name in os.listdir(tmp_path / "out")} \
        == {(tmp_path / "plain").stat().st_mode}


def test_char_downloads_its_text_once(http_server, made_up_text, run, tmp_path):
    text = made_up_text(20_000)
    (http_server.root / "input.txt").write_text(text, encoding="utf-8")
    result = run("prepare_char.py", f"--url={http_server.url}/input.txt")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "data" / "shakespeare_char"
    assert (out / "input.txt").read_text(encoding="utf-8") == text
    assert sorted(os.listdir(out)) == ["input.txt", "meta.pkl", "train.bin", "val.bin"]
    assert read_char_dataset(out) == text
    # the next run uses the copy on disk and needs no network
    again = run("prepare_char.py", f"--url={closed_port_url()}/input.txt")
    assert again.returncode == 0, again.stderr
    assert "downloading" not in again.stdout


def test_char_keeps_its_text_for_the_readmes_bpe_command(gpt2_bpe, made_up_text, run, tmp_path):
    text = made_up_text(20_000)
    (tmp_path / "play.txt").write_text(text, encoding="utf-8")
    # the README's two commands, with a local file for tiny Shakespeare
    first = run("prepare_char.py", "--input=play.txt", "--out_dir=data/shakespeare_char")
    assert first.returncode == 0, first.stderr
    second = run("prepare_owt.py", "--input=data/shakespeare_char/input.txt", "--split=tail",
                 "--out_dir=data/shakespeare")
    assert second.returncode == 0, second.stderr
    n = int(len(text) * 0.9)
    assert np.fromfile(tmp_path / "data/shakespeare/train.bin", dtype=np.uint16).tolist() == gpt2_bpe.encode_ordinary(text[:n])
    assert np.fromfile(tmp_path / "data/shakespeare/val.bin", dtype=np.uint16).tolist() == gpt2_bpe.encode_ordinary(text[n:])


def test_char_without_network_or_input_exits_1_and_leaves_nothing(run, tmp_path):
    result = run("prepare_char.py", f"--url={closed_port_url()}/input.txt", "--out_dir=out")
    assert_one_error_line(result, "could not download", "--input=FILE")
    assert not (tmp_path / "out").exists()


def test_char_missing_remote_file_exits_1_and_leaves_nothing(http_server, run, tmp_path):
    result = run("prepare_char.py", f"--url={http_server.url}/nothing-here.txt", "--out_dir=out")
    assert_one_error_line(result, "HTTP 404", "--input=FILE")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, words", [
    (["--input=nope.txt"], ["nope.txt not found", "--input=FILE"]),
    (["--input=folder"], ["folder is a directory", "--input=FILE"]),
    (["--input=link.txt"], ["link.txt is a broken symbolic link", "--input=FILE"]),
    (["--input=latin1.txt"], ["latin1.txt is not UTF-8", "convert it to UTF-8"]),
    (["--input=empty.txt"], ["only 0 characters", "longer --input"]),
    (["--input=x.txt"], ["only 1 characters", "longer --input"]),
    (["--inptu=one.txt"], ["unrecognized arguments: --inptu", "--help"]),
    (["--input"], ["--input: expected one argument", "--help"]),
])
def test_char_bad_input_exits_1_with_one_line(run, tmp_path, flags, words):
    (tmp_path / "folder").mkdir()
    (tmp_path / "link.txt").symlink_to("nowhere.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 10)
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "x.txt").write_text("x")
    result = run("prepare_char.py", *flags, "--out_dir=out")
    assert_one_error_line(result, *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_char_refuses_a_named_pipe_instead_of_waiting_on_it(tmp_path):
    os.mkfifo(tmp_path / "pipe.txt")  # nothing ever writes to it: reading it would wait forever
    result = run_script("prepare_char.py", "--input=pipe.txt", "--out_dir=out", cwd=tmp_path, timeout=60)
    assert_one_error_line(result, "pipe.txt is a named pipe", "--input=FILE")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("script, flags, words", [
    ("prepare_char.py", ["--input=c/secret.txt"], ["cannot read c/secret.txt (Permission denied)", "--input=FILE"]),
    ("prepare_owt.py", ["--input=c", "--vocab_size=260"], ["cannot read c/secret.txt (Permission denied)", "--input"]),
])
def test_unreadable_input_exits_1_with_one_line(tmp_path, script, flags, words):
    write_documents(tmp_path / "c", ["a first document", "a second one", "and a third"])
    (tmp_path / "c" / "secret.txt").write_text("private text")
    (tmp_path / "c" / "secret.txt").chmod(0)
    prefix = ()
    if os.geteuid() == 0:  # root reads any file, unless it gives up that capability for the run
        if not shutil.which("setpriv"):
            pytest.skip("run as root: needs setpriv (util-linux) to run the script without the right to read any file")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    result = run_script(script, *flags, "--out_dir=out", cwd=tmp_path, prefix=prefix)
    assert_one_error_line_after_progress(result, *words)
    assert not list(tmp_path.glob("out/*"))


def commit_interrupted_after(name, text, out_dir, tmp_path):
    """Run prepare_char.py on `text` in a process that is killed (SIGKILL) right after write_dataset
    renamed `name` into place: the moment where the files of two datasets meet."""
    (tmp_path / "new.txt").write_text(text, encoding="utf-8")
    code = f"""if True:
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        import prepare_char
        rename = os.replace
        def rename_then_die(src, dst):
            rename(src, dst)
            if os.path.basename(dst) == {name!r}:
                os.kill(os.getpid(), signal.SIGKILL)
        os.replace = rename_then_die
        prepare_char.main(["--input=new.txt", "--out_dir={out_dir}"])
    """
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_char_killed_between_renames_is_refused_then_repaired(made_up_text, tmp_path):
    old, new = made_up_text(5_000, seed=1), made_up_text(8_000, seed=2)
    (tmp_path / "old.txt").write_text(old, encoding="utf-8")
    assert run_script("prepare_char.py", "--input=old.txt", "--out_dir=ds", cwd=tmp_path).returncode == 0
    killed = commit_interrupted_after("train.bin", new, "ds", tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    # the new train.bin beside the old val.bin and meta.pkl: refused, with the fix
    assert len(np.fromfile(tmp_path / "ds" / "train.bin", dtype=np.uint16)) == int(len(new) * 0.9)
    with pytest.raises(common.UserError, match="left half-written by an interrupted prepare script: run it again"):
        datafiles.check_dataset(str(tmp_path / "ds"), "python prepare_char.py")
    # running it again repairs it
    again = run_script("prepare_char.py", "--input=new.txt", "--out_dir=ds", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert read_char_dataset(tmp_path / "ds") == new
    assert sorted(os.listdir(tmp_path / "ds")) == ["input.txt", "meta.pkl", "train.bin", "val.bin"]


@needs_dev_full
@pytest.mark.parametrize("name", ["input.txt", "train.bin", "meta.pkl", datafiles.INCOMPLETE])
def test_char_full_disk_leaves_the_old_dataset_and_no_temporaries(made_up_text, run, tmp_path, name):
    old, new = made_up_text(5_000, seed=1), made_up_text(8_000, seed=2)
    (tmp_path / "old.txt").write_text(old, encoding="utf-8")
    (tmp_path / "new.txt").write_text(new, encoding="utf-8")
    assert run("prepare_char.py", "--input=old.txt", "--out_dir=ds").returncode == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / "ds").iterdir()}

    with full_disk_at(name):  # the disk fills up when this file is written
        result = run("prepare_char.py", "--input=new.txt", "--out_dir=ds")
    assert (result.returncode, result.stderr) == (1, "error: could not write the dataset in ds (the disk is full)\n")
    # the old dataset, whole and loadable; no temporaries, no marker
    assert {path.name: path.read_bytes() for path in (tmp_path / "ds").iterdir()} == before
    assert read_char_dataset(tmp_path / "ds") == old


def test_char_dataset_that_lost_its_meta_is_refused_not_read_as_gpt2_bpe(made_up_text, run, tmp_path):
    (tmp_path / "play.txt").write_text(made_up_text(5_000), encoding="utf-8")
    assert run("prepare_char.py", "--input=play.txt", "--out_dir=ds").returncode == 0
    (tmp_path / "ds" / "meta.pkl").unlink()
    with pytest.raises(common.UserError, match=r"ds has no meta.pkl, and its tokens \(all below \d+\) are not GPT-2 "
                                               r"BPE: its vocabulary is lost; prepare the dataset again "
                                               r"\(python prepare_char.py\)"):
        datafiles.check_dataset(str(tmp_path / "ds"), "python prepare_char.py")

    # nanoGPT's own prepare scripts write GPT-2 BPE sets without a meta.pkl: those still read as GPT-2 BPE
    ids = np.random.default_rng(0).integers(0, tokenizer.GPT2_VOCAB, 3000).astype(np.uint16)
    (tmp_path / "bpe").mkdir()
    (tmp_path / "bpe" / "train.bin").write_bytes(ids[:2000].tobytes())
    (tmp_path / "bpe" / "val.bin").write_bytes(ids[2000:].tobytes())
    meta = datafiles.check_dataset(str(tmp_path / "bpe"))
    assert meta == {} and tokenizer.model_vocab_size(meta) == tokenizer.GPT2_PADDED_VOCAB


# ----------------------------------------------------------------------------
# prepare_owt.py: splits and round trips

def test_owt_tail_split_reproduces_nanogpt_shakespeare(tiny_shakespeare, run, tmp_path, enc):
    result = run("prepare_owt.py", f"--input={tiny_shakespeare}", "--split=tail", "--out_dir=sbpe")
    assert result.returncode == 0, result.stderr
    assert "train has 301,966 tokens" in result.stdout and "val has 36,059 tokens" in result.stdout
    train = np.fromfile(tmp_path / "sbpe" / "train.bin", dtype=np.uint16).tolist()
    val = np.fromfile(tmp_path / "sbpe" / "val.bin", dtype=np.uint16).tolist()
    assert (len(train), len(val)) == (301_966, 36_059)
    text = tiny_shakespeare.read_text(encoding="utf-8")
    n = int(len(text) * 0.9)
    assert train == enc.encode_ordinary(text[:n]) and val == enc.encode_ordinary(text[n:])  # no EOT, as nanoGPT
    assert sorted(os.listdir(tmp_path / "sbpe")) == ["meta.pkl", "train.bin", "val.bin"]


def test_owt_local_corpus_round_trips_documents_in_order(made_up_text, run, tmp_path, enc):
    docs = cut_documents(made_up_text(100_000), 60)
    docs[3] = "a literal <|endoftext|> in the text stays text"  # encode_ordinary, not the special token
    corpus = tmp_path / "corpus"
    for i, doc in enumerate(docs[:40]):  # .txt files in nested folders, one document each
        path = corpus / f"part{i // 10}" / f"{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(doc, encoding="utf-8")
    (corpus / "skip.md").write_text("not a corpus file")  # a directory yields only corpus suffixes
    (tmp_path / "extra").mkdir()
    with open(tmp_path / "extra" / "more.jsonl", "w", encoding="utf-8") as f:
        for doc in docs[40:]:
            f.write(json.dumps({"text": doc, "url": "x"}) + "\n")

    result = run("prepare_owt.py", "--input", "corpus", "extra/*.jsonl", "--val_fraction=0.3", "--num_proc=2",
                 "--out_dir=out")
    assert result.returncode == 0, result.stderr
    train, train_tokens = bin_documents(tmp_path / "out" / "train.bin", enc)
    val, val_tokens = bin_documents(tmp_path / "out" / "val.bin", enc)
    assert_split_in_order(docs, train, val)
    assert 5 <= len(val) <= 35  # about 30% of 60
    assert train_tokens == [t for doc in train for t in enc.encode_ordinary(doc) + [EOT]]
    assert val_tokens == [t for doc in val for t in enc.encode_ordinary(doc) + [EOT]]
    assert f"train has {len(train_tokens):,} tokens from {len(train)} documents" in result.stdout
    assert "60 documents" in result.stdout and "tokens/s" in result.stdout
    assert sorted(os.listdir(tmp_path / "out")) == ["meta.pkl", "train.bin", "val.bin"]


def test_owt_split_depends_on_seed_not_on_processes(made_up_text, gpt2_bpe, tmp_path, monkeypatch):
    docs = cut_documents(made_up_text(100_000), 300)
    for i, doc in enumerate(docs):
        (tmp_path / f"{i:03d}.txt").write_text(doc, encoding="utf-8")
    monkeypatch.setattr(prepare_owt, "BATCH_BYTES", 4000)  # many tasks, so the processes interleave

    def prepare(out, *flags):
        args = prepare_owt.parse_args(["--input", str(tmp_path), "--out_dir", str(tmp_path / out), *flags])
        stats, _ = prepare_owt.run(args)
        return stats, [(tmp_path / out / f"{s}.bin").read_bytes() for s in ("train", "val")]

    one_stats, one = prepare("one", "--num_proc=1", "--val_fraction=0.2")
    two_stats, two = prepare("two", "--num_proc=2", "--val_fraction=0.2")
    _, other_seed = prepare("seed", "--num_proc=2", "--val_fraction=0.2", "--seed=1")
    assert one == two and one_stats == two_stats
    assert other_seed != one
    assert 30 <= one_stats["val_documents"] <= 90  # about 20% of 300
    assert one_stats["train_documents"] + one_stats["val_documents"] == 300


def test_worker_tokens_equal_encode_ordinary_with_and_without_encode_to_numpy(made_up_text, enc, monkeypatch):
    text = made_up_text(50_000) + " a literal <|endoftext|> stays text"
    expected = enc.encode_ordinary(text)
    monkeypatch.setattr(prepare_owt, "ENC", enc)
    assert prepare_owt.encode_ordinary(text).tolist() == expected

    class TiktokenBefore09:  # no encode_to_numpy yet
        encode_ordinary = staticmethod(enc.encode_ordinary)

    monkeypatch.setattr(prepare_owt, "ENC", TiktokenBefore09())
    assert prepare_owt.encode_ordinary(text).tolist() == expected


def test_owt_default_fraction_still_gives_a_val_document(run, tmp_path, enc):
    for i in range(3):
        (tmp_path / f"{i}.txt").write_text(f"document number {i}.", encoding="utf-8")
    result = run("prepare_owt.py", f"--input={tmp_path}", "--out_dir=out")
    assert result.returncode == 0, result.stderr
    train, _ = bin_documents(tmp_path / "out" / "train.bin", enc)
    val, _ = bin_documents(tmp_path / "out" / "val.bin", enc)
    # with 0.0005 no document draws val here, so the last one moves there
    assert (train, val) == (["document number 0.", "document number 1."], ["document number 2."])


def test_owt_counts_bad_utf8_and_skips_empty_documents(run, tmp_path, enc):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "0.txt").write_text("first good document", encoding="utf-8")
    (tmp_path / "c" / "1.txt").write_bytes(b"bad \xff\xfe bytes here")
    (tmp_path / "c" / "2.txt").write_bytes(b"")
    (tmp_path / "c" / "3.txt").write_text("  \n\n \t", encoding="utf-8")
    (tmp_path / "c" / "4.txt").write_text("last good document", encoding="utf-8")
    result = run("prepare_owt.py", "--input=c", "--val_fraction=0.5", "--out_dir=out")
    assert result.returncode == 0, result.stderr
    assert "empty documents skipped: 2; documents with bad UTF-8 (replaced): 1" in result.stdout
    train, _ = bin_documents(tmp_path / "out" / "train.bin", enc)
    val, _ = bin_documents(tmp_path / "out" / "val.bin", enc)
    assert_split_in_order(["first good document", "bad \ufffd\ufffd bytes here", "last good document"], train, val)


def test_owt_reads_openwebtext_layout_and_cleans_like_the_reference_loader(run, tmp_path, enc):
    members = [[b"\n  first doc\n\n\n\nafter four newlines  \n", b"second doc\n\n\nthird para"],
               [b" \n\n ", b"bad \xc3\x28 utf8\n", "fifth: caf\u00e9\n\n\n\n\nend".encode("utf-8")]]
    make_owt_shard(tmp_path / "shard.tar", members)
    result = run("prepare_owt.py", "--input=shard.tar", "--val_fraction=0.5", "--out_dir=out")
    assert result.returncode == 0, result.stderr
    assert "empty documents skipped: 1; documents with bad UTF-8 (replaced): 1" in result.stdout
    expected = ["first doc\n\nafter four newlines", "second doc\n\nthird para", "bad \ufffd( utf8",
                "fifth: caf\u00e9\n\nend"]
    train, _ = bin_documents(tmp_path / "out" / "train.bin", enc)
    val, _ = bin_documents(tmp_path / "out" / "val.bin", enc)
    assert_split_in_order(expected, train, val)

    # a lone .xz member of the same layout is an input too
    with tarfile.open(tmp_path / "shard.tar") as tar:
        data = tar.extractfile("openwebtext/urlsf_subset00-0_data.xz").read()
    (tmp_path / "one.xz").write_bytes(data)
    result = run("prepare_owt.py", "--input=one.xz", "--out_dir=xz")
    assert result.returncode == 0, result.stderr
    train, _ = bin_documents(tmp_path / "xz" / "train.bin", enc)
    val, _ = bin_documents(tmp_path / "xz" / "val.bin", enc)
    assert train + val == expected[:2]


def test_owt_gpt2_dataset_has_a_meta_with_the_bytes_of_each_token(run, tmp_path, enc):
    docs = ["plain ASCII text.", "naïve café — 日本語 ✓", "a literal <|endoftext|> stays text"]
    for i, doc in enumerate(docs):
        (tmp_path / f"{i}.txt").write_text(doc, encoding="utf-8")
    result = run("prepare_owt.py", f"--input={tmp_path}", "--out_dir=out")
    assert result.returncode == 0, result.stderr
    assert "meta.pkl (GPT-2's BPE)" in result.stdout
    meta = datafiles.check_dataset(tmp_path / "out", "")  # complete, and read with the restricted unpickler
    assert (meta["tokenizer"], meta["vocab_size"]) == ("gpt2", 50257)
    token_bytes = meta["token_bytes"]
    assert len(token_bytes) == 50257 and token_bytes[EOT] == 0
    tokens = np.concatenate([np.fromfile(tmp_path / "out" / f"{s}.bin", dtype=np.uint16) for s in ("train", "val")])
    assert token_bytes[tokens].sum() == sum(len(doc.encode("utf-8")) for doc in docs)  # counted by hand


# ----------------------------------------------------------------------------
# prepare_owt.py: a BPE of the corpus's own (offline: no GPT-2 files needed)

def own_bpe(out_dir):
    """meta.pkl of a dataset with its own BPE, and that BPE as tiktoken rebuilds it."""
    meta = files.load_pickle(out_dir / "meta.pkl")
    return meta, tiktoken.Encoding("own", **meta["tokenizer"])


def test_owt_own_bpe_round_trips_documents_and_learns_from_train_documents_only(run, tmp_path):
    docs = made_up_documents(80)
    docs[5] = "a literal <|endoftext|> in the text stays text"
    with open(tmp_path / "c.jsonl", "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"text": doc}) + "\n")
    result = run("prepare_owt.py", "--input=c.jsonl", "--vocab_size=300", "--val_fraction=0.3", "--num_proc=2",
                 "--out_dir=out")
    assert result.returncode == 0, result.stderr
    assert "trained a BPE of 300 tokens" in result.stdout and "(its own BPE of 300 tokens)" in result.stdout

    meta, bpe = own_bpe(tmp_path / "out")
    parts = meta["tokenizer"]
    assert sorted(meta) == ["files", "token_bytes", "tokenizer", "vocab_size"] and meta["vocab_size"] == 300
    assert parts["pat_str"] == prepare_owt.GPT4_PATTERN and parts["special_tokens"] == {"<|endoftext|>": 299}
    ranks = parts["mergeable_ranks"]
    assert sorted(ranks.values()) == list(range(299)) and all(ranks[bytes([b])] == b for b in range(256))
    assert meta["token_bytes"].tolist() == [len(token) for token in sorted(ranks, key=ranks.get)] + [0]

    train, train_tokens = bin_documents(tmp_path / "out" / "train.bin", bpe)
    val, val_tokens = bin_documents(tmp_path / "out" / "val.bin", bpe)
    assert_split_in_order(docs, train, val)
    assert 10 <= len(val) <= 40  # about 30% of 80
    assert bpe.decode(train_tokens + val_tokens) == "".join(doc + "<|endoftext|>" for doc in train + val)
    assert train_tokens == [t for doc in train for t in bpe.encode_ordinary(doc) + [299]]
    # what the BPE learnt from: the train documents, in order; not the val ones
    assert ranks == prepare_owt.train_bpe(iter(train), 300)["mergeable_ranks"]
    assert ranks != prepare_owt.train_bpe(iter(docs), 300)["mergeable_ranks"]


def test_owt_own_bpe_tail_split_round_trips_and_learns_from_the_train_part(run, tmp_path):
    text = "\n\n".join(made_up_documents(60))
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    result = run("prepare_owt.py", "--input=t.txt", "--split=tail", "--vocab_size=350", "--out_dir=out")
    assert result.returncode == 0, result.stderr
    meta, bpe = own_bpe(tmp_path / "out")
    train = np.fromfile(tmp_path / "out" / "train.bin", dtype=np.uint16).tolist()
    val = np.fromfile(tmp_path / "out" / "val.bin", dtype=np.uint16).tolist()
    n = int(len(text) * 0.9)
    assert bpe.decode(train) == text[:n] and bpe.decode(val) == text[n:]
    assert bpe.eot_token == 349 and 349 not in train + val  # no end-of-text token, as nanoGPT's split
    assert meta["tokenizer"]["mergeable_ranks"] == prepare_owt.train_bpe([text[:n]], 350)["mergeable_ranks"]


def test_owt_bpe_sample_chars_bounds_what_the_bpe_learns_from(run, tmp_path):
    write_documents(tmp_path / "c", made_up_documents(40))
    result = run("prepare_owt.py", "--input=c", "--vocab_size=280", "--bpe_sample_chars=2500", "--val_fraction=0.2",
                 "--out_dir=out")
    assert result.returncode == 0, result.stderr
    assert "trained a BPE of 280 tokens on 2,500 characters" in result.stdout
    meta, bpe = own_bpe(tmp_path / "out")
    train, _ = bin_documents(tmp_path / "out" / "train.bin", bpe)
    sample, left = [], 2500
    for doc in train:  # the first 2,500 characters of the train documents
        sample.append(doc[:left])
        left -= len(sample[-1])
        if not left:
            break
    assert meta["tokenizer"]["mergeable_ranks"] == prepare_owt.train_bpe(iter(sample), 280)["mergeable_ranks"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_owt_skips_what_in_a_folder_is_not_a_regular_file_and_says_so(tmp_path):
    docs = made_up_documents(6)
    write_documents(tmp_path / "c", docs[:5])
    (tmp_path / "elsewhere.txt").write_text(docs[5], encoding="utf-8")
    (tmp_path / "c" / "005.txt").symlink_to(tmp_path / "elsewhere.txt")  # a link to a file is read
    (tmp_path / "c" / "gone.txt").symlink_to(tmp_path / "deleted.txt")
    os.mkfifo(tmp_path / "c" / "pipe.txt")  # nothing ever writes to it: reading it would wait forever
    # a process of its own, so that a run stuck on the pipe fails the test instead of hanging it
    result = run_script("prepare_owt.py", "--input=c", "--vocab_size=270", "--val_fraction=0.3", "--out_dir=out",
                        cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("skipped 2 entries that are not regular files: c/gone.txt (a broken symbolic link), "
            "c/pipe.txt (a named pipe)") in result.stdout
    _, bpe = own_bpe(tmp_path / "out")
    train, _ = bin_documents(tmp_path / "out" / "train.bin", bpe)
    val, _ = bin_documents(tmp_path / "out" / "val.bin", bpe)
    assert_split_in_order(docs, train, val)


# ----------------------------------------------------------------------------
# prepare_owt.py: the worker processes, Ctrl-C, a kill

def processes():
    """{pid: (parent pid, state)} of every process now, from Linux's /proc."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    state, ppid = f.read().rsplit(")", 1)[1].split()[:2]  # after "pid (command)"
            except OSError:
                continue  # gone meanwhile
            found[int(name)] = (int(ppid), state)
    return found


def descendants(pid):
    procs, found, parents = processes(), set(), {pid}
    while parents:
        parents = {p for p, (ppid, _) in procs.items() if ppid in parents} - found
        found |= parents
    return found


def running(pids):
    procs = processes()
    return [p for p in pids if p in procs and procs[p][1] not in "ZX"]  # a zombie is dead, not yet reaped


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory):
    """c.jsonl of 30,000 made-up documents: a few MB, seconds of work for prepare_owt in 2 processes."""
    path = tmp_path_factory.mktemp("big") / "c.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for doc in made_up_documents(30_000):
            f.write(json.dumps({"text": doc}) + "\n")
    return path


# runs the command after it with Ctrl-C's default action, as a terminal's foreground command has it: a
# shell's background job (tests run by a script with &) starts with Ctrl-C ignored, and so would the command
WITH_CTRL_C = [sys.executable, "-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                                     "os.execv(sys.argv[1], sys.argv[1:])"]


def start_with_workers(corpus, cwd, **popen):
    """prepare_owt.py on corpus in 2 worker processes, once both are running: (process, workers)."""
    p = subprocess.Popen([*WITH_CTRL_C, sys.executable, str(ROOT / "prepare_owt.py"), f"--input={corpus}",
                          "--vocab_size=300", "--bpe_sample_chars=10000", "--num_proc=2", "--out_dir=out"],
                         cwd=cwd, stdout=subprocess.DEVNULL, **popen)
    workers, deadline = set(), time.time() + 60
    while len(workers) < 2 and p.poll() is None and time.time() < deadline:
        workers = descendants(p.pid)
        time.sleep(0.01)
    if len(workers) < 2 or p.poll() is not None:
        p.kill()
        pytest.fail("the run ended before its workers were seen")
    return p, workers


def wait_until_gone(pids, seconds=10):
    deadline = time.time() + seconds
    while running(pids) and time.time() < deadline:
        time.sleep(0.05)
    left = running(pids)
    for pid in left:  # only if the test fails
        os.kill(pid, signal.SIGKILL)
    return left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent on Linux")
def test_owt_workers_die_when_the_main_process_is_killed(big_corpus, tmp_path):
    p, workers = start_with_workers(big_corpus, tmp_path, stderr=subprocess.DEVNULL)
    p.send_signal(signal.SIGKILL)  # no chance to clean up
    p.wait()
    assert wait_until_gone(workers) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the processes in Linux's /proc")
def test_owt_ctrl_c_ends_with_one_line_stops_the_workers_and_writes_nothing(big_corpus, tmp_path):
    p, workers = start_with_workers(big_corpus, tmp_path, stderr=subprocess.PIPE, text=True, start_new_session=True)
    os.killpg(p.pid, signal.SIGINT)  # as Ctrl-C in a terminal: to every process of the command
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    *bars, last = stderr.splitlines()
    assert last == "interrupted" and all(PROGRESS_LINE.match(line) or not line.strip() for line in bars), stderr
    assert wait_until_gone(workers) == []
    assert not list(tmp_path.glob("out/*"))  # no .bin, no meta.pkl, no temporaries


# ----------------------------------------------------------------------------
# writing a dataset: whole or not at all, beside other people's files

def test_write_dataset_fills_several_files_in_one_pass_or_leaves_the_old_set(tmp_path):
    def fill(train_f, val_f):  # the two files written in turns, and read back
        for i in range(3):
            train_f.write(bytes([i, i]))
            val_f.write(b"vv")
        train_f.seek(0)
        assert train_f.read() == bytes([0, 0, 1, 1, 2, 2])

    out = tmp_path / "d"
    meta = datafiles.write_dataset(out, {("train.bin", "val.bin"): fill, "notes.txt": lambda f: f.write(b"x")}, {"k": 1})
    assert meta == {"k": 1, "files": {"train.bin": 6, "val.bin": 6, "notes.txt": 1}}
    assert datafiles.check_dataset(out, "") == meta
    assert (out / "train.bin").read_bytes() == bytes([0, 0, 1, 1, 2, 2]) and (out / "val.bin").read_bytes() == b"v" * 6

    def fails(train_f, val_f):
        train_f.write(b"new!")
        raise common.UserError("stopped half-way")

    with pytest.raises(common.UserError, match="half-way"):
        datafiles.write_dataset(out, {("train.bin", "val.bin"): fails}, {"k": 2})
    assert sorted(os.listdir(out)) == ["meta.pkl", "notes.txt", "train.bin", "val.bin"]  # no temporaries
    assert datafiles.check_dataset(out, "") == meta and (out / "train.bin").read_bytes() == bytes([0, 0, 1, 1, 2, 2])


def test_write_array_writes_every_byte_or_says_the_disk_is_full():
    tokens = np.arange(1000, dtype=np.uint16)

    class Trickle(io.RawIOBase):  # takes at most 7 bytes a call, as a write cut short does
        def __init__(self, room):
            self.data, self.room = bytearray(), room

        def writable(self):
            return True

        def write(self, b):
            n = min(7, len(b), self.room - len(self.data))
            self.data += bytes(b[:n])
            return n

    f = Trickle(room=10 ** 6)
    datafiles.write_array(f, tokens)
    assert bytes(f.data) == tokens.tobytes()
    with pytest.raises(OSError) as e:
        datafiles.write_array(Trickle(room=999), tokens)  # no room for the last byte
    assert e.value.errno == errno.ENOSPC


@needs_dev_full
@pytest.mark.parametrize("name", ["train.bin", "val.bin", "meta.pkl", datafiles.INCOMPLETE])
def test_owt_full_disk_says_so_and_leaves_the_old_dataset(run, tmp_path, name):
    # 3 documents: val draws none of them, so the last one moves from train.bin to val.bin
    write_documents(tmp_path / "old", made_up_documents(3, seed=1))
    assert run("prepare_owt.py", "--input=old", "--vocab_size=260", "--num_proc=1", "--out_dir=ds").returncode == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / "ds").iterdir()}

    write_documents(tmp_path / "new", made_up_documents(3, seed=2))
    with full_disk_at(name):  # the disk fills up when this file is written
        result = run("prepare_owt.py", "--input=new", "--vocab_size=260", "--num_proc=1", "--out_dir=ds")
    assert_one_error_line_after_progress(result, "could not write the dataset in ds (the disk is full)")
    assert {path.name: path.read_bytes() for path in (tmp_path / "ds").iterdir()} == before
    datafiles.check_dataset(str(tmp_path / "ds"))


@pytest.mark.parametrize("script, flags", [("prepare_char.py", ["--input=text.txt"]),
                                           ("prepare_owt.py", ["--input=text.txt", "--split=tail", "--vocab_size=260"])])
def test_prepare_removes_only_its_own_leftovers_of_writers_that_died(made_up_text, run, tmp_path, script, flags):
    (tmp_path / "text.txt").write_text(made_up_text(5_000), encoding="utf-8")
    out = tmp_path / "ds"
    out.mkdir()
    live = subprocess.Popen(["sleep", "60"])  # a writer still at work
    dead = dead_pid()
    kept = {".notes.tmp": b"a user's notes", "notes.txt": b"more notes",
            f".train.bin.{live.pid}-a1b2c3.tmp": b"half of a train.bin being written",
            f".ckpt.pkl.{dead}-d4e5f6.tmp": b"another program's leftover, for it to handle"}
    removed = [f".train.bin.{dead}-g7h8i9.tmp", f".meta.pkl.{dead}-j0k1l2.tmp"]
    for name, data in kept.items():
        (out / name).write_bytes(data)
    for name in removed:
        (out / name).write_bytes(b"what a killed run left")
    try:
        result = run(script, *flags, "--out_dir=ds")
    finally:
        live.kill()
        live.wait()
    assert result.returncode == 0, result.stderr
    assert {name: (out / name).read_bytes() for name in kept} == kept
    assert not [name for name in removed if (out / name).exists()]
    datafiles.check_dataset(str(out))


# ----------------------------------------------------------------------------
# prepare_owt.py: downloading OpenWebText

def test_owt_downloads_shards_resumes_a_partial_one_and_skips_complete_ones(http_server, run, tmp_path, enc):
    (http_server.root / "subsets").mkdir()
    for shard in range(2):
        members = [[f"shard {shard} member {k} doc {j}".encode() for j in range(3)] for k in range(2)]
        make_owt_shard(http_server.root / "subsets" / f"urlsf_subset{shard:02d}.tar", members, shard)
    served = [(http_server.root / "subsets" / f"urlsf_subset{i:02d}.tar").read_bytes() for i in range(2)]
    downloads = tmp_path / "owt" / "downloads"
    downloads.mkdir(parents=True)
    (downloads / "urlsf_subset01.tar.part").write_bytes(served[1][:3000])  # an earlier run stopped here

    result = run("prepare_owt.py", f"--base_url={http_server.url}", "--shards=0-1", "--val_fraction=0.2",
                 "--out_dir=owt")
    assert result.returncode == 0, result.stderr
    assert ("GET", "/subsets/urlsf_subset01.tar", "bytes=3000-") in http_server.seen
    assert ("GET", "/subsets/urlsf_subset00.tar", None) in http_server.seen
    assert [(downloads / f"urlsf_subset{i:02d}.tar").read_bytes() for i in range(2)] == served
    assert sorted(os.listdir(downloads)) == ["urlsf_subset00.tar", "urlsf_subset01.tar"]
    train, _ = bin_documents(tmp_path / "owt" / "train.bin", enc)
    val, _ = bin_documents(tmp_path / "owt" / "val.bin", enc)
    assert_split_in_order([f"shard {s} member {k} doc {j}" for s in range(2) for k in range(2) for j in range(3)],
                          train, val)

    # a second run checks the sizes and downloads nothing
    http_server.seen.clear()
    again = run("prepare_owt.py", f"--base_url={http_server.url}", "--shards=1", "--out_dir=owt")
    assert again.returncode == 0, again.stderr
    assert "urlsf_subset01.tar: already downloaded" in again.stdout
    assert [method for method, _, _ in http_server.seen] == ["HEAD"]


def test_owt_without_network_exits_1_and_leaves_nothing(run, tmp_path):
    result = run("prepare_owt.py", f"--base_url={closed_port_url()}", "--shards=0", "--vocab_size=300", "--out_dir=owt")
    assert_one_error_line(result, "could not download", "--input")
    assert not (tmp_path / "owt").exists()


@needs_dev_full
def test_owt_download_on_a_full_disk_says_so_not_the_network(http_server, run, tmp_path):
    (http_server.root / "subsets").mkdir()
    make_owt_shard(http_server.root / "subsets" / "urlsf_subset00.tar", [[b"a document"] * 3])
    with full_disk_at("urlsf_subset00.tar.part"):
        result = run("prepare_owt.py", f"--base_url={http_server.url}", "--shards=0", "--vocab_size=300",
                     "--out_dir=owt")
    assert_one_error_line_after_progress(result, f"could not download {http_server.url}/subsets/urlsf_subset00.tar",
                                         "the disk is full; free some space and run again")
    assert not (tmp_path / "owt" / "downloads" / "urlsf_subset00.tar").exists()  # only whole shards get that name


def test_parse_shards_takes_ranges_and_lists():
    assert prepare_owt.parse_shards("0-2") == [0, 1, 2]
    assert prepare_owt.parse_shards("0,3,5") == [0, 3, 5]
    assert prepare_owt.parse_shards("4-5,1") == [4, 5, 1]
    assert prepare_owt.parse_shards("all") == list(range(21))
    for bad in ("21", "3-1", "x", "0-"):
        with pytest.raises(common.UserError):
            prepare_owt.parse_shards(bad)


# ----------------------------------------------------------------------------
# prepare_owt.py and bench_prepare.py: bad inputs

def test_owt_refuses_a_vocabulary_beyond_uint16(gpt2_bpe):
    class BigVocab:
        name, max_token_value = "cl100k_base", 100_276

    with pytest.raises(common.UserError, match="uint16"):
        prepare_owt.check_vocab(BigVocab())
    prepare_owt.check_vocab(gpt2_bpe)  # 50,257 tokens fit


def test_owt_failure_midway_leaves_no_bin_files(run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.bin").write_bytes(b"old")  # a previous complete run stays untouched
    with open(tmp_path / "c.jsonl", "w") as f:
        for i in range(2000):
            f.write(json.dumps({"text": f"line {i} " * 100}) + "\n")
        f.write('{"txt": "no text field"}\n')
    # the BPE learns from the first lines only: the bad one is found in a worker, while the files are written
    result = run("prepare_owt.py", "--input=c.jsonl", "--vocab_size=260", "--bpe_sample_chars=20000", "--num_proc=2",
                 "--out_dir=out")
    assert_one_error_line_after_progress(result, "c.jsonl:2001", '"text"')
    assert sorted(os.listdir(out)) == ["train.bin"] and (out / "train.bin").read_bytes() == b"old"


def bad_inputs(tmp_path):
    (tmp_path / "one.txt").write_text("only one document")
    (tmp_path / "two.txt").write_text("a second one")
    (tmp_path / "broken.tar").write_bytes(b"this is not a tar file" * 100)
    (tmp_path / "link.txt").symlink_to("nowhere.txt")
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.txt")


@pytest.mark.parametrize("flags, words", [
    (["--input=missing/*.txt"], ["missing/*.txt"]),
    (["--input", "one.txt", "two.txt", "--split=tail"], ["exactly one"]),
    (["--input=broken.tar", "--vocab_size=300"], ["broken.tar", "tar"]),
    (["--input=link.txt", "--vocab_size=300"], ["--input link.txt is a broken symbolic link", "pass text files"]),
    (["--input=pipe.txt", "--vocab_size=300"], ["--input pipe.txt is a named pipe", "pass text files"]),
    (["--input=one.txt", "--val_fraction=1.5"], ["--val_fraction"]),
    (["--input=one.txt", "--val_fraction=nan"], ["--val_fraction=nan"]),
    (["--input=one.txt", "--num_proc=0"], ["--num_proc=0"]),
    (["--shards=99"], ["--shards"]),
    (["--input=one.txt", "--vocab_size=256"], ["--vocab_size=256", "257"]),
    (["--input=one.txt", "--vocab_size=65536"], ["--vocab_size=65536", "65,535", "uint16"]),
    (["--input=one.txt", "--bpe_sample_chars=1000"], ["--bpe_sample_chars", "--vocab_size"]),
    (["--input=one.txt", "--vocab_size=300", "--bpe_sample_chars=0"], ["--bpe_sample_chars=0", "at least 1"]),
    (["--input=one.txt", "--vocab_size=300", "--bpe_sample_chars=-5"], ["--bpe_sample_chars=-5", "at least 1"]),
    (["--input=one.txt", "--vocab_size=300", "--bpe_sample_chars=nan"], ["--bpe_sample_chars=nan", "at least 1"]),
    (["--input=one.txt", "--vocab_size=300", "--bpe_sample_chars=inf"], ["--bpe_sample_chars=inf", "at least 1"]),
    (["--input=one.txt", "--vocab_size=300", "--bpe_sample_chars=1e400"], ["--bpe_sample_chars=inf", "at least 1"]),
    (["--input", "one.txt", "two.txt", "--vocab_size=1000"], ["too small", "1,000", "--vocab_size"]),
    (["--input=one.txt", "--split=tail", "--vocab_size=1000"], ["too small", "--vocab_size"]),
    (["--input", "one.txt", "two.txt", "--vocab_size=300", "--bpe_sample_chars=5"], ["too small", "--bpe_sample_chars"]),
    (["--input=one.txt", "--vocab_size=257", "--bpe_sample_chars=1e9"], ["too few", "--split=tail"]),
    (["--inptu=one.txt"], ["unrecognized arguments: --inptu=one.txt", "--help"]),
    (["--input=one.txt", "--seed=x"], ["--seed: invalid int value: 'x'", "--help"]),
    (["--input=one.txt", "--split=lines"], ["--split: invalid choice: 'lines'", "--help"]),
])
def test_owt_bad_input_exits_1_with_one_line(run, tmp_path, flags, words):
    bad_inputs(tmp_path)
    result = run("prepare_owt.py", "--num_proc=1", *flags, "--out_dir=out")
    assert_one_error_line_after_progress(result, *words)
    assert not list(tmp_path.glob("out/*"))  # no .bin, no meta.pkl, no temporaries


@pytest.mark.parametrize("flags, words", [
    (["--input=one.txt"], ["too few", "--split=tail"]),
    (["--input=broken.tar"], ["broken.tar", "tar"]),
])
def test_owt_bad_input_with_gpt2_bpe_exits_1_with_one_line(gpt2_bpe, run, tmp_path, flags, words):
    bad_inputs(tmp_path)
    result = run("prepare_owt.py", *flags, "--out_dir=out")
    assert_one_error_line_after_progress(result, *words)
    assert not list(tmp_path.glob("out/*"))


@pytest.mark.parametrize("flags, words", [
    (["--text=play.txt", "--mb=inf"], ["--mb=inf", "above 0"]),
    (["--text=play.txt", "--mb=nan"], ["--mb=nan", "above 0"]),
    (["--text=play.txt", "--mb=0"], ["--mb=0", "above 0"]),
    (["--text=play.txt", "--mb=lots"], ["--mb: invalid float value: 'lots'", "--help"]),
    (["--text=play.txt", "--repeat=0"], ["--repeat=0", "at least 1"]),
    (["--text=play.txt", "--num_proc=0"], ["--num_proc=0", "at least 1"]),
    (["--text=nowhere.txt"], ["--text=nowhere.txt not found"]),
    (["--text=pipe.txt"], ["--text=pipe.txt is a named pipe"]),
    (["--text=latin1.txt"], ["--text=latin1.txt is not UTF-8"]),
    (["--text=blank.txt"], ["--text=blank.txt holds no text"]),
    (["--mb=1"], ["the following arguments are required: --text"]),
])
def test_bench_prepare_bad_input_exits_1_with_one_line(run, tmp_path, flags, words):
    bad_inputs(tmp_path)
    (tmp_path / "play.txt").write_text("a paragraph.\n\nanother one.")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    (tmp_path / "blank.txt").write_text("\n\n  \n\n")
    assert_one_error_line(run("bench_prepare.py", *flags), *words)


# ----------------------------------------------------------------------------
# every prepare script: its wiring, its --help

@pytest.mark.parametrize("script, flags", [("prepare_char.py", []), ("prepare_owt.py", []),
                                           ("bench_prepare.py", ["--text=input.txt"])])
def test_scripts_end_a_mistyped_flag_in_one_error_line(script, flags, tmp_path):
    result = run_script(script, *flags, "--out_dri=out", cwd=tmp_path)
    assert_one_error_line(result, "unrecognized arguments: --out_dri=out", "--help")


def help_entries(text):
    """{option: its help text, on one line} of each entry under `options:` in argparse's --help."""
    entries, option = {}, None
    for line in text.split("\noptions:\n", 1)[1].splitlines():
        if line.startswith("  -"):  # "  --name METAVAR   help text", or the text on the next lines
            invocation, _, text = line.strip().partition("  ")
            option = [word.rstrip(",") for word in invocation.split() if word.startswith("--")][0]
            entries[option] = text.strip()
        elif line.startswith("   ") and option:
            entries[option] = f"{entries[option]} {line.strip()}".strip()
        else:
            option = None
    return entries


@pytest.mark.parametrize("script", MAINS)
def test_scripts_help_lists_each_option_with_its_own_help_text(script, run):
    result = run(script, "--help")
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    usage = result.stdout.split("\n\n", 1)[0]
    entries = help_entries(result.stdout)
    assert set(entries) == set(re.findall(r"--\w+", usage)) | {"--help"}  # every option the usage line shows
    assert all(entries.values()), entries  # each with a text
    assert len(set(entries.values())) == len(entries), entries  # of its own
