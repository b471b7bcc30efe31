"""The start every run of the learning experiment shares: the task, the model and its supervised warm-up.

The task is the tiny ``chain`` of :mod:`verl_ext.tiny.arithmetic`: from four digits, 24 lines ("3817=0") of a lagged
Fibonacci sequence modulo 10 (the new digit = the first + the last of the four before it), and the last four digits
boxed. A worked answer is 181 tokens (end of turn included), every token needs at most two others within the line
before it (the 0.33M-parameter model learns it), and a slip anywhere carries into the answer, so the result depends
on the early steps. With a suffix budget of 32 tokens the tail cut keeps at least four fifths of a cached answer
fixed (~10% regenerated on average; the paper's 300 of ~4k tokens is ~7%): the property of RPO this testbed has to
be able to see. The last 12 tokens are the closing tags and the boxed copy of the last four digits, so a suffix
regenerates at most 3 of the 24 lines (1.2 on average).

The warm-up demonstrations slip on 5% of their carry steps (a line whose sum reaches 10 writes the carry, 1; about
nine such lines per answer, so ~39% of the demonstrations end wrong; RL prompts and ground truths are right). The
warm model (verl's SFT trainer, :mod:`verl_ext.tiny.warmup`, 600 steps at a constant 1e-3) then answers every val
prompt right greedily but only ~0.55 when it samples at T=1: it has learnt the slip as a systematic, position-
independent habit, which RL on the final answer can find and remove on any line of any prompt. On clean
demonstrations the sampled errors were rare random slips and full-path GRPO did not gain on held-out prompts in 20
steps at any learning rate tried (README, Evidence). The warm-up is a knife edge on this task (on clean data the
SFT loss fell from 0.10 to 0.02 per token between steps 360 and 400; 380 and 500 steps sampled ~0.01, 600 ~0.66).
The RL learning rate and steps are the command line's (:mod:`verl_ext.experiments.learning.cli`).
"""

from __future__ import annotations

from verl_ext.tiny.assets import TinyBuildParams
from verl_ext.tiny.warmup import WarmupParams

TESTBED_BUILD = TinyBuildParams(preset="tiny", seed=0, n_train=256, n_val=128, n_sft=3000, task="chain",
                                sft_slip_rate=0.05)
TESTBED_WARMUP = WarmupParams(steps=600, lr=1e-3, lr_scheduler="constant")
# Prompts ("Chain: 3817" in the chat template) are 30 tokens, worked answers 181.
PROMPT_LENGTH = 40
RESPONSE_LENGTH = 224
# RPO's suffix budget (rpo.truncation.max_new_tokens; the tail cut draws k ~ U{1..32}).
SUFFIX_BUDGET = 32
