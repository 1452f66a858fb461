import os
import sys

# MindSpore C++ warnings (graph expander internals) drown the progress lines; GLOG_v=2 shows them.
os.environ.setdefault("GLOG_v", "3")

from job.cli import main

sys.exit(main())
