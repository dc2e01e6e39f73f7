"""Settings: TANDEM_ env vars, .env, .env.example coverage, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from tandem.core.settings import Settings, SettingsError, load_settings

from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for key in list(__import__("os").environ):
        if key.startswith("TANDEM_") and key != "TANDEM_TEST_DATA":
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env from the working directory


def test_defaults() -> None:
    s = load_settings(env_file=None)
    assert s.manifest_path == Path("manifest.json") and s.profile is None
    assert s.http_host == "127.0.0.1" and s.http_token is None


def test_env_example_documents_every_variable(tmp_path: Path) -> None:
    text = (REPO_ROOT / ".env.example").read_text()
    keys = set(re.findall(r"^(TANDEM_[A-Z0-9_]+)=", text, flags=re.M))
    assert keys == {"TANDEM_" + f.upper() for f in Settings.model_fields}
    # and the example itself is a valid .env
    env = tmp_path / ".env"
    env.write_text(text)
    assert load_settings(env_file=env) == load_settings(env_file=None)


def test_env_beats_dotenv_beats_default(tmp_path: Path, monkeypatch) -> None:
    env = tmp_path / ".env"
    env.write_text("TANDEM_HTTP_PORT=9001\nTANDEM_LOG_LEVEL=debug\nCOMPOSE_PROJECT_NAME=x\n")
    s = load_settings(env_file=env)
    assert s.http_port == 9001 and s.log_level == "DEBUG"
    monkeypatch.setenv("TANDEM_HTTP_PORT", "9002")
    assert load_settings(env_file=env).http_port == 9002
    assert load_settings(env_file=env, http_port=9003).http_port == 9003


def test_secret_never_shown(tmp_path: Path, monkeypatch) -> None:
    token = "s3cr3t-token-abcdefgh"
    monkeypatch.setenv("TANDEM_HTTP_TOKEN", token)
    s = load_settings(env_file=None)
    assert s.http_token.get_secret_value() == token
    assert token not in repr(s) and token not in str(s.safe_dict())
    monkeypatch.setenv("TANDEM_HTTP_TOKEN", "short")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert "short" not in str(info.value) and "TANDEM_HTTP_TOKEN" in str(info.value)


def test_numba_cache_dir_export(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TANDEM_NUMBA_CACHE_DIR", str(tmp_path / "nc"))
    monkeypatch.setenv("NUMBA_CACHE_DIR", "unchanged")
    load_settings(env_file=None).apply_numba_cache_dir()
    import os

    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "nc")


MALFORMED = [
    ("TANDEM_HTTP_PORT", "http", "TANDEM_HTTP_PORT"),
    ("TANDEM_HTTP_PORT", "70000", "TANDEM_HTTP_PORT"),
    ("TANDEM_HTTP_PORT", "-1", "TANDEM_HTTP_PORT"),
    ("TANDEM_LOG_LEVEL", "LOUD", "TANDEM_LOG_LEVEL"),
    ("TANDEM_LOG_FORMAT", "xml", "TANDEM_LOG_FORMAT"),
    ("TANDEM_GRACE_PERIOD_S", "-5", "TANDEM_GRACE_PERIOD_S"),
    ("TANDEM_GRACE_PERIOD_S", "soon", "TANDEM_GRACE_PERIOD_S"),
    ("TANDEM_EXCHANGE_REST_URL", "127.0.0.1:8000", "TANDEM_EXCHANGE_REST_URL"),
    ("TANDEM_EXCHANGE_REST_URL", "ws://127.0.0.1:8000", "TANDEM_EXCHANGE_REST_URL"),
    ("TANDEM_EXCHANGE_WS_URL", "http://127.0.0.1:8000/ws", "TANDEM_EXCHANGE_WS_URL"),
    # a port out of range passed, then failed at run time (exit 1, "run failed")
    ("TANDEM_EXCHANGE_REST_URL", "http://127.0.0.1:70000/api/v3", "TANDEM_EXCHANGE_REST_URL"),
    ("TANDEM_EXCHANGE_WS_URL", "ws://127.0.0.1:port/ws", "TANDEM_EXCHANGE_WS_URL"),
]


@pytest.mark.parametrize("var,value,named", MALFORMED, ids=[f"{v}={x}" for v, x, _ in MALFORMED])
def test_malformed_env(monkeypatch, var: str, value: str, named: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"settings: {named}: "), msg
    assert info.value.variable == named


@pytest.mark.parametrize(
    "line,named",
    [
        ("TANDEM_HTTP_PROT=8080", "TANDEM_HTTP_PROT"),
        ("TANDEM_PROFILES=x", "TANDEM_PROFILES"),
        ("TANDEM_HTTP_PORT=eighty", "TANDEM_HTTP_PORT"),
    ],
)
def test_malformed_dotenv(tmp_path: Path, line: str, named: str) -> None:
    env = tmp_path / ".env"
    env.write_text(line + "\n")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=env)
    assert info.value.variable == named and named in str(info.value)


def test_unknown_override() -> None:
    with pytest.raises(SettingsError, match="TANDEM_HTTP_PROT: unknown setting"):
        load_settings(env_file=None, http_prot=1)


# --- hostile .env / values (issue 16 items 11, 13) ----------------------------------------
@pytest.mark.parametrize("content", [b"TANDEM_LOG_LEVEL=INFO\nNOTE=caf\xe9\n", b"TANDEM_PROFILE=caf\xe9\n"],
                         ids=["foreign key", "tandem key"])
def test_non_utf8_dotenv(tmp_path: Path, content: bytes) -> None:
    """A latin-1 .env raised a bare UnicodeDecodeError from python-dotenv."""
    env = tmp_path / ".env"
    env.write_bytes(content)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=env)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"settings: {env}: not UTF-8 text (byte 0xe9 at line"), msg


def test_oversized_dotenv(tmp_path: Path) -> None:
    from tandem.core.settings import MAX_ENV_FILE_BYTES

    env = tmp_path / ".env"
    env.write_text("# " + "x" * MAX_ENV_FILE_BYTES + "\n")
    with pytest.raises(SettingsError, match="larger than"):
        load_settings(env_file=env)


def test_dotenv_that_is_a_directory_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".env").mkdir()
    assert load_settings(env_file=tmp_path / ".env") == load_settings(env_file=None)


@pytest.mark.parametrize("var", ["TANDEM_LOG_LEVEL", "TANDEM_EXCHANGE_REST_URL", "TANDEM_HTTP_PORT"])
def test_huge_value_quoted_short(monkeypatch, var: str) -> None:
    monkeypatch.setenv(var, "v" * 1_000_000)
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    msg = str(info.value)
    assert len(msg) < 400 and "…(1000000 chars)" in msg and msg.startswith(f"settings: {var}: "), msg


def test_huge_unknown_key_in_dotenv(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("TANDEM_" + "X" * 100_000 + "=1\n")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=env)
    assert len(str(info.value)) < 400 and "unknown setting" in str(info.value)


# --- fuzz: any .env bytes give Settings or one SettingsError line, never a traceback ----------
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ENV_PIECES = st.sampled_from([
    b"TANDEM_HTTP_PORT=", b"TANDEM_LOG_LEVEL=", b"TANDEM_PROFILE=", b"TANDEM_HTTP_TOKEN=",
    b"TANDEM_EXCHANGE_REST_URL=", b"TANDEM_MANIFEST_PATH=", b"TANDEM_GRACE_PERIOD_S=", b"export ",
    b"\n", b"=", b"'", b'"', b"#", b"\\", b"\x00", b"\xe9", b"\xef\xbb\xbf", b"1e400", b"nan", b"-1",
    b"http://", b"${TANDEM_HTTP_PORT}", b" ",
])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.lists(_ENV_PIECES | st.binary(max_size=6), max_size=12).map(b"".join))
def test_fuzz_dotenv(tmp_path: Path, content: bytes) -> None:
    env = tmp_path / ".env"
    env.write_bytes(content)
    try:
        load_settings(env_file=env)
    except SettingsError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 500, str(exc)


def test_defaults_need_no_pydantic_settings(tmp_path: Path) -> None:
    """Nothing to read (no TANDEM_* variable, no .env): the defaults, without importing
    pydantic-settings; and they equal what pydantic-settings builds from an empty .env."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TANDEM_")}
    code = ("import sys; from tandem.core.settings import load_settings; s = load_settings(); "
            "print(s.http_port, 'pydantic_settings' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == ["8080", "False"]
    (tmp_path / ".env").write_text("# nothing set\n")
    assert load_settings(env_file=tmp_path / ".env") == load_settings(env_file=None)
    assert type(load_settings(env_file=tmp_path / ".env")) is Settings


def test_variables_are_read_in_any_case(monkeypatch) -> None:
    """pydantic-settings matches TANDEM_* case-insensitively: so does the no-variables check."""
    monkeypatch.setenv("tandem_http_port", "9005")
    assert load_settings(env_file=None).http_port == 9005


def test_unknown_variable_in_the_environment_is_named(monkeypatch) -> None:
    """A typo in the environment (as in .env) is an error naming it, not a silent default;
    the project's own non-setting variables pass."""
    monkeypatch.setenv("TANDEM_WARMUP", "0")
    monkeypatch.setenv("TANDEM_TEST_DATA", "/nowhere")
    assert load_settings(env_file=None).http_token is None
    monkeypatch.setenv("TANDEM_HTTP_TOKN", "s3cr3t-token-abcdefgh")
    with pytest.raises(SettingsError) as info:
        load_settings(env_file=None)
    assert info.value.variable == "TANDEM_HTTP_TOKN" and "in the environment" in str(info.value)
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize("field", sorted(Settings.model_fields))
def test_empty_value_means_the_default(tmp_path: Path, monkeypatch, field: str) -> None:
    """.env.example: "Empty value = default/none". Most variables refused an empty value
    instead (TANDEM_LOG_LEVEL=, TANDEM_HTTP_PORT=), and the path ones took it as ``.``:
    TANDEM_STATE_DB= was "a folder", TANDEM_DATA_DIR= made the working directory the store."""
    var = "TANDEM_" + field.upper()
    monkeypatch.setenv(var, "")
    assert load_settings(env_file=None) == Settings()
    monkeypatch.delenv(var)
    env = tmp_path / ".env"
    env.write_text(f"{var}=\n")
    assert load_settings(env_file=env) == Settings()


def test_warmup_switch_is_checked_with_the_settings(tmp_path: Path, monkeypatch) -> None:
    """``TANDEM_WARMUP=garbage`` read as ``auto`` without a word, and in a .env it was never
    read at all (core.warmup reads the environment): both are one-line errors now."""
    from tandem.core import warmup

    monkeypatch.chdir(tmp_path)
    for value, meaning in (("0", "never"), ("ALWAYS", "always"), ("", "auto"), (" auto", "auto")):
        monkeypatch.setenv("TANDEM_WARMUP", value)
        load_settings(env_file=None)
        assert warmup.mode() == meaning
    monkeypatch.setenv("TANDEM_WARMUP", "of")
    with pytest.raises(SettingsError, match="TANDEM_WARMUP must be one of") as err:
        load_settings(env_file=None)
    assert err.value.variable == "TANDEM_WARMUP"
    monkeypatch.delenv("TANDEM_WARMUP")
    (tmp_path / ".env").write_text("TANDEM_WARMUP=0\n")
    with pytest.raises(SettingsError, match="set it in the environment"):
        load_settings(env_file=tmp_path / ".env")


@pytest.mark.parametrize("token", [
    " s3cr3t-token-abcdefgh", "s3cr3t-token-abcdefgh ", " " * 16, "s3cr3t-token-abcdefgh\n",
    "s3cr3t-token\tabcdefgh", "s3cr3t-token\nabcdefgh",
])
def test_token_that_no_request_can_send_is_refused(monkeypatch, token: str) -> None:
    """The HTTP server compares the Authorization header's token after stripping it (as HTTP
    strips a header's ends), and a header cannot carry a newline (a tab is a paste
    accident): such a token (a quoted .env value, a Docker env_file keeping a trailing blank)
    was accepted and then answered 401 to everyone, the Docker HEALTHCHECK included."""
    monkeypatch.setenv("TANDEM_HTTP_TOKEN", token)
    with pytest.raises(SettingsError, match="TANDEM_HTTP_TOKEN") as err:
        load_settings(env_file=None)
    assert token.strip() not in str(err.value) or not token.strip()  # a secret: never shown


def test_token_with_inner_space_still_works(monkeypatch) -> None:
    # "Bearer abc def" reaches the server as the token "abc def": it can be sent.
    monkeypatch.setenv("TANDEM_HTTP_TOKEN", "s3cr3t token abcdefgh")
    assert load_settings(env_file=None).http_token.get_secret_value() == "s3cr3t token abcdefgh"


@pytest.mark.parametrize("host", ["127.0.0.1 ", " 0.0.0.0", "127.0.0.1\n", "local host", " "])
def test_host_with_whitespace_is_refused(monkeypatch, host: str) -> None:
    """``"127.0.0.1 "`` was taken as a non-loopback name: refused without a token by a
    message saying to bind 127.0.0.1, and with a token the daemon died at start on a name
    lookup (exit 1, `gaierror`). Now the variable is named, exit 2 at settings time."""
    monkeypatch.setenv("TANDEM_HTTP_HOST", host)
    with pytest.raises(SettingsError, match="TANDEM_HTTP_HOST: a host name or address holds no"):
        load_settings(env_file=None)


@pytest.mark.parametrize("var", ["TANDEM_STATE_DB", "TANDEM_DATA_DIR", "TANDEM_MANIFEST_PATH",
                                 "TANDEM_NUMBA_CACHE_DIR"])
@pytest.mark.parametrize("value", ["state/tandem.sqlite ", " data", "\tx"])
def test_a_path_with_blank_ends_is_refused(monkeypatch, tmp_path, var: str, value: str) -> None:
    """``TANDEM_STATE_DB='state/tandem.sqlite '`` named another file: the daemon started a
    fresh journal beside the one it should have resumed, exit 0. Also from a .env."""
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError, match=f"{var}: a path with blanks at its ends"):
        load_settings(env_file=None)
    monkeypatch.delenv(var)
    env = tmp_path / ".env"
    env.write_text(f'{var}="{value}"\n')
    with pytest.raises(SettingsError, match=f"{var}: a path with blanks at its ends"):
        load_settings(env_file=env)
