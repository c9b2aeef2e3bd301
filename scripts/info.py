"""`gluon-pdqn info` as a plain script, for cluster machines where the console script is not on the path.

    python scripts/info.py --help
"""
import sys

from gluon_pdqn.cli import main

if __name__ == "__main__":
    main(["info", *sys.argv[1:]])
