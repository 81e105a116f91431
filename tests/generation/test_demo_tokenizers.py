"""The demo FLUX Fill's tokenizers are the same in every process: its text embeddings, hence every
candidate of the demo generator and the loop's figures, depend on their token ids."""
import subprocess
import sys
from pathlib import Path

from generation.core.demo_flux import bpe_merges, build_clip_tokenizer, build_t5_tokenizer

ROOT = Path(__file__).resolve().parents[2]
PRINT_TOKENIZERS = (
    "from generation.core.demo_flux import build_clip_tokenizer, build_t5_tokenizer\n"
    "for tokenizer in (build_clip_tokenizer(), build_t5_tokenizer()):\n"
    "    print(tokenizer.backend_tokenizer.to_str())\n"
)


def test_two_processes_build_the_same_tokenizers():
    # A fresh interpreter each: the library's own trainers iterated hash maps seeded per process, so
    # one process building twice would not show it.
    built = [subprocess.run([sys.executable, "-c", PRINT_TOKENIZERS], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout for _ in range(3)]
    assert built[0] and built[0] == built[1] == built[2]


def test_bpe_merges_takes_the_most_frequent_pair_and_the_smallest_among_equals():
    # Worked by hand: pairs ab 2+1 = 3, bc 2+3 = 5 -> (b, c); then (a, bc) 2 against (a, b) 1; then (a, b).
    words = {("a", "b", "c"): 2, ("a", "b"): 1, ("b", "c"): 3}
    assert bpe_merges(words, 10) == [("b", "c"), ("a", "bc"), ("a", "b")]
    assert bpe_merges(words, 1) == [("b", "c")]
    assert bpe_merges({("x", "y"): 1, ("a", "b"): 1}, 10) == [("a", "b"), ("x", "y")]


def test_every_text_encodes_without_unknown_pieces_in_clip_and_word_pieces_in_t5():
    clip, t5 = build_clip_tokenizer(), build_t5_tokenizer()
    text = "Ünïcode façade — 漢字 and a red cup"
    ids = clip(text)["input_ids"]
    assert ids[0] == clip.bos_token_id and ids[-1] == clip.eos_token_id
    assert clip.unk_token_id not in ids[1:-1]
    assert clip.decode(ids, skip_special_tokens=True).strip() == text.lower()
    # T5: a word of the sentences is one piece; an unseen word falls back to characters.
    assert t5.tokenize("a red cup") == ["▁a", "▁red", "▁cup"]
    assert t5.tokenize("cupped") == ["▁cup", "p", "e", "d"]
    assert t5.convert_tokens_to_ids(["<pad>", "</s>", "<unk>"]) == [0, 1, 2]
