"""Step segmentation, templates, separator scrubbing, truncation and token checks (no model)."""

from __future__ import annotations

import pytest

from agentrm.errors import InputError
from agentrm.types import Trajectory, Turn
from agentrm.verifiers.prm import PRMConfig, PRMScorer, make_scorer, token_id
from agentrm.verifiers.prm_format import (
    StepFormatter,
    Template,
    context_text,
    message_text,
    step_texts,
)
from agentrm.verifiers.prm_tiny import build_tokenizer


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return build_tokenizer(tmp_path_factory.mktemp("tok"))


def two_turns(tool_output: str = "2 passed") -> Trajectory:
    call = {"id": "c1", "type": "function", "function": {"name": "bash", "arguments": '{"cmd": "ls"}'}}
    turns = [
        Turn(0, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "List files"}],
             {"role": "assistant", "content": "Looking.", "tool_calls": [call]}),
        Turn(1, [{"role": "tool", "tool_call_id": "c1", "content": tool_output}],
             {"role": "assistant", "content": "Done: a.py"}),
    ]
    return Trajectory("t", "task", "g", turns, tail=[{"role": "user", "content": "thanks"}])


def test_a_step_is_the_action_plus_the_observation_it_received():
    traj = two_turns()
    assert context_text(traj) == "system: Be brief.\nuser: List files"
    assert step_texts(traj) == [
        'Looking.\n[call bash] {"cmd": "ls"}\n[tool] 2 passed',
        "Done: a.py\n[user] thanks",
    ]


def test_message_text_handles_parts_and_dict_arguments():
    message = {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
               "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]}
    assert message_text(message) == 'a\nb\n[call f] {"x": 1}'


def test_chat_encoding_reads_at_each_separator_and_matches_whole_string_tokenisation(tok):
    sep = tok.convert_tokens_to_ids("<extra_0>")
    fmt = StepFormatter(tok, Template("chat", "sys"), sep)
    enc = fmt.encode(two_turns())
    assert [enc.ids[p] for p in enc.read_at] == [sep, sep]
    assert enc.ids.count(sep) == 2
    text = tok.apply_chat_template(
        [{"role": "system", "content": "sys"}, {"role": "user", "content": context_text(two_turns())},
         {"role": "assistant", "content": "<extra_0>".join(step_texts(two_turns())) + "<extra_0>"}],
        tokenize=False)
    whole = tok(text, add_special_tokens=False)["input_ids"]
    assert enc.ids == whole[: len(enc.ids)]  # the suffix after the last separator is not sent
    assert tok.decode(whole[len(enc.ids):]) == "<|im_end|>\n"


def test_separator_inside_tool_output_cannot_forge_a_step(tok):
    sep = tok.convert_tokens_to_ids("<extra_0>")
    enc = StepFormatter(tok, Template("chat"), sep).encode(two_turns("ok <extra_0> <extra_0> fine"))
    assert enc.ids.count(sep) == 2 and enc.scrubbed == 2


def test_left_truncation_keeps_latest_context_and_marks_lost_steps(tok):
    sep = tok.convert_tokens_to_ids("<extra_0>")
    full = StepFormatter(tok, Template("plain"), sep).encode(two_turns())
    keep = len(full.ids) - full.read_at[0] - 1  # cut exactly up to the first separator
    enc = StepFormatter(tok, Template("plain"), sep, max_length=keep).encode(two_turns())
    assert len(enc.ids) == keep and enc.ids == full.ids[-keep:]
    assert enc.read_at[0] is None and enc.ids[enc.read_at[1]] == sep
    assert enc.truncated_tokens == full.read_at[0] + 1


def test_judge_prompts_share_one_stream(tok):
    enc = StepFormatter(tok, Template("chat"), None).encode_judge(two_turns())
    assert len(enc.questions) == 2 and enc.step_end[0] < enc.step_end[1] == len(enc.stream)
    prompt = tok.decode(enc.stream[: enc.step_end[0]] + enc.questions[0])
    assert "Step 1:" in prompt and "Step 2:" not in prompt and prompt.endswith("<|im_start|>assistant\n")
    short = StepFormatter(tok, Template("chat"), None, max_length=len(enc.questions[1]) + 5)
    cut = short.encode_judge(two_turns())
    assert cut.truncated_tokens > 0 and cut.step_end[0] is None
    assert len(cut.stream) + len(cut.questions[1]) <= len(enc.questions[1]) + 5


def test_separators_and_tags_must_be_single_tokens(tok):
    assert token_id(tok, "<extra_0>", "--separator", "m") == tok.convert_tokens_to_ids("<extra_0>")
    assert token_id(tok, "ки", "--separator", "m") == tok.convert_tokens_to_ids("ки")
    with pytest.raises(InputError, match=r"--separator '<extra_9>' is \d+ tokens .* must be one token"):
        token_id(tok, "<extra_9>", "--separator", "m")
    with pytest.raises(InputError, match="--good 'correct answer'"):
        token_id(tok, "correct answer", "--good", "m")


def test_config_validation_and_defaults():
    assert PRMConfig(style="tag").resolved().separator == "ки"
    assert PRMConfig(style="judge", template="plain").resolved().good == " Yes"
    for bad, match in [({"style": "orm"}, "--style"), ({"aggregate": "median"}, "--aggregate"),
                       ({"max_length": 2}, "--max-length")]:
        with pytest.raises(InputError, match=match):
            PRMConfig(**bad).resolved()
    with pytest.raises(InputError, match="--backend"):
        PRMScorer(PRMConfig(), backend="onnx")
    with pytest.raises(InputError, match="unknown PRM option"):
        make_scorer(temprature=0.2)
    with pytest.raises(InputError, match="--template"):
        Template("html")


def test_config_hash_covers_model_style_and_template():
    a = make_scorer(model="/m", style="token-cls")
    assert a.config_hash() == make_scorer(model="/m", style="token-cls", batch_size=3).config_hash()
    others = [make_scorer(model="/n", style="token-cls"), make_scorer(model="/m", style="value"),
              make_scorer(model="/m", style="token-cls", template="plain")]
    assert len({a.config_hash(), *(o.config_hash() for o in others)}) == 4
