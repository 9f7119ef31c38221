"""Text to token ids and back: characters, a BPE of a dataset's own, or GPT-2's BPE (tiktoken).

A dataset's meta.pkl (and a checkpoint, which copies it) says which: `stoi`/`itos` for
characters, `tokenizer` = the parts of a tiktoken.Encoding for an own BPE, 'gpt2' or nothing for
GPT-2's. A folder exported by export.py says the same with chars.json or tiktoken.json.
"""
import base64
import json
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from common import UserError

GPT2_VOCAB = 50257  # GPT-2 BPE's tokens
GPT2_PADDED_VOCAB = 50304  # the model's: 50257 padded up to a multiple of 64, for faster matmuls


def is_gpt2(meta):
    return meta.get('tokenizer') == 'gpt2' or 'vocab_size' not in meta


def model_vocab_size(meta):
    """The model's vocabulary for a dataset's tokens: GPT-2's BPE padded to 50304, else the
    dataset's own."""
    return GPT2_PADDED_VOCAB if is_gpt2(meta) else meta['vocab_size']


@dataclass
class Tokenizer:
    encode: Callable  # text -> [ids]; UserError for text the vocabulary cannot write
    decode_bytes: Callable  # ids -> bytes (a character may span tokens); ids past it: U+FFFD
    what: str  # for messages: "GPT-2's BPE", "character vocabulary of 65 from ..."
    n_vocab: int

    def decode(self, ids):
        return self.decode_bytes(ids).decode('utf-8', errors='replace')


def gpt2_encoding():
    """tiktoken's GPT-2 BPE. Its files are downloaded once (TIKTOKEN_CACHE_DIR keeps them)."""
    import requests
    import tiktoken
    try:
        return tiktoken.get_encoding('gpt2')
    except requests.RequestException as e:
        raise UserError(f'could not download the GPT-2 BPE files tiktoken needs on first use ({type(e).__name__}); '
                        f'check the network, or set TIKTOKEN_CACHE_DIR to a folder that holds them') from None


def bpe_encoding(parts, where):
    """The tiktoken.Encoding of a meta.pkl's 'tokenizer': 'gpt2' for GPT-2's BPE, else a BPE of
    the dataset's own as the parts tiktoken.Encoding takes (pat_str, mergeable_ranks {bytes: id},
    special_tokens {str: id}). `where` names the file it came from, for the error message."""
    if parts == 'gpt2':
        return gpt2_encoding()
    import tiktoken
    try:
        return tiktoken.Encoding(name=os.path.basename(os.path.dirname(os.path.abspath(where))),
                                 pat_str=parts['pat_str'], mergeable_ranks=parts['mergeable_ranks'],
                                 special_tokens=parts['special_tokens'])
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f'{where} holds a tokenizer tiktoken cannot read ({type(e).__name__}: {e}): '
                        f'rerun the dataset\'s prepare script') from None


def encoding_byte_lengths(enc):
    """UTF-8 bytes of each token id of a tiktoken.Encoding, as int32; special tokens count 0
    (they stand for no text)."""
    specials = {enc.encode_single_token(s) for s in enc.special_tokens_set}
    return np.array([0 if i in specials else len(enc.decode_single_token_bytes(i)) for i in range(enc.n_vocab)],
                    np.int32)


def token_byte_lengths(meta):
    """How many UTF-8 bytes each token id of a dataset decodes to (a numpy array indexed by
    token id), for losses in bits per byte; special tokens count 0. None if unknown."""
    if 'token_bytes' in meta:  # written by prepare_owt.py
        return np.asarray(meta['token_bytes'], np.int64)
    if 'itos' in meta:  # characters
        lengths = np.zeros(max(meta['itos']) + 1, np.int64)
        for i, ch in meta['itos'].items():
            lengths[i] = len(str(ch).encode('utf-8'))
        return lengths
    if is_gpt2(meta):
        try:
            return encoding_byte_lengths(gpt2_encoding()).astype(np.int64)
        except UserError:
            return None
    return None


def character_ids(meta, where):
    """The {character: id} of a character vocabulary's record (stoi, or itos turned around),
    checked: UserError naming `where` for anything else."""
    itos = meta.get('itos')
    stoi = meta.get('stoi') or ({c: i for i, c in itos.items()} if isinstance(itos, dict) else None)
    if not stoi or not isinstance(stoi, dict) or not all(isinstance(c, str) and type(i) is int for c, i in stoi.items()):
        raise UserError(f'{where} holds no vocabulary of characters: rerun the dataset\'s prepare script')
    return stoi


def characters(stoi, where):
    """A Tokenizer of single characters, from {character: id}."""
    stoi = character_ids({'stoi': stoi}, where)
    itos = {i: c for c, i in stoi.items()}

    def encode(text):
        unknown = sorted(set(c for c in text if c not in stoi))
        if unknown:
            raise UserError(f'the text has characters outside the vocabulary: {"".join(unknown)!r}; '
                            f'the model knows only {"".join(sorted(stoi))!r}')
        return [stoi[c] for c in text]
    # an id the vocabulary lacks (the model's vocabulary may be padded past it) shows as U+FFFD
    return Tokenizer(encode, lambda ids: ''.join(itos.get(int(i), '\ufffd') for i in ids).encode('utf-8'),
                     f'character vocabulary of {len(stoi)} from {where}', max(itos) + 1)


def from_meta(meta, where):
    """The Tokenizer of a dataset's meta.pkl or a checkpoint's 'tokenizer' record."""
    if not isinstance(meta, dict):
        raise UserError(f'{where} records its vocabulary as a {type(meta).__name__}, not as the dict that the '
                        f'prepare scripts and train.py write')
    if 'stoi' in meta or 'itos' in meta:
        return characters(character_ids(meta, where), where)
    parts = meta.get('tokenizer', 'gpt2') if not is_gpt2(meta) else 'gpt2'
    enc = bpe_encoding(parts, where)
    what = "GPT-2's BPE" if parts == 'gpt2' else f'BPE of {enc.n_vocab:,} tokens from {where}'
    specials = set(enc.special_tokens_set)

    def decode_bytes(ids):  # GPT-2's vocabulary is padded to 50304 in the model
        return b''.join(enc.decode_single_token_bytes(int(i)) if i < enc.n_vocab else b'\xef\xbf\xbd' for i in ids)
    return Tokenizer(lambda text: enc.encode(text, allowed_special=specials), decode_bytes, what, enc.n_vocab)


def from_folder(folder):
    """The Tokenizer of a GPT-2 folder as export.py writes it: chars.json for characters,
    tiktoken.json for a BPE of its own, else GPT-2's BPE (OpenAI's GPT-2 and its finetunes)."""
    chars, bpe = os.path.join(folder, 'chars.json'), os.path.join(folder, 'tiktoken.json')
    try:
        if os.path.exists(chars):
            with open(chars, encoding='utf-8') as f:
                return characters(json.load(f), chars)
        if os.path.exists(bpe):
            with open(bpe, encoding='utf-8') as f:
                parts = json.load(f)
            parts['mergeable_ranks'] = {base64.b64decode(k): v for k, v in parts['mergeable_ranks'].items()}
            return from_meta({'tokenizer': parts, 'vocab_size': 0}, bpe)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise UserError(f'cannot read the tokenizer in {folder} ({type(e).__name__}: {e}): export the model '
                        f'again with export.py') from None
    return from_meta({}, folder)
