"""The package surface: every public name resolves, and importing the package stays light."""
from __future__ import annotations

import subprocess
import sys

import pytest

import llmss_lab


def test_every_public_name_resolves():
    for name in llmss_lab.__all__:
        assert getattr(llmss_lab, name) is not None, name
    assert llmss_lab.load_results == llmss_lab.Results.load


def test_import_and_help_do_not_load_the_kernel_or_xarray():
    code = ("import sys, llmss_lab, llmss_lab.cli; "
            "print(sorted(m for m in ('xarray', 'numpy', 'llmss_lab.api') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        llmss_lab.no_such_name
