"""atlasjax.workdir.file_name: layer names as single, URL-safe path components."""

from atlasjax import workdir


def test_file_name_is_one_component_injective_and_keeps_plain_names():
  names = ["mixed4c", "block1/fc2:input", "block1~2ffc2~3ainput", "a b", "blocks.1"]
  safe = [workdir.file_name(n) for n in names]
  assert safe[0] == "mixed4c" and safe[4] == "blocks.1"
  assert all("/" not in s and ":" not in s and " " not in s for s in safe)
  assert len(set(safe)) == len(names)     # "~" itself is escaped
  assert safe[1] == "block1~2ffc2~3ainput"
