"""ATTN_MODEL_DIRS: a model directory outside the allowed folders is refused in one line, from its
name alone: nothing under that path is stat'ed, listed or opened (a link must not probe the disk)."""
from __future__ import annotations

import contextlib
import os
import pathlib

import pytest

from attn import model_dirs
from attn.cli import main
from attn.jobs import JobFailed, JobRunner
from attn.model_dirs import ModelDirNotAllowed, checked_model_dir, refusal
from attn.models import ModelLoadError, load_model, model_config
from tests.conftest import open_app

OUTSIDE = "outside the folders this attn may read models from (ATTN_MODEL_DIRS)"


@pytest.fixture
def allowed(tmp_path, monkeypatch):
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv(model_dirs.ENV, os.pathsep.join([str(root), str(tmp_path / "more")]))
    return root


@contextlib.contextmanager
def disk_untouched(*paths):
    """Every way of looking at the disk raises if it is asked about one of `paths` (or below)."""
    prefixes = tuple(os.path.normpath(os.fspath(p)) for p in paths)
    patches = pytest.MonkeyPatch()

    def check(name, path) -> None:
        text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else ""
        if text and os.path.normpath(os.path.abspath(text)).startswith(prefixes):
            raise AssertionError(f"{name}({text!r}) touched the disk")

    def guarded(name, real):
        def call(first, *args, **kwargs):
            check(name, first)
            return real(first, *args, **kwargs)
        return call

    for name in ("stat", "lstat", "listdir", "scandir", "open", "access", "readlink"):
        patches.setattr(os, name, guarded(f"os.{name}", getattr(os, name)))
    for name in ("exists", "is_dir", "is_file", "iterdir", "glob", "resolve", "read_text", "open"):
        patches.setattr(pathlib.Path, name, guarded(f"Path.{name}", getattr(pathlib.Path, name)))
    try:
        yield
    finally:
        patches.undo()


def test_the_lexical_check_folds_dots_and_compares_whole_folders(allowed, tmp_path):
    assert refusal(str(allowed / "bert")) is None
    assert refusal(str(tmp_path / "more" / "a" / "b")) is None
    for outside in ("/etc", str(allowed / ".." / ".." / "etc"), str(allowed) + "2", str(tmp_path), "~/x"):
        assert OUTSIDE in refusal(outside), outside
    assert refusal(str(allowed / "a" / ".." / "b")) is None


def test_unset_or_empty_allows_any_directory(monkeypatch):
    monkeypatch.delenv(model_dirs.ENV, raising=False)
    assert model_dirs.allowed_roots() is None and refusal("/etc") is None
    monkeypatch.setenv(model_dirs.ENV, os.pathsep)
    assert model_dirs.allowed_roots() is None
    assert "is not set" in model_dirs.describe()


def test_a_relative_path_is_read_against_the_working_directory(allowed, monkeypatch):
    monkeypatch.chdir(allowed)
    assert refusal("bert") is None and refusal("./bert") is None
    assert OUTSIDE in refusal("../elsewhere")


