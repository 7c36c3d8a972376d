"""A byte-level BPE tokenizer that reads Hugging Face ``tokenizer.json`` + ``tokenizer_config.json``.

Scope: the Qwen2 / DeepSeek-R1-Distill-Qwen layout, which is also what transformers.js
(tokenizers 0.2) reads in the browser:

* normalizer ``NFC`` (or none);
* pre-tokenizer ``Sequence[Split(<Qwen2 regex>, Isolated), ByteLevel(use_regex=false)]``, or a
  lone ``ByteLevel`` with ``use_regex=false``;
* model ``BPE`` (merges as ``[a, b]`` pairs or ``"a b"`` strings, no byte fallback);
* post-processor ``ByteLevel`` or ``TemplateProcessing`` (only its single-sequence template);
* decoder ``ByteLevel``;
* ``added_tokens`` matched before anything else, longest match first at each position.

Anything else is refused with ``NotImplementedError`` rather than tokenized differently.

Python's ``re`` has no ``\\p{L}``/``\\p{N}``, so the Qwen2 split regex

    (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+

is implemented as a hand-written scanner with the same leftmost-first, greedy-with-backtracking
semantics (see :func:`qwen2_pre_split`). Character classes: ``\\p{L}`` / ``\\p{N}`` are the
Unicode general categories L* / N* from :mod:`unicodedata`; ``\\s`` is the Unicode White_Space
property (what both the Rust tokenizers and transformers.js, which rewrites ``\\s`` to
``\\p{White_Space}``, use). ``(?i:...)`` folds ASCII case only, as transformers.js does (the
Rust library would also fold U+017F LATIN SMALL LETTER LONG S into ``'s``). Results can differ
from other implementations only where their Unicode versions assign different categories.

The chat template is DeepSeek-R1's (as shipped with DeepSeek-R1-Distill-Qwen); Jinja is not
available, so :meth:`Tokenizer.apply_chat_template` re-implements that template's behaviour.
The Jinja text itself stays in ``tokenizer_config.json`` for transformers.js.
"""

from __future__ import annotations

import json
import os
import unicodedata
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "QWEN2_SPLIT_REGEX",
    "Tokenizer",
    "bytes_to_unicode",
    "qwen2_pre_split",
]

