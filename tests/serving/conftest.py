import pytest

from hoe.model.hoe_model import HoEModel


@pytest.fixture(scope="module")
def model(bundle_dir):
    """The tiny bundle, loaded once per test module."""
    return HoEModel.from_bundle(bundle_dir).eval()
