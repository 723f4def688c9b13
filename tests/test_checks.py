"""Shared input checks: what passes, and errors that name the argument, expectation and value."""

import numpy as np
import pytest
import torch

from choral.checks import as_float64, check_choice, check_int
from choral.errors import ConfigError, DataError


def test_integers_of_any_kind_pass_and_come_back_as_int():
    for value in (3, np.int64(3), np.uint8(3)):
        out = check_int(value, "n", minimum=1, maximum=3)
        assert out == 3 and type(out) is int


@pytest.mark.parametrize("value", [True, 2.0, "2", None, 0, 4])
def test_everything_else_is_refused_with_the_name_and_the_value(value):
    with pytest.raises(DataError, match=rf"n must be an integer >= 1 and <= 3; got n={value!r}"):
        check_int(value, "n", minimum=1, maximum=3)


def test_choices_name_the_allowed_values():
    assert check_choice("a", "kind", ("a", "b")) == "a"
    with pytest.raises(ConfigError, match="kind must be one of a, b; got 'c'"):
        check_choice("c", "kind", ("a", "b"))


def test_float64_conversion_detaches_and_checks_finiteness():
    x = torch.ones(2, requires_grad=True)
    out = as_float64(x, "y")
    assert out.dtype == torch.float64 and not out.requires_grad
    with pytest.raises(DataError, match="y must be finite"):
        as_float64([1.0, float("nan")], "y")
    assert bool(torch.isnan(as_float64([float("nan")], "y", finite=False)).all())
    with pytest.raises(DataError, match="y must be a numeric array or tensor; got str"):
        as_float64("abc", "y")
