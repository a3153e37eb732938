"""tools/install_detectron2.py finds pip's index URLs with public means only."""
import importlib.util
import os

import pytest

from conftest import REPO

spec = importlib.util.spec_from_file_location(
    "install_detectron2", os.path.join(REPO, "tools", "install_detectron2.py"))
install_detectron2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install_detectron2)


@pytest.fixture
def no_index_env(monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return monkeypatch


def test_default_index_when_nothing_is_configured(no_index_env):
    no_index_env.setenv("PIP_CONFIG_FILE", os.devnull)  # pip then reads no configuration file
    assert install_detectron2.pip_index_urls() == ["https://pypi.org/simple"]


def test_config_file_then_environment(no_index_env, tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://conf/simple\n"
                    "extra-index-url = http://e1/simple http://e2/simple\n")
    no_index_env.setenv("PIP_CONFIG_FILE", str(conf))
    assert install_detectron2.pip_index_urls() == [
        "http://conf/simple", "http://e1/simple", "http://e2/simple"]
    no_index_env.setenv("PIP_INDEX_URL", "http://env/simple")
    assert install_detectron2.pip_index_urls()[0] == "http://env/simple"
