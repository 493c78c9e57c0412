"""Where reference data comes from, and the fetch command (with a fake downloader: no network here)."""
from __future__ import annotations

import pytest

from llmss_lab.errors import InputError
from llmss_lab.reference import PINNED_COMMIT, fetch_manifest, fetch_reference, resolve_reference_dir


def test_explicit_then_environment(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    monkeypatch.setenv("LLMSS_REFERENCE_DIR", str(tmp_path))
    assert resolve_reference_dir() == tmp_path
    assert resolve_reference_dir(tmp_path) == tmp_path
    with pytest.raises(InputError, match="reference folder does not exist"):
        resolve_reference_dir(tmp_path / "missing")


def test_a_folder_one_level_off_is_named_by_how_it_was_given_with_the_one_meant(tmp_path, monkeypatch, capsys):
    from llmss_lab.cli import main
    root = tmp_path / "reference" / "llmservingsim"
    (root / "profiles" / "H100").mkdir(parents=True)
    for off in (tmp_path / "reference", root / "profiles"):          # one level too high, one too deep
        with pytest.raises(InputError, match=f"reference_dir: not a reference folder.*did you mean {root}\\?"):
            resolve_reference_dir(off)
    monkeypatch.setenv("LLMSS_REFERENCE_DIR", str(tmp_path))
    with pytest.raises(InputError, match=r"\$LLMSS_REFERENCE_DIR: not a reference folder.*did you mean"):
        resolve_reference_dir()
    assert main(["profile-check", "H100", "meta-llama/Llama-3.1-8B", "--reference-dir", str(tmp_path)]) == 2
    assert "--reference-dir: not a reference folder" in capsys.readouterr().err


def test_fetch_writes_the_layout_and_resumes(tmp_path):
    urls = []

    def opener(url: str) -> bytes:
        urls.append(url)
        return b"x"

    fetch_reference(tmp_path, opener=opener)
    assert len(urls) == len(fetch_manifest())
    assert all(PINNED_COMMIT in u for u in urls)
    assert (tmp_path / "profiles/RTXPRO6000/meta-llama/Llama-3.1-8B/bf16/tp1/attention.csv").is_file()
    assert (tmp_path / "measurements/RTXPRO6000/Qwen3-32B/vllm/requests.jsonl").is_file()
    assert not list(tmp_path.rglob("*.part"))
    urls.clear()
    fetch_reference(tmp_path, opener=opener)  # everything present: nothing downloaded again
    assert urls == []


def test_fetch_failure_is_a_clear_error(tmp_path):
    def opener(url: str) -> bytes:
        raise OSError("no route to host")

    with pytest.raises(InputError, match="download failed"):
        fetch_reference(tmp_path, opener=opener)


def test_an_unwritable_cache_or_an_empty_dest_is_named_before_any_download(tmp_path, monkeypatch):
    urls = []

    def opener(url: str) -> bytes:
        urls.append(url)
        return b"x"

    blocker = tmp_path / "cache"
    blocker.write_text("")                          # $XDG_CACHE_HOME is a file: the cache cannot be made
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(InputError, match=r"the default cache \(\$XDG_CACHE_HOME"):
        fetch_reference(opener=opener)
    with pytest.raises(InputError, match="--dest: expected a file path, got ''"):   # it used the default cache
        fetch_reference("", opener=opener)
    assert urls == []


def test_no_reference_data_found_says_where_it_looked(tmp_path, monkeypatch):
    import llmss_lab.reference as reference

    monkeypatch.delenv("LLMSS_REFERENCE_DIR", raising=False)
    monkeypatch.setattr(reference, "_beside_checkout", lambda: [tmp_path / "a", tmp_path / "b"])
    monkeypatch.setattr(reference, "default_cache_dir", lambda: tmp_path / "cache")
    with pytest.raises(InputError, match=rf"^reference data: no reference data found \(looked in {tmp_path}/a, "
                                         rf"{tmp_path}/b, {tmp_path}/cache\): pass --reference-dir, set "
                                         r"\$LLMSS_REFERENCE_DIR, or run `llmss fetch-reference`"):
        resolve_reference_dir()