# The split pattern in Qwen2's (and DeepSeek-R1-Distill-Qwen's) tokenizer.json.
QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Unicode White_Space property (PropList.txt), the set Oniguruma's and Rust's \s use.
_WHITE_SPACE = frozenset(
    [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x20, 0x85, 0xA0, 0x1680]
    + list(range(0x2000, 0x200B))
    + [0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)


def bytes_to_unicode() -> Dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


_BYTE_ENCODER = bytes_to_unicode()
_BYTE_DECODER = {c: b for b, c in _BYTE_ENCODER.items()}

# Character classes, cached per code point: 1 letter, 2 number, 3 white space, 0 other.
_CLASS_CACHE: Dict[str, int] = {}


def _char_class(ch: str) -> int:
    k = _CLASS_CACHE.get(ch)
    if k is None:
        if ord(ch) in _WHITE_SPACE:
            k = 3
        else:
            cat = unicodedata.category(ch)
            k = 1 if cat[0] == "L" else 2 if cat[0] == "N" else 0
        if len(_CLASS_CACHE) < 65536:
            _CLASS_CACHE[ch] = k
    return k


def _match_at(text: str, i: int, cls: Sequence[int]) -> int:
    """End of the Qwen2 split-regex match starting at ``i`` (or ``i`` if none matches)."""
    n = len(text)
    c = text[i]
    k = cls[i]
    # 1. (?i:'s|'t|'re|'ve|'m|'ll|'d)  -- ASCII case folding
    if c == "'" and i + 1 < n:
        c1 = text[i + 1]
        if c1 in "sStTmMdD":
            return i + 2
        if i + 2 < n and (c1 + text[i + 2]).lower() in ("re", "ve", "ll") and (c1 + text[i + 2]).isascii():
            return i + 3
    # 2. [^\r\n\p{L}\p{N}]?\p{L}+
    if k == 1:
        j = i + 1
        while j < n and cls[j] == 1:
            j += 1
        return j
    if c not in "\r\n" and k != 2 and i + 1 < n and cls[i + 1] == 1:
        j = i + 2
        while j < n and cls[j] == 1:
            j += 1
        return j
    # 3. \p{N}
    if k == 2:
        return i + 1
    # 4.  ?[^\s\p{L}\p{N}]+[\r\n]*
    start = i + 1 if c == " " and i + 1 < n and cls[i + 1] == 0 else i
    if cls[start] == 0:
        j = start + 1
        while j < n and cls[j] == 0:
            j += 1
        while j < n and text[j] in "\r\n":
            j += 1
        return j
    # Only white space is left.
    assert k == 3
    e = i + 1
    while e < n and cls[e] == 3:
        e += 1
    # 5. \s*[\r\n]+  -- backtracking \s* leaves the last newline of the run to [\r\n]+
    for p in range(e - 1, i - 1, -1):
        if text[p] in "\r\n":
            return p + 1
    # 6. \s+(?!\S)
    if e == n:
        return e
    if e - 1 > i:
        return e - 1
    # 7. \s+
    return e


def qwen2_pre_split(text: str) -> List[str]:
    """Split ``text`` like tokenizers' ``Split(QWEN2_SPLIT_REGEX, behavior=Isolated)``."""
    cls = [_char_class(ch) for ch in text]
    out: List[str] = []
    i = 0
    n = len(text)
    while i < n:
        j = _match_at(text, i, cls)
        if j <= i:  # unreachable with this regex (every character starts a match); kept for safety
            j = i + 1
        out.append(text[i:j])
        i = j
    return out


class _AddedToken:
    __slots__ = ("id", "content", "special", "normalized", "lstrip", "rstrip", "single_word")

    def __init__(self, d: Mapping[str, Any]) -> None:
        self.id = int(d["id"])
        self.content = str(d["content"])
        self.special = bool(d.get("special", False))
        self.normalized = bool(d.get("normalized", not self.special))
        self.lstrip = bool(d.get("lstrip", False))
        self.rstrip = bool(d.get("rstrip", False))
        self.single_word = bool(d.get("single_word", False))
        if self.single_word:
            raise NotImplementedError(f"added token {self.content!r}: single_word is not implemented")


def _longest_match_split(text: str, contents: Sequence[str]) -> List[str]:
    """Split around dictionary words: at each position the longest word wins (leftmost first)."""
    if not contents or not text:
        return [text] if text else []
    by_first: Dict[str, List[str]] = {}
    for w in contents:
        if w:
            by_first.setdefault(w[0], []).append(w)
    for ws in by_first.values():
        ws.sort(key=len, reverse=True)
    out: List[str] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        match = None
        for w in by_first.get(text[i], ()):
            if text.startswith(w, i):
                match = w
                break
        if match is None:
            i += 1
            continue
        if i > start:
            out.append(text[start:i])
        out.append(match)
        i += len(match)
        start = i
    if start < n:
        out.append(text[start:])
    return out


def _token_content(value: Any) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


class Tokenizer:
    """Byte-level BPE tokenizer over a Hugging Face tokenizer folder (see the module docstring)."""

    def __init__(
        self,
        tokenizer_json: Mapping[str, Any],
        tokenizer_config: Mapping[str, Any],
        generation_config: Optional[Mapping[str, Any]] = None,
    ) -> None:
        self.config = dict(tokenizer_config)
        model = tokenizer_json.get("model") or {}
        if model.get("type") != "BPE":
            raise NotImplementedError(f"tokenizer model {model.get('type')!r} (only BPE is implemented)")
        if model.get("byte_fallback"):
            raise NotImplementedError("BPE byte_fallback is not implemented")
        if model.get("continuing_subword_prefix") or model.get("end_of_word_suffix"):
            raise NotImplementedError("BPE subword prefixes/suffixes are not implemented")
        self._ignore_merges = bool(model.get("ignore_merges", False))
        self._vocab: Dict[str, int] = dict(model["vocab"])
        self._ranks: Dict[Tuple[str, str], int] = {}
        for rank, m in enumerate(model.get("merges") or []):
            a, b = (m if isinstance(m, (list, tuple)) else m.split(" ", 1))
            self._ranks.setdefault((a, b), rank)

        self._check_pipeline(tokenizer_json)
        self._nfc = (tokenizer_json.get("normalizer") or {}).get("type") == "NFC"

        self._id_to_token: Dict[int, str] = {i: t for t, i in self._vocab.items()}
        self._added: Dict[str, _AddedToken] = {}
        for d in tokenizer_json.get("added_tokens") or []:
            tok = _AddedToken(d)
            self._added[tok.content] = tok
            self._id_to_token[tok.id] = tok.content
        self._added_by_id = {t.id: t for t in self._added.values()}
        self._unnormalized = [t.content for t in self._added.values() if not (t.normalized and self._nfc)]
        self._normalized: List[str] = []
        for t in self._added.values():
            if t.normalized and self._nfc:
                normalized = unicodedata.normalize("NFC", t.content)
                self._normalized.append(normalized)
                self._added.setdefault(normalized, t)

        self._bos_prefix = self._template_prefix(tokenizer_json.get("post_processor"))
        self._bpe_cache: Dict[str, List[str]] = {}

        self.bos_token = _token_content(self.config.get("bos_token"))
        self.eos_token = _token_content(self.config.get("eos_token"))
        self.pad_token = _token_content(self.config.get("pad_token")) or self.eos_token
        self.bos_token_id = self.token_to_id(self.bos_token) if self.bos_token else None
        self.eos_token_id = self.token_to_id(self.eos_token) if self.eos_token else None
        self.pad_token_id = self.token_to_id(self.pad_token) if self.pad_token else None
        eos: List[int] = [] if self.eos_token_id is None else [self.eos_token_id]
        gen_eos = (generation_config or {}).get("eos_token_id")
        for e in [gen_eos] if isinstance(gen_eos, int) else (gen_eos or []):
            if e not in eos:
                eos.append(int(e))
        self.eos_token_ids: List[int] = eos
        self.think_start_id: Optional[int] = self.token_to_id("<think>")
        self.think_end_id: Optional[int] = self.token_to_id("</think>")
        self.chat_template: Optional[str] = self.config.get("chat_template")
        self.special_ids = frozenset(t.id for t in self._added.values() if t.special)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_folder(cls, folder: "os.PathLike[str] | str") -> "Tokenizer":
        """Read ``tokenizer.json`` and ``tokenizer_config.json`` (both required) from ``folder``;
        ``generation_config.json``'s ``eos_token_id`` is added to :attr:`eos_token_ids` if present."""

        def load(name: str, required: bool = True) -> Optional[Dict[str, Any]]:
            path = os.path.join(folder, name)
            if not os.path.exists(path):
                if required:
                    raise FileNotFoundError(path)
                return None
            with open(path, "r", encoding="utf-8") as f:
                return json.load(f)

        tok = load("tokenizer.json")
        conf = load("tokenizer_config.json")
        gen = load("generation_config.json", required=False)
        assert tok is not None and conf is not None
        return cls(tok, conf, gen)

    @staticmethod
    def _check_pipeline(tj: Mapping[str, Any]) -> None:
        norm = tj.get("normalizer")
        if norm is not None and norm.get("type") != "NFC":
            raise NotImplementedError(f"normalizer {norm.get('type')!r} (only NFC or none)")
        pre = tj.get("pre_tokenizer") or {}
        steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
        kinds = [s.get("type") for s in steps or []]
        if kinds == ["Split", "ByteLevel"]:
            split = steps[0]
            if (split.get("pattern") or {}).get("Regex") != QWEN2_SPLIT_REGEX:
                raise NotImplementedError("Split pre-tokenizer with a regex other than Qwen2's")
            if split.get("behavior") != "Isolated" or split.get("invert", False):
                raise NotImplementedError("Split pre-tokenizer must be Isolated, not inverted")
            byte_level = steps[1]
        elif kinds == ["ByteLevel"]:
            byte_level = steps[0]
        else:
            raise NotImplementedError(f"pre-tokenizer {kinds!r}")
        if byte_level.get("use_regex", True) or byte_level.get("add_prefix_space", False):
            raise NotImplementedError("ByteLevel pre-tokenizer must have use_regex=false, add_prefix_space=false")
        dec = tj.get("decoder") or {}
        if dec.get("type") != "ByteLevel":
            raise NotImplementedError(f"decoder {dec.get('type')!r} (only ByteLevel)")
        post = tj.get("post_processor")
        if post is not None and post.get("type") not in ("ByteLevel", "TemplateProcessing"):
            raise NotImplementedError(f"post-processor {post.get('type')!r}")

    def _template_prefix(self, post: Optional[Mapping[str, Any]]) -> Tuple[List[str], List[str]]:
        """Special tokens a TemplateProcessing post-processor puts before / after sequence A."""
        if not post or post.get("type") != "TemplateProcessing":
            return [], []
        before: List[str] = []
        after: List[str] = []
        seen_a = False
        for item in post.get("single") or []:
            if "SpecialToken" in item:
                (after if seen_a else before).append(item["SpecialToken"]["id"])
            elif "Sequence" in item:
                seen_a = True
        return before, after

    # ------------------------------------------------------------------ vocabulary

    @property
    def vocab_size(self) -> int:
        """One more than the largest token id (BPE vocabulary and added tokens)."""
        return max(self._id_to_token) + 1

    def token_to_id(self, token: str) -> Optional[int]:
        added = self._added.get(token)
        if added is not None:
            return added.id
        return self._vocab.get(token)

    def id_to_token(self, token_id: int) -> Optional[str]:
        return self._id_to_token.get(int(token_id))

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes token ``token_id`` stands for (UTF-8 of the content for added tokens).

        Ids the tokenizer does not know (a model's padded vocabulary rows) give ``b""``.
        """
        token_id = int(token_id)
        if token_id < 0:
            raise ValueError(f"negative token id {token_id}")
        added = self._added_by_id.get(token_id)
        if added is not None:
            return added.content.encode("utf-8")
        tok = self._id_to_token.get(token_id)
        if tok is None:
            return b""
        return bytes(_BYTE_DECODER[ch] for ch in tok)

    def is_special(self, token_id: int) -> bool:
        return int(token_id) in self.special_ids

    # ------------------------------------------------------------------ encoding

    def _bpe(self, word: str) -> List[str]:
        cached = self._bpe_cache.get(word)
        if cached is not None:
            return cached
        if self._ignore_merges and word in self._vocab:
            result = [word]
        else:
            parts = list(word)
            ranks = self._ranks
            while len(parts) > 1:
                best = None
                best_rank = None
                for k in range(len(parts) - 1):
                    r = ranks.get((parts[k], parts[k + 1]))
                    if r is not None and (best_rank is None or r < best_rank):
                        best, best_rank = k, r
                if best is None:
                    break
                parts[best : best + 2] = [parts[best] + parts[best + 1]]
            result = parts
        if len(word) < 256:
            if len(self._bpe_cache) > 10000:
                self._bpe_cache.clear()
            self._bpe_cache[word] = result
        return result

    def _encode_ordinary(self, text: str, out: List[int]) -> None:
        for piece in qwen2_pre_split(text):
            mapped = "".join(_BYTE_ENCODER[b] for b in piece.encode("utf-8"))
            for tok in self._bpe(mapped):
                tid = self._vocab.get(tok)
                if tid is None:
                    raise KeyError(f"BPE produced {tok!r}, which is not in the vocabulary")
                out.append(tid)

    def _split_added(self, sections: List[str], dictionary: Sequence[str]) -> List[str]:
        out = _longest_match_split_all(sections, dictionary)
        for k, s in enumerate(out):
            tok = self._added.get(s)
            if tok is None:
                continue
            # As transformers.js does it: trim the neighbouring sections.
            if tok.lstrip and k > 0:
                out[k - 1] = out[k - 1].rstrip()
            if tok.rstrip and k + 1 < len(out):
                out[k + 1] = out[k + 1].lstrip()
        return out

    def encode(self, text: str, add_special_tokens: bool = False) -> List[int]:
        """Token ids of ``text``. Added tokens (``<think>``, ``<｜User｜>`` ...) in the text are
        matched first, longest first; the rest is NFC-normalized, split, byte-mapped and BPE'd.

        ``add_special_tokens`` applies the post-processor template (for DeepSeek-R1 tokenizers:
        a leading BOS). It defaults to ``False`` because chat-templated text already carries its
        BOS, matching what ``apply_chat_template(..., tokenize=True)`` does.
        """
        ids: List[int] = []
        for section in self._split_added([text], self._unnormalized):
            if not section:
                continue
            tok = self._added.get(section)
            if tok is not None and section in self._unnormalized:
                ids.append(tok.id)
                continue
            normalized = unicodedata.normalize("NFC", section) if self._nfc else section
            for sub in self._split_added([normalized], self._normalized):
                if not sub:
                    continue
                tok = self._added.get(sub)
                if tok is not None:
                    ids.append(tok.id)
                else:
                    self._encode_ordinary(sub, ids)
        if add_special_tokens:
            before, after = self._bos_prefix
            ids = [self._require_id(t) for t in before] + ids + [self._require_id(t) for t in after]
        return ids

    def _require_id(self, token: str) -> int:
        tid = self.token_to_id(token)
        if tid is None:
            raise KeyError(f"post-processor token {token!r} is not in the vocabulary")
        return tid

    # ------------------------------------------------------------------ decoding

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; runs of byte-level tokens are decoded as UTF-8 with U+FFFD for
        invalid or incomplete sequences, added tokens contribute their content verbatim."""
        parts: List[str] = []
        run = bytearray()
        for tid in ids:
            tid = int(tid)
            added = self._added_by_id.get(tid)
            if added is not None:
                if skip_special_tokens and added.special:
                    continue
                if run:
                    parts.append(run.decode("utf-8", errors="replace"))
                    run = bytearray()
                parts.append(added.content)
            else:
                run += self.token_bytes(tid)
        if run:
            parts.append(run.decode("utf-8", errors="replace"))
        return "".join(parts)

    # ------------------------------------------------------------------ chat template

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        add_generation_prompt: bool = True,
    ) -> str:
        """Render ``messages`` the way DeepSeek-R1(-Distill)'s Jinja chat template does.

        ``{bos}{last system message}`` then, per message: user → ``<｜User｜>{content}``;
        assistant → ``<｜Assistant｜>{content after the last </think>}<｜end▁of▁sentence｜>``;
        assistant tool calls and tool outputs as in the template; finally, with
        ``add_generation_prompt`` (and the last message not a tool output),
        ``<｜Assistant｜><think>\\n``. System messages are not rendered in place.
        """
        bos = self.bos_token or ""
        eos = "<｜end▁of▁sentence｜>"
        is_first = False
        is_tool = False
        is_output_first = True
        system_prompt = ""
        for m in messages:
            if m.get("role") == "system":
                system_prompt = str(m.get("content") or "")
        out = [bos, system_prompt]
        for m in messages:
            role = m.get("role")
            content = m.get("content")
            if role == "user":
                is_tool = False
                out.append("<｜User｜>" + str(content))
            if role == "assistant" and content is None:
                is_tool = False
                for tool in m.get("tool_calls") or []:
                    fn = tool["function"]
                    call = (
                        "<｜tool▁call▁begin｜>" + tool["type"] + "<｜tool▁sep｜>" + fn["name"] + "\n"
                        "```json" + "\n" + fn["arguments"] + "\n" + "```" + "<｜tool▁call▁end｜>"
                    )
                    if not is_first:
                        out.append("<｜Assistant｜><｜tool▁calls▁begin｜>" + call)
                        is_first = True
                    else:
                        out.append("\n" + call + "<｜tool▁calls▁end｜>" + eos)
            if role == "assistant" and content is not None:
                if is_tool:
                    out.append("<｜tool▁outputs▁end｜>" + str(content) + eos)
                    is_tool = False
                else:
                    text = str(content)
                    if "</think>" in text:
                        text = text.split("</think>")[-1]
                    out.append("<｜Assistant｜>" + text + eos)
            if role == "tool":
                is_tool = True
                if is_output_first:
                    out.append("<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>" + str(content) + "<｜tool▁output▁end｜>")
                    is_output_first = False
                else:
                    out.append("\n<｜tool▁output▁begin｜>" + str(content) + "<｜tool▁output▁end｜>")
        if is_tool:
            out.append("<｜tool▁outputs▁end｜>")
        if add_generation_prompt and not is_tool:
            out.append("<｜Assistant｜><think>\n")
        return "".join(out)


def _longest_match_split_all(sections: List[str], dictionary: Sequence[str]) -> List[str]:
    out: List[str] = []
    for s in sections:
        out.extend(_longest_match_split(s, dictionary))
    return out
