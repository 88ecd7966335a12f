"""Artists as players: the ArtBench loader on a fixture folder in the release's layout,
the Openclipart readers (dc:creator, compositing, the blank filter), and the
clipart-artists task on the real Debian packages."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from surrogateshap.tasks.catalog.artbench import ArtBenchConfig
from surrogateshap.tasks.data.artbench import ArtBenchFormatError, artbench_folder, artist_display_name, load_artbench, parse_artbench_name
from surrogateshap.tasks.data.clipart import INK_LEVEL, OPENCLIPART_DIR, box_downsample, build_index, composite_on_white, ink_fraction, square_thumbnail, svg_creator
from surrogateshap.tasks.data.images import DataMissingError

PIL = pytest.importorskip("PIL")


def _have_openclipart() -> bool:
    return (OPENCLIPART_DIR / "svg").is_dir() and (OPENCLIPART_DIR / "png").is_dir()


needs_openclipart = pytest.mark.skipif(
    not _have_openclipart(),
    reason="Openclipart not installed: apt-get install openclipart-png openclipart-svg")


# --- ArtBench ----------------------------------------------------------------------
ART_FILES = {  # file name -> artist slug
    "vincent-van-gogh_the-starry-night-1889.jpg": "vincent-van-gogh",
    "vincent-van-gogh_irises-1889.jpg": "vincent-van-gogh",
    "paul-cezanne_still-life-with-apples_1895.jpg": "paul-cezanne",  # underscore in the title
    "henri-de-toulouse-lautrec_at-the-moulin-rouge.jpg": "henri-de-toulouse-lautrec",
    "louis-valtat_le-bouquet-de-fleurs.jpg": "louis-valtat",
}


def _jpeg(path, colour):
    from PIL import Image

    Image.new("RGB", (8, 8), colour).save(path, format="JPEG")


def _artbench_fixture(root, names=ART_FILES):
    folder = root / "train" / "post_impressionism"
    folder.mkdir(parents=True)
    for i, name in enumerate(names):
        _jpeg(folder / name, (10 * i, 200, 30))
    (folder / ".DS_Store").write_bytes(b"\0")  # hidden files are ignored
    (root / "train" / "metadata.csv").write_text("file_name,caption\n")  # beside the style folders
    return folder


def test_artbench_artist_per_image(tmp_path):
    folder = _artbench_fixture(tmp_path)
    data = load_artbench(tmp_path)
    assert data.folder == folder
    assert data.players == ("henri-de-toulouse-lautrec", "louis-valtat", "paul-cezanne", "vincent-van-gogh")
    assert len(data.items) == len(ART_FILES)
    for it in data.items:
        assert data.players[it.artist] == ART_FILES[it.path.name]
        assert it.path.exists()
    assert data.counts().tolist() == [1, 1, 1, 2]
    assert data.item_contributor.tolist() == [data.players.index(ART_FILES[it.path.name]) for it in data.items]
    # prompts: one per player from the template, captions per item with its title
    assert data.prompts[3] == "a Post-Impressionism painting by Vincent Van Gogh"
    starry = next(it for it in data.items if it.path.name.startswith("vincent-van-gogh_the-starry"))
    assert starry.title == "the-starry-night-1889"
    assert starry.prompt == "The starry night 1889, a Post-Impressionism painting by Vincent Van Gogh"
    cezanne = next(it for it in data.items if it.path.name.startswith("paul-cezanne"))
    assert cezanne.prompt == "Still life with apples 1895, a Post-Impressionism painting by Paul Cezanne"
    custom = load_artbench(tmp_path, prompt_template="art by {slug}")
    assert custom.prompts[0] == "art by henri-de-toulouse-lautrec"
    assert data.names[0] == "Henri De Toulouse Lautrec"


def test_artbench_environment_default(tmp_path, monkeypatch):
    _artbench_fixture(tmp_path / "artbench")
    monkeypatch.setenv("SURROGATESHAP_DATA", str(tmp_path))
    assert artbench_folder() == tmp_path / "artbench" / "train" / "post_impressionism"
    assert len(load_artbench().items) == len(ART_FILES)
    monkeypatch.delenv("SURROGATESHAP_DATA")
    with pytest.raises(DataMissingError, match="SURROGATESHAP_DATA"):
        load_artbench()


def test_artbench_missing_folder_names_it(tmp_path):
    expected = tmp_path / "nowhere" / "train" / "post_impressionism"
    with pytest.raises(DataMissingError, match=str(expected)):
        load_artbench(tmp_path / "nowhere")
    with pytest.raises(DataMissingError, match=str(expected)):
        ArtBenchConfig.preset("paper", data_dir=str(tmp_path / "nowhere")).load()


@pytest.mark.parametrize("bad", ["vincentvangogh.jpg", "_the-starry-night.jpg", "vincent-van-gogh_.jpg",
                                 "vincent van gogh_irises.jpg"])
def test_artbench_malformed_name_names_the_file(tmp_path, bad):
    folder = _artbench_fixture(tmp_path)
    _jpeg(folder / bad, (0, 0, 0))
    with pytest.raises(ArtBenchFormatError, match=bad.replace(".", r"\.")):
        load_artbench(tmp_path)
    with pytest.raises(ArtBenchFormatError, match=bad.replace(".", r"\.")):
        parse_artbench_name(bad)


def test_artbench_names_and_counts(tmp_path):
    assert parse_artbench_name("paul-cezanne_still-life_1895.jpg") == ("paul-cezanne", "still-life_1895")
    assert artist_display_name("louis-hayet-ii") == "Louis Hayet II"
    _artbench_fixture(tmp_path)
    with pytest.raises(DataMissingError, match="5 images by 4 artists; expected 5000 images by 258"):
        ArtBenchConfig.preset("paper", data_dir=str(tmp_path)).load()
    cfg = ArtBenchConfig.preset("paper", data_dir=str(tmp_path), expect_images=5, expect_artists=4)
    assert len(cfg.load().items) == 5 and cfg.rank == 256 and cfg.family == "sd"
    assert any("aesthetic_head" in m for m in cfg.missing_files())
    assert ArtBenchConfig.preset("default") == ArtBenchConfig.preset("paper")
    with pytest.raises(KeyError, match="paper"):
        ArtBenchConfig.preset("large")


def test_artbench_task_names_its_missing_model_files(tmp_path, monkeypatch):
    from surrogateshap.tasks import get_task

    for var in ("SURROGATESHAP_SD_PATH", "SURROGATESHAP_CLIP_PATH", "SURROGATESHAP_AESTHETIC_HEAD"):
        monkeypatch.delenv(var, raising=False)
    _artbench_fixture(tmp_path)
    task = get_task("artbench", data_dir=str(tmp_path), expect_images=5, expect_artists=4)
    assert task.players == ("henri-de-toulouse-lautrec", "louis-valtat", "paul-cezanne", "vincent-van-gogh")
    reason = task.data_missing()
    assert "model_path" in reason and "clip_path" in reason and "aesthetic_head" in reason
    with pytest.raises(DataMissingError, match="model_path"):
        task.family
    assert "ArtBench-10 folder" in get_task("artbench", data_dir=str(tmp_path / "none")).data_missing()
    monkeypatch.setenv("SURROGATESHAP_AESTHETIC_HEAD", str(tmp_path / "head.pth"))  # paths from the environment
    (tmp_path / "head.pth").write_bytes(b"")
    task = get_task("artbench", data_dir=str(tmp_path), expect_images=5, expect_artists=4)
    assert task.config.aesthetic_head == str(tmp_path / "head.pth") and "aesthetic_head" not in task.data_missing()


def test_artbench_pipeline_end_to_end_on_tiny_components(tmp_path):
    """The paper's pipeline on tiny random parts built from config (mechanics, not
    quality): UNet2DConditionModel, CLIP text encoder and VAE, a few LoRA steps, a tiny
    bank, one proxy and one retraining-game evaluation, scored by a CLIP vision tower
    and an aesthetic head read from local files."""
    torch = pytest.importorskip("torch")
    for mod in ("diffusers", "transformers", "peft"):
        pytest.importorskip(mod)
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from surrogateshap.tasks import get_task

    _artbench_fixture(tmp_path / "data")
    torch.manual_seed(0)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32,
        patch_size=8, projection_dim=16)).eval()
    clip.save_pretrained(tmp_path / "clip")
    torch.save(torch.nn.Linear(16, 1).state_dict(), tmp_path / "head.pth")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = get_task("artbench", scale="ci", cache_dir=tmp_path / "cache", data_dir=str(tmp_path / "data"),
                        clip_path=str(tmp_path / "clip"), aesthetic_head=str(tmp_path / "head.pth"),
                        n_samples=4, bank_per_unit=2, sample_batch=4, device="cpu")
        assert task.data_missing() is None and task.n_players == 4
        # units are the artists: every painting trains on its artist's prompt
        assert task.units == tuple(f"a Post-Impressionism painting by {a}" for a in
                                   ("Henri De Toulouse Lautrec", "Louis Valtat", "Paul Cezanne", "Vincent Van Gogh"))
        gogh = np.array([0, 0, 0, 1], bool)
        assert task.train(gogh, 0)[0].info["n_items"] == 2
        masks = np.array([[1, 0, 1, 1], [0, 0, 0, 0]], bool)
        proxy = task.proxy_game("aesthetic")(masks)
        assert len(task.scorer.sample_bank().done()) == 4 * 2  # the tiny bank: 2 images per artist
        retrained = task.retraining_game("aesthetic")(masks[:1])
        assert np.isfinite(proxy).all() and np.isfinite(retrained).all()
        assert proxy[1] == pytest.approx(task.score(task.empty_stats())["aesthetic"])
        rec = task.retraining_game("aesthetic").records(masks[:1])[0]
        assert rec["aesthetic_q90"] >= rec["aesthetic_q75"] >= rec["aesthetic_q50"]
        captions = get_task("artbench", scale="ci", cache_dir=tmp_path / "cache", data_dir=str(tmp_path / "data"),
                            train_prompt="caption")
        assert captions.n_units == 5 and captions.units[0].endswith("by Henri De Toulouse Lautrec")
    finally:
        torch.set_num_threads(threads)


# --- Openclipart readers -------------------------------------------------------------
SVG = """<?xml version="1.0"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     xmlns:cc="http://web.resource.org/cc/" xmlns:dc="http://purl.org/dc/elements/1.1/">
  <metadata><rdf:RDF><cc:Work rdf:about="">
    <dc:title>a drawing</dc:title>
    <dc:publisher><cc:Agent><dc:title>Open Clip Art Library</dc:title></cc:Agent></dc:publisher>
    {creator}
  </cc:Work></rdf:RDF></metadata>
