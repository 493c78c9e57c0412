"""check_parameters: a papermill -p name the notebook does not declare is refused; nothing else is."""
from __future__ import annotations

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
