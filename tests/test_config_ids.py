"""The configuration ids of every task at every scale, pinned.

A config id names a game: a shipped table, a cache and a reference entry are all keyed by
it. Reshaping the code that builds a task must not move any of them; a change that does
is a change of game, and must say so here (and rebuild or withdraw what the old id keyed).
"""

import pytest

from surrogateshap.tasks import get_task

PINNED = {
    "artbench/ci": "artbench-35135e9318d0",
    "artbench/default": "artbench-9a4562acc889",
    "artbench/paper": "artbench-9a4562acc889",
    "cifar20/ci": "cifar20-45b2b90fd6c9",
    "cifar20/default": "cifar20-a5744c4003a8",
    "clipart-artists/ci": "clipart-artists-6681011aedab",
    "clipart-artists/default": "clipart-artists-97a5df893930",
    "clipart-artists/paper": "clipart-artists-e07c97a798e7",
    "dermoscopy-sites/ci": "dermoscopy-sites-f83ac4dfed73",
    "dermoscopy-sites/default": "dermoscopy-sites-aec63e07e9cb",
    "dermoscopy-sites/paper": "dermoscopy-sites-aec63e07e9cb",
    "digits10/ci": "digits10-a8ed82b04cdc",
    "digits10/default": "digits10-c4b28b589359",
    "digits10/paper": "digits10-f657a51d0bd6",
    "fashion-animal20/ci": "fashion-animal20-9b0af2d991ec",
    "fashion-animal20/default": "fashion-animal20-c8c74fc9f392",
    "fashion-animal20/paper": "fashion-animal20-06495cb5d4e5",
    "fashion-brands/ci": "fashion-brands-9aee984cee7f",
    "fashion-brands/default": "fashion-brands-46c924709250",
    "fashion-brands/paper": "fashion-brands-d3314f5d5f27",
    "fashion-product/ci": "fashion-product-798be21056dd",
    "fashion-product/default": "fashion-product-92077abb375b",
    "fashion-product/paper": "fashion-product-92077abb375b",
    "spurious-sites/ci": "spurious-sites-a0cf4cf107e5",
    "spurious-sites/default": "spurious-sites-11dbd8a9faa6",
    "spurious-sites/paper": "spurious-sites-d2b45c3d9e9d",
}


@pytest.mark.parametrize("key", sorted(PINNED))
def test_config_id_is_pinned(key, tmp_path):
    name, scale = key.split("/")
    assert get_task(name, scale=scale, cache_dir=tmp_path).config_id() == PINNED[key]


def test_cifar20_paper_scale_names_the_weights_it_needs(tmp_path):
    # the paper scale scores with FID Inception-v3, which is never downloaded
    with pytest.raises(ValueError, match="pt_inception-2015-12-05"):
        get_task("cifar20", scale="paper", cache_dir=tmp_path)
