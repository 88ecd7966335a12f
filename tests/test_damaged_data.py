"""Damaged data files give one error naming the file and what is wrong, never a raw
traceback from gzip, struct, pickle or torch; no loader reads outside its data folder."""

from __future__ import annotations

import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from surrogateshap.tasks.data.images import (
    DataMissingError,
    cifar20_dataset,
    load_animal_mnist,
    load_cifar100_binary,
    load_fashion_mnist,
    read_idx,
)


def _idx_gz(path, array: np.ndarray):
    head = b"\x00\x00\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + array.astype(np.uint8).tobytes())
    return path


def test_a_cut_short_or_garbage_gzip_is_named(tmp_path):
    good = _idx_gz(tmp_path / "good.gz", np.arange(600).reshape(6, 10, 10) % 256)
    assert read_idx(good).shape == (6, 10, 10)
    cut = tmp_path / "cut.gz"
    cut.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(DataMissingError, match=r"cut\.gz cannot be read: damaged or cut short"):
        read_idx(cut)
    garbage = tmp_path / "garbage.gz"
    garbage.write_bytes(b"this is not gzip at all" * 10)
    with pytest.raises(DataMissingError, match=r"garbage\.gz cannot be read"):
        read_idx(garbage)
    short = tmp_path / "short.idx"
    short.write_bytes(b"\x00\x00\x08\x03\x00\x00")  # three sizes announced, none given
    with pytest.raises(DataMissingError, match=r"short\.idx is not an IDX file"):
        read_idx(short)


def test_a_folder_in_place_of_a_data_file_is_named(tmp_path):
    (tmp_path / "train-images-idx3-ubyte.gz").mkdir()
    _idx_gz(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3))
    with pytest.raises(DataMissingError, match="train-images-idx3-ubyte.gz is a folder"):
        load_fashion_mnist("train", tmp_path)
    (tmp_path / "cifar-100-binary" / "train.bin").mkdir(parents=True)
    with pytest.raises(DataMissingError, match=r"train\.bin is a folder"):
        load_cifar100_binary(tmp_path / "cifar-100-binary" / "train.bin")


def _cifar(path, fines):
    path.parent.mkdir(parents=True, exist_ok=True)
    recs = [np.concatenate([[3, f], np.full(3072, i % 256)]).astype(np.uint8) for i, f in enumerate(fines)]
    np.concatenate(recs).tofile(path)


def test_a_cifar_file_without_the_cifar20_classes_is_named(tmp_path):
    path = tmp_path / "cifar-100-binary" / "train.bin"
    _cifar(path, [0, 1, 2, 3, 99])  # a binary file of other labels only
    with pytest.raises(DataMissingError, match=rf"{path} lacks CIFAR-20 images: 20 of the 20 classes"):
        cifar20_dataset(tmp_path, size=32)
    _cifar(path, [40, 40, 41])
    with pytest.raises(DataMissingError, match=rf"{path} lacks CIFAR-20 images: 19 of the 20 classes have "
                                               r"fewer than 2 .* e\.g\. lawn_mower \(1\), leopard \(0\)"):
        cifar20_dataset(tmp_path, per_class=2, size=32)


def test_a_cifar_file_short_of_per_class_names_the_file_and_class(tmp_path):
    path = tmp_path / "cifar-100-binary" / "train.bin"
    from surrogateshap.tasks.data.images import CIFAR20_FINE

    _cifar(path, [f for f in CIFAR20_FINE for _ in range(2)][:-1])  # the last class has one image
    with pytest.raises(DataMissingError, match=rf"{path} lacks CIFAR-20 images: 1 of the 20 classes .* table \(1\)"):
        cifar20_dataset(tmp_path, per_class=2, size=32)
    assert len(cifar20_dataset(tmp_path, per_class=1, size=32).labels) == 20


def _animal(root, data, labels):
    root.mkdir(parents=True, exist_ok=True)
    for name, a in (("animal_data_version_3.gz", data), ("animal_label_version_3.gz", labels)):
        with gzip.open(root / name, "wb") as f:
            pickle.dump(a, f)


def test_animal_mnist_arrays_are_converted_only_when_whole_numbers_in_range(tmp_path):
    """Decision: a float or wider-int copy of the same pixels is accepted (it is the same
    data); a value a uint8 cast would change (256 -> 0, 0.5, NaN) is refused."""
    pixels = np.arange(4 * 28 * 28).reshape(4, 28, 28) % 256
    labels = np.array([0, 3, 9, 2])
    _animal(tmp_path / "ok", pixels.astype(np.float64), labels.astype(np.float32))
    x, y = load_animal_mnist(tmp_path / "ok")
    assert x.dtype == np.uint8 and np.array_equal(x, pixels) and y.tolist() == [0, 3, 9, 2]
    for what, bad_x, bad_y in [("pixels", pixels + 1.0, labels), ("pixels", pixels / 255.0 + 0.5, labels),
                               ("pixels", np.where(pixels == 7, np.nan, pixels), labels),
                               ("labels", pixels, labels + 1)]:
        _animal(tmp_path / "bad", bad_x, bad_y)
        with pytest.raises(DataMissingError, match=rf"animal_(data|label)_version_3.gz: {what} must be whole "
                                                   "numbers in 0..(255|9)"):
            load_animal_mnist(tmp_path / "bad")


