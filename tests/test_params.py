"""check_parameters: a papermill -p name the notebook does not declare is refused; nothing else is."""
from __future__ import annotations

import re

import pytest
from papermill.translators import PythonTranslator

from llmss_lab.errors import InputError
from llmss_lab.params import check_parameters, injected_names

DECLARED = {"reference_dir": str, "num_requests": int, "hardware": list}


def namespace(*cells: str) -> dict:
    """A notebook's globals after running ``cells`` and starting the checking cell (IPython's In)."""
    return {"__annotations__": DECLARED, "In": ["", *cells, "check_parameters(globals())"]}


def injected(**params) -> str:
    return PythonTranslator.codify(params, comment="Parameters")


def test_papermill_injected_names_are_read_from_its_cell():
    assert injected_names(injected(a=1, b="x", c=[1, 2])) == ["a", "b", "c"]
    assert injected_names(PythonTranslator.codify({"a": 1}, comment="Injected parameters")) == ["a"]
    assert injected_names("a = 1\nb = 2") == []          # not papermill's cell


def test_declared_parameters_pass():
    check_parameters(namespace("reference_dir: str = ''", injected(num_requests=5, hardware=["H100"])))


@pytest.mark.parametrize("name, meant", [("hardwar", "hardware"), ("Num_Requests", "num_requests"),
                                         ("numrequests", "num_requests")])
def test_a_misspelt_name_is_refused_with_the_one_meant(name, meant):
    with pytest.raises(InputError, match=rf"parameters: {name}: .*no parameter '{name}' \(did you mean '{meant}'\?\)"
                                         r"\. Its parameters: reference_dir, num_requests, hardware"):
        check_parameters(namespace("reference_dir: str = ''", injected(num_requests=5, **{name: 1})))


def test_a_name_far_from_any_is_refused_without_a_guess():
    with pytest.raises(InputError, match=r"no parameter 'colour'\. Its parameters"):
        check_parameters(namespace(injected(colour="red")))


def test_cells_run_by_hand_are_never_refused():
    """Re-running the checking cell after later cells defined ref, out, ... must not fail."""
    check_parameters(namespace("reference_dir: str = ''", "ref = 1\nout = 2"))
    check_parameters(namespace(injected(colour="red"), "x = 1"))   # the injected cell is not the last one run
    check_parameters({"__annotations__": DECLARED})                # no IPython history at all
    check_parameters({"In": ["", "check_parameters(globals())"]})


@pytest.mark.parametrize("name, value, says", [("reference_dir", 5, "must be a text (str), got 5"),
                                               ("num_requests", "ten", "must be a whole number (int), got 'ten'"),
                                               ("num_requests", True, "must be a whole number (int), got True"),
                                               ("num_requests", 2.5, "must be a whole number (int), got 2.5"),
                                               ("reference_dir", None, "must be a text (str), got None")])
def test_a_value_of_another_kind_than_declared_is_refused(name, value, says):
    """-p output_dir 5 ended in a TypeError from pathlib inside the notebook, not one line naming it."""
    cell = injected(**{name: value})
    with pytest.raises(InputError, match=rf"^parameters: {name}: {re.escape(says)}$"):
        check_parameters({**namespace(cell), name: value})


def test_values_of_the_declared_kinds_pass():
    values = {"reference_dir": "ref", "num_requests": 5, "hardware": ["H100"]}
    check_parameters({**namespace(injected(**values)), **values})
    check_parameters({**namespace(injected(n=1.5)), "__annotations__": {"n": float}, "n": 2})   # an int is a float
    for n, hardware in ((1e3, "H100"), (None, None), (5, 5)):   # -p n 1e3; None: the whole trace; lists as_names takes
        values = {"num_requests": n, "hardware": hardware}
        check_parameters({**namespace(injected(**values)), **values})
