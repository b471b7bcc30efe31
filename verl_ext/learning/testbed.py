"""The start every run of the learning experiment shares: the task, the model and its supervised warm-up.

The task is the tiny ``chain`` of :mod:`verl_ext.tiny.arithmetic`: from four digits, 24 lines ("3817=0") of a lagged
Fibonacci sequence modulo 10 (the new digit = the first + the last of the four before it), and the last four digits
boxed. A worked answer is 181 tokens (end of turn included), every token needs at most two others within the line
before it (the 0.33M-parameter model learns it), and a slip anywhere carries into the answer, so the result depends
on the early steps. With a suffix budget of 32 tokens the tail cut keeps at least four fifths of a cached answer
fixed (~10% regenerated on average; the paper's 300 of ~4k tokens is ~7%): the
property of RPO this testbed has to be able to see. The default 2-3 digit addition has ~56-token answers, which a
budget of 48 regenerated nearly whole; longer additions (7-9 digits) the tiny model does not learn at all.

The warm-up (verl's SFT trainer, :mod:`verl_ext.tiny.warmup`, 600 steps at a constant 1e-3) leaves a model that
answers 0.91 of the val prompts greedily and ~0.66 when it samples at T=1, so RL has mixed-reward groups and room
to make sampling as good as the greedy answer. It is a knife edge: the SFT loss falls from 0.10 to 0.02 per token
between steps 360 and 400, and warm-ups of 380 and 500 steps sampled ~0.01. The RL learning rate and steps are the
command line's (:mod:`verl_ext.learning.cli`).
"""

from __future__ import annotations

from verl_ext.tiny.assets import TinyBuildParams
from verl_ext.tiny.warmup import WarmupParams

TESTBED_BUILD = TinyBuildParams(preset="tiny", seed=0, n_train=256, n_val=128, n_sft=3000, task="chain")
TESTBED_WARMUP = WarmupParams(steps=600, lr=1e-3, lr_scheduler="constant")
# Prompts ("Chain: 3817" in the chat template) are 30 tokens, worked answers 181.
PROMPT_LENGTH = 40
RESPONSE_LENGTH = 224
# RPO's suffix budget (rpo.truncation.max_new_tokens; the tail cut draws k ~ U{1..32}).
SUFFIX_BUDGET = 32
