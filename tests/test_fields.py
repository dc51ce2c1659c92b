"""am.fields: the checks of config dataclasses, whose errors carry the field's name."""

import pickle

import pytest

from am.fields import FieldError, check_choice, check_int, check_number, checking


def test_field_error_is_a_value_error_naming_its_field_and_pickles():
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1") as err:
        check_int("num_steps", 0)
    assert err.value.field == "num_steps"
    again = pickle.loads(pickle.dumps(err.value))  # crosses process boundaries intact
    assert isinstance(again, FieldError) and again.field == "num_steps"
    assert str(again) == str(err.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda: check_int("k", True),
        lambda: check_int("k", 1.0),
        lambda: check_int("k", 1, minimum=2),
        lambda: check_number("x", float("nan")),
        lambda: check_number("x", "1"),
        lambda: check_number("x", 0.0, minimum=0.0, strict=True),
        lambda: check_number("x", -1e-9, minimum=0.0),
        lambda: check_choice("mode", "most", ("all", "paper")),
    ],
)
def test_checks_refuse(call):
    with pytest.raises(FieldError):
        call()


def test_checks_accept_the_boundary():
    check_int("k", 2, minimum=2)
    check_number("x", 0.0, minimum=0.0)
    check_number("x", 3)
    check_choice("mode", "all", ("all", "paper"))


def test_checking_names_the_field_that_delegated_the_check():
    with pytest.raises(FieldError, match="^grid_warp: bad$") as err:
        with checking("grid_warp", "grid_warp: "):
            raise ValueError("bad")
    assert err.value.field == "grid_warp"
    with pytest.raises(FieldError) as err:  # the delegated check's field is not this one's
        with checking("outer"):
            check_int("inner", 0)
    assert err.value.field == "outer"
    with pytest.raises(TypeError):  # only value errors are renamed
        with checking("x"):
            raise TypeError("not a value error")
