"""`gluon-pdqn plot` as a plain script, for cluster machines where the console script is not on the path.

    python scripts/plot.py --help
"""
import sys

from gluon_pdqn.cli import main

if __name__ == "__main__":
    main(["plot", *sys.argv[1:]])
