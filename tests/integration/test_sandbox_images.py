"""Images without a registry: content-hashed tags, one build under concurrency, a workspace
baked into an image, and Python packages installed from a host-made wheelhouse."""

from __future__ import annotations

import threading
import uuid
import zipfile

import pytest

from agentrm.errors import InputError
from agentrm.sandboxes import DockerSandbox, SandboxConfig, base_image, build_image, images
from agentrm.sandboxes.wheels import python_image

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def base(docker_client):
    return base_image()


@pytest.fixture
def fresh_tags(docker_client):
    made: list[str] = []
    yield made
    for tag in made:
        try:
            docker_client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def test_base_image_is_reused_and_has_the_recipe(base, docker_client):
    assert base_image() == base and base.startswith("agentrm/base:")
    cfg = docker_client.images.get(base).attrs["Config"]
    assert "PYTHONHASHSEED=0" in cfg["Env"] and cfg["WorkingDir"] == "/workspace"
    with DockerSandbox() as box:
        r = box.exec("for t in bash python3 pip3 git patch ps diff find grep sed; do command -v $t >/dev/null || echo missing $t; done; id")
        assert r.stdout == "uid=1000(agent) gid=1000(agent) groups=1000(agent)\n", r
        r = box.exec("python3 -m venv --without-pip /tmp/v && /tmp/v/bin/python -c 'print(1)'", timeout=60)
        assert r.stdout == "1\n", r


def test_tags_hash_content_and_concurrent_callers_build_once(base, fresh_tags, monkeypatch):
    marker = uuid.uuid4().hex
    dockerfile = f"FROM {{base}}\nRUN echo {marker} > /etc/marker && sleep 1\n"
    calls = []
    real = images._docker_build
    monkeypatch.setattr(images, "_docker_build", lambda *a, **k: (calls.append(a[0]), real(*a, **k)))
    tags: list[str] = []
    threads = [threading.Thread(target=lambda: tags.append(build_image(dockerfile, name="agentrm/test")))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh_tags.append(tags[0])
    assert len(set(tags)) == 1 and len(calls) == 1  # one build, three callers
    assert build_image(dockerfile, name="agentrm/test") == tags[0] and len(calls) == 1
    other = build_image(dockerfile, {"extra.txt": b"changes the hash"}, name="agentrm/test")
    fresh_tags.append(other)
    assert other != tags[0] and other.startswith("agentrm/test:")


def test_an_image_removed_since_is_built_again(base, fresh_tags, docker_client):
    """A SWE-bench run's retention (or `docker rmi`) removes images this process built; the
    next build of the same recipe must build it again, not take it for present from the
    per-process label cache (every later SWE-bench agent run in the process failed to start)."""
    dockerfile = f"FROM {{base}}\nRUN echo {uuid.uuid4().hex} > /etc/marker\n"
    tag = build_image(dockerfile, name="agentrm/test")
    fresh_tags.append(tag)
    assert images.image_labels(tag)  # cached now
    docker_client.images.remove(tag, force=True)
    assert build_image(dockerfile, name="agentrm/test") == tag
    assert docker_client.images.get(tag).tags == [tag]


def test_built_workspace_content_appears_in_sandboxes(base, fresh_tags, tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print('from the image')\n")
    tag = build_image("FROM {base}\nCOPY --chown=agent:agent app /workspace/app\n"
                      "RUN echo hi > /home/agent/.note\n", tmp_path, name="agentrm/test")
    fresh_tags.append(tag)
    with DockerSandbox(SandboxConfig(image=tag)) as box:
        assert box.exec("python3 app/main.py && cat ~/.note").stdout == "from the image\nhi\n"
        assert box.exec("touch app/new && stat -c %U app/main.py").stdout == "agent\n"


def test_failed_build_is_an_input_error_naming_the_step(base):
    with pytest.raises(InputError, match="agentrm/test"):
        build_image(f"FROM {{base}}\nRUN echo {uuid.uuid4().hex} && exit 7\n", name="agentrm/test")
    with pytest.raises(InputError):
        build_image("FROM {base}\n", "/nonexistent/context/dir")


def test_wheelhouse_install_without_network(base, fresh_tags, tmp_path):
    house = tmp_path / "wheels"
    house.mkdir()
    _write_wheel(house / "agentrm_demo_pkg-0.1-py3-none-any.whl")
    tag = python_image(["agentrm-demo-pkg"], name="agentrm/test", wheelhouse=house)
    fresh_tags.append(tag)
    with DockerSandbox(SandboxConfig(image=tag)) as box:
        r = box.exec("python3 -c 'import agentrm_demo_pkg as m; print(m.VALUE)'")
        assert r.stdout == "42\n", r


def _write_wheel(path) -> None:
    """A minimal pure-Python wheel, written by hand (no build backend, no network)."""
    info = "agentrm_demo_pkg-0.1.dist-info"
    files = {
        "agentrm_demo_pkg/__init__.py": "VALUE = 41 + 1\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: agentrm-demo-pkg\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