def test_a_cut_short_animal_file_is_named_and_a_pickle_of_code_still_refused(tmp_path):
    _animal(tmp_path, np.zeros((2, 28, 28), np.uint8), np.zeros(2, np.int64))
    data = tmp_path / "animal_data_version_3.gz"
    data.write_bytes(data.read_bytes()[:-30])
    with pytest.raises(DataMissingError, match=r"animal_data_version_3.gz is not a readable gzipped array"):
        load_animal_mnist(tmp_path)
    with gzip.open(data, "wb") as f:
        f.write(b"plain text, not a pickle")
    with pytest.raises(DataMissingError, match="animal_data_version_3.gz is not a readable"):
        load_animal_mnist(tmp_path)
    with gzip.open(data, "wb") as f:
        pickle.dump(os.getcwd, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_animal_mnist(tmp_path)


def _png(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (4, 4), (0, 0, 0, 255)).save(path)


def test_an_openclipart_link_out_of_the_root_is_refused(tmp_path):
    from surrogateshap.tasks.data.clipart import build_index

    root = tmp_path / "openclipart"
    _png(root / "png" / "animals" / "cat.png")
    (root / "svg" / "animals").mkdir(parents=True)
    (root / "svg" / "animals" / "cat.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert build_index(root).png == ("png/animals/cat.png",)
    _png(tmp_path / "elsewhere" / "secret.png")
    os.symlink(tmp_path / "elsewhere" / "secret.png", root / "png" / "animals" / "dog.png")
    with pytest.raises(DataMissingError, match=r"dog\.png links to .*secret\.png, outside .*openclipart: refusing"):
        build_index(root)
    os.unlink(root / "png" / "animals" / "dog.png")
    os.symlink(tmp_path / "elsewhere", root / "svg" / "plants")  # a folder of SVGs elsewhere
    (tmp_path / "elsewhere" / "fern.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    _png(root / "png" / "plants" / "fern.png")
    with pytest.raises(DataMissingError, match=r"fern\.svg links to .*elsewhere/fern\.svg, outside"):
        build_index(root)


def test_an_aesthetic_head_that_is_not_weights_is_named(tmp_path):
    torch = pytest.importorskip("torch")
    from surrogateshap.tasks.features.clip import AestheticHead

    text = tmp_path / "head.pth"
    text.write_text("hello\nthese are not weights\n")
    with pytest.raises(DataMissingError, match=r"aesthetic head .*head\.pth is not a weights file"):
        AestheticHead.from_file(text)
    (tmp_path / "folder.pth").mkdir()
    with pytest.raises(DataMissingError, match=r"folder\.pth is not a weights file"):
        AestheticHead.from_file(tmp_path / "folder.pth")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    with pytest.raises(DataMissingError, match=r"tensor\.pth is not a weights file.*a Tensor"):
        AestheticHead.from_file(tmp_path / "tensor.pth")
    torch.save(torch.nn.Linear(4, 1).state_dict(), tmp_path / "ok.pth")
    assert AestheticHead.from_file(tmp_path / "ok.pth").dim == 4


def test_an_attribute_classifier_that_is_not_a_file_is_named_and_said_to_run_code(tmp_path):
    pytest.importorskip("torch")
    from surrogateshap.tasks.features.t2i import load_attribute_classifier

    (tmp_path / "sex_classifier.pt").mkdir()
    with pytest.raises(DataMissingError, match=r"sex classifier .*sex_classifier\.pt is a folder.*runs code"):
        load_attribute_classifier(tmp_path / "sex_classifier.pt", "sex")
    (tmp_path / "melanoma.pt").write_text("not a model")
    with pytest.raises(ValueError, match=r"the melanoma classifier .*melanoma\.pt is not a TorchScript model"):
        load_attribute_classifier(tmp_path / "melanoma.pt", "melanoma")


@pytest.mark.parametrize("text", ["[1, 2]", "{\"png\": 3}", "\"index\"", "{not json"])
def test_a_damaged_openclipart_index_cache_is_rebuilt_with_a_warning(tmp_path, text):
    # a side file that is JSON but not the index (or not JSON) stopped every later run with a
    # KeyError or a JSON trace naming no file; it is derived data, so it is rebuilt
    from surrogateshap.tasks.data.clipart import build_index

    root = tmp_path / "openclipart"
    _png(root / "png" / "animals" / "cat.png")
    (root / "svg" / "animals").mkdir(parents=True)
    (root / "svg" / "animals" / "cat.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    first = build_index(root, cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache" / "clipart").glob("index-*.json")
    cached.write_text(text)
    with pytest.warns(UserWarning, match=r"index cache .*index-.*\.json is damaged"):
        again = build_index(root, cache_dir=tmp_path / "cache")
    assert again.png == first.png and again.creator == first.creator


@pytest.mark.parametrize("text", ["[1, 2]", "\"settings\"", "{not json"])
def test_a_damaged_sample_bank_header_is_named(tmp_path, text):
    from surrogateshap.tasks.features.sample_bank import SampleBank

    SampleBank(tmp_path / "bank", {"size": 8})
    (tmp_path / "bank" / "bank.json").write_text(text)
    with pytest.raises(ValueError, match=r"sample bank's header .*bank\.json is damaged: .*delete the folder"):
        SampleBank(tmp_path / "bank", {"size": 8})
