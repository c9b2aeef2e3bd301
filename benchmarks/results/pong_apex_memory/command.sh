#!/bin/bash
# Hour-long apex Pong run for issue 26 item 5, from a snapshot of the tree (aa4e6d5).
cd /work/longruns
PYTHONPATH=/work/longruns/snap exec /work/main/.venv/bin/python -c "from gluon_pdqn.cli import main; main()" train \
  --env ALE/Pong-v5 --mode apex --actors 2 --seed 0 --run-dir /work/longruns/pong-apex-1h --quiet \
  --set run.max_seconds=4800 --set run.log_every=10000