def test_a_symlink_out_of_an_allowed_folder_is_refused_after_the_lexical_check(allowed, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (allowed / "escape").symlink_to(secret)
    (allowed / "real").mkdir()
    (allowed / "alias").symlink_to(allowed / "real")
    assert refusal(str(allowed / "escape")) is None  # its name is inside ...
    with pytest.raises(ModelDirNotAllowed, match="through a symbolic link") as info:
        checked_model_dir(str(allowed / "escape"))  # ... where it leads is not
    assert str(secret) not in str(info.value)
    assert checked_model_dir(str(allowed / "alias")) == os.path.realpath(allowed / "real")


def test_the_library_refuses_without_touching_the_disk(allowed, tmp_path):
    secret = tmp_path / "secret"
    with disk_untouched("/etc", secret):
        for source in ("/etc", str(secret), str(allowed / ".." / "secret")):
            with pytest.raises(ModelLoadError, match=r"outside the folders") as info:
                load_model(source)
            assert "\n" not in str(info.value)
            with pytest.raises(ModelLoadError, match="outside the folders"):
                model_config(source)


def test_the_guard_sees_a_look_at_the_disk(tmp_path):
    with disk_untouched(tmp_path), pytest.raises(AssertionError, match="touched the disk"):
        (tmp_path / "x").exists()


def test_a_bare_name_outside_is_an_unknown_model_not_a_look_in_the_working_directory(allowed, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)
    with disk_untouched(tmp_path / "gpt3"), pytest.raises(ModelLoadError, match="unknown model 'gpt3'"):
        load_model("gpt3")


def test_minilm_and_the_presets_are_always_allowed(allowed):
    assert model_config("minilm").model_type == "bert"
    assert model_config("llama-gqa").num_key_value_heads == 2


@pytest.mark.parametrize("argv", [["model", "--model", "/etc", "--text", "hi"],
                                  ["plan", "--model", "/etc", "--layers", "0:sdpa", "--no-timing"],
                                  ["profile", "--variant", "sdpa", "--text", "hi", "--inputs-model", "/etc"]])
def test_the_command_line_exits_2_with_one_line(allowed, capsys, argv):
    with disk_untouched("/etc"):
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and OUTSIDE in err and err.startswith("attn: error: model directory /etc")


def test_a_job_naming_a_path_outside_fails_with_the_one_line(allowed):
    from attn import tasks

    with JobRunner(in_process=True) as runner, disk_untouched("/etc"):
        for handle in (runner.submit(tasks.plan_task, "/etc", "0:sdpa", measure=False),
                       runner.submit(tasks.model_timing_task, "/etc", "hi")):
            with pytest.raises(JobFailed, match="outside the folders"):
                handle.result(timeout=60)
            assert handle.error.startswith("model directory /etc is outside")


# -- the pages ------------------------------------------------------------------------------------
@pytest.mark.usefixtures("in_process_jobs")
def test_a_models_link_to_etc_is_one_error_line_and_nothing_looked_at(allowed, tmp_path):
    secret = tmp_path / "secret"
    with disk_untouched(secret):
        at = open_app("views/models.py", model=str(secret))
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [refusal(str(secret))]
    at = open_app("views/models.py", model="/etc")
    assert len(at.error) == 1 and OUTSIDE in at.error[0].value
    assert any("Model directories come from" in c.value for c in at.caption)


@pytest.mark.usefixtures("in_process_jobs")
def test_unset_the_models_page_says_any_directory_can_be_named(monkeypatch, tmp_path):
    monkeypatch.delenv(model_dirs.ENV, raising=False)
    at = open_app("views/models.py", model=str(tmp_path / "nowhere"))
    assert any("Any local directory can be named" in c.value for c in at.caption)
    assert len(at.error) == 1 and "does not exist" in at.error[0].value


@pytest.mark.usefixtures("in_process_jobs")
def test_served_beyond_the_loopback_unset_refuses_local_directories(monkeypatch):
    from ui import model_dirs as ui_dirs

    monkeypatch.delenv(model_dirs.ENV, raising=False)
    monkeypatch.setattr(ui_dirs, "listen_address", lambda: "0.0.0.0")
    with disk_untouched("/etc"):
        at = open_app("views/models.py", model="/etc")
    assert len(at.error) == 1 and "local model directories are off" in at.error[0].value
    assert ui_dirs.loopback_only("127.0.0.1") and ui_dirs.loopback_only("::1")
    assert not ui_dirs.loopback_only(None) and not ui_dirs.loopback_only("0.0.0.0")


def test_the_planner_refuses_before_queueing(allowed, in_process_jobs):
    at = open_app("views/planner.py", model="/etc", tokens="16")
    assert at.selectbox(key="pl_model").value == "local directory…"
    at.toggle(key="pl_measure").set_value(False)
    at = at.button(key="pl_go").click().run()
    assert not at.exception, at.exception
    assert len(at.error) == 1 and OUTSIDE in at.error[0].value
    assert in_process_jobs.jobs() == []


def test_a_tokenizer_that_needs_its_own_code_is_replaced_not_asked_about(allowed, monkeypatch):
    import json

    from transformers import AutoTokenizer

    from tests.test_models import tiny_gpt2_dir

    asked = []  # transformers would ask on the terminal whether to run it: never let it get there
    real = AutoTokenizer.from_pretrained.__func__
    monkeypatch.setattr(AutoTokenizer, "from_pretrained",
                        classmethod(lambda cls, where, *a, **k: asked.append(where) or real(cls, where, *a, **k)))

    path = tiny_gpt2_dir(allowed / "custom-tokenizer")
    (path / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "OwnTokenizer", "auto_map": {"AutoTokenizer": ["tok.OwnTokenizer", None]}}))
    (path / "tok.py").write_text("raise SystemExit('the model directory ran its own code')\n")
    loaded = load_model(str(path))
    assert loaded.vocab_mod == 1000 and "MiniLM's WordPiece tokenizer" in loaded.tokenizer_note
    assert [w for w in asked if "custom-tokenizer" in str(w)] == []


@pytest.mark.browser
@pytest.mark.slow
def test_browser_a_link_to_etc_on_a_served_app_is_one_error_line(browser, tmp_path):  # noqa: F811 (fixture)
    from tests.test_browser import _no_exception, _open, _settle, _shot, served

    env = {**os.environ, "ATTN_HOME": str(tmp_path / "home"), model_dirs.ENV: str(tmp_path / "models")}
    context = browser.new_context(viewport={"width": 1500, "height": 900})
    page = context.new_page()
    try:
        with served(env) as url:
            _open(page, f"{url}/models?model=/etc")
            page.get_by_text("is outside the folders").wait_for(timeout=120_000)  # after torch loads
            _settle(page)
            _no_exception(page)
            _shot(page, "models_refused_dir")
            errors = page.locator('[data-testid="stAlertContentError"]')
            assert errors.count() == 1 and OUTSIDE in errors.inner_text()
            assert "Model directories come from" in page.inner_text("body")
    finally:
        context.close()


from tests.test_browser import browser  # noqa: E402,F401 (the chromium fixture)
