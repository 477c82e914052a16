"""ImageNet labels of the BVLC GoogLeNet: lookup by index, WordNet id and name."""

from __future__ import annotations

import pytest

from atlasjax import labels as labels_lib


@pytest.fixture(scope="module")
def labels(data_root):
  return labels_lib.load(data_root)


def test_thousand_classes_in_logit_order(labels):
  assert len(labels) == 1000 == len(labels.names)
  assert labels.wnids[0] == "n01440764" and labels.short_name(0) == "tench"
  assert labels.wnids[999] == "n15075141" and labels.short_name(999) == "toilet tissue"
  assert len(set(labels.wnids)) == 1000


@pytest.mark.parametrize("query, index", [
    (0, 0), (999, 999), ("1", 1),
    ("n01440764", 0), ("n01443537", 1),
    ("goldfish", 1), ("Goldfish", 1), ("  goldfish ", 1),
    ("Carassius auratus", 1),               # a later synonym
    ("great white shark", 2), ("great_white_shark", 2), ("man-eater", 2),
    ("crane", 134),                         # ambiguous name: first class wins
])
def test_lookup(labels, query, index):
  assert labels.lookup(query) == index


@pytest.mark.parametrize("query", [1000, -1, "n99999999", "goldfsh", "", "1000"])
def test_unknown_class_raises(labels, query):
  with pytest.raises(labels_lib.UnknownClassError):
    labels.lookup(query)


def test_unknown_class_message_suggests(labels):
  with pytest.raises(labels_lib.UnknownClassError, match=r"'shark'.*Did you mean.*tiger shark"):
    labels.lookup("shark")
  with pytest.raises(KeyError, match="n00000000"):
    labels.index_of_wnid("n00000000")


def test_wnid_from_filename():
  assert labels_lib.wnid_from_filename("/x/n01443537_goldfish.jpg") == "n01443537"
  assert labels_lib.wnid_from_filename("n01443537") == "n01443537"
  assert labels_lib.wnid_from_filename("goldfish_n01443537.jpg") is None


def test_every_sample_photo_has_a_label(labels, sample_dir):
  files = sorted(sample_dir.glob("*.jpg"))
  assert len(files) == 800
  indices = {labels.index_of_wnid(labels_lib.wnid_from_filename(f.name))
             for f in files}
  assert len(indices) == 800
  # The readable part of the name is the class name for the unambiguous ones.
  assert labels.lookup("tench") == labels.index_of_wnid("n01440764")


def test_parse_synset_words():
  parsed = labels_lib.parse_synset_words(
      "n1 first, one\n\nn2 second thing\n")
  assert parsed.wnids == ("n1", "n2")
  assert parsed.lookup("one") == 0 and parsed.lookup("second_thing") == 1
