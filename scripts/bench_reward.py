"""What bounding math-verify in worker processes costs on ordinary answers, side by side in one run.

    python scripts/bench_reward.py [--answers 400] [--threads 4]

Arms: ``in-thread`` judges in the calling (main) thread, as the reward did before it was bounded; ``bounded``
goes through the worker pool (``verl_ext.rewards.accuracy.check_answer``), called sequentially and from a thread pool
as verl's reward loop calls it. The pool is warmed up first (its workers' start-up is paid once per process).
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from verl_ext.rewards.accuracy import check_answer, judge

# (ground truth, predicted) pairs in the shapes the paper's data sets produce: integers, fractions, expressions.
PAIRS = [("3/4", "\\frac{3}{4}"), ("42", "42"), ("0.75", "3/4"), ("\\sqrt{2}", "2^{1/2}"), ("12", "13"),
         ("x^2+1", "1+x^2"), ("\\frac{\\pi}{3}", "60^\\circ"), ("-5", "-5.0"), ("(1,2)", "(1, 2)"), ("7", "\\pi")]


def per_answer_ms(score: Callable[[tuple[str, str]], object], pairs: Sequence[tuple[str, str]], threads: int) -> float:
    start = time.perf_counter()
    if threads == 1:
        for pair in pairs:
            score(pair)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(score, pairs))
    return 1000 * (time.perf_counter() - start) / len(pairs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=400)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    pairs = [PAIRS[i % len(PAIRS)] for i in range(args.answers)]
    check_answer(*PAIRS[0])  # start the workers
    in_thread = per_answer_ms(lambda pair: judge(*pair), pairs, 1)
    bounded = per_answer_ms(lambda pair: check_answer(*pair), pairs, 1)
    bounded_threads = per_answer_ms(lambda pair: check_answer(*pair), pairs, args.threads)
    print(f"{args.answers} ordinary answers, ms per answer:")
    print(f"  in-thread (unbounded)           {in_thread:7.2f}")
    print(f"  bounded, sequential             {bounded:7.2f}   ratio {bounded / in_thread:.2f}")
    threads_label = f"bounded, {args.threads} threads"
    print(f"  {threads_label:<32}{bounded_threads:7.2f}   ratio {bounded_threads / in_thread:.2f}")


if __name__ == "__main__":
    main()