</svg>"""


@pytest.mark.parametrize("creator, expected", [
    ("<dc:creator><cc:Agent><dc:title>  Ada\n Lovelace </dc:title></cc:Agent></dc:creator>", "Ada Lovelace"),
    ("<dc:creator>Grace Hopper</dc:creator>", "Grace Hopper"),
    ("<dc:creator><rdf:Bag><rdf:li>Alan Turing</rdf:li></rdf:Bag></dc:creator>", "Alan Turing"),
    ("<dc:creator><cc:Agent><dc:title></dc:title></cc:Agent></dc:creator>", None),
    ("", None),  # the publisher's dc:title is not the creator
])
def test_svg_creator_forms(tmp_path, creator, expected):
    p = tmp_path / "x.svg"
    p.write_text(SVG.format(creator=creator))
    assert svg_creator(p) == expected


def test_svg_creator_rejects_broken_xml(tmp_path):
    p = tmp_path / "broken.svg"
    p.write_text("<svg><metadata>")
    with pytest.raises(ValueError, match="broken.svg"):
        svg_creator(p)


@needs_openclipart
@pytest.mark.parametrize("rel, creator", [
    ("animals/bat_orlando_karam_.svg", "Orlando Karam"),
    # two dc:creator blocks, the second with an un-prefixed Agent
    ("food/fruit/apple_mateya_01.svg", "mateya"),
    # cc:Agent with an empty dc:title: no artist
    ("animals/birds/cormorant-md.svg", None),
    # a symbolic link to applications/
    ("computer/icons/stylized_cd_jakob_chaosi_.svg", "Jakob [chaosinfaith@hotmail.com]"),
])
def test_real_openclipart_creators(rel, creator):
    assert svg_creator(OPENCLIPART_DIR / "svg" / rel) == creator


def test_composite_on_white():
    rgba = np.array([[[0, 0, 0, 255], [0, 0, 0, 0], [200, 100, 0, 128], [255, 255, 255, 0]]], np.uint8)
    out = composite_on_white(rgba)
    assert out.dtype == np.uint8 and out.shape == (1, 4, 3)
    # opaque black stays black; transparent anything becomes white; half alpha blends
    assert out[0, 0].tolist() == [0, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 3].tolist() == [255, 255, 255]
    a = 128 / 255
    assert out[0, 2].tolist() == [round(200 * a + 255 * (1 - a)), round(100 * a + 255 * (1 - a)),
                                  round(255 * (1 - a))]
    with pytest.raises(ValueError, match="RGBA"):
        composite_on_white(np.zeros((2, 2, 3), np.uint8))


def test_near_blank_filter_and_thumbnail():
    # a white drawing on transparency vanishes on white: ink 0, dropped by any threshold
    white_on_clear = np.zeros((40, 40, 4), np.uint8)
    white_on_clear[..., :3] = 255
    white_on_clear[10:30, 10:30, 3] = 255
    assert ink_fraction(composite_on_white(white_on_clear)) == 0.0
    # a black square of 10 x 20 on a 40 x 40 transparent page: ink 1/8
    page = np.zeros((40, 40, 4), np.uint8)
    page[5:15, 10:30] = [0, 0, 0, 255]
    rgb = composite_on_white(page)
    assert ink_fraction(rgb) == pytest.approx(200 / 1600)
    # haze just above the ink level is not ink, at the level it is
    haze = np.full((4, 4, 3), INK_LEVEL + 1, np.uint8)
    assert ink_fraction(haze) == 0.0 and ink_fraction(haze - 1) == 1.0
    # the thumbnail crops to the ink: the square fills the width, centred, white above and below
    th = square_thumbnail(rgb, 16)
    assert th.shape == (16, 16, 3) and th.dtype == np.uint8
    assert th[8, 1:15].max() < 40  # the middle row is ink across
    assert th[0].min() == 255 and th[15].min() == 255  # padding rows are white
    assert ink_fraction(th) == pytest.approx(0.5, abs=0.1)  # a 2:1 rectangle in a square


def test_box_downsample_is_block_mean():
    x = np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4)
    y = box_downsample(x, 2)
    assert y.shape == (2, 3, 2, 2) and y.dtype == np.float32
    assert y[1, 2, 0, 1] == pytest.approx(x[1, 2, 0:2, 2:4].mean())
    assert box_downsample(x, 4).tolist() == x.astype(np.float32).tolist()
    with pytest.raises(ValueError, match="divisor"):
        box_downsample(x, 3)


# --- the clipart-artists task ---------------------------------------------------------
@pytest.fixture(scope="module")
def clipart_cache(tmp_path_factory):
    """One cache for the module (decoding every PNG takes a minute or two of CPU):
    $SURROGATESHAP_CACHE when set (its entries are keyed by the installed files'
    fingerprint), else a fresh folder."""
    env = os.environ.get("SURROGATESHAP_CACHE")
    return Path(env) if env else tmp_path_factory.mktemp("clipart-cache")


@needs_openclipart
def test_index_matches_pngs_to_svgs(clipart_cache):
    index = build_index(cache_dir=clipart_cache)
    rows = dict(zip(index.png, zip(index.file, index.svg, index.creator)))
    link = rows["png/computer/icons/stylized_cd_jakob_chaosi_.png"]
    assert link == ("png/computer/icons/applications/stylized_cd_jakob_chaosi_.png",
                    "svg/computer/icons/stylized_cd_jakob_chaosi_.svg", "Jakob [chaosinfaith@hotmail.com]")
    assert rows["png/animals/bat_orlando_karam_.png"][2] == "Orlando Karam"
    assert len(set(index.file)) < len(index.png)  # links share a file
    again = build_index(cache_dir=clipart_cache)  # from the cache: the same index
    assert again.creator == index.creator and again.file == index.file


def test_missing_packages_raise_one_clear_error(tmp_path):
    from surrogateshap.tasks import get_task

    task = get_task("clipart-artists", cache_dir=tmp_path, openclipart_dir=str(tmp_path / "none"))
    with pytest.raises(DataMissingError, match="apt-get install openclipart-png openclipart-svg"):
        task.dataset
    assert "openclipart-png openclipart-svg" in task.data_missing()


@needs_openclipart
@pytest.mark.slow
def test_clipart_artists_dataset(clipart_cache):
    pytest.importorskip("torch")
    from surrogateshap.tasks import get_task
    from surrogateshap.tasks.data.clipart_artists import CLIPART_ARTISTS, FILTER_SIZE, rank_artists, select_clipart

    task = get_task("clipart-artists", cache_dir=clipart_cache)
    ds = task.dataset
    assert task.n_players == len(ds.players) >= 30
    n, c, h, w = ds.images.shape
    assert (c, h, w) == (3, task.config.size, task.config.size) and ds.images.dtype == np.float32
    assert ds.images.min() >= -1 and ds.images.max() <= 1
    assert ds.labels.min() == 0 and ds.labels.max() == task.n_players - 1
    counts = np.bincount(ds.labels, minlength=task.n_players)
    assert counts.max() == task.config.per_artist and counts.min() >= 20
    # the players are the artists with the most kept images, most first
    sel = select_clipart(cache_dir=clipart_cache)
    ranked = rank_artists(sel)
    assert tuple(a for a, _ in ranked[:30]) == CLIPART_ARTISTS
    kept = dict(ranked)
    assert counts.tolist() == [min(kept[a], task.config.per_artist) for a in CLIPART_ARTISTS]
    # kept images have ink (at the filter's resolution) and no two are identical
    at16 = select_clipart(size=FILTER_SIZE, cache_dir=clipart_cache)
    assert at16.files == sel.files  # the same images at every training size
    assert ((at16.images.min(1) <= INK_LEVEL).mean((1, 2)) >= task.config.min_ink).all()
    assert len({bytes(x) for x in ds.images}) == n
    assert sel.dropped["no dc:creator"] > 0 and sel.dropped["oversized (not decoded)"] > 0
    # the image of a known file sits with its artist
    i = sel.files.index("png/animals/bat_orlando_karam_.png")
    assert sel.artists[i] == "Orlando Karam"


@needs_openclipart
@pytest.mark.slow
def test_clipart_artists_tiny_retraining_and_proxy(clipart_cache):
    pytest.importorskip("torch")
    from surrogateshap.tasks import get_task

    task = get_task("clipart-artists", scale="ci", cache_dir=clipart_cache, per_artist=20, hidden=32,
                    steps=30, n_samples=60, bank_per_label=4, n_modes=5, device="cpu")
    assert task.counts().tolist() == [20] * 30
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 30), bool)
    masks[0, rng.choice(30, 15, replace=False)] = True
    masks[1, :] = True
    retrain = task.retraining_game("neg_fid", cache=False)
    v = retrain(masks)
    assert v.shape == (2,) and np.isfinite(v).all()
    proxy = task.proxy_game("neg_fid")
    p = proxy(np.vstack([np.zeros(30, bool), masks]))
    assert np.isfinite(p).all()
    assert p[0] == pytest.approx(task.score(task.empty_stats())["neg_fid"])
    for u in task.utilities:
        assert np.isfinite(task.proxy_game(u)(masks)).all()
