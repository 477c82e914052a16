"""Copies one file (a figure a run wrote) into the docs: ``copy_file.py SRC DST``."""

import shutil
import sys

if __name__ == "__main__":
  shutil.copyfile(sys.argv[1], sys.argv[2])
