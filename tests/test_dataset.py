"""Dataset + collator: DataLoader batches follow the batch contract for every modality combination."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from thesis_lib.data.batch import MultimodalCollator
from thesis_lib.data.dataset import MMIMDbDataset
from thesis_lib.data.images import ImageTransformConfig, PosterError, build_image_transform
from thesis_lib.data.mmimdb import Movie
from thesis_lib.data.text import CLEAN, RAW
from thesis_lib.data.tokenizers import load_pretrained_tokenizer, minilm_dir
from thesis_lib.genres import GENRE_INDEX, NUM_GENRES

IMAGE_SIZE = 32  # small posters keep the test fast; the contract is the same at 224
GENRE_SETS = [
    ("Drama",), ("Comedy", "Romance"), ("Horror", "Thriller", "Mystery"), ("Film-Noir",), ("Action", "Sci-Fi"),
]


@pytest.fixture(scope="module")
def tokenizer():
    return load_pretrained_tokenizer(minilm_dir())


@pytest.fixture(scope="module")
def movies(tmp_path_factory) -> list[Movie]:
    folder = tmp_path_factory.mktemp("posters")
    rng = np.random.default_rng(0)
    movies = []
    for index in range(10):
        movie_id = f"{index + 1:07d}"
        poster = folder / f"{movie_id}.jpeg"
        mode = ("RGB", "L", "CMYK")[index % 3]  # the dataset must cope with MM-IMDb's mixed modes
        pixels = rng.integers(0, 256, (45, 30, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(poster)
        plot = f"The movie number {index} is about a HERO, fighting zombies! " * (index + 1)
        movies.append(Movie(movie_id, plot, GENRE_SETS[index % len(GENRE_SETS)], poster, f"Title {index}", 2000))
    return movies


def _dataset(movies, tokenizer=None, modalities=("image", "text"), text_cleaning=CLEAN, train=False):
    transform = build_image_transform(ImageTransformConfig(size=IMAGE_SIZE), train=train)
    return MMIMDbDataset(movies, image_transform=transform, text_cleaning=text_cleaning, tokenizer=tokenizer,
                         modalities=modalities)


def _assert_batch_contract(batch, expected_ids, modalities, image_size=IMAGE_SIZE):
    size = len(expected_ids)
    expected_keys = {"ids", "labels"} | ({"image"} if "image" in modalities else set())
    expected_keys |= {"input_ids", "attention_mask", "text_index"} if "text" in modalities else set()
    assert set(batch) == expected_keys
    assert batch["ids"] == expected_ids
    assert batch["labels"].shape == (size, NUM_GENRES) and batch["labels"].dtype == torch.float32
    if "image" in modalities:
        assert batch["image"].shape == (size, 3, image_size, image_size)
        assert batch["image"].dtype == torch.float32
    if "text" in modalities:
        assert batch["input_ids"].dtype == batch["attention_mask"].dtype == torch.int64
        assert batch["input_ids"].shape == batch["attention_mask"].shape
        assert batch["input_ids"].shape[0] == size
        assert set(batch["attention_mask"].unique().tolist()) <= {0, 1}
        # the real tokens' flat positions, row-major (what padding-free attention packs)
        assert torch.equal(batch["text_index"], batch["attention_mask"].flatten().nonzero().squeeze(1))


def test_items_hold_the_image_the_cleaned_plot_and_the_labels(movies):
    item = _dataset(movies)[2]
    assert set(item) == {"id", "image", "text", "labels"}
    assert item["id"] == "0000003"
    assert item["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    assert item["text"].startswith("movie number 2 hero fighting zombies")  # cleaned, not tokenised
    assert _dataset(movies, text_cleaning=RAW)[2]["text"].startswith("The movie number 2 is about a HERO,")


def test_labels_are_the_multi_hot_genres(movies):
    dataset = _dataset(movies, modalities=("text",))
    for index, movie in enumerate(movies):
        labels = dataset[index]["labels"]
        assert labels.dtype == torch.float32 and labels.shape == (NUM_GENRES,)
        assert set(labels.nonzero().flatten().tolist()) == {GENRE_INDEX[genre] for genre in movie.genres}
    assert dataset[3]["labels"][GENRE_INDEX["Film-Noir"]] == 1.0  # the last genre, index 22


def test_dataloader_batches_follow_the_contract(movies, tokenizer):
    dataset = _dataset(movies, tokenizer)
    loader = DataLoader(dataset, batch_size=4, shuffle=False, num_workers=0, collate_fn=MultimodalCollator(tokenizer))
    batches = list(loader)
    assert [len(batch["ids"]) for batch in batches] == [4, 4, 2]
    ids = [movie.id for movie in movies]
    for number, batch in enumerate(batches):
        _assert_batch_contract(batch, ids[4 * number : 4 * number + 4], ("image", "text"))
        lengths = batch["attention_mask"].sum(dim=1)  # (B,)
        assert batch["input_ids"].shape[1] == lengths.max()  # padded to the longest plot of the batch
        for row, length in enumerate(lengths.tolist()):
            assert batch["input_ids"][row, 0] == tokenizer.cls_token_id
            assert batch["input_ids"][row, length - 1] == tokenizer.sep_token_id
            assert (batch["input_ids"][row, length:] == tokenizer.pad_token_id).all()
    first_labels = torch.stack([dataset[i]["labels"] for i in range(4)])
    torch.testing.assert_close(batches[0]["labels"], first_labels)


def test_collated_tokens_are_the_tokenised_cleaned_plot(movies, tokenizer):
    dataset = _dataset(movies, tokenizer, modalities=("text",))
    batch = MultimodalCollator(tokenizer)([dataset[0]])
    assert batch["input_ids"][0].tolist() == tokenizer(dataset[0]["text"])["input_ids"]


def test_workers_can_pickle_dataset_and_collator(movies, tokenizer):
    dataset, collator = _dataset(movies, tokenizer, train=True), MultimodalCollator(tokenizer, max_length=64)
    pickle.loads(pickle.dumps(collator))
    loader = DataLoader(dataset, batch_size=4, num_workers=2, collate_fn=collator)
    batches = list(loader)
    assert sorted(i for batch in batches for i in batch["ids"]) == [movie.id for movie in movies]
    _assert_batch_contract(batches[0], [movie.id for movie in movies[:4]], ("image", "text"))


def test_text_only_batches(movies, tokenizer):
    loader = DataLoader(_dataset(movies, tokenizer, modalities=("text",)), batch_size=4,
                        collate_fn=MultimodalCollator(tokenizer))
    _assert_batch_contract(next(iter(loader)), [movie.id for movie in movies[:4]], ("text",))


def test_image_only_batches_need_no_tokenizer(movies):
    dataset = _dataset(movies, modalities=("image",))
    assert "text" not in dataset[0]
    loader = DataLoader(dataset, batch_size=4, collate_fn=MultimodalCollator(None))
    _assert_batch_contract(next(iter(loader)), [movie.id for movie in movies[:4]], ("image",))


def test_long_plots_are_truncated_to_max_length(movies, tokenizer):
    items = [_dataset(movies, modalities=("text",))[i] for i in (0, 9)]  # a short and a long plot
    assert len(tokenizer(items[1]["text"])["input_ids"]) > 40
    batch = MultimodalCollator(tokenizer, max_length=40)(items)
    assert batch["input_ids"].shape == (2, 40)
    assert batch["input_ids"][1, -1] == tokenizer.sep_token_id and batch["attention_mask"][1].all()
    assert not batch["attention_mask"][0].all()  # the short plot is padded


def test_pad_to_multiple_of_rounds_the_length_up(movies, tokenizer):
    items = [_dataset(movies, modalities=("text",))[0]]
    length = len(tokenizer(items[0]["text"])["input_ids"])
    batch = MultimodalCollator(tokenizer, pad_to_multiple_of=64)(items)
    assert batch["input_ids"].shape[1] == 64 > length


def test_bad_configurations_fail_early(movies, tokenizer):
    with pytest.raises(ValueError, match="image_transform"):
        MMIMDbDataset(movies, image_transform=None, text_cleaning=CLEAN)
    with pytest.raises(ValueError, match="modalities"):
        _dataset(movies, modalities=("audio",))
    with pytest.raises(ValueError, match="max_length"):
        MultimodalCollator(tokenizer, max_length=1024)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        MultimodalCollator(tokenizer, max_length=100, pad_to_multiple_of=64)
    with pytest.raises(ValueError, match="no tokenizer"):
        MultimodalCollator(None)([_dataset(movies, modalities=("text",))[0]])


def test_bad_movies_are_refused_by_id(movies, tmp_path):
    with pytest.raises(ValueError, match="0000001 appears twice"):
        _dataset([movies[0], movies[0]])
    odd = Movie("0000099", "plot", ("Drama", "News"), movies[0].poster)
    with pytest.raises(ValueError, match="0000099.*News"):
        _dataset([odd])
    missing = Movie("0000100", "plot", ("Drama",), tmp_path / "0000100.jpeg")
    with pytest.raises(PosterError, match="0000100.jpeg"):
        _dataset([missing])[0]


def test_dataset_exposes_the_label_matrix_without_loading_items(tmp_path):
    movies = [
        Movie(id="0000001", plot="a", genres=("Drama", "Comedy"), poster=tmp_path / "missing1.jpeg"),
        Movie(id="0000002", plot="b", genres=("Film-Noir",), poster=tmp_path / "missing2.jpeg"),
    ]
    dataset = MMIMDbDataset(movies, image_transform=None, text_cleaning=CLEAN, modalities=("text",))
    assert dataset.labels.shape == (2, 23)  # posters do not exist: nothing was loaded
    assert dataset.labels[0, GENRE_INDEX["Drama"]] == 1 and dataset.labels[0, GENRE_INDEX["Comedy"]] == 1
    assert dataset.labels[1].sum() == 1 and dataset.labels[1, GENRE_INDEX["Film-Noir"]] == 1
