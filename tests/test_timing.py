import time

import pytest
import torch

from course_utils.timing import median_seconds


def test_median_of_repeats_after_warmup():
    calls = []
    delays = iter([0.2, 0.0, 0.03, 0.01])  # the slow first call is the warm-up: never counted

    def fn():
        calls.append(torch.is_grad_enabled())
        time.sleep(next(delays))

    seconds = median_seconds(fn, repeats=3, warmup=1)
    assert len(calls) == 4 and not any(calls)  # warm-up + 3 repeats, all under no_grad
    assert 0.005 < seconds < 0.03  # the median of (0.0, 0.03, 0.01)


@pytest.mark.parametrize("kwargs, message", [(dict(repeats=0), "repeats"), (dict(warmup=-1), "warmup"), (dict(repeats=1.5), "repeats")])
def test_bad_arguments_name_the_argument(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        median_seconds(lambda: None, **kwargs)


def test_fn_must_be_callable():
    with pytest.raises(TypeError, match="fn must be callable"):
        median_seconds(3)
